#!/usr/bin/python3
"""Train and export the "cancer-xgb" example model for Coalesce.

Run from anywhere (paths are relative to this script's directory):

    /usr/bin/python3 models/cancer-xgb/make_model.py

What it does:
  * loads scikit-learn's bundled breast-cancer data set (30 features, 2
    classes: 0 = malignant, 1 = benign; no network access needed), rounds the
    features to float32 and splits it (test_size=0.25, random_state=0);
  * blanks 5 % of the training values (NaN = missing, seeded) so that XGBoost
    learns a default direction for missing values at each split, and the
    learned directions differ between splits;
  * trains xgboost.XGBClassifier(objective="binary:logistic",
    n_estimators=100, max_depth=6, tree_method="exact", random_state=0,
    n_jobs=1) -- exact greedy split finding, single thread, deterministic;
  * saves the booster natively as XGBoost JSON, 1/model.json (no conversion);
  * re-reads that JSON and evaluates it with a small pure-numpy tree walker
    (float32 `x < split_condition` goes left, missing -> default_left, leaf
    values summed in float32 in tree order onto the base margin) and checks
    that it reproduces xgboost's output_margin bit for bit;
  * puts NaN into 2-3 frequently split features of 8 of the 32 golden rows
    (rows 3, 7, ..., 31; rows 0 and 1 stay complete for the examples) and
    checks that the missing values reach splits with default_left 1 and 0;
  * writes config.yaml, golden.json (xgboost's outputs on the first 32 test
    rows; missing inputs written as null) and example requests under
    examples/.

The objects are built by train(), which the benchmark script
backends/cpu/testdata/xgb_bench.py does not need (it loads 1/model.json), but
which other scripts may import.
"""
import json
import os
import sys
from fractions import Fraction

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ folder in the model repository
sys.path.insert(0, os.path.dirname(HERE))  # models/: the shared modelkit
import modelkit  # noqa: E402
MODEL_NAME = "cancer-xgb"
VERSION = "1"
SEED = 0
N_GOLDEN = 32
TRAIN_MISSING_RATE = 0.05
GOLDEN_MISSING_ROWS = (3, 7, 11, 15, 19, 23, 27, 31)  # 8 rows; 0 and 1 stay complete


def load_split():
    data = load_breast_cancer()
    X = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    return data, x_train, x_test, y_train, y_test


def train():
    """Returns (classifier, data, x_train_with_nan, x_test, y_train, y_test)."""
    data, x_train, x_test, y_train, y_test = load_split()
    rng = np.random.default_rng(SEED)
    x_train = x_train.copy()
    x_train[rng.random(x_train.shape) < TRAIN_MISSING_RATE] = np.nan
    clf = xgb.XGBClassifier(objective="binary:logistic", n_estimators=100, max_depth=6,
                            tree_method="exact", random_state=SEED, n_jobs=1)
    clf.fit(x_train, y_train)
    return clf, data, x_train, x_test, y_train, y_test


def f32(text):
    """Decimal string from the XGBoost JSON -> the float32 it denotes; checks
    that going through float64 (what a JSON parser does) rounds to the same
    float32 as correct decimal -> float32 rounding (no double-rounding)."""
    v = np.float32(float(text))
    d = Fraction(text)
    err = abs(d - Fraction(float(v)))
    for nb in (np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))):
        assert err < abs(d - Fraction(float(nb))), text
    return v


def load_json_model(path):
    """The parts of an XGBoost JSON model the tree walk needs, as float32."""
    with open(path) as f:
        m = json.load(f, parse_float=str)  # keep the decimal text
    learner = m["learner"]
    assert learner["objective"]["name"] == "binary:logistic"
    base_score = f32(learner["learner_model_param"]["base_score"])
    # binary:logistic stores base_score as a probability; the margin starts at
    # ProbToMargin(base_score) = -log(1/base_score - 1), computed in float32.
    base_margin = np.float32(-np.log(np.float32(1) / base_score - np.float32(1)))
    trees = []
    for t in learner["gradient_booster"]["model"]["trees"]:
        assert not any(t["split_type"]), "categorical splits are not used"
        trees.append({
            "left": np.array(t["left_children"], dtype=np.int64),
            "right": np.array(t["right_children"], dtype=np.int64),
            "feature": np.array(t["split_indices"], dtype=np.int64),
            # split threshold for inner nodes, leaf value for leaves
            "cond": np.array([f32(s) for s in t["split_conditions"]], dtype=np.float32),
            "default_left": np.array(t["default_left"], dtype=bool),
        })
    return base_score, base_margin, trees


def eval_json_margin(base_margin, trees, x, stats=None):
    """Margin of each row of x (float32, NaN = missing), float32 arithmetic."""
    out = np.full(x.shape[0], base_margin, dtype=np.float32)
    for t in trees:
        for i, row in enumerate(x):
            node = 0
            while t["left"][node] != -1:
                v = row[t["feature"][node]]
                if np.isnan(v):
                    go_left = t["default_left"][node]
                    if stats is not None:
                        stats[bool(go_left)] += 1
                else:
                    go_left = v < t["cond"][node]
                node = t["left"][node] if go_left else t["right"][node]
            out[i] = np.float32(out[i] + t["cond"][node])
    return out


CONFIG_YAML = """\
# Coalesce model configuration for cancer-xgb (XGBoost on scikit-learn breast cancer; generated by make_model.py).
# Human-readable description shown in the model listing.
description: "XGBoost binary:logistic, 100 trees of depth <= 6, on scikit-learn breast cancer (30 raw features; NaN = missing), native XGBoost JSON"
# Largest batch (rows) one request may carry and the batcher will send to the
# model in one call; also the largest batch the adaptive batcher forms.
max_batch_size: 256
# The model file (1/model.json) is XGBoost's own JSON, which names no inputs
# or outputs, so they are declared here.
inputs:
  # one FP32 row of 30 features per batch entry (batch dimension not listed)
  - name: input
    datatype: FP32
    dims: [30]
outputs:
  # label: INT64 [batch], 1 if p > 0.5 else 0
  - name: label
  # probabilities: FP32 [batch, 2], [1 - p, p] with p = sigmoid(margin)
  - name: probabilities
  # margin: FP32 [batch], base margin + sum of the 100 trees' leaf values
  - name: margin
predict:
  # which output feeds POST /predict's "prediction", and how: none (values as they are) | argmax (index of the largest value per row)
  output: label
  transform: none
  # optional class names, index -> name; when set /predict returns names instead of indices
  labels: ["malignant", "benign"]
"""


def main():
    clf, data, x_train, x_test, y_train, y_test = train()
    acc = float((clf.predict(x_test) == y_test).mean())
    print(f"test accuracy: {acc:.4f} ({len(y_test)} rows, complete features)")
    booster = clf.get_booster()
    model_path = os.path.join(HERE, VERSION, "model.json")
    os.makedirs(os.path.dirname(model_path), exist_ok=True)
    booster.save_model(model_path)
    print("wrote", os.path.relpath(model_path, HERE), f"({os.path.getsize(model_path)} bytes)")

    # ---- golden rows: first 32 test rows, NaN in 2-3 features of 8 rows --
    base_score, base_margin, trees = load_json_model(model_path)
    splits = np.concatenate([t["feature"][t["left"] != -1] for t in trees])
    counts = np.bincount(splits, minlength=x_test.shape[1])
    top = np.argsort(-counts, kind="stable")[:8]  # the 8 most frequently split features
    xg = x_test[:N_GOLDEN].copy()
    rng = np.random.default_rng(SEED + 1)
    for r in GOLDEN_MISSING_ROWS:
        k = 2 + (r % 2)  # 2 or 3 missing features
        xg[r, np.sort(rng.choice(top, size=k, replace=False))] = np.nan
    assert not np.isnan(xg[:2]).any()

    dm = xgb.DMatrix(xg, missing=np.nan)
    margin = booster.predict(dm, output_margin=True)
    p = booster.predict(dm)
    label = clf.predict(xg).astype(np.int64)
    assert margin.dtype == p.dtype == np.float32
    assert (label == (p > 0.5)).all()
    assert np.array_equal(booster.inplace_predict(xg, predict_type="margin"), margin)
    probs = np.stack([np.float32(1) - p, p], axis=1)

    # ---- the JSON, walked by hand, reproduces the margins bit for bit ----
    stats = {True: 0, False: 0}
    mine = eval_json_margin(base_margin, trees, xg, stats)
    assert np.array_equal(mine.view(np.uint32), margin.view(np.uint32)), np.abs(mine - margin).max()
    full = eval_json_margin(base_margin, trees, x_test)
    assert np.array_equal(full, booster.predict(xgb.DMatrix(x_test), output_margin=True))
    assert stats[True] > 0 and stats[False] > 0, stats
    sig = (np.float32(1) / (np.float32(1) + np.exp(-margin))).astype(np.float32)
    ulps = np.abs(sig.view(np.int32).astype(np.int64) - p.view(np.int32).astype(np.int64)).max()
    dl = np.concatenate([t["default_left"][t["left"] != -1] for t in trees])
    print(f"model: base_score={base_score} (base margin {base_margin}), {len(trees)} trees, "
          f"{sum(len(t['left']) for t in trees)} nodes, {len(dl)} splits "
          f"({int(dl.sum())} default_left=1, {int((~dl).sum())} default_left=0)")
    print(f"numpy walk of model.json == xgboost output_margin bit for bit on {N_GOLDEN} golden + "
          f"{len(x_test)} test rows; missing values took default_left=1 {stats[True]} times, "
          f"=0 {stats[False]} times; float32 sigmoid(margin) vs xgboost p: max {ulps} ulp")
    print(f"golden rows: {int(np.isnan(xg).any(axis=1).sum())} with missing values, "
          f"accuracy {float((label == y_test[:N_GOLDEN]).mean()):.4f}, "
          f"smallest |margin| {float(np.abs(margin).min()):.3f}")

    modelkit.write_model_files(
        HERE, framework=f"xgboost {xgb.__version__}", model=MODEL_NAME, version=VERSION, x=xg,
        outputs={"margin": ("FP32", margin), "probabilities": ("FP32", probs), "label": ("INT64", label)},
        expected={"label": int(label[0]), "probabilities": modelkit.fl(probs[0])},
        config_yaml=CONFIG_YAML)
    print(f"example row 0: true={int(y_test[0])} predicted={int(label[0])} "
          f"({data.target_names[label[0]]}) p={float(probs[0].max()):.4f}")


if __name__ == "__main__":
    main()
