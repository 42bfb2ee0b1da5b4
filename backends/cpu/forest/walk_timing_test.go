package forest

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkWalk times the bare level-wise walk of 64 rows through one
// complete depth-6 tree (of 100, in turn): ns/step is per row per level,
// for the scalar walk and the vector one (AVX-512 where the CPU has it).
func BenchmarkWalk(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	f := fullTrees(b, 100, 6, 30, r)
	x := make([]float32, 64*30)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	pos := make([]int32, 64)
	for _, tc := range []struct {
		name string
		walk func()
	}{
		{"scalar", func() { walkRowsFast(f.nodes, pos, 6, x, 30) }},
		{"vector", func() { walkRowsVec(f.nodes, pos, 6, x, 30, true) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			t := 0
			for b.Loop() {
				for i := range pos {
					pos[i] = f.roots[t]
				}
				tc.walk()
				t = (t + 1) % len(f.roots)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64*6), "ns/step")
		})
	}
}
