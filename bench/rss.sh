#!/bin/sh
# rss.sh measures Coalesce's resident memory under a closed loop of
# unique /predict requests (64 connections, a pool of 200,000 different
# bodies, so that a response cache only misses and evicts): it starts
# bin/coalesce with the given flags (and GOMEMLIMIT, unless "-"), samples
# VmRSS every second and prints the peak with the server's cache and GC
# metrics. Run it from the repository root after building bin/coalesce and
# bin/bench (bench/ab.sh builds both):
#
#	bench/rss.sh 60 - --cache.enabled --cache.max_bytes 402653184
#	bench/rss.sh 60 100MiB --cache.enabled --cache.max_bytes 402653184
#	bench/rss.sh 60 -
#
# Arguments: seconds, the server's GOMEMLIMIT ("-": unset), then the
# server's flags. Ports 18380 (data) and 19380 (admin).
set -eu
secs=$1 lim=$2
shift 2
if [ "$lim" = "-" ]; then
	bin/coalesce serve --http.addr 127.0.0.1:18380 --admin.addr 127.0.0.1:19380 "$@" >/dev/null 2>&1 &
else
	GOMEMLIMIT=$lim bin/coalesce serve --http.addr 127.0.0.1:18380 --admin.addr 127.0.0.1:19380 "$@" >/dev/null 2>&1 &
fi
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
sleep 2
out=${TMPDIR:-/tmp}/coalesce-rss
bin/bench run -addr 127.0.0.1:18380 -pid $pid -c 64 -d "${secs}s" -warmup 0s -pool 200000 -out "$out" >"$out.txt" 2>&1 &
bpid=$!
peak=0
while kill -0 $bpid 2>/dev/null; do
	r=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 1
done
echo "peak VmRSS: $peak kB"
awk -F'|' '/^\| target \| 64/ {gsub(/ /, ""); print "throughput", $4, "req/s, server CPU", $12, "µs/req"}' "$out.txt"
curl -s localhost:19380/metrics | grep -E '^coalesce_cache_(bytes|entries|hits_total|misses_total|evictions_total)\{model="digits-mlp"|^go_gc_cpu_seconds_total|^process_cpu_seconds_total'
