package lightgbm

import (
	"errors"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest/internal/forestcheck"
)

// FuzzRead checks that no text makes Read panic or return an error
// without a sentinel, and that a model it accepts is consistent with its
// header, scores rows the same on every evaluation path
// (forestcheck.Paths), and has a transform that does not turn finite
// margins into NaN.
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
		if nf > 1<<12 {
			return // wide rows add nothing but time
		}
		// 31 rows: 16 take the AVX-512 gathers where the CPU has them,
		// the other 15 the scalar walk, each seeing every value of
		// forestcheck.Rows; the paths must agree bit for bit.
		const rows = 31
		x := forestcheck.Rows(rows, nf)
		if err := forestcheck.Paths(fo, x, rows); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, rows*nt)
		fo.Predict(x, rows, out)
		if err := forestcheck.Transform(m, out); err != nil {
			t.Fatal(err)
		}
	})
}
