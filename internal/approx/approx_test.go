package approx

import (
	"math"
	"testing"
)

func TestEqual(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	f := func(got, want, tol float64, ok bool) {
		t.Helper()
		if Equal(got, want, tol) != ok {
			t.Errorf("Equal(%v, %v, %g) = %v; want %v", got, want, tol, !ok, ok)
		}
	}
	f(1, 1, 0, true)
	f(1.00001, 1, 1e-4, true)
	f(1.001, 1, 1e-4, false)
	f(1000.01, 1000, 1e-4, true) // relative for large values
	f(nan, 1, 1e-4, false)       // the bug this package exists for
	f(1, nan, 1e-4, false)
	f(nan, nan, 0, true)
	f(inf, inf, 0, true)
	f(-inf, inf, 0, false)
	f(inf, 1e300, 1e-4, false)
	f(1e300, inf, 1e-4, false)
}

func TestMismatch(t *testing.T) {
	f := func(got, want []float64, i int) {
		t.Helper()
		if m := Mismatch(got, want, 1e-6); m != i {
			t.Errorf("Mismatch(%v, %v) = %d; want %d", got, want, m, i)
		}
	}
	f([]float64{1, 2}, []float64{1, 2}, -1)
	f([]float64{1, math.NaN()}, []float64{1, 2}, 1)
	f([]float64{1}, []float64{1, 2}, 1)
	f(nil, nil, -1)
}
