// Package approx compares floating-point results in tests. Unlike the
// common `d > tol || d < -tol` check, which is false for NaN and so lets a
// NaN (or an encoder that writes null) pass, Equal fails on NaN and ±Inf
// unless the expected value is the same non-finite value.
package approx

import "math"

// Equal reports whether got is within tol of want (absolute), or within
// tol relative to |want| when |want| > 1. A NaN matches only a NaN; +Inf
// only +Inf; -Inf only -Inf.
func Equal(got, want, tol float64) bool {
	switch {
	case math.IsNaN(want):
		return math.IsNaN(got)
	case math.IsInf(want, 0):
		return got == want
	case math.IsNaN(got), math.IsInf(got, 0):
		return false
	}
	d := math.Abs(got - want)
	return d <= tol || d <= tol*math.Abs(want)
}

// Mismatch returns the index of the first element of got that is not Equal
// to want's, len(got) when the lengths differ and got is a prefix of
// want (or the shorter one), or -1 when they all match.
func Mismatch(got, want []float64, tol float64) int {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if !Equal(got[i], want[i], tol) {
			return i
		}
	}
	if len(got) != len(want) {
		return n
	}
	return -1
}
