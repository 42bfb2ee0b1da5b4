// Package forestcheck cross-checks the evaluation paths of a
// forest.Forest and the transform of a forest.Ensemble, for the fuzz targets of the tree readers (forest/xgboost,
// forest/lightgbm): whatever model a reader accepts, every path must give
// the same scores. It is imported only by tests.
package forestcheck

import (
	"fmt"
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// Paths scores rows rows of x (rows × f.NumFeatures() float32 values) three
// ways and returns an error naming the first score on which two differ:
//
//   - Predict on all rows at once: level-wise walks of every tree over a
//     block of rows, with AVX-512 gathers when the CPU has them and the
//     block holds 16 rows or more;
//   - Predict one row at a time: each row walks the trees on its own (the
//     path of blocks of fewer than 4 rows);
//   - Predict64 on the same values as float64: a plain per-row walk
//     comparing in float64 against the thresholds as read.
//
// Thresholds are rewritten exactly for float32 inputs and every path adds
// the trees' leaves in the same order, so the scores must agree bit for
// bit (NaN matching NaN).
//
// Paths checks x as given and again with its NaNs replaced by zeros: a
// block of rows without NaN takes faster walks.
func Paths(f *forest.Forest, x []float32, rows int) error {
	if err := paths(f, x, rows); err != nil {
		return err
	}
	noNaN := make([]float32, len(x))
	for i, v := range x {
		if v == v {
			noNaN[i] = v
		}
	}
	if err := paths(f, noNaN, rows); err != nil {
		return fmt.Errorf("without NaN: %w", err)
	}
	return nil
}

func paths(f *forest.Forest, x []float32, rows int) error {
	nf, nt := f.NumFeatures(), f.NumTargets()
	batch := make([]float32, rows*nt)
	f.Predict(x, rows, batch)
	one := make([]float32, rows*nt)
	for r := range rows {
		f.Predict(x[r*nf:(r+1)*nf], 1, one[r*nt:(r+1)*nt])
	}
	x64 := make([]float64, len(x))
	for i, v := range x {
		x64[i] = float64(v)
	}
	ref := make([]float32, rows*nt)
	f.Predict64(x64, rows, ref)
	for i := range ref {
		if !same(batch[i], ref[i]) || !same(one[i], ref[i]) {
			r, k := i/nt, i%nt
			return fmt.Errorf("row %d target %d: Predict %v (batch of %d), %v (one row), Predict64 %v; row %v",
				r, k, batch[i], rows, one[i], ref[i], x[r*nf:(r+1)*nf])
		}
	}
	return nil
}

// Transform applies m's transform to each row of finite margins in
// scores (rows × NumTargets, as Predict writes them, left unchanged) and
// returns an error naming the first row whose result has a NaN: a
// transform of finite margins never has one.
func Transform(m *forest.Ensemble, scores []float32) error {
	nt := m.Forest.NumTargets()
	row := make([]float32, nt)
rows:
	for r := 0; r < len(scores)/nt; r++ {
		copy(row, scores[r*nt:(r+1)*nt])
		for _, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				continue rows
			}
		}
		m.Transform.Apply(row, m.Scale)
		for _, v := range row {
			if v != v {
				return fmt.Errorf("row %d: %s(%v) = %v", r, m.Transform, scores[r*nt:(r+1)*nt], row)
			}
		}
	}
	return nil
}

// Rows returns rows rows of nf features mixing what trees split on:
// NaN (missing), zeros, small and large magnitudes, infinities, halves
// and small integers (categories). Any 15 consecutive rows give every
// feature each of these values.
func Rows(rows, nf int) []float32 {
	special := []float32{float32(math.NaN()), 0, 0.5, -0.5, 1, 2, 3, 1e-36, -1e30, 33,
		float32(math.Inf(1)), float32(math.Inf(-1)), -1, 1.5, 7}
	x := make([]float32, rows*nf)
	for r := range rows {
		for i := range nf {
			x[r*nf+i] = special[(r+4*i)%len(special)]
		}
	}
	return x
}

// same reports whether a and b are the same float32, any NaN matching any
// NaN.
func same(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
}
