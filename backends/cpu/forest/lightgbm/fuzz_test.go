package lightgbm

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// FuzzRead checks that no text makes Read panic or return an error
// without a sentinel, and that a model it accepts predicts without
// panicking and is consistent with its header.
func FuzzRead(f *testing.F) {
	f.Add([]byte(baseModel))
	f.Add([]byte(strings.ReplaceAll(baseModel, "\n", "\r\n")))
	f.Add([]byte(baseModel[:len(baseModel)/2]))
	for _, c := range randomCases() {
		if text := c.m.text(); len(text) < 64<<10 {
			f.Add([]byte(text))
		}
	}
	for _, dt := range []int{0, 2, 4, 6, 8, 10} {
		f.Add([]byte(oneSplit(0.5, dt).text()))
	}
	f.Add([]byte(oneSplit(0, 9, 0b1011, 0, 1<<5).text()))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %q wraps no sentinel", err)
			}
			return
		}
		fo := m.Forest
		nf, nt := fo.NumFeatures(), fo.NumTargets()
		if len(m.FeatureNames) != nf || nt < 1 || fo.NumTrees()%nt != 0 {
			t.Fatalf("%d names, %d features, %d targets, %d trees", len(m.FeatureNames), nf, nt, fo.NumTrees())
		}
		specials := []float64{math.NaN(), 0, 1e-36, -0.5, 1, 33, math.Inf(1)}
		const rows = 5
		x := make([]float32, rows*nf)
		x64 := make([]float64, rows*nf)
		for i := range x {
			x64[i] = specials[i%len(specials)]
			x[i] = float32(x64[i])
		}
		out := make([]float32, rows*nt)
		fo.Predict(x, rows, out)
		fo.Predict64(x64, rows, out)
		m.Transform.Apply(out[:nt], m.Scale)
	})
}
