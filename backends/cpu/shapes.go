package cpu

import (
	"fmt"
	"slices"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// maxRank bounds tensor ranks so that kernels can keep index counters in
// fixed-size arrays.
const maxRank = onnx.MaxRank

// normAxis maps axis in [-rank, rank) to [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("%w: axis %d out of range for rank %d", ErrInvalidModel, axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// prod returns the product of dims (1 for none). Shapes reaching it have
// been checked with checkShape, so it cannot overflow.
func prod(dims []int64) int {
	p := 1
	for _, d := range dims {
		p *= int(d)
	}
	return p
}

// checkShape rejects negative dims, too many dims and element counts that
// overflow.
func checkShape(shape []int64) error {
	if len(shape) > maxRank {
		return fmt.Errorf("%w: rank %d (at most %d)", ErrUnsupported, len(shape), maxRank)
	}
	if tensor.NumElements(shape) < 0 {
		return fmt.Errorf("%w: invalid shape %v", ErrInvalidModel, shape)
	}
	return nil
}

// broadcast returns the numpy (multidirectional) broadcast of shapes a
// and b.
func broadcast(a, b []int64) ([]int64, error) {
	r := max(len(a), len(b))
	out := make([]int64, r)
	for i := range r {
		da, db := dimFromEnd(a, r-1-i), dimFromEnd(b, r-1-i)
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("%w: shapes %v and %v do not broadcast", ErrInvalidModel, a, b)
		}
	}
	return out, nil
}

// dimFromEnd returns dimension len(s)-1-k of s, or 1 beyond its rank.
func dimFromEnd(s []int64, k int) int64 {
	if k >= len(s) {
		return 1
	}
	return s[len(s)-1-k]
}

// broadcastStrides returns the element strides of a tensor of shape s
// broadcast to out (0 along broadcast dims).
func broadcastStrides(s, out []int64) []int {
	st := make([]int, len(out))
	stride := 1
	for i := len(out) - 1; i >= 0; i-- {
		d := dimFromEnd(s, len(out)-1-i)
		if d != 1 {
			st[i] = stride
		}
		stride *= int(d)
	}
	return st
}

// contiguousStrides returns the row-major element strides of shape.
func contiguousStrides(shape []int64) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= int(shape[i])
	}
	return st
}

// sameShape reports whether a and b are equal.
func sameShape(a, b []int64) bool { return slices.Equal(a, b) }

// clone copies a shape.
func clone(s []int64) []int64 { return append([]int64{}, s...) }
