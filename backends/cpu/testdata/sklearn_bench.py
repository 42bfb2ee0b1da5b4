#!/usr/bin/python3
"""scikit-learn baselines for the wine-forest and wine-linear models on one
thread.

Usage (from the repository root or anywhere):

    /usr/bin/python3 backends/cpu/testdata/sklearn_bench.py

There is no onnxruntime here, so the ONNX files are not run: the models are
retrained exactly as models/wine-forest/make_model.py and
models/wine-linear/make_model.py do (their train() functions are imported;
training is seeded, so the estimators are the ones that were exported), and
checked against each model's golden.json. Then the median time of one
predict_proba call is printed at batch 1 and 256 rows of scikit-learn's wine
data (178 rows, repeated to fill 256):

  * wine-forest: RandomForestClassifier.predict_proba (n_jobs=1), float32
    input (the forest's own dtype);
  * wine-linear: Pipeline(StandardScaler, LogisticRegression ovr).predict_proba,
    float64 input (what the pipeline was fitted on).

OMP_NUM_THREADS and OPENBLAS_NUM_THREADS are 1 (set before numpy loads).
Each figure is the median of REPEATS timed runs of about TARGET_SECONDS.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
import benchkit  # noqa: E402

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.dont_write_bytecode = True  # importing the make_model scripts must not leave __pycache__ in models/

import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "..", "models")
BATCHES = (1, 256)
REPEATS = 7           # timed runs per case; the median is reported
TARGET_SECONDS = 0.5  # length of one timed run


def time_call(fn, target=TARGET_SECONDS):
    """Returns seconds per call of fn, timed over about target seconds."""
    return benchkit.time_call(fn, target)

def load_make_model(name):
    path = os.path.join(MODELS, name, "make_model.py")
    spec = importlib.util.spec_from_file_location(f"make_model_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_golden(name, predict_proba, dtype):
    with open(os.path.join(MODELS, name, "golden.json")) as f:
        g = json.load(f)
    inp = g["inputs"]["input"]
    x = np.array(inp["data"], dtype=np.float32).reshape(inp["shape"]).astype(dtype)
    want = np.array(g["outputs"]["probabilities"]["data"], dtype=np.float32)
    got = predict_proba(x).astype(np.float32).ravel()
    if not np.array_equal(got, want):
        sys.exit(f"{name}: retrained model differs from golden.json (max {np.abs(got - want).max()})")


def main():
    rf = load_make_model("wine-forest").train()[0]
    pipe = load_make_model("wine-linear").train()[0]
    rf.set_params(n_jobs=1)
    check_golden("wine-forest", rf.predict_proba, np.float32)
    check_golden("wine-linear", pipe.predict_proba, np.float64)
    data = load_wine().data.astype(np.float32)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, n_jobs 1, "
          f"OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1")
    models = (("wine-forest", "RandomForestClassifier", rf, np.float32),
              ("wine-linear", "StandardScaler+LogisticRegression", pipe, np.float64))
    for name, what, model, dtype in models:
        for batch in BATCHES:
            x = np.ascontiguousarray(np.resize(data, (batch, data.shape[1])).astype(dtype))
            call = lambda: model.predict_proba(x)  # noqa: E731
            time_call(call, 0.1)  # warm-up
            runs = [time_call(call) for _ in range(REPEATS)]
            med = statistics.median(runs) * 1e6
            print(f"sklearn {name} ({what}) predict_proba batch={batch}: {med:.1f} us/call "
                  f"{med / batch:.2f} us/row  (min {min(runs) * 1e6:.1f}, max {max(runs) * 1e6:.1f})")


if __name__ == "__main__":
    main()
