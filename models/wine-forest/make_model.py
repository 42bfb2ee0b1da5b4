#!/usr/bin/python3
"""Train and export the "wine-forest" example model for Coalesce.

Run from anywhere (paths are relative to this script's directory):

    /usr/bin/python3 models/wine-forest/make_model.py

What it does:
  * loads scikit-learn's bundled wine data set (13 features, 3 classes, no
    network access needed), rounds the features to float32 and splits it
    (test_size=0.25, random_state=0);
  * fits RandomForestClassifier(n_estimators=50, max_depth=8,
    random_state=0, n_jobs=1);
  * builds the equivalent ONNX-ML graph by hand with onnx.helper (ai.onnx.ml
    opset 3, ai.onnx opset 15, IR version 8):
        input [N,13] FP32 -> TreeEnsembleClassifier -> label [N] tensor(string)
                                                    -> scores [N,3] FP32
        scores -> ZipMap -> probabilities: sequence(map(string, float))
    Each sklearn tree becomes one tree id; its node ids are sklearn's node
    indices; a split is BRANCH_LEQ (x <= value goes to the true node, sklearn's
    left child); each leaf carries its class distribution normalised to sum 1
    and divided by the number of trees (class_weights; zero weights are left
    out), so that the SUM the ensemble computes is sklearn's predict_proba
    (the mean of the trees' normalised distributions); post_transform NONE;
  * nodes_values are the float64 thresholds rounded DOWN to float32 (the
    largest float32 <= threshold): for every float32 x, x <= value32 holds
    exactly when x <= threshold64 does, which is what sklearn evaluates
    (float32 features against float64 thresholds);
  * checks the graph with onnx.checker (see check_graph) and evaluates the exported attributes
    with an independent numpy tree walker, which must reproduce predict_proba
    within 1e-6 and predict exactly on the whole test split;
  * writes config.yaml, golden.json (sklearn's outputs on the first 32 test
    rows) and example request bodies under examples/.

train() is imported by backends/cpu/testdata/sklearn_bench.py.
"""
import os
import sys

import numpy as np
import onnx
import sklearn
from onnx import TensorProto, helper
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ folder in the model repository
sys.path.insert(0, os.path.dirname(HERE))  # models/: the shared modelkit
import modelkit  # noqa: E402
MODEL_NAME = "wine-forest"
VERSION = "1"
ONNX_OPSET = 15
ML_OPSET = 3
IR_VERSION = 8
SEED = 0
N_GOLDEN = 32
N_TREES = 50
CLASS_LABELS = ["class_0", "class_1", "class_2"]


def train():
    """Returns (forest, data, x_train, x_test, y_train, y_test); features float32."""
    data = load_wine()
    X = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    rf = RandomForestClassifier(n_estimators=N_TREES, max_depth=8, random_state=SEED, n_jobs=1)
    rf.fit(x_train, y_train)
    return rf, data, x_train, x_test, y_train, y_test


def round_down_f32(t):
    """Largest float32 <= t (t a float64)."""
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    assert float(t32) <= t < float(np.nextafter(t32, np.float32(np.inf)))
    return t32


def tree_attributes(rf):
    """The TreeEnsembleClassifier attributes for the forest."""
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
                         "nodes_values", "nodes_truenodeids", "nodes_falsenodeids",
                         "nodes_missing_value_tracks_true", "nodes_hitrates",
                         "class_treeids", "class_nodeids", "class_ids", "class_weights")}
    n_trees = len(rf.estimators_)
    for tid, est in enumerate(rf.estimators_):
        t = est.tree_
        for nid in range(t.node_count):
            leaf = t.children_left[nid] == -1
            a["nodes_treeids"].append(tid)
            a["nodes_nodeids"].append(nid)
            a["nodes_featureids"].append(0 if leaf else int(t.feature[nid]))
            a["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            a["nodes_values"].append(0.0 if leaf else float(round_down_f32(t.threshold[nid])))
            a["nodes_truenodeids"].append(0 if leaf else int(t.children_left[nid]))
            a["nodes_falsenodeids"].append(0 if leaf else int(t.children_right[nid]))
            a["nodes_missing_value_tracks_true"].append(0)
            a["nodes_hitrates"].append(1.0)
            if leaf:
                dist = t.value[nid, 0] / t.value[nid, 0].sum()  # what the tree's predict_proba returns
                for cls, w in enumerate(dist):
                    if w != 0:
                        a["class_treeids"].append(tid)
                        a["class_nodeids"].append(nid)
                        a["class_ids"].append(cls)
                        a["class_weights"].append(float(np.float32(w / n_trees)))
    return a


def build_onnx(rf):
    a = tree_attributes(rf)
    n_features = rf.n_features_in_
    n_classes = len(CLASS_LABELS)
    nodes = [
        helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "scores"], name="forest",
                         domain="ai.onnx.ml", classlabels_strings=CLASS_LABELS,
                         post_transform="NONE", **a),
        helper.make_node("ZipMap", ["scores"], ["probabilities"], name="zipmap",
                         domain="ai.onnx.ml", classlabels_strings=CLASS_LABELS),
    ]
    # sequence(map(string, tensor(float))): onnx 1.12's helper has no
    # make_map_type_proto, so the map type is filled in by hand.
    map_type = onnx.TypeProto()
    map_type.map_type.key_type = TensorProto.STRING
    map_type.map_type.value_type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes, MODEL_NAME,
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_features])],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]),
            helper.make_value_info("probabilities", helper.make_sequence_type_proto(map_type)),
        ],
    )
    model = helper.make_model(graph, producer_name="coalesce-make_model",
                              producer_version=f"scikit-learn {sklearn.__version__}",
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = (f"RandomForestClassifier ({N_TREES} trees, max_depth 8) on scikit-learn wine, "
                        "as an ONNX-ML TreeEnsembleClassifier + ZipMap")
    return model


def check_graph(proto):
    """onnx.checker on the graph. onnx 1.12's shape inference fails on any
    map type ("type case unsupported for symbolic shape inference. inferred=5",
    onnx/onnx#5188, fixed in onnx 1.15), so full_check (which runs strict
    shape inference) is done on a copy that ends at the TreeEnsembleClassifier
    (outputs label and scores); the full graph gets the structural check."""
    onnx.checker.check_model(proto)
    head = onnx.ModelProto()
    head.CopyFrom(proto)
    assert [n.op_type for n in head.graph.node] == ["TreeEnsembleClassifier", "ZipMap"]
    del head.graph.node[1]
    del head.graph.output[1]
    head.graph.output.append(helper.make_tensor_value_info(
        "scores", TensorProto.FLOAT, ["N", len(CLASS_LABELS)]))
    onnx.checker.check_model(head, full_check=True)


def eval_onnx_numpy(model_proto, x):
    """Evaluate the TreeEnsembleClassifier from its attributes, in float32
    numpy: returns (scores [N, classes] float32, labels [N] str)."""
    node = model_proto.graph.node[0]
    assert node.op_type == "TreeEnsembleClassifier"
    at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    labels = [s.decode() for s in at["classlabels_strings"]]
    assert at["post_transform"] == b"NONE"
    nodes = {}
    for i, key in enumerate(zip(at["nodes_treeids"], at["nodes_nodeids"])):
        nodes[key] = (at["nodes_modes"][i].decode(), at["nodes_featureids"][i],
                      np.float32(at["nodes_values"][i]), at["nodes_truenodeids"][i],
                      at["nodes_falsenodeids"][i])
    leaf_weights = {}
    for t, n, c, w in zip(at["class_treeids"], at["class_nodeids"], at["class_ids"], at["class_weights"]):
        leaf_weights.setdefault((t, n), []).append((c, np.float32(w)))
    tree_ids = sorted(set(at["nodes_treeids"]))
    scores = np.zeros((x.shape[0], len(labels)), dtype=np.float32)
    for r, row in enumerate(x):
        for t in tree_ids:
            nid = 0
            while True:
                mode, feat, value, true_id, false_id = nodes[(t, nid)]
                if mode == "LEAF":
                    break
                assert mode == "BRANCH_LEQ"
                nid = true_id if row[feat] <= value else false_id
            for c, w in leaf_weights[(t, nid)]:
                scores[r, c] = np.float32(scores[r, c] + w)
    return scores, [labels[i] for i in np.argmax(scores, axis=1)]


CONFIG_YAML = """\
# Coalesce model configuration for wine-forest (random forest on scikit-learn wine; generated by make_model.py).
# Human-readable description shown in the model listing.
description: "RandomForestClassifier, 50 trees of depth <= 8, on scikit-learn wine (13 raw features), hand-built ONNX-ML TreeEnsembleClassifier + ZipMap"
# Largest batch (rows) one request may carry and the batcher will send to the
# model in one call; also the largest batch the adaptive batcher forms.
max_batch_size: 256
predict:
  # which output feeds POST /predict's "prediction", and how: none (values as they are) | argmax (index of the largest value per row)
  # (label is already the class name, "class_0" .. "class_2")
  output: label
  transform: none
"""


def main():
    rf, data, x_train, x_test, y_train, y_test = train()
    acc = rf.score(x_test, y_test)
    print(f"test accuracy: {acc:.4f} ({len(y_test)} rows)")

    # ---- build + check the ONNX graph -----------------------------------
    proto = build_onnx(rf)
    check_graph(proto)
    onnx_path = os.path.join(HERE, VERSION, "model.onnx")
    os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
    onnx.save(proto, onnx_path)
    print("wrote", os.path.relpath(onnx_path, HERE), f"({os.path.getsize(onnx_path)} bytes)")

    # ---- reference outputs: sklearn -------------------------------------
    ref_probs = rf.predict_proba(x_test)  # float64
    ref_label = np.array([CLASS_LABELS[i] for i in rf.predict(x_test)])

    # the float32 thresholds decide like sklearn's float64 ones on the data
    for est in rf.estimators_:
        t = est.tree_
        inner = t.children_left != -1
        t32 = np.array([round_down_f32(v) for v in t.threshold[inner]], dtype=np.float32)
        for xs in (x_train, x_test):
            fx = xs[:, t.feature[inner]]
            assert np.array_equal(fx <= t32, fx.astype(np.float64) <= t.threshold[inner])

    # validate the exported attributes (numpy float32 walk) against sklearn
    o_scores, o_label = eval_onnx_numpy(proto, x_test)
    dp = np.abs(o_scores - ref_probs).max()
    assert dp < 1e-6, dp
    assert list(o_label) == list(ref_label)
    srt = np.sort(ref_probs, axis=1)
    gap = (srt[:, -1] - srt[:, -2])[:N_GOLDEN].min()
    print(f"onnx attributes (numpy float32) vs sklearn predict_proba: max |dprob|={dp:.2e}, labels equal "
          f"({len(y_test)} test rows); smallest top-1/top-2 gap in the golden rows {gap:.3f}")
    n_nodes = sum(e.tree_.node_count for e in rf.estimators_)
    print(f"forest: {len(rf.estimators_)} trees, {n_nodes} nodes, "
          f"max depth {max(e.tree_.max_depth for e in rf.estimators_)}")

    n = N_GOLDEN
    modelkit.write_model_files(
        HERE, framework=f"scikit-learn {sklearn.__version__}", model=MODEL_NAME, version=VERSION,
        x=x_test[:n],
        outputs={"label": ("BYTES", ref_label[:n]), "probabilities": ("FP32", ref_probs[:n])},
        expected={"label": str(ref_label[0]), "probabilities": modelkit.fl(ref_probs[0])},
        config_yaml=CONFIG_YAML)
    print(f"example row 0: true={int(y_test[0])} predicted={ref_label[0]} p={float(ref_probs[0].max()):.4f}")


if __name__ == "__main__":
    main()
