#!/usr/bin/env bash
# upstream.sh - the upstream-backend benchmarks of issue 14, interleaved, medians of REPS runs.
#
#   bench/upstream.sh [batching|flask|down ...]     (default: all three)
#
#   batching  64 single-row clients -> Coalesce -> a simulated batched KServe V2 server costing
#             1 ms per call whatever its rows (bench simupstream, one call at a time), against the
#             same clients calling the simulator directly: throughput and Coalesce's mean batch.
#   flask     the seed's Flask app under gunicorn (2 sync workers, one row per call), directly and
#             through Coalesce (protocol predict): p50 at 1 connection (Coalesce's added latency);
#             then an open-loop overload (1,500 req/s, Poisson) past what gunicorn sustains
#             (~550-700 req/s on this shared machine), through Coalesce with a
#             100 ms deadline (shed 503s, p99 of admitted requests) and directly (it queues).
#   down      every replica down (connection refused): after the breakers open, 503 latency at
#             2,000 req/s open loop (Poisson, 16 connections: the fail-fast path, not a saturated
#             machine's queueing) and the connection attempts Coalesce made meanwhile
#             (coalesce_upstream_connects_total before and after); the bare fasthttp server
#             (bench noop) at the same rate, interleaved, is the machine's floor.
#
# Knobs: REPS (default 3), DUR (measured seconds per run, default 5s), OUT (default
# bench/results/upstream-<timestamp>), PEERS (default ../shared/peers), PY (default /usr/bin/python3).
# Every process this script starts is killed by PID when it ends. Load generator and servers share
# the machine's cores.
set -u -o pipefail
main() {
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REPS=${REPS:-3}
DUR=${DUR:-5s}
OUT=${OUT:-bench/results/upstream-$(date -u +%Y%m%d-%H%M%S)}
PEERS=${PEERS:-../shared/peers}
PY=${PY:-/usr/bin/python3}
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
go build -o "$WORK/bench" ./bench && go build -o "$WORK/coalesce" ./cmd/coalesce || exit 1
SCEN=("$@")
[ ${#SCEN[@]} -eq 0 ] && SCEN=(batching flask down)

start() { # start NAME CMD...: run in the background, remember the PID
	local name=$1; shift
	"$@" >"$OUT/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
}
waitfor() { # waitfor URL: until it answers
	for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
	echo "no answer from $1" >&2; return 1
}
front() { # front NAME PORT REPO [args]: a Coalesce serving REPO on PORT (admin PORT+1)
	local name=$1 port=$2 repo=$3; shift 3
	start "$name" "$WORK/coalesce" serve --http.addr "127.0.0.1:$port" --admin.addr "127.0.0.1:$((port + 1))" \
		--models.repository "$repo" --log.level warn "$@"
}
run() { # run LABEL ADDR [bench run flags]: one measured run; appends its results.json path to $OUT/runs
	local label=$1 addr=$2; shift 2
	"$WORK/bench" run -addr "$addr" -name "$label" -d "$DUR" -out "$OUT/runs-$label" "$@" >/dev/null 2>>"$OUT/bench.log" || echo "run $label failed" >&2
	ls -t "$OUT/runs-$label"/*/results.json | head -1 >>"$OUT/runs"
}
: >"$OUT/runs"

for s in "${SCEN[@]}"; do case $s in
batching)
	mkdir -p "$WORK/repoA/digits-mlp/1"
	cat >"$WORK/repoA/digits-mlp/1/upstream.yaml" <<EOF
protocol: kserve-v2
endpoints: [http://127.0.0.1:18501]
model: sim
max_batch_size: 64
inputs: [{name: input, datatype: FP32, dims: [64]}]
outputs: [{name: label, datatype: INT64}]
client: {concurrency: 2}
EOF
	start sim "$WORK/bench" simupstream -addr 127.0.0.1:18501 -cost 1ms -concurrency 1
	front frontA 18502 "$WORK/repoA" --models.default digits-mlp
	waitfor http://127.0.0.1:18501/ && waitfor http://127.0.0.1:18503/metrics || exit 1
	for rep in $(seq "$REPS"); do
		run batching-direct 127.0.0.1:18501 -protocol v2-json -model digits-mlp -c 64 -warmup 1s
		run batching-coalesce 127.0.0.1:18502 -protocol v2-json -model digits-mlp -c 64 -warmup 1s -metrics http://127.0.0.1:18503/metrics
	done
	kill "$PID_sim" "$PID_frontA"
	;;
flask)
	cp -r "$PEERS" "$WORK/peers" && (cd "$WORK/peers" && "$PY" make_models.py >/dev/null) || { echo "flask: cannot train the peers' models" >&2; continue; }
	start gunicorn env MODEL_PATH="$WORK/peers/models/mlp_digits.pkl" "$PY" -m gunicorn --chdir "$WORK/peers" -w 2 -b 127.0.0.1:18511 flask_app:app
	mkdir -p "$WORK/repoF/digits-mlp/1"
	cat >"$WORK/repoF/digits-mlp/1/upstream.yaml" <<EOF
protocol: predict
endpoints: [http://127.0.0.1:18511]
inputs: [{name: features, datatype: FP32, dims: [64]}]
outputs: [{name: prediction, datatype: INT64}]
EOF
	front frontF 18512 "$WORK/repoF" --models.default digits-mlp --batching.default_timeout 100ms
	waitfor http://127.0.0.1:18513/metrics || exit 1
	for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:18512/v2/models/digits-mlp/ready)" = 200 ] && break; sleep 0.1; done
	for rep in $(seq "$REPS"); do
		run flask-direct-c1 127.0.0.1:18511 -protocol predict -model digits-mlp -c 1 -warmup 1s
		run flask-coalesce-c1 127.0.0.1:18512 -protocol predict -model digits-mlp -c 1 -warmup 1s
	done
	for rep in $(seq "$REPS"); do
		run flask-direct-open 127.0.0.1:18511 -protocol predict -model digits-mlp -rate 1500 -open-conns 128 -warmup 1s
		run flask-coalesce-open 127.0.0.1:18512 -protocol predict -model digits-mlp -rate 1500 -open-conns 128 -warmup 1s
	done
	kill "$PID_frontF" "$PID_gunicorn" # gunicorn's master stops its workers
	;;
down)
	mkdir -p "$WORK/repoD/digits-mlp/1"
	cat >"$WORK/repoD/digits-mlp/1/upstream.yaml" <<EOF
protocol: kserve-v2
endpoints: [http://127.0.0.1:18597, http://127.0.0.1:18598]
model: digits-mlp
inputs: [{name: input, datatype: FP32, dims: [64]}]
outputs: [{name: label, datatype: INT64}]
breaker: {open_timeout: 60s}
EOF
	front frontD 18522 "$WORK/repoD" --models.default digits-mlp
	start noop "$WORK/bench" noop -addr 127.0.0.1:18530 # control: this machine's floor at the same rate
	waitfor http://127.0.0.1:18523/metrics || exit 1
	# Trip the breakers (each replica: consecutive_failures refused connects).
	for _ in $(seq 20); do curl -s -o /dev/null -XPOST 127.0.0.1:18522/v2/models/digits-mlp/infer -d '{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}'; done
	curl -s 127.0.0.1:18523/metrics | grep '^coalesce_upstream_connects_total' >"$OUT/down-connects-before.txt"
	for rep in $(seq "$REPS"); do
		run down-coalesce 127.0.0.1:18522 -protocol v2-json -model digits-mlp -rate 2000 -open-conns 16 -warmup 500ms
		run down-noop-control 127.0.0.1:18530 -protocol v2-json -model digits-mlp -path /predict -rate 2000 -open-conns 16 -warmup 500ms
	done
	curl -s 127.0.0.1:18523/metrics | grep '^coalesce_upstream_connects_total' >"$OUT/down-connects-after.txt"
	kill "$PID_frontD" "$PID_noop"
	;;
*) echo "unknown scenario $s" >&2 ;;
esac; done

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys, os
out = sys.argv[1]
runs = {}
for path in open(os.path.join(out, "runs")).read().split():
    r = json.load(open(path))["runs"][0]
    runs.setdefault(r["target"], []).append(r)
med = lambda xs: statistics.median(xs) if xs else float("nan")
lines = ["| run | reps | throughput (2xx/s) | p50 | p99 | shed | shed p99 | mean batch |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
for name, rs in runs.items():
    lines.append("| %s | %d | %.0f | %.3f ms | %.2f ms | %d | %.3f ms | %s |" % (
        name, len(rs), med([r["throughput"] for r in rs]), med([r["latency"]["p50_us"] for r in rs]) / 1000,
        med([r["latency"]["p99_us"] for r in rs]) / 1000, sum(r["shed"] for r in rs),
        med([r["shed_latency"]["p99_us"] for r in rs]) / 1000,
        "%.1f" % med([r["server"]["mean_batch_size"] for r in rs]) if rs[0].get("server", {}).get("mean_batch_size") else "-"))
    if name.endswith("coalesce") or name.endswith("-c1"):
        pass
pairs = [("batching-coalesce", "batching-direct", "throughput", "throughput ratio (coalesce / direct, per-rep pairs)"),
         ("flask-coalesce-c1", "flask-direct-c1", "p50", "added p50 at 1 connection (coalesce - direct, per-rep pairs), ms")]
for a, b, what, label in pairs:
    if a in runs and b in runs:
        if what == "throughput":
            v = med([x["throughput"] / y["throughput"] for x, y in zip(runs[a], runs[b])])
        else:
            v = med([(x["latency"]["p50_us"] - y["latency"]["p50_us"]) / 1000 for x, y in zip(runs[a], runs[b])])
        lines.append("\n%s: %.3f" % (label, v))
for f in ("down-connects-before.txt", "down-connects-after.txt"):
    p = os.path.join(out, f)
    if os.path.exists(p):
        lines.append("\n%s:\n%s" % (f, open(p).read().strip()))
s = "\n".join(lines)
open(os.path.join(out, "summary.md"), "w").write(s + "\n")
print(s)
EOF
}
main "$@"
