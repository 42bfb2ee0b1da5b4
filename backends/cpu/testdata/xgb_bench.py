#!/usr/bin/python3
"""XGBoost baseline for the cancer-xgb model on one thread.

Usage (from the repository root or anywhere):

    /usr/bin/python3 backends/cpu/testdata/xgb_bench.py [model.json]

Loads models/cancer-xgb/1/model.json (XGBoost's native JSON, written by
models/cancer-xgb/make_model.py) with xgboost, checks it against the model's
golden.json (margins bit for bit, null = missing = NaN), and prints the
median time of one call at batch 1 and 256 rows of scikit-learn's breast
cancer data (float32, the first rows of the data set; repeated if the batch
were larger than the data set):

  * inplace_predict (predict_type "value": probabilities), the fastest
    Python entry point: no DMatrix;
  * predict(DMatrix) for reference, with the DMatrix built inside the timed
    call (XGBoost caches predictions per DMatrix, so predicting a prebuilt
    DMatrix again would mostly measure the cache).

One thread: booster.set_param({"nthread": 1}) and DMatrix(nthread=1);
OMP_NUM_THREADS=1 is set before xgboost loads as well. Each figure is the
median of REPEATS timed runs of about TARGET_SECONDS each.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
import benchkit  # noqa: E402

os.environ["OMP_NUM_THREADS"] = "1"  # before xgboost loads its OpenMP runtime

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.path.join(HERE, "..", "..", "..", "models", "cancer-xgb")
DEFAULT_MODEL = os.path.join(MODEL_DIR, "1", "model.json")
BATCHES = (1, 256)
REPEATS = 7           # timed runs per case; the median is reported
TARGET_SECONDS = 0.5  # length of one timed run


def time_call(fn, target=TARGET_SECONDS):
    """Returns seconds per call of fn, timed over about target seconds."""
    return benchkit.time_call(fn, target)

def check_golden(booster, path):
    """The loaded model reproduces golden.json (same file the Go side checks)."""
    with open(path) as f:
        g = json.load(f)
    inp = g["inputs"]["input"]
    x = np.array([np.nan if v is None else v for v in inp["data"]], dtype=np.float32).reshape(inp["shape"])
    margin = booster.inplace_predict(x, predict_type="margin")
    want = np.array(g["outputs"]["margin"]["data"], dtype=np.float32)
    if not np.array_equal(margin, want):
        sys.exit(f"{path}: margins differ from golden.json (max {np.abs(margin - want).max()})")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    booster = xgb.Booster()
    booster.load_model(path)
    booster.set_param({"nthread": 1})
    if path == DEFAULT_MODEL:
        check_golden(booster, os.path.join(MODEL_DIR, "golden.json"))
    data = load_breast_cancer().data.astype(np.float32)
    print(f"xgboost {xgb.__version__}, nthread 1, {booster.num_boosted_rounds()} trees, "
          f"model {os.path.relpath(path)}")
    for batch in BATCHES:
        x = np.ascontiguousarray(np.resize(data, (batch, data.shape[1])))  # rows repeat if batch > 569
        cases = {
            "inplace_predict": lambda: booster.inplace_predict(x),
            "predict(DMatrix)": lambda: booster.predict(xgb.DMatrix(x, nthread=1)),
        }
        for name, call in cases.items():
            time_call(call, 0.1)  # warm-up
            runs = [time_call(call) for _ in range(REPEATS)]
            med = statistics.median(runs) * 1e6
            print(f"xgboost {name} batch={batch}: {med:.1f} us/call {med / batch:.2f} us/row"
                  f"  (min {min(runs) * 1e6:.1f}, max {max(runs) * 1e6:.1f})")


if __name__ == "__main__":
    main()
