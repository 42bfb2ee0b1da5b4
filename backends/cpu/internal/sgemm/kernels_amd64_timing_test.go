//go:build amd64 && !purego

package sgemm

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/cpu"
)

// BenchmarkFMAPeak reports the FMA rate of this core right now (independent
// FMAs in registers, no memory access): the ceiling for BenchmarkSgemm.
// Run it in the same go test invocation as BenchmarkSgemm: on a shared
// machine the rate varies with what runs on the sibling hyper-thread.
func BenchmarkFMAPeak(b *testing.B) {
	const iters = 1 << 16
	run := func(b *testing.B, peak func(int), flopsPerIter int) {
		for b.Loop() {
			peak(iters)
		}
		b.ReportMetric(float64(flopsPerIter)*iters*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
	}
	if cpu.X86.HasAVX512F {
		b.Run("avx512", func(b *testing.B) { run(b, fmaPeakAVX512, 24*32) })
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		b.Run("avx2", func(b *testing.B) { run(b, fmaPeakAVX2, 12*16) })
	}
}

// BenchmarkSgemmEfficiency reports BenchmarkSgemm's products as a share
// of this core's FMA peak (%peak), the two measured alternately a few
// hundred microseconds apart and summarised by the median of the
// per-pair ratios: on a shared machine, where the peak itself moves by
// tens of percent between runs, the ratio says how well the kernel uses
// the core whatever the moment. BenchmarkSgemmEfficiency/M=8 runs the
// auto-chosen kernels, BenchmarkSgemmEfficiency/avx2/M=8 a forced set,
// each against the peak of its own vector width.
func BenchmarkSgemmEfficiency(b *testing.B) {
	peaks := map[string]struct {
		loop  func(int)
		flops int // per iteration of loop
	}{"avx512": {fmaPeakAVX512, 24 * 32}, "avx2": {fmaPeakAVX2, 12 * 16}}
	const peakIters = 1 << 12
	hasPeak := func(ks *Kernels) bool { _, ok := peaks[ks.name]; return ok }
	sgemmBenchmarks(b, hasPeak, func(b *testing.B, ks *Kernels, op *sgemmOperands) {
		peak := peaks[ks.name]
		reps := max(1, int(4e6/op.flops())) // about as long as the peak probe
		var ratios []float64
		for b.Loop() {
			t0 := time.Now()
			peak.loop(peakIters)
			t1 := time.Now()
			for range reps {
				ks.Gemm(op.m, op.a, sgemmK, &op.pb, op.c, sgemmN, 0)
			}
			t2 := time.Now()
			peakRate := float64(peakIters*peak.flops) / t1.Sub(t0).Seconds()
			ratios = append(ratios, op.flops()*float64(reps)/t2.Sub(t1).Seconds()/peakRate)
		}
		slices.Sort(ratios)
		b.ReportMetric(100*ratios[len(ratios)/2], "%peak")
	})
}
