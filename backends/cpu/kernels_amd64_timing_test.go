//go:build amd64 && !purego

package cpu

import (
	"testing"

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
