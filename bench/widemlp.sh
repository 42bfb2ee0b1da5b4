#!/bin/sh
# widemlp.sh: wide-mlp (/predict) on two servers of one binary (COALESCE,
# default bin/coalesce), batching on and off, measured alternately with
# bench run (BENCH, default bin/bench) at 64 and 1 connections, 3 times each.
cd "$(dirname "$0")/.."
${COALESCE:-bin/coalesce} serve --models.repository models --config /dev/null --http.addr 127.0.0.1:18880 --admin.addr 127.0.0.1:18890 --log.level warn >/dev/null 2>&1 & A=$!
${COALESCE:-bin/coalesce} serve --models.repository models --config /dev/null --batching.enabled=false --http.addr 127.0.0.1:18881 --admin.addr 127.0.0.1:18891 --log.level warn >/dev/null 2>&1 & B=$!
trap 'kill $A $B 2>/dev/null' EXIT
sleep 3
for c in 64 1; do for i in 1 2 3; do
  for t in "on 18880 $A" "off 18881 $B"; do set -- $t
    ${BENCH:-bin/bench} run -addr 127.0.0.1:$2 -pid $3 -model wide-mlp -c $c -d 3s -warmup 0.5s -name $1 -out ${TMPDIR:-/tmp}/wm-res 2>/dev/null | grep "^| $1 " | awk -F'|' -v n=$1 -v c=$c '{print n, "c="c, $4, "p50", $5, "p99", $7}'
  done
done; done
