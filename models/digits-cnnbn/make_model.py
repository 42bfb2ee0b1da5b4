#!/usr/bin/python3
"""Train and export the "digits-cnnbn" example model for Coalesce.

Run from anywhere (paths are relative to this script's directory):

    /usr/bin/python3 models/digits-cnnbn/make_model.py

What it does:
  * loads scikit-learn's bundled 8x8 digits data set (64 raw pixel values 0..16,
    no network access needed) and splits it (test_size=0.25, random_state=0);
  * trains, deterministically, 64 -> Linear(128) -> BatchNorm1d(128) -> ReLU ->
    view(N, 8, 16) -> view(N, -1) -> Linear(10). There are no convolutions (the
    engine has none): the network exists to exercise the graph compiler. It is
    exported with do_constant_folding=False, so the graph keeps the
    BatchNormalization node (which the engine folds into the Gemm before it)
    and the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains that
    torch emits for x.view(x.size(0), ...) (which the engine folds to constant
    shapes per batch size);
  * exports it to ONNX as 1/model.onnx. Outputs: logits [N,10] FP32,
    probabilities [N,10] FP32 (softmax), label [N] INT64 (argmax). The batch
    dimension is dynamic;
  * checks the ONNX file (onnx.checker + an independent numpy evaluation of the
    graph compared against torch);
  * writes config.yaml, golden.json (torch's own float32 outputs on the first
    32 test rows) and example request bodies under examples/.
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ folder in the model repository
sys.path.insert(0, os.path.dirname(HERE))  # models/: the shared modelkit
import modelkit  # noqa: E402
MODEL_NAME = "digits-cnnbn"
VERSION = "1"
OPSET = 13
SEED = 0
N_GOLDEN = 32


class DigitsBN(nn.Module):
    """Linear + BatchNorm + ReLU, a reshape round trip, Linear; scaling,
    softmax and argmax live in the graph."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.bn1 = nn.BatchNorm1d(128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        h = torch.relu(self.bn1(self.fc1(x / 16.0)))  # raw pixels 0..16 -> 0..1
        h = h.view(h.size(0), 8, 16)  # the x.view(x.size(0), ...) pattern, twice
        h = h.view(h.size(0), -1)
        logits = self.fc2(h)
        probabilities = torch.softmax(logits, dim=1)
        label = torch.argmax(logits, dim=1)  # int64
        return logits, probabilities, label


def train(x_train, y_train):
    torch.manual_seed(SEED)
    model = DigitsBN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.from_numpy(x_train)
    y = torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(SEED)  # deterministic shuffling
    model.train()
    for _epoch in range(60):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            logits, _, _ = model(x[idx])
            loss_fn(logits, y[idx]).backward()
            opt.step()
    model.eval()
    return model


def eval_onnx_numpy(model_proto, x):
    """Tiny numpy interpreter for the few ops this graph uses (no onnxruntime
    available); an independent check that the exported graph matches torch."""
    env = {t.name: numpy_helper.to_array(t) for t in model_proto.graph.initializer}
    env[model_proto.graph.input[0].name] = x
    for node in model_proto.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        ins = [env[n] for n in node.input]
        if node.op_type == "Constant":
            out = numpy_helper.to_array(a["value"])
        elif node.op_type == "Div":
            out = ins[0] / ins[1]
        elif node.op_type == "Gemm":
            A = ins[0].T if a.get("transA", 0) else ins[0]
            B = ins[1].T if a.get("transB", 0) else ins[1]
            out = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2:
                out = out + a.get("beta", 1.0) * ins[2]
        elif node.op_type == "MatMul":
            out = ins[0] @ ins[1]
        elif node.op_type == "Add":
            out = ins[0] + ins[1]
        elif node.op_type == "BatchNormalization":
            xs, sc, b, mean, var = ins
            eps = a.get("epsilon", 1e-5)
            out = (xs - mean) / np.sqrt(var + eps) * sc + b
        elif node.op_type == "Shape":
            out = np.array(ins[0].shape, dtype=np.int64)
        elif node.op_type == "Gather":
            out = np.take(ins[0], ins[1], axis=a.get("axis", 0))
        elif node.op_type == "Unsqueeze":
            axes = a["axes"] if "axes" in a else list(ins[1])
            out = ins[0]
            for ax in sorted(axes):
                out = np.expand_dims(out, ax)
        elif node.op_type == "Concat":
            out = np.concatenate(ins, axis=a["axis"])
        elif node.op_type == "Reshape":
            shape = [ins[0].shape[i] if d == 0 else d for i, d in enumerate(ins[1])]
            out = ins[0].reshape(shape)
        elif node.op_type == "Relu":
            out = np.maximum(ins[0], 0)
        elif node.op_type == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        elif node.op_type == "ArgMax":
            out = np.argmax(ins[0], axis=a.get("axis", 0)).astype(np.int64)
            if a.get("keepdims", 1):
                out = np.expand_dims(out, a.get("axis", 0))
        else:
            raise NotImplementedError(node.op_type)
        env[node.output[0]] = np.asarray(out)
    return [env[o.name] for o in model_proto.graph.output]


CONFIG_YAML = """\
# Coalesce model configuration for digits-cnnbn (Linear+BatchNorm network on the scikit-learn 8x8 digits; generated by make_model.py).
# Human-readable description shown in the model listing.
description: "Linear 64-128 + BatchNorm + ReLU, view(N, -1), Linear 128-10 on scikit-learn digits (raw 0-16 pixels), exported from PyTorch without constant folding"
# Largest batch (rows) one request may carry and the batcher will send to the
# model in one call; also the largest batch the adaptive batcher forms.
max_batch_size: 256
predict:
  # which output feeds POST /predict's "prediction", and how: none (values as they are) | argmax (index of the largest value per row)
  output: label
  transform: none
  # optional class names, index -> name; when set /predict returns names instead of indices
  labels: []
"""


def main():
    torch.set_num_threads(1)  # bit-for-bit reproducible float sums on CPU
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    digits = load_digits()
    X = digits.data.astype(np.float32)  # raw pixel values 0..16
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

    model = train(x_train, y_train)
    with torch.no_grad():
        _, _, pred = model(torch.from_numpy(x_test))
    acc = float((pred.numpy() == y_test).mean())
    print(f"test accuracy: {acc:.4f} ({len(y_test)} rows)")

    # ---- export to ONNX -------------------------------------------------
    onnx_path = os.path.join(HERE, VERSION, "model.onnx")
    os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
    dummy = torch.from_numpy(x_test[:2])
    torch.onnx.export(
        model, dummy, onnx_path,
        input_names=["input"],
        output_names=["logits", "probabilities", "label"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"},
                      "probabilities": {0: "batch"}, "label": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=False,  # keep BatchNormalization and the view() shape chains
    )
    proto = onnx.load(onnx_path)
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" in ops and ops.count("Reshape") == 2 and "Shape" in ops, ops
    print("onnx ops:", " ".join(ops))
    onnx.checker.check_model(proto, full_check=True)
    print("wrote", os.path.relpath(onnx_path, HERE), f"({os.path.getsize(onnx_path)} bytes)")

    # ---- golden outputs: torch's own float32 forward on held-out rows ---
    xg = x_test[:N_GOLDEN]
    with torch.no_grad():
        logits, probs, label = (t.numpy() for t in model(torch.from_numpy(xg)))

    # independent check of the exported graph against torch
    o_logits, o_probs, o_label = eval_onnx_numpy(proto, xg)
    assert o_logits.shape == (N_GOLDEN, 10) and o_label.shape == (N_GOLDEN,)
    assert np.allclose(o_logits, logits, atol=1e-4), np.abs(o_logits - logits).max()
    assert np.allclose(o_probs, probs, atol=1e-5), np.abs(o_probs - probs).max()
    assert (o_label == label).all()
    print(f"onnx graph (numpy eval) vs torch: max |dlogits|={np.abs(o_logits - logits).max():.2e}, "
          f"max |dprob|={np.abs(o_probs - probs).max():.2e}, labels equal")

    modelkit.write_outputs(HERE, framework=f"torch {torch.__version__}", model=MODEL_NAME,
                           version=VERSION, x=xg, logits=logits, probs=probs, label=label,
                           config_yaml=CONFIG_YAML)
    print(f"example row 0: true={int(y_test[0])} predicted={int(label[0])} p={float(probs[0].max()):.4f}")


if __name__ == "__main__":
    main()
