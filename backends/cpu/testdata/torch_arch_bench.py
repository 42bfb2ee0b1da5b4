#!/usr/bin/python3
"""PyTorch baseline for BenchmarkArch: the architectures of
testdata/arch/export.py on one thread.

Usage (from the repository root or anywhere):

    /usr/bin/python3 backends/cpu/testdata/torch_arch_bench.py [NAME...]

Builds each network exactly as export.py does (same seeds, so the same
weights as the exported ONNX files), in eval mode under torch.no_grad(),
and prints the median time of one forward call at batch 1 and 8 in the
format of `go test -bench Arch`: BenchmarkArch/<name>/batch=<n> ... ns/op.

torch.set_num_threads(1) and OPENBLAS_NUM_THREADS=1: one core, as the Go
engine's one worker (see torch_mlp_bench.py).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "arch"))
sys.dont_write_bytecode = True
import benchkit  # noqa: E402

os.environ.pop("OPENBLAS_CORETYPE", None)  # before torch loads OpenBLAS
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import statistics  # noqa: E402

import torch  # noqa: E402

import export  # noqa: E402

REPEATS = 5           # timed runs per batch size; the median is reported
TARGET_SECONDS = 0.3  # length of one timed run


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(export.ARCHS)
    for name in names:
        ctor, shape, _ = export.ARCHS[name]
        torch.manual_seed(0)
        model = ctor().eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            export.randomize_norms(model, gen)
        for batch in (1, 8):
            x = torch.randn((batch,) + shape, generator=gen)
            with torch.no_grad():
                model(x)  # warm up
                times = [benchkit.time_call(lambda: model(x), TARGET_SECONDS) for _ in range(REPEATS)]
            print(f"BenchmarkArch/{name}/batch={batch} \t1\t{statistics.median(times) * 1e9:.0f} ns/op", flush=True)


if __name__ == "__main__":
    main()
