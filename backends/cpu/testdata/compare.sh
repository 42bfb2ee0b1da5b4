#!/bin/sh
# compare.sh runs digits-mlp on one core in the Go engine (BenchmarkMLP,
# auto-chosen kernels) and in PyTorch (torch_mlp_bench.py: Debian's
# python3-torch, one thread) back to back, twice, interleaved, so that both
# see the same machine load. Run it from anywhere:
#
#	backends/cpu/testdata/compare.sh
#
# BENCHTIME (default 2s) is go test's -benchtime. The Go benchmark runs with
# -cpu 1 (GOMAXPROCS=1: the garbage collector shares the one core too).
# OPENBLAS_CORETYPE is unset for the whole run: when set, OpenBLAS (which
# PyTorch calls for Linear) uses that older kernel instead of detecting the
# CPU; the Python script also unsets it and sets OPENBLAS_NUM_THREADS=1.
set -eu
cd "$(dirname "$0")/../../.."
unset OPENBLAS_CORETYPE
benchtime=${BENCHTIME:-2s}
for round in 1 2; do
	echo "== round $round: Go (go test -bench 'MLP/batch' -benchtime $benchtime -cpu 1)"
	go test -run '^$' -bench 'MLP/batch' -benchtime "$benchtime" -cpu 1 ./backends/cpu/ | grep '^Benchmark'
	echo "== round $round: PyTorch"
	/usr/bin/python3 backends/cpu/testdata/torch_mlp_bench.py
done
