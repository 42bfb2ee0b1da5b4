#!/bin/sh
# grpc.sh: KServe V2 gRPC ModelInfer (raw_input_contents) against HTTP V2
# binary tensors on digits-mlp, one row per call, on one server (COALESCE,
# default bin/coalesce, with --grpc.addr), measured alternately with bench
# run (BENCH, default bin/bench) at 1, 16 and 64 concurrent streams or
# connections, ROUNDS (default 3) rounds of DUR (default 3s) each; then the
# medians and the ratios gRPC / HTTP. Targets:
#   grpc       every stream on one HTTP/2 connection (a gRPC client's one channel)
#   grpc-conns one HTTP/2 connection per stream (-grpc-conns 0)
#   v2-binary  HTTP/1.1, one connection per request in flight
# Extra flags for the server go in SERVER_FLAGS, for the gRPC client in
# GRPC_FLAGS (e.g. "-grpc-window 1048576"). Runs hold
# /tmp/coalesce-bench.lock, so they do not overlap other measurements.
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DUR=${DUR:-3s} H=${PORT:-27280}
G=$((H + 1)) M=$((H + 10))
${COALESCE:-bin/coalesce} serve --models.repository models --config /dev/null --http.addr 127.0.0.1:$H --admin.addr 127.0.0.1:$M --grpc.addr 127.0.0.1:$G --log.level warn $SERVER_FLAGS >/dev/null 2>&1 & S=$!
OUT=$(mktemp -d) && trap 'kill $S 2>/dev/null; rm -rf "$OUT"' EXIT
sleep 3
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in 1 16 64; do for i in $(seq "$ROUNDS"); do
  for t in "grpc $G -protocol grpc $GRPC_FLAGS" "grpc-conns $G -protocol grpc -grpc-conns 0 $GRPC_FLAGS" "v2-binary $H -protocol v2-binary"; do set -- $t
    n=$1 a=$2; shift 2
    flock /tmp/coalesce-bench.lock ${BENCH:-bin/bench} run -addr 127.0.0.1:$a -pid $S "$@" -model digits-mlp -c $c -d "$DUR" -warmup 0.5s -name $n -out "$OUT/res" 2>/dev/null |
      grep "^| $n " | awk -F'|' -v n=$n -v c=$c '{gsub(/[ ,]|ms/, "", $4); gsub(/[ ,]|ms/, "", $5); gsub(/[ ,]|ms/, "", $7); print n, c, $4, $5, $7}' | tee -a "$OUT/runs"
  done
done; done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians of $ROUNDS (req/s, p50 ms, p99 ms):"
med() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
for c in 1 16 64; do
  h=$(awk -v c=$c '$1=="v2-binary" && $2==c {print $3}' "$OUT/runs" | med)
  h50=$(awk -v c=$c '$1=="v2-binary" && $2==c {print $4}' "$OUT/runs" | med)
  for n in grpc grpc-conns v2-binary; do
    r=$(awk -v n=$n -v c=$c '$1==n && $2==c {print $3}' "$OUT/runs" | med)
    p50=$(awk -v n=$n -v c=$c '$1==n && $2==c {print $4}' "$OUT/runs" | med)
    p99=$(awk -v n=$n -v c=$c '$1==n && $2==c {print $5}' "$OUT/runs" | med)
    echo "$n c=$c $r req/s p50 $p50 p99 $p99 (throughput x$(echo "$r $h" | awk '{printf "%.2f", $1/$2}') p50 x$(echo "$p50 $h50" | awk '{printf "%.2f", $1/$2}') of v2-binary)"
  done
done
