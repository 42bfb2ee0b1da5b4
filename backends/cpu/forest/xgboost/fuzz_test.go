package xgboost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest/internal/forestcheck"
)

// FuzzRead checks that any input is a model or an error wrapping
// ErrInvalid or ErrUnsupported: never a panic, and never an allocation
// beyond maxAlloc of the input's size. A model read must score rows the
// same on every evaluation path (forestcheck.Paths), and its transform
// must not turn finite margins into NaN.
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
		nf := m.Forest.NumFeatures()
		if nf > 1<<12 {
			return // a tiny file may declare 2^24 features; rows that wide are not the point here
		}
		// 31 rows: 16 take the AVX-512 gathers where the CPU has them,
		// the other 15 the scalar walk, each seeing every value of
		// forestcheck.Rows; the paths must agree bit for bit.
		const rows = 31
		x := forestcheck.Rows(rows, nf)
		for i := range nf {
			x[i] = float32(i) // categories 0, 1, ...
		}
		if err := forestcheck.Paths(m.Forest, x, rows); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, rows*m.Forest.NumTargets())
		m.Forest.Predict(x, rows, out)
		if err := forestcheck.Transform(m, out); err != nil {
			t.Fatal(err)
		}
	})
}
