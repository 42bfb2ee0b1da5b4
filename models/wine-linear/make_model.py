#!/usr/bin/python3
"""Train and export the "wine-linear" example model for Coalesce.

Run from anywhere (paths are relative to this script's directory):

    /usr/bin/python3 models/wine-linear/make_model.py

What it does:
  * loads scikit-learn's bundled wine data set (13 features, 3 classes, no
    network access needed), rounds the features to float32 and splits it
    (test_size=0.25, random_state=0);
  * fits StandardScaler + one-vs-rest LogisticRegression(multi_class="ovr",
    solver="lbfgs", random_state=0) on the float64 copy of those values;
  * builds the equivalent ONNX-ML graph by hand with onnx.helper (ai.onnx.ml
    opset 3, ai.onnx opset 15, IR version 8):
        input [N,13] FP32 -> Scaler(offset=mean, scale=1/std)
          -> LinearClassifier(coefficients [3*13] row-major, intercepts [3],
                              classlabels_ints [0,1,2], post_transform LOGISTIC,
                              multi_class 0)
               -> label [N] INT64
               -> scores [N,3] FP32 (per-class sigmoid; not a graph output)
        scores -> Normalizer(norm L1) -> probabilities [N,3] FP32
    (sklearn's OvR predict_proba is exactly the per-class sigmoids divided by
    their sum, and predict is the argmax of the decision function);
  * checks the graph with onnx.checker (full_check) and evaluates it with an
    independent float32 numpy implementation of the three operators, which
    must reproduce predict_proba within 1e-6 and predict exactly on the whole
    test split;
  * writes config.yaml, golden.json (sklearn's outputs, computed in float64 and
    rounded to float32, on the first 32 test rows) and example request bodies
    under examples/.

train() is imported by backends/cpu/testdata/sklearn_bench.py.
"""
import os
import sys

import numpy as np
import onnx
import sklearn
from onnx import TensorProto, helper
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ folder in the model repository
sys.path.insert(0, os.path.dirname(HERE))  # models/: the shared modelkit
import modelkit  # noqa: E402
MODEL_NAME = "wine-linear"
VERSION = "1"
ONNX_OPSET = 15
ML_OPSET = 3
IR_VERSION = 8
SEED = 0
N_GOLDEN = 32


def train():
    """Returns (pipeline, data, x_train, x_test, y_train, y_test); features
    float32 (the pipeline is fitted on their float64 copies)."""
    data = load_wine()
    X = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    clf = LogisticRegression(multi_class="ovr", solver="lbfgs", random_state=SEED)
    pipe = make_pipeline(StandardScaler(), clf).fit(x_train.astype(np.float64), y_train)
    return pipe, data, x_train, x_test, y_train, y_test


def build_onnx(pipe):
    scaler, clf = pipe[0], pipe[-1]
    n_classes, n_features = clf.coef_.shape
    f32 = np.float32

    def floats(a):
        return [float(v) for v in np.asarray(a, dtype=f32).ravel()]

    nodes = [
        helper.make_node("Scaler", ["input"], ["scaled"], name="standardize", domain="ai.onnx.ml",
                         offset=floats(scaler.mean_), scale=floats(1.0 / scaler.scale_)),
        helper.make_node("LinearClassifier", ["scaled"], ["label", "scores"], name="ovr_logreg",
                         domain="ai.onnx.ml", coefficients=floats(clf.coef_),
                         intercepts=floats(clf.intercept_),
                         classlabels_ints=[int(c) for c in clf.classes_],
                         post_transform="LOGISTIC", multi_class=0),
        helper.make_node("Normalizer", ["scores"], ["probabilities"], name="l1_normalize",
                         domain="ai.onnx.ml", norm="L1"),
    ]
    graph = helper.make_graph(
        nodes, MODEL_NAME,
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_features])],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes]),
        ],
    )
    model = helper.make_model(graph, producer_name="coalesce-make_model",
                              producer_version=f"scikit-learn {sklearn.__version__}",
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = ("StandardScaler + one-vs-rest LogisticRegression on scikit-learn wine, "
                        "as ONNX-ML Scaler -> LinearClassifier (LOGISTIC) -> Normalizer (L1)")
    return model


def eval_onnx_numpy(model_proto, x):
    """Evaluate the three ONNX-ML nodes from their attributes in float32
    numpy: returns (probabilities [N, classes] float32, label [N] int64)."""
    at = {n.op_type: {a.name: helper.get_attribute_value(a) for a in n.attribute}
          for n in model_proto.graph.node}
    f32 = np.float32
    sc = at["Scaler"]
    scaled = (x - np.array(sc["offset"], f32)) * np.array(sc["scale"], f32)
    lc = at["LinearClassifier"]
    classes = np.array(lc["classlabels_ints"], dtype=np.int64)
    assert lc["post_transform"] == b"LOGISTIC" and lc.get("multi_class", 0) == 0
    coef = np.array(lc["coefficients"], f32).reshape(len(classes), -1)
    z = scaled @ coef.T + np.array(lc["intercepts"], f32)
    label = classes[np.argmax(z, axis=1)]
    scores = f32(1) / (f32(1) + np.exp(-z))
    assert at["Normalizer"]["norm"] == b"L1"
    probs = scores / np.abs(scores).sum(axis=1, keepdims=True)
    assert probs.dtype == np.float32
    return probs, label


CONFIG_YAML = """\
# Coalesce model configuration for wine-linear (one-vs-rest logistic regression on scikit-learn wine; generated by make_model.py).
# Human-readable description shown in the model listing.
description: "StandardScaler + one-vs-rest LogisticRegression on scikit-learn wine (13 raw features), hand-built ONNX-ML Scaler, LinearClassifier, Normalizer"
# Largest batch (rows) one request may carry and the batcher will send to the
# model in one call; also the largest batch the adaptive batcher forms.
max_batch_size: 256
predict:
  # which output feeds POST /predict's "prediction", and how: none (values as they are) | argmax (index of the largest value per row)
  output: label
  transform: none
  # optional class names, index -> name; when set /predict returns names instead of indices
  labels: ["class_0", "class_1", "class_2"]
"""


def main():
    pipe, data, x_train, x_test, y_train, y_test = train()
    xt64 = x_test.astype(np.float64)
    acc = pipe.score(xt64, y_test)
    print(f"test accuracy: {acc:.4f} ({len(y_test)} rows); lbfgs iterations {list(pipe[-1].n_iter_)}")

    # ---- build + check the ONNX graph -----------------------------------
    proto = build_onnx(pipe)
    onnx.checker.check_model(proto, full_check=True)
    onnx_path = os.path.join(HERE, VERSION, "model.onnx")
    os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
    onnx.save(proto, onnx_path)
    print("wrote", os.path.relpath(onnx_path, HERE), f"({os.path.getsize(onnx_path)} bytes)")

    # ---- reference outputs: sklearn (float64), stored as float32 --------
    ref_probs = pipe.predict_proba(xt64)
    ref_label = pipe.predict(xt64).astype(np.int64)
    dec = pipe.decision_function(xt64)
    sig = 1.0 / (1.0 + np.exp(-dec))
    assert np.allclose(sig / sig.sum(axis=1, keepdims=True), ref_probs, rtol=0, atol=1e-15)

    o_probs, o_label = eval_onnx_numpy(proto, x_test)
    dp = np.abs(o_probs - ref_probs).max()
    assert dp < 1e-6, dp
    assert (o_label == ref_label).all()
    srt = np.sort(dec, axis=1)
    gap = (srt[:, -1] - srt[:, -2])[:N_GOLDEN].min()
    print(f"onnx graph (numpy float32) vs sklearn predict_proba: max |dprob|={dp:.2e}, labels equal "
          f"({len(y_test)} test rows); smallest top-1/top-2 decision margin in the golden rows {gap:.3f}")

    n = N_GOLDEN
    modelkit.write_model_files(
        HERE, framework=f"scikit-learn {sklearn.__version__}", model=MODEL_NAME, version=VERSION,
        x=x_test[:n],
        outputs={"label": ("INT64", ref_label[:n]), "probabilities": ("FP32", ref_probs[:n])},
        expected={"label": int(ref_label[0]), "probabilities": modelkit.fl(ref_probs[0])},
        config_yaml=CONFIG_YAML)
    print(f"example row 0: true={int(y_test[0])} predicted={int(ref_label[0])} "
          f"({data.target_names[ref_label[0]]}) p={float(ref_probs[0].max()):.4f}")


if __name__ == "__main__":
    main()
