#!/bin/sh
# oldnew.sh REPS: two Coalesce binaries, OLD (default bin/coalesce-old) and
# NEW (default bin/coalesce), both serving models/ on /predict (digits-mlp),
# measured alternately at 64 connections with bench run (BENCH, default
# bin/bench); prints per run: binary, throughput (req/s), p99, server CPU
# per request (µs). Build OLD from an earlier commit with git worktree.
cd "$(dirname "$0")/.."
${OLD:-bin/coalesce-old} serve --models.repository models --config /dev/null --models.default digits-mlp --http.addr 127.0.0.1:18780 --admin.addr 127.0.0.1:18790 --log.level warn >/dev/null 2>&1 &
A=$!
${NEW:-bin/coalesce} serve --models.repository models --config /dev/null --models.default digits-mlp --http.addr 127.0.0.1:18781 --admin.addr 127.0.0.1:18791 --log.level warn >/dev/null 2>&1 &
B=$!
trap 'kill $A $B 2>/dev/null' EXIT
sleep 2
for i in $(seq 1 $1); do
  for t in "old 18780 $A" "new 18781 $B"; do
    set -- $t
    ${BENCH:-bin/bench} run -addr 127.0.0.1:$2 -pid $3 -c 64 -d 3s -warmup 0.5s -name $1 -out /tmp/oldnew-res 2>/dev/null | grep "^| $1 " | awk -F'|' -v n=$1 '{print n, $4, $7, $12}'
  done
done
