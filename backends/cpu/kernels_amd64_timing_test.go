//go:build amd64 && !purego

package cpu

import (
	"fmt"
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
	const k, n, peakIters = 256, 256, 1 << 12
	r := newRand()
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(r.Float64())
	}
	run := func(b *testing.B, ks *kernelSet) {
		peak, ok := peaks[ks.name]
		if !ok {
			b.Skipf("no FMA peak probe for the %s kernels", ks.name)
		}
		pb := ks.packB(make([]float32, ks.packedLen(k, n)), false, k, n, w, n, 1)
		for _, m := range []int{1, 8, 64, 256} {
			a, c := make([]float32, m*k), make([]float32, m*n)
			for i := range a {
				a[i] = float32(r.Float64())
			}
			flops := float64(2 * m * n * k)
			reps := max(1, int(4e6/flops)) // about as long as the peak probe
			b.Run(fmt.Sprintf("M=%d", m), func(b *testing.B) {
				var ratios []float64
				for b.Loop() {
					t0 := time.Now()
					peak.loop(peakIters)
					t1 := time.Now()
					for range reps {
						ks.gemm(m, a, k, &pb, c, n, 0)
					}
					t2 := time.Now()
					peakRate := float64(peakIters*peak.flops) / t1.Sub(t0).Seconds()
					ratios = append(ratios, flops*float64(reps)/t2.Sub(t1).Seconds()/peakRate)
				}
				slices.Sort(ratios)
				b.ReportMetric(100*ratios[len(ratios)/2], "%peak")
			})
		}
	}
	run(b, kernelSets()[0])
	for _, ks := range kernelSets() {
		if _, ok := peaks[ks.name]; ok {
			b.Run(ks.name, func(b *testing.B) { run(b, ks) })
		}
	}
}
