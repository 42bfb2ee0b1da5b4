#!/bin/sh
# shadow.sh: what a shadow costs the primary's p50 and p99 out of process:
# one server (COALESCE, default bin/coalesce) alone in its process, the
# load from bench run (BENCH, default bin/bench) in another, open loop
# (Poisson) at RATE (default 4000) requests/s of one digits-mlp row each
# (KServe V2 binary tensors), DUR (default 5s) per run after 1s of warm-up.
# A temporary repository holds four copies of digits-mlp, each with
# versions 1 and 2 (the same model.onnx) and requests sent to version 1:
#   off    no shadow: the reference of the ratios
#   aa     no shadow, identical to off: the A/A control (the measure's noise)
#   on     shadow version 2 at share 1 (every answer copied), queue 64
#   share  shadow version 2 at share 0.1, queue 64
# ROUNDS (default 12) rounds; each starts at another mode (so that no mode
# always follows the same one), and each round holds /tmp/coalesce-bench.lock
# (flock) from its first run to its last, so that its four runs are not
# split by other sessions' measurements. INTERVAL sets the shadows'
# shadow.interval (default: the server's). Per round, each mode's p99 ÷ off's
# p99; the report gives per mode the median p50 and p99, the median, range
# and a bootstrap 95 % interval (2,000 resamples of the rounds) of the
# median per-round p99 ratio. Extra flags for the server go in SERVER_FLAGS.
# PIN=1 runs the server on CPU 1 alone (taskset; Go then runs one P) and
# the load on CPU 0: the shadow then shares its one core with the answers
# only, and the load no longer takes the server's cycles.
# SWITCH=1 measures by switchback instead (bench run -switch-path): each
# round is three runs, off against aa, on and share, each run alternating
# between off (arm 0) and the other (arm 1) every BLOCK (default 200ms),
# leaving out the first SETTLE (default 40ms) of every block (the shadow's
# copies still queued from the block before); the round's ratio is arm 1's
# p99 ÷ arm 0's in the same run. Noise that lasts longer than a block (a
# neighbour on the host) then falls on both arms, where sequential runs
# each catch their own.
# APART=1 (with SWITCH=1) adds two comparisons across processes: a second
# server of the same binary (same CPUs) serving only off, without any
# shadow, is arm 0, and this server's off (xoff) or on (xon) is arm 1.
# A shadow costs its process more than its model's requests: the
# worker's thread, and the P the runtime is given for it
# (internal/idlethread); xon is the whole cost to a primary, against a
# server that has no shadow at all.
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-12} DUR=${DUR:-5s} RATE=${RATE:-4000} H=${PORT:-27380} MODES="off aa on share"
M=$((H + 10))
OUT=$(mktemp -d) && R="$OUT/repo"
for m in $MODES; do
  mkdir -p "$R/$m/1" "$R/$m/2"
  cp models/digits-mlp/1/model.onnx "$R/$m/1/" && cp models/digits-mlp/1/model.onnx "$R/$m/2/"
  cp models/digits-mlp/golden.json models/digits-mlp/config.yaml "$R/$m/"
  printf '\nversion_policy: {latest: 2}\n' >>"$R/$m/config.yaml"
done
# UPSTREAM=1 serves the shadows' version 2 from a second server (nice 19,
# on the first server's CPUs) as an upstream (upstream.yaml, V2 binary):
# the shadow's inference then runs in a process of lower OS priority.
U=$((H + 20))
if [ "${UPSTREAM:-}" = 1 ]; then
  mkdir -p "$OUT/up/digits-mlp/1" && cp models/digits-mlp/1/model.onnx "$OUT/up/digits-mlp/1/" &&
    cp models/digits-mlp/golden.json models/digits-mlp/config.yaml "$OUT/up/digits-mlp/"
  for m in on share; do
    rm "$R/$m/2/model.onnx"
    printf 'protocol: kserve-v2-binary\nendpoints: [http://127.0.0.1:%s]\nmodel: digits-mlp\nversion: "1"\n' $U >"$R/$m/2/upstream.yaml"
  done
fi
I=${INTERVAL:+, interval: $INTERVAL}
printf 'shadow: {version: 2, share: 1, queue: 64%s}\n' "$I" >>"$R/on/config.yaml"
printf 'shadow: {version: 2, share: 0.1, queue: 64%s}\n' "$I" >>"$R/share/config.yaml"
SRV= CLI=
[ "${PIN:-}" = 1 ] && SRV="taskset -c 1" CLI="taskset -c 0"
if [ "${UPSTREAM:-}" = 1 ]; then
  $SRV nice -n 19 ${COALESCE:-bin/coalesce} serve --models.repository "$OUT/up" --config /dev/null --http.addr 127.0.0.1:$U --admin.addr 127.0.0.1:$((U + 1)) --log.level warn >"$OUT/upstream.log" 2>&1 &
  OTHERS=$!
  sleep 2
fi
P=$((H + 30))
if [ "${APART:-}" = 1 ]; then
  mkdir -p "$OUT/plain" && cp -r "$R/off" "$OUT/plain/"
  $SRV ${COALESCE:-bin/coalesce} serve --models.repository "$OUT/plain" --config /dev/null --http.addr 127.0.0.1:$P --admin.addr 127.0.0.1:$((P + 1)) --log.level warn $SERVER_FLAGS >"$OUT/plain.log" 2>&1 &
  OTHERS="${OTHERS:-} $!"
fi
$SRV ${COALESCE:-bin/coalesce} serve --models.repository "$R" --config /dev/null --http.addr 127.0.0.1:$H --admin.addr 127.0.0.1:$M --log.level warn $SERVER_FLAGS >"$OUT/server.log" 2>&1 &
S=$!
# OTHERS: the pids of the upstream and plain servers, when started.
trap 'kill $S ${OTHERS:-} 2>/dev/null; wait $S ${OTHERS:-}; rm -rf "$OUT"' EXIT
sleep 3
kill -0 $S 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exec 9>/tmp/coalesce-bench.lock
SWITCHED="aa on share"
[ "${APART:-}" = 1 ] && SWITCHED="$SWITCHED xoff xon"
if [ "${SWITCH:-}" = 1 ]; then
  n=$(echo $SWITCHED | wc -w)
  for r in $(seq "$ROUNDS"); do
    k=$(((r - 1) % n))
    order=$(echo $SWITCHED $SWITCHED | cut -d' ' -f$((k + 1))-$((k + n)))
    flock 9
    for m in $order; do
      rm -rf "$OUT/res"
      # xoff, xon: arm 0 on the plain server, arm 1 this server's off or on.
      a0=$H sa=
      case $m in x*) a0=$P sa="-switch-addr 127.0.0.1:$H" ;; esac
      $CLI ${BENCH:-bin/bench} run -addr 127.0.0.1:$a0 -pid $S -protocol v2-binary -models "$R" -model off \
        -path /v2/models/off/versions/1/infer $sa -switch-path /v2/models/${m#x}/versions/1/infer \
        -block "${BLOCK:-200ms}" -settle "${SETTLE:-40ms}" -rate "$RATE" -d "$DUR" -warmup 1s -name $m -out "$OUT/res" >/dev/null 2>&1
      # Per arm (0: off, 1: m), p50 and p99 from the intended send time
      # and from the send; then the ratios of arm 1's p99 to arm 0's.
      awk -v r=$r -v m=$m -v l="$(cut -d' ' -f1 /proc/loadavg)" '
        /"arms"/ {in_arms = 1} in_arms && /"path"/ {a++}
        in_arms && /"service_latency"/ {b = "s"} in_arms && /"latency"/ && !/_latency/ {b = "l"}
        in_arms && (/"p50_us"/ || /"p99_us"/) {k = $1; gsub(/[",:]/, "", k); v = $2; gsub(/,/, "", v); f[a b k] = v + 0}
        END {printf "%s %s %d %d %d %d %d %d %d %d %.4f %.4f %s\n", r, m, f["1lp50_us"], f["1lp99_us"], f["1sp50_us"], f["1sp99_us"],
          f["2lp50_us"], f["2lp99_us"], f["2sp50_us"], f["2sp99_us"], f["2lp99_us"] / f["1lp99_us"], f["2sp99_us"] / f["1sp99_us"], l}' \
        "$OUT"/res/*/results.json | tee -a "$OUT/runs"
    done
    flock -u 9
  done
else
  for r in $(seq "$ROUNDS"); do
    k=$(((r - 1) % 4))
    order=$(echo $MODES $MODES | cut -d' ' -f$((k + 1))-$((k + 4)))
    flock 9
    for m in $order; do
      rm -rf "$OUT/res"
      $CLI ${BENCH:-bin/bench} run -addr 127.0.0.1:$H -pid $S -protocol v2-binary -models "$R" -model $m \
        -path /v2/models/$m/versions/1/infer -rate "$RATE" -d "$DUR" -warmup 1s -name $m -out "$OUT/res" >/dev/null 2>&1
      # The run's latency from the intended send time and from the actual
      # send (service_latency: without the client's timer lateness), p50 and
      # p99 of each; answered, server CPU s; the 1-minute load average after.
      awk -v r=$r -v m=$m -v l="$(cut -d' ' -f1 /proc/loadavg)" '
        /"service_latency"/ {b = "s"} /"shed_latency"/ {b = "x"} /"latency"/ && !/_latency/ {b = "l"}
        /"p50_us"/ || /"p99_us"/ || /"ok"/ || /"server_cpu_s"/ {k = $1; gsub(/[",:]/, "", k); v = $2; gsub(/,/, "", v)
          if (k == "ok" || k == "server_cpu_s") {if (!(k in f)) f[k] = v + 0} else if (!((b k) in f)) f[b k] = v + 0}
        END {print r, m, f["lp50_us"], f["lp99_us"], f["sp50_us"], f["sp99_us"], f["ok"], f["server_cpu_s"], l}' \
        "$OUT"/res/*/results.json | tee -a "$OUT/runs"
    done
    flock -u 9
  done
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
MET=$(curl -s 127.0.0.1:$M/metrics)
echo "$MET" | grep -E '^coalesce_shadow_(rows|dropped)_total'
# The server's own view (its request histogram, warm-ups included): the
# share of each mode's requests that took longer than 50, 100 and 200 µs
# from the handler's start to its answer.
for m in $MODES; do
  echo "$MET" | grep "^coalesce_request_duration_seconds_bucket{model=\"$m\",version=\"1\",protocol=\"v2\"" |
    awk -v m=$m -F'[ "]' '{c[$(NF-2)] = $NF} END {printf "%-6s server-side: %d requests, over 50 us %.2f %%, 100 us %.2f %%, 200 us %.3f %%\n",
      m, c["+Inf"], 100 - 100 * c["5e-05"] / c["+Inf"], 100 - 100 * c["0.0001"] / c["+Inf"], 100 - 100 * c["0.0002"] / c["+Inf"]}'
done
if [ "${SWITCH:-}" = 1 ]; then
  echo "columns: round mode, off's p50_us p99_us service_p50_us service_p99_us, the mode's same four, p99 ratio, service p99 ratio, load1"
  echo "(each ratio is the mode's p99 ÷ off's in the same switchback run)"
  SHOWN=$SWITCHED
else
  echo "columns: round mode p50_us p99_us service_p50_us service_p99_us answered server_cpu_s load1"
  echo "(latency from the intended send time, then from the actual send; ratios are to off's p99 in the same round)"
  SHOWN=$MODES
fi
# ratios K prints, per round and mode, "mode p50 p99 ratio" of latency K
# (l: from the intended send time; s: from the send): the ratio is to
# off's p99 in the same round, or in the same switchback run.
ratios() {
  if [ "${SWITCH:-}" = 1 ]; then
    awk -v k=$1 '{print $2, (k == "l" ? $7 : $9), (k == "l" ? $8 : $10), (k == "l" ? $11 : $12)}' "$OUT/runs"
  else
    awk -v c=$([ $1 = l ] && echo 4 || echo 6) '{p50[$2, $1] = $(c - 1); p99[$2, $1] = $c; ms[$2]; if ($1 > R) R = $1}
      END {for (m in ms) for (r = 1; r <= R; r++) print m, p50[m, r], p99[m, r], p99[m, r] / p99["off", r]}' "$OUT/runs"
  fi
}
# Per mode and per latency: the median p50 and p99 over the rounds, and
# the median, range and bootstrap 95 % interval of the per-round ratio.
for k in l s; do
  [ $k = l ] && echo "from the intended send time:" || echo "from the actual send (service latency):"
  ratios $k | awk -v modes="$SHOWN" 'BEGIN {srand(16); n = split(modes, ms, " ")}
  {R[$1]++; p50[$1, R[$1]] = $2; p99[$1, R[$1]] = $3; x[$1, R[$1]] = $4}
  function med(v, k,   i, j, t) { # median of v[1..k], sorted in place
    for (i = 2; i <= k; i++) { t = v[i]; for (j = i - 1; j > 0 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }
  END {
    for (i = 1; i <= n; i++) {
      m = ms[i]; N = R[m]; lo = 1e9; hi = 0
      for (r = 1; r <= N; r++) { a[r] = p50[m, r]; b[r] = p99[m, r]; y[r] = x[m, r]
        if (y[r] < lo) lo = y[r]; if (y[r] > hi) hi = y[r] }
      mx = med(y, N)
      for (s = 1; s <= 2000; s++) { for (r = 1; r <= N; r++) y[r] = x[m, int(rand() * N) + 1]; bs[s] = med(y, N) }
      med(bs, 2000)
      printf "  %-6s p50 %5.0f us  p99 %5.0f us  p99/off median %.3f  range %.3f-%.3f  95%% [%.3f, %.3f]  (%d rounds)\n",
        m, med(a, N), med(b, N), mx, lo, hi, bs[51], bs[1950], N
    }
  }'
done
