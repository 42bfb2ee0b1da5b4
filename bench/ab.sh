#!/bin/sh
# ab.sh measures two configurations of Coalesce against each other on
# /predict at 64 connections: both servers run at once (idle while the
# other is measured), and `bench run` alternates between them, A, B, A, B,
# so that the machine's drift hits both. Run it from the repository root:
#
#	bench/ab.sh 5 "" "--batching.preferred_batch_size 8"
#
# Arguments: repetitions, then the flags of server A and of server B (each
# one argument, possibly empty), then optionally flags for `bench run`
# (e.g. "-pool 100000" so that a response cache sees no repeats). It
# prints, per repetition, each server's throughput (req/s), p99 and server
# CPU per request (µs), and at the end
# each server's coalesce_batch_size sum and count (and cache hits and misses,
# when its cache is on) for digits-mlp.
# BENCH_RUN_FLAGS adds flags to every `bench run`, e.g.
# BENCH_RUN_FLAGS="-header X-API-Key:$KEY" when one server wants a key.
set -eu
reps=$1 flagsA=$2 flagsB=$3 benchFlags=${4:-}
go build -o bin/coalesce ./cmd/coalesce
go build -o bin/bench ./bench
# shellcheck disable=SC2086 # the flags are meant to split
bin/coalesce serve --http.addr 127.0.0.1:18080 --admin.addr 127.0.0.1:19090 $flagsA >/dev/null 2>&1 &
pidA=$!
# shellcheck disable=SC2086
bin/coalesce serve --http.addr 127.0.0.1:18081 --admin.addr 127.0.0.1:19091 $flagsB >/dev/null 2>&1 &
pidB=$!
trap 'kill $pidA $pidB 2>/dev/null' EXIT
sleep 2
row() { # addr pid: throughput p99 cpu/req
	# shellcheck disable=SC2086 # the flags are meant to split
	bin/bench run -addr "$1" -pid "$2" -c 64 -d 3s -warmup 0.5s $benchFlags -out "${TMPDIR:-/tmp}/coalesce-ab" ${BENCH_RUN_FLAGS:-} 2>&1 |
		awk -F'|' '/^\| target \| 64/ {gsub(/ /, ""); print $4, $7, $12}'
}
i=0
while [ "$i" -lt "$reps" ]; do
	echo "A: $(row 127.0.0.1:18080 $pidA)   B: $(row 127.0.0.1:18081 $pidB)"
	i=$((i + 1))
done
for port in 19090 19091; do
	curl -s "localhost:$port/metrics" | awk '/^coalesce_(batch_size_(sum|count)|cache_(hits|misses)_total)\{model="digits-mlp"/ {printf "%s=%s ", $1, $2}'
	echo
done
