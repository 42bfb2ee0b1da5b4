#!/usr/bin/python3
"""Writes the XGBoost test models and xgboost's own predictions for them.

Run from this directory with Debian's python3-xgboost 1.7.4:

    /usr/bin/python3 make.py

For each model NAME it writes NAME.model.json (booster.save_model) and
NAME.want.json: the test rows (null for a missing value), xgboost's margins
(predict(output_margin=True)) as float32 bit patterns, so that the Go test
can demand bit-exact equality, and its transformed predictions.
"""
import json
import warnings

import numpy as np
import xgboost as xgb

warnings.filterwarnings("ignore")
rng = np.random.default_rng(20240601)


def features(n, f, missing=0.0):
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[rng.random(size=x.shape) < missing] = np.nan
    return x


def split_rows(booster, nfeat, count):
    """Rows whose values sit exactly on, or one float32 step either side
    of, the model's thresholds, so that '<' against '<=' is tested."""
    g = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    m = g["gbtree"]["model"] if "gbtree" in g else g["model"]
    by_feature = [[] for _ in range(nfeat)]
    for t in m["trees"]:
        for i, left in enumerate(t["left_children"]):
            if left != -1 and t["split_type"][i] == 0:
                by_feature[t["split_indices"][i]].append(np.float32(t["split_conditions"][i]))
    rows = rng.normal(size=(count, nfeat)).astype(np.float32)
    for r in range(count):
        for f, cand in enumerate(by_feature):
            if cand:
                v = cand[rng.integers(len(cand))]
                step = rng.integers(-1, 2)  # below, on or above the threshold
                rows[r, f] = np.nextafter(v, np.float32(step * np.inf)) if step else v
    return rows


def save(name, booster, x, **dmatrix):
    booster.save_model(name + ".model.json")
    b = xgb.Booster(model_file=name + ".model.json")  # predict with what was saved
    d = xgb.DMatrix(x, **dmatrix)
    margin = np.asarray(b.predict(d, output_margin=True), dtype=np.float32)
    pred = np.asarray(b.predict(d), dtype=np.float32)
    n = x.shape[0]
    want = {
        "model": name + ".model.json",
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in x],
        "margin_bits": [[int(v) for v in row] for row in margin.reshape(n, -1).view(np.uint32)],
        "pred": [[float(v) for v in row] for row in pred.reshape(n, -1)],
    }
    with open(name + ".want.json", "w") as f:
        json.dump(want, f, separators=(",", ":"))
        f.write("\n")


def train(params, x, y, rounds, group=None, **dmatrix):
    d = xgb.DMatrix(x, label=y, **dmatrix)
    if group is not None:
        d.set_group(group)
    return xgb.train(dict(params, seed=1, nthread=1), d, rounds)


# binary:logistic with missing values in training and test rows (so that
# default_left differs between nodes), a non-default base_score and feature
# names (one not ASCII).
x = features(400, 6, missing=0.2)
y = ((np.nan_to_num(x[:, 0], nan=1.0) + np.isnan(x[:, 1]) - 0.5 * np.nan_to_num(x[:, 2])) > 0.3).astype(int)
names = ["age", "income", "température", "f3", "f4", "f5"]
b = train({"objective": "binary:logistic", "base_score": 0.3, "max_depth": 4}, x, y, 14, feature_names=names)
rows = np.concatenate([features(30, 6, missing=0.25), split_rows(b, 6, 20)])
rows[-1, :] = np.nan
save("binary_logistic", b, rows, feature_names=names)

# multi:softprob, 4 classes.
x = features(300, 5, missing=0.1)
y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + 2 * (np.nan_to_num(x[:, 1]) > 0.3).astype(int)
b = train({"objective": "multi:softprob", "num_class": 4, "max_depth": 3}, x, y, 5)
save("multi_softprob", b, np.concatenate([features(30, 5, missing=0.2), split_rows(b, 5, 10)]))

# multi:softmax, 3 classes: predict() returns the label.
y = rng.integers(0, 3, size=300)
y[np.nan_to_num(x[:, 2]) > 0.5] = 2
b = train({"objective": "multi:softmax", "num_class": 3, "max_depth": 2}, x, y, 3)
save("multi_softmax", b, features(20, 5, missing=0.2))

# reg:squarederror with base_score 2.5.
x = features(300, 4, missing=0.1)
y = 2.5 + 3 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) ** 2
b = train({"objective": "reg:squarederror", "base_score": 2.5, "max_depth": 3}, x, y, 10)
save("reg_squarederror", b, np.concatenate([features(30, 4, missing=0.2), split_rows(b, 4, 10)]))

# count:poisson (base margin log(0.5)).
y = rng.poisson(np.exp(0.5 * np.nan_to_num(x[:, 0]) + 0.3 * np.nan_to_num(x[:, 2])))
b = train({"objective": "count:poisson", "max_depth": 3}, x, y, 8)
save("count_poisson", b, features(30, 4, missing=0.2))

# Pruned: the exact method's prune updater leaves deleted nodes
# (num_deleted > 0, split index 2^31-1) that no path reaches.
y = np.nan_to_num(x[:, 0]) + 0.1 * rng.normal(size=300)
b = train({"objective": "reg:squarederror", "tree_method": "exact", "max_depth": 5, "gamma": 2.0}, x, y, 3)
assert any(t["tree_param"]["num_deleted"] != "0"
           for t in json.loads(b.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"])
save("reg_pruned", b, features(20, 4, missing=0.2))

# dart: weight_drop scales each tree's output.
x = features(300, 3, missing=0.1)
y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(int)
b = train({"booster": "dart", "objective": "binary:logistic", "max_depth": 3, "rate_drop": 0.3, "skip_drop": 0.0}, x, y, 8)
save("dart", b, features(30, 3, missing=0.2))

# Categorical splits: feature 1 has 3 categories (one-hot splits, as
# max_cat_to_onehot=4 > 3), feature 2 has 10 (partition splits). Test rows
# hold categories outside the training set, negative, fractional and huge
# values and NaN.
n = 400
x = features(n, 3)
x[:, 1] = rng.integers(0, 3, size=n)
x[:, 2] = rng.integers(0, 10, size=n)
x[rng.random(size=n) < 0.1, 2] = np.nan
y = x[:, 0] + (x[:, 1] == 1) + 2 * np.isin(x[:, 2], [2, 3, 7]) - np.isnan(x[:, 2])
cat = {"feature_types": ["q", "c", "c"], "enable_categorical": True}
b = train({"objective": "reg:squarederror", "tree_method": "hist", "max_depth": 3, "max_cat_to_onehot": 4}, x, y, 6, **cat)
rows = features(40, 3)
rows[:, 1] = rng.choice([0, 1, 2, 3, -1, 1.5, np.nan], size=40)
rows[:, 2] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 31, 32, 33, 100, 1e7, -1, -0.5, 2.5, 7.9, np.nan], size=40)
save("categorical", b, rows, **cat)

# One small model per remaining objective, for the base_score conversion
# and the transform.
x = features(200, 3, missing=0.1)
s = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1])
small = [
    ("reg_logistic", {"objective": "reg:logistic", "base_score": 0.7}, 1 / (1 + np.exp(-s))),
    ("binary_logitraw", {"objective": "binary:logitraw", "base_score": 0.3}, (s > 0).astype(int)),
    ("reg_gamma", {"objective": "reg:gamma", "base_score": 1.5}, np.exp(0.3 * s)),
    ("reg_tweedie", {"objective": "reg:tweedie", "base_score": 2.0}, np.exp(0.3 * s) * (rng.random(200) > 0.2)),
    ("survival_cox", {"objective": "survival:cox"}, np.where(rng.random(200) > 0.3, 1, -1) * np.exp(0.3 * s)),
    ("reg_absoluteerror", {"objective": "reg:absoluteerror"}, s),
    ("reg_pseudohubererror", {"objective": "reg:pseudohubererror", "base_score": 0.1}, s),
    ("reg_squaredlogerror", {"objective": "reg:squaredlogerror"}, np.exp(0.3 * s)),
    ("multi_target", {"objective": "reg:squarederror", "tree_method": "hist"}, np.stack([s, 2 * s], axis=1)),
]
for name, p, y in small:
    b = train(dict(p, max_depth=2), x, y, 3)
    save(name, b, features(12, 3, missing=0.2))
b = train({"objective": "rank:pairwise", "max_depth": 2}, x, rng.integers(0, 3, size=200), 3, group=[20] * 10)
save("rank_pairwise", b, features(12, 3, missing=0.2))

# A linear booster, which Read rejects.
train({"booster": "gblinear", "objective": "reg:squarederror"}, x, s, 2).save_model("gblinear.json")
