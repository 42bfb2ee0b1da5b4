"""Shared timing helper of the baseline scripts in this folder
(torch_mlp_bench.py, xgb_bench.py, sklearn_bench.py); not a script."""
import time


def time_call(fn, target):
    """Returns seconds per call of fn, timed over about target seconds."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target:
            return elapsed / n
        n = max(n * 2, int(n * target / max(elapsed, 1e-9)))
