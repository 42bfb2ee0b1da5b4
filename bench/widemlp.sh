#!/bin/sh
# widemlp.sh: wide-mlp (/predict) on two servers of one binary (COALESCE,
# default bin/coalesce), batching on and off, measured alternately with
# bench run (BENCH, default bin/bench) at 64 and 1 connections, ROUNDS
# (default 3) times each. BASE, when set, names a second binary (e.g. one
# built from main) whose two servers join the alternation as base-on and
# base-off. Each line: server, connections, req/s, p50, p99, and the mean
# batch size of that run (coalesce_inference_rows_total ÷
# coalesce_inference_calls_total from the server's /metrics). The model
# file is generated first when absent (go run ./models/wide-mlp/gen).
cd "$(dirname "$0")/.."
[ -f models/wide-mlp/1/model.onnx ] || go run ./models/wide-mlp/gen || exit 1
pids=""
start() { # label binary port extra...
	l=$1 bin=$2 port=$3; shift 3
	$bin serve --models.repository models --config /dev/null --http.addr 127.0.0.1:$port --admin.addr 127.0.0.1:$((port + 10)) --log.level warn "$@" >/dev/null 2>&1 &
	pids="$pids $!"
	servers="$servers $l:$port:$!"
}
servers=""
start on "${COALESCE:-bin/coalesce}" 18880
start off "${COALESCE:-bin/coalesce}" 18881 --batching.enabled=false
if [ -n "$BASE" ]; then
	start base-on "$BASE" 18882
	start base-off "$BASE" 18883 --batching.enabled=false
fi
trap 'kill $pids 2>/dev/null' EXIT
sleep 5
rowscalls() { # port: "rows calls" of wide-mlp
	curl -s "127.0.0.1:$(($1 + 10))/metrics" | awk '/^coalesce_inference_rows_total\{model="wide-mlp"/ {r=$2} /^coalesce_inference_calls_total\{model="wide-mlp"/ {c=$2} END {print r+0, c+0}'
}
for c in 64 1; do for i in $(seq "${ROUNDS:-3}"); do
	for s in $servers; do
		l=${s%%:*} rest=${s#*:}; port=${rest%%:*} pid=${rest#*:}
		before=$(rowscalls "$port")
		line=$(${BENCH:-bin/bench} run -addr 127.0.0.1:$port -pid $pid -model wide-mlp -c $c -d 3s -warmup 0.5s -name "$l" -out ${TMPDIR:-/tmp}/wm-res 2>/dev/null | grep "^| $l ")
		after=$(rowscalls "$port")
		echo "$line" | awk -F'|' -v n="$l" -v c=$c -v b="$before" -v a="$after" '{split(b, x, " "); split(a, y, " "); mb = (y[2] > x[2]) ? (y[1]-x[1])/(y[2]-x[2]) : 0; printf "%s c=%s %s p50 %s p99 %s batch %.1f\n", n, c, $4, $5, $7, mb}'
	done
done; done
