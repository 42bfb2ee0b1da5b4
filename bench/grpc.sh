#!/bin/sh
# grpc.sh: KServe V2 gRPC ModelInfer (raw_input_contents) against HTTP V2
# binary tensors on digits-mlp, one row per call, on one server (COALESCE,
# default bin/coalesce, with --grpc.addr), measured alternately with bench
# run (BENCH, default bin/bench) at 1, 16 and 64 concurrent streams or
# connections, ROUNDS (default 3) rounds of DUR (default 3s) each; then the
# medians and the ratios gRPC / HTTP. Targets (TARGETS, default all four):
#   grpc       every stream on one HTTP/2 connection (a gRPC client's one channel)
#   grpc-conns one HTTP/2 connection per stream (-grpc-conns 0)
#   grpc-lean  as grpc, with the tool's own HTTP/2 client (-grpc-client lean)
#   v2-binary  HTTP/1.1, one connection per request in flight
# Extra flags for the server go in SERVER_FLAGS, for the gRPC client in
# GRPC_FLAGS (e.g. "-grpc-window 1048576"). The measurement holds
# /tmp/coalesce-bench.lock (flock) from its first run to its last, so that
# it does not overlap other measurements and its rounds are not spread
# over other sessions' runs.
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DUR=${DUR:-3s} H=${PORT:-27280} TARGETS=${TARGETS:-grpc grpc-conns grpc-lean v2-binary}
G=$((H + 1)) M=$((H + 10))
${COALESCE:-bin/coalesce} serve --models.repository models --config /dev/null --http.addr 127.0.0.1:$H --admin.addr 127.0.0.1:$M --grpc.addr 127.0.0.1:$G --log.level warn $SERVER_FLAGS >/dev/null 2>&1 & S=$!
OUT=$(mktemp -d) && trap 'kill $S 2>/dev/null; rm -rf "$OUT"' EXIT
sleep 3
exec 9>/tmp/coalesce-bench.lock
flock 9
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in 1 16 64; do for i in $(seq "$ROUNDS"); do
  for n in $TARGETS; do
    case $n in
      grpc) set -- $G -protocol grpc $GRPC_FLAGS ;;
      grpc-conns) set -- $G -protocol grpc -grpc-conns 0 $GRPC_FLAGS ;;
      grpc-lean) set -- $G -protocol grpc -grpc-client lean $GRPC_FLAGS ;;
      v2-binary) set -- $H -protocol v2-binary ;;
      *) echo "unknown target $n" >&2; exit 2 ;;
    esac
    a=$1; shift
    ${BENCH:-bin/bench} run -addr 127.0.0.1:$a -pid $S "$@" -model digits-mlp -c $c -d "$DUR" -warmup 0.5s -name $n -out "$OUT/res" 2>/dev/null |
      grep "^| $n " | awk -F'|' -v n=$n -v c=$c '{gsub(/[ ,]|ms/, "", $4); gsub(/[ ,]|ms/, "", $5); gsub(/[ ,]|ms/, "", $7); print n, c, $4, $5, $7}' | tee -a "$OUT/runs"
  done
done; done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
flock -u 9
echo "medians of $ROUNDS rounds; ratios are medians of the per-round ratios to v2-binary (same round):"
med() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# Number each target's rounds per level, then pair each round with v2-binary's.
awk '{k=$1" "$2; print $0, ++r[k]}' "$OUT/runs" > "$OUT/rounds"
for c in 1 16 64; do for n in $TARGETS; do
  col() { awk -v n=$n -v c=$c -v f=$1 '$1==n && $2==c {print $f}' "$OUT/rounds" | med; }
  ratio() { awk -v n=$n -v c=$c -v f=$1 '$1=="v2-binary" && $2==c {h[$6]=$f} $1==n && $2==c {g[$6]=$f} END {for (i in g) if (h[i] > 0) print g[i]/h[i]}' "$OUT/rounds" | med; }
  printf "%-10s c=%-2s %8.0f req/s  p50 %s ms  p99 %s ms  throughput x%.2f  p50 x%.2f  p99 x%.2f\n" $n $c "$(col 3)" "$(col 4)" "$(col 5)" "$(ratio 3)" "$(ratio 4)" "$(ratio 5)"
done; done
