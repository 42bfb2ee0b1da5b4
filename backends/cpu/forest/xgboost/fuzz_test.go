package xgboost

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// FuzzRead checks that any input is a model or an error wrapping
// ErrInvalid or ErrUnsupported: never a panic, and never an allocation
// beyond maxAlloc of the input's size. A model read must evaluate rows.
func FuzzRead(f *testing.F) {
	const maxSeed = 8 << 10
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".want.json") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		// The fuzzer minimizes each new input in time quadratic in its
		// size: a 20 KB seed stalls it for a minute at a time. The larger
		// models add no code paths the small ones lack.
		if len(data) <= maxSeed {
			f.Add(data)
		}
	}
	for _, s := range []string{
		tiny,
		dart(tiny, "5E-1"),
		cat("[1,3]", "[0]", "[0]", "[2]"),
		cat("[1048576]", "[0]", "[0]", "[1]"),
		strings.Replace(tiny, `"default_left":[1,0,0]`, `"default_left":[true,false,false]`, 1),
		// Broken ones.
		tiny[:len(tiny)/2],
		strings.Replace(tiny, `[5E-1,-1E0,1E0]`, `[NaN,-1E0,Infinity]`, 1),
		strings.Replace(tiny, `"left_children":[1,-1,-1]`, `"left_children":[0,-1,-1]`, 1),
		strings.Replace(tiny, `"right_children":[2,-1,-1]`, `"right_children":[2,-1]`, 1),
		strings.Replace(tiny, `"num_feature":"2","num_target"`, `"num_feature":"16777216","num_target"`, 1),
		strings.Replace(tiny, `"attributes":{}`, `"attributes":`+strings.Repeat("[", 70), 1),
		`{"learner":{"gradient_booster":{"name":"gblinear"}},"version":[1,7,4]}`,
		`{}`, `[]`, `"x"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m *forest.Ensemble
		got, err := allocated(func() (err error) {
			m, err = Read(data)
			return err
		})
		if got > maxAlloc(len(data)) {
			t.Fatalf("%d bytes allocated for a %d-byte input; want at most %d", got, len(data), maxAlloc(len(data)))
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Read = %v; want an error wrapping ErrInvalid or ErrUnsupported", err)
			}
			return
		}
		nf, nt := m.Forest.NumFeatures(), m.Forest.NumTargets()
		if nf > 1<<16 {
			return // a tiny file may declare 2^24 features; rows that wide are not the point here
		}
		x := make([]float32, 3*nf)
		for i := range nf {
			x[nf+i] = float32(i) // categories 0, 1, ...
			x[2*nf+i] = float32(math.NaN())
		}
		out := make([]float32, 3*nt)
		m.Forest.Predict(x, 3, out)
		m.Transform.Apply(out[:nt], m.Scale)
	})
}
