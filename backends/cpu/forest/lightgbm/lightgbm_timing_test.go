package lightgbm

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkRead reads a binary model of 200 trees of 63 leaves on 20
// features, two of them categorical.
func BenchmarkRead(b *testing.B) {
	cats := make([]bool, 20)
	cats[3], cats[11] = true, true
	c := &genConfig{leaves: 63, fixed: true, thresholds: thresholdPool, missing: []int{missingNone, missingNone, missingNaN, missingZero},
		catFeature: cats, scale: 0.1}
	text := []byte(genModel(rand.New(rand.NewPCG(5, 6)), c, 20, 1, 1, 200, "binary sigmoid:1", false).text())
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Read(text); err != nil {
			b.Fatal(err)
		}
	}
}
