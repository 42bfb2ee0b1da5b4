#!/usr/bin/python3
"""PyTorch baseline for BenchmarkMLP: digits-mlp on one thread.

Usage (from the repository root or anywhere):

    /usr/bin/python3 backends/cpu/testdata/torch_mlp_bench.py [model.onnx]

Rebuilds the digits-mlp network (x/16, Linear 64-256, ReLU, Linear 256-256,
ReLU, Linear 256-10, softmax, argmax: what models/digits-mlp/make_model.py
exports) from the ONNX file's initializers, checks it against the ONNX
graph's node list, and prints the median time of one forward call at batch
1, 8, 64 and 256, like `go test -bench MLP/batch`.

torch.set_num_threads(1): one core, as the Go engine uses one worker per
core; Debian's torch calls OpenBLAS (openblas-pthread), whose own thread
pool torch does not size, so OPENBLAS_NUM_THREADS=1 too. OPENBLAS_CORETYPE
is removed from the environment before torch loads OpenBLAS: when set,
OpenBLAS uses the named (often older, slower) kernel instead of detecting
the CPU.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
import benchkit  # noqa: E402

os.environ.pop("OPENBLAS_CORETYPE", None)  # before torch loads OpenBLAS
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import statistics  # noqa: E402
import time  # noqa: E402

import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "..", "..", "models", "digits-mlp", "1", "model.onnx")
BATCHES = (1, 8, 64, 256)
REPEATS = 9          # timed runs per batch size; the median is reported
TARGET_SECONDS = 0.2  # length of one timed run


class DigitsMLP(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 10),
        )
        state = {name: torch.from_numpy(weights[name].copy()) for name in self.state_dict()}
        self.load_state_dict(state)

    def forward(self, x):
        logits = self.net(x / 16.0)
        return logits, torch.softmax(logits, dim=1), torch.argmax(logits, dim=1)


def load(path):
    model = onnx.load(path)
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    want = ["Div", "Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax", "ArgMax"]
    if ops != want:
        sys.exit(f"{path}: nodes {ops}, want {want}: not the digits-mlp graph")
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return DigitsMLP(weights).eval()


def time_call(fn, target=TARGET_SECONDS):
    """Returns seconds per call of fn, timed over about target seconds."""
    return benchkit.time_call(fn, target)

def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    torch.set_num_threads(1)
    model = load(path)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OPENBLAS_CORETYPE unset, OPENBLAS_NUM_THREADS=1, model {os.path.relpath(path)}")
    with torch.inference_mode():
        for batch in BATCHES:
            x = torch.rand(batch, 64, generator=gen) * 16
            call = lambda: model(x)  # noqa: E731
            time_call(call, 0.1)  # warm-up
            runs = [time_call(call) for _ in range(REPEATS)]
            med = statistics.median(runs) * 1e6
            print(f"TorchMLP/batch={batch}\t{med:10.1f} µs/call\t{med / batch:8.2f} µs/row"
                  f"\t(min {min(runs) * 1e6:.1f}, max {max(runs) * 1e6:.1f})")


if __name__ == "__main__":
    main()
