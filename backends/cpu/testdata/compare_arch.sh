#!/bin/sh
# compare_arch.sh times the architectures of TestArchitectures on one core
# in the Go engine (BenchmarkArch, auto-chosen kernels, -cpu 1) and in
# PyTorch (torch_arch_bench.py: Debian's python3-torch, one thread),
# interleaved per architecture (Go, then PyTorch, for each architecture
# in turn, ROUNDS times) so that both see the same machine load, then prints
# per architecture and batch size the median of each side over the rounds
# and their ratio. Run it from anywhere:
#
#	backends/cpu/testdata/compare_arch.sh
#
# ROUNDS (default 3) rounds; BENCHTIME (default 1s) is go test's
# -benchtime; ARCHS (default: all) a regular expression of architecture
# names. The torchvision models are exported once into a temporary
# directory (export.py), which BenchmarkArch reads through ARCH_DIR.
set -eu
cd "$(dirname "$0")/../../.."
unset OPENBLAS_CORETYPE
rounds=${ROUNDS:-3}
benchtime=${BENCHTIME:-1s}
archs=${ARCHS:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 backends/cpu/testdata/arch/export.py "$tmp/arch" squeezenet1_1 mobilenet_v2 resnet18 >/dev/null 2>&1
names=$(/usr/bin/python3 -c 'import sys; sys.path.insert(0, "backends/cpu/testdata/arch"); import export; print(" ".join(export.ARCHS))' | tr ' ' '\n' | grep -E "$archs" | tr '\n' ' ')
go test -c -o "$tmp/cpu.test" ./backends/cpu/
for round in $(seq "$rounds"); do
	for name in $names; do
		echo "== round $round: $name: Go (BenchmarkArch, -benchtime $benchtime -cpu 1), then PyTorch"
		(cd backends/cpu && ARCH_DIR="$tmp/arch" "$tmp/cpu.test" -test.run '^$' -test.bench "Arch/$name/" \
			-test.benchtime "$benchtime" -test.cpu 1) | grep '^BenchmarkArch' | tee -a "$tmp/go.txt"
		/usr/bin/python3 backends/cpu/testdata/torch_arch_bench.py "$name" | tee -a "$tmp/torch.txt"
	done
done
echo "== medians over $rounds rounds (ms per call; speed-up = PyTorch / Go)"
/usr/bin/python3 - "$tmp/go.txt" "$tmp/torch.txt" <<'PY'
import re, statistics, sys
def load(path):
    d = {}
    for line in open(path):
        m = re.match(r"BenchmarkArch/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op", line)
        if m:
            d.setdefault(m.group(1), []).append(float(m.group(2)))
    return d
go, pt = load(sys.argv[1]), load(sys.argv[2])
print(f"{'architecture/batch':32} {'Go ms':>10} {'PyTorch ms':>11} {'speed-up':>9}")
for k in go:
    g, p = statistics.median(go[k]), statistics.median(pt.get(k, [float('nan')]))
    print(f"{k:32} {g/1e6:10.3f} {p/1e6:11.3f} {p/g:8.2f}x")
PY
