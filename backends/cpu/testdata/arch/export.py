#!/usr/bin/python3
"""Export the architectures of TestArchitectures with random weights.

    /usr/bin/python3 backends/cpu/testdata/arch/export.py OUTDIR [NAME...]

For each NAME (default: all) writes OUTDIR/NAME/model.onnx (torch.onnx.export,
dynamic batch dimension, eval mode) and OUTDIR/NAME/ref.json + ref.bin: the
inputs and torch's outputs at batch 1 and 3. ref.bin holds the tensors'
little-endian data back to back in the order ref.json lists them.

The small models are committed next to this script (make test needs no
Python); the torchvision ones (resnet18, mobilenet_v2, squeezenet1_1, tens
of MB of weights) are exported by the test into a temporary directory
when /usr/bin/python3 has torch and torchvision, and skipped otherwise.
Seeded, single-threaded: re-running reproduces the files.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
OPSET = 13


class MLPLNGelu(nn.Module):
    """Linear → LayerNorm → GELU twice, then a classifier: opset 13 spells
    LayerNorm and GELU out as the subgraphs the engine fuses."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.LayerNorm(256), nn.GELU(),
            nn.Linear(256, 256), nn.LayerNorm(256), nn.GELU(),
            nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


class CNN1D(nn.Module):
    """A 1-D CNN for time series: [N, 8 channels, 128 steps] → 5 classes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(8, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 64, 3, padding=1, dilation=1), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Conv1d(64, 64, 3, padding=2, dilation=2, groups=4), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x)


class LSTMClassifier(nn.Module):
    """Two stacked bidirectional LSTM layers over [N, 20 steps, 16 features],
    the last step's state → 4 classes."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1, :])


class GRUClassifier(nn.Module):
    """A GRU over [N, 20 steps, 16 features] → 4 classes."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(16, 32, batch_first=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        y, h = self.gru(x)
        return self.fc(h[-1])


class Transformer(nn.Module):
    """nn.TransformerEncoder, two layers of d_model 64, 4 heads, FFN 128,
    over [N, 16 tokens, 64], mean-pooled → 3 classes."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(self.enc(x).mean(dim=1))


def torchvision_model(name):
    import torchvision
    return getattr(torchvision.models, name)(weights=None)


ARCHS = {
    # name: (constructor, input shape without batch, committed)
    "mlp_ln_gelu": (MLPLNGelu, (64,), True),
    "cnn1d": (CNN1D, (8, 128), True),
    "lstm": (LSTMClassifier, (20, 16), True),
    "gru": (GRUClassifier, (20, 16), True),
    "transformer": (Transformer, (16, 64), True),
    "squeezenet1_1": (lambda: torchvision_model("squeezenet1_1"), (3, 224, 224), False),
    "mobilenet_v2": (lambda: torchvision_model("mobilenet_v2"), (3, 224, 224), False),
    "resnet18": (lambda: torchvision_model("resnet18"), (3, 224, 224), False),
}


def randomize_norms(model, gen):
    """Give BatchNorm layers non-trivial statistics and affine parameters,
    so that folding them is tested."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def export(name, out):
    ctor, shape, _ = ARCHS[name]
    torch.manual_seed(0)
    model = ctor().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        randomize_norms(model, gen)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    x = torch.randn((3,) + shape, generator=gen)
    torch.onnx.export(model, x, os.path.join(d, "model.onnx"), opset_version=OPSET,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    meta, blobs = [], []
    with torch.no_grad():
        for batch in (1, 3):
            xb = x[:batch].contiguous()
            y = model(xb)
            for role, t in (("input", xb), ("output", y)):
                a = t.numpy().astype(np.float32)
                meta.append({"batch": batch, "role": role, "shape": list(a.shape)})
                blobs.append(a.tobytes())
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump({"model": name, "torch": torch.__version__, "tensors": meta}, f, indent=1)
        f.write("\n")
    with open(os.path.join(d, "ref.bin"), "wb") as f:
        f.write(b"".join(blobs))


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(ARCHS)
    for name in names:
        export(name, out)


if __name__ == "__main__":
    main()
