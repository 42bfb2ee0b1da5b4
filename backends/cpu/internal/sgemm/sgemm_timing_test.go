package sgemm

import (
	"fmt"
	"testing"
)

// BenchmarkSgemm measures C = A·B for a digits-sized layer (M×256 by a
// constant 256×256 B packed beforehand, as Gemm does at load) on every
// kernel set this CPU supports (BenchmarkSgemm/avx2/M=8) and on the
// auto-chosen one (BenchmarkSgemm/M=8), reporting GFLOPS.
func BenchmarkSgemm(b *testing.B) {
	sgemmBenchmarks(b, func(*Kernels) bool { return true }, func(b *testing.B, ks *Kernels, op *sgemmOperands) {
		for b.Loop() {
			ks.Gemm(op.m, op.a, sgemmK, &op.pb, op.c, sgemmN, 0)
		}
		b.ReportMetric(op.flops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
	})
}

// The shape of BenchmarkSgemm's products: M×sgemmK by sgemmK×sgemmN.
const sgemmK, sgemmN = 256, 256

// sgemmOperands are one product of BenchmarkSgemm: A (m×K), C (m×N) and
// the constant B packed for a kernel set.
type sgemmOperands struct {
	m    int
	a, c []float32
	pb   Packed
}

func (op *sgemmOperands) flops() float64 { return float64(2 * op.m * sgemmN * sgemmK) }

// sgemmBenchmarks runs bench as sub-benchmarks M=1, 8, 64, 256 on the
// auto-chosen kernel set and, under each set's name, on every set that
// use accepts (the auto set too must pass use).
func sgemmBenchmarks(b *testing.B, use func(*Kernels) bool, bench func(*testing.B, *Kernels, *sgemmOperands)) {
	r := newRand()
	w := make([]float32, sgemmK*sgemmN)
	for i := range w {
		w[i] = float32(r.Float64())
	}
	run := func(b *testing.B, ks *Kernels) {
		pb := ks.Pack(make([]float32, ks.PackedLen(sgemmK, sgemmN)), false, sgemmK, sgemmN, w, sgemmN, 1)
		for _, m := range []int{1, 8, 64, 256} {
			op := &sgemmOperands{m: m, a: make([]float32, m*sgemmK), c: make([]float32, m*sgemmN), pb: pb}
			for i := range op.a {
				op.a[i] = float32(r.Float64())
			}
			b.Run(fmt.Sprintf("M=%d", m), func(b *testing.B) { bench(b, ks, op) })
		}
	}
	if auto := Available()[0]; use(auto) {
		run(b, auto)
	}
	for _, ks := range Available() {
		if use(ks) {
			b.Run(ks.name, func(b *testing.B) { run(b, ks) })
		}
	}
}

// BenchmarkSplitGemm measures M×256 by a packed 256×256 B with the
// auto-chosen kernels, split over the helpers from one row (split) and
// unsplit, reporting GFLOPS: the driver-level gain of splitting.
func BenchmarkSplitGemm(b *testing.B) {
	const k, n = 256, 256
	ks := Available()[0]
	r := newRand()
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(r.Float64())
	}
	pb := ks.Pack(make([]float32, ks.PackedLen(k, n)), false, k, n, w, n, 1)
	sp := NewSplitter(1, 1)
	if sp == nil {
		b.Skip("GOMAXPROCS is 1")
	}
	sp.Start()
	defer sp.Stop(true)
	for _, m := range []int{16, 32, 64, 256} {
		a, c := make([]float32, m*k), make([]float32, m*n)
		for _, split := range []bool{false, true} {
			b.Run(fmt.Sprintf("split=%v/M=%d", split, m), func(b *testing.B) {
				sp.Enter()
				defer sp.Leave()
				for b.Loop() {
					if split {
						sp.Gemm(ks, m, a, k, &pb, c, n, 0)
					} else {
						ks.Gemm(m, a, k, &pb, c, n, 0)
					}
				}
				b.ReportMetric(float64(2*m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}
