#!/bin/sh
# compare_trees.sh runs the shipped classic models on one core in the Go
# engine (BenchmarkTrees: cancer-xgb, XGBoost JSON; BenchmarkRandomForest:
# wine-forest; BenchmarkLinearPipeline: wine-linear) and in their own
# frameworks (xgb_bench.py: Debian's python3-xgboost with nthread=1;
# sklearn_bench.py: scikit-learn with n_jobs=1) back to back, twice,
# interleaved, so that both see the same machine load. Run it from
# anywhere:
#
#	backends/cpu/testdata/compare_trees.sh
#
# BENCHTIME (default 1s) is go test's -benchtime; the Go side runs with
# -cpu 1 (GOMAXPROCS=1). OPENBLAS_CORETYPE is unset, and the Python
# scripts pin OMP/OpenBLAS to one thread.
set -eu
cd "$(dirname "$0")/../../.."
unset OPENBLAS_CORETYPE
benchtime=${BENCHTIME:-1s}
for round in 1 2; do
	echo "== round $round: Go (go test -bench 'Trees|RandomForest|LinearPipeline' -benchtime $benchtime -cpu 1)"
	go test -run '^$' -bench 'Trees|RandomForest|LinearPipeline' -benchtime "$benchtime" -cpu 1 ./backends/cpu/ | grep '^Benchmark'
	echo "== round $round: XGBoost"
	/usr/bin/python3 backends/cpu/testdata/xgb_bench.py
	echo "== round $round: scikit-learn"
	/usr/bin/python3 backends/cpu/testdata/sklearn_bench.py
done
