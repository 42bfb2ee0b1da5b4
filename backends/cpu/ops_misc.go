package cpu

import (
	"math"
	"slices"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compileTopK compiles TopK: the k largest (or smallest) elements along
// axis, with their INT64 indices. K decides the output shape, so it must
// be known at compile time. The values are sorted (sorted=0 returns them
// sorted too, which the spec allows); equal values keep the lower index
// first, and NaN counts as larger than every number, as in onnxruntime.
func compileTopK(c *opCtx) (kernel, error) {
	x := c.input(0)
	axis, err := c.n.attrs.Int("axis", -1)
	if err != nil {
		return nil, err
	}
	largest, err := c.n.attrs.Bool("largest", true)
	if err != nil {
		return nil, err
	}
	if _, err := c.n.attrs.Bool("sorted", true); err != nil {
		return nil, err
	}
	var k int64
	if c.opset < 10 {
		if k, err = c.n.attrs.Int("k", -1); err != nil {
			return nil, err
		}
		if len(c.in) > 1 {
			return nil, invalidf("TopK before opset 10 takes k as an attribute")
		}
	} else {
		if c.n.attrs.Has("k") {
			return nil, invalidf("TopK from opset 10 takes K as an input")
		}
		ks, err := int64Values(c, 1, "K")
		if err != nil {
			return nil, err
		}
		if len(ks) != 1 {
			return nil, invalidf("input K has %d values, want 1", len(ks))
		}
		k = ks[0]
	}
	ax, err := normAxis(axis, len(x.shape))
	if err != nil {
		return nil, err
	}
	n := int(x.shape[ax])
	if k < 0 || k > int64(n) {
		return nil, invalidf("K = %d for an axis of %d elements", k, n)
	}
	out := clone(x.shape)
	out[ax] = k
	c.setOut(0, x.dtype, out)
	c.setOut(1, tensor.Int64, clone(out))
	outer, inner := prod(x.shape[:ax]), prod(x.shape[ax+1:])
	switch x.dtype {
	case tensor.FP32:
		return topKKernel[float32](outer, n, inner, int(k), largest), nil
	case tensor.FP64:
		return topKKernel[float64](outer, n, inner, int(k), largest), nil
	case tensor.Int32:
		return topKKernel[int32](outer, n, inner, int(k), largest), nil
	case tensor.Int64:
		return topKKernel[int64](outer, n, inner, int(k), largest), nil
	case tensor.Uint8:
		return topKKernel[uint8](outer, n, inner, int(k), largest), nil
	case tensor.Int8:
		return topKKernel[int8](outer, n, inner, int(k), largest), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

func topKKernel[T number](outer, n, inner, k int, largest bool) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		var yi []int64
		if len(out) > 1 && out[1] != nil {
			yi = viewAs[int64](out[1].Data)
		}
		idx := make([]int, n)
		before := func(a, b int, va, vb T) bool { // a sorts before b
			if va != vb {
				if va != va {
					return largest
				}
				if vb != vb {
					return !largest
				}
				return (va > vb) == largest
			}
			return a < b
		}
		for o := range outer {
			for i := range inner {
				base := o*n*inner + i
				for j := range idx {
					idx[j] = j
				}
				slices.SortStableFunc(idx, func(a, b int) int {
					va, vb := x[base+a*inner], x[base+b*inner]
					switch {
					case before(a, b, va, vb):
						return -1
					case before(b, a, vb, va):
						return 1
					}
					return 0
				})
				for j := range k {
					p := (o*k+j)*inner + i
					y[p] = x[base+idx[j]*inner]
					if yi != nil {
						yi[p] = int64(idx[j])
					}
				}
			}
		}
		return nil
	})
}

// compileCumSum compiles CumSum along the axis given by input 1 (a
// scalar, known at compile time), with exclusive and reverse.
func compileCumSum(c *opCtx) (kernel, error) {
	x := c.input(0)
	a, err := c.constInput(1, "axis")
	if err != nil {
		return nil, err
	}
	if a.Len() != 1 || (a.DType != tensor.Int64 && a.DType != tensor.Int32) {
		return nil, invalidf("input axis is %s%v, want an integer scalar", a.DType, a.Shape)
	}
	ax, err := normAxis(a.Int64At(0), len(x.shape))
	if err != nil {
		return nil, err
	}
	excl, err := c.n.attrs.Bool("exclusive", false)
	if err != nil {
		return nil, err
	}
	rev, err := c.n.attrs.Bool("reverse", false)
	if err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, clone(x.shape))
	outer, n, inner := prod(x.shape[:ax]), int(x.shape[ax]), prod(x.shape[ax+1:])
	switch x.dtype {
	case tensor.FP32:
		return cumSumKernel[float32](outer, n, inner, excl, rev), nil
	case tensor.FP64:
		return cumSumKernel[float64](outer, n, inner, excl, rev), nil
	case tensor.Int32:
		return cumSumKernel[int32](outer, n, inner, excl, rev), nil
	case tensor.Int64:
		return cumSumKernel[int64](outer, n, inner, excl, rev), nil
	case tensor.Uint32:
		return cumSumKernel[uint32](outer, n, inner, excl, rev), nil
	case tensor.Uint64:
		return cumSumKernel[uint64](outer, n, inner, excl, rev), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

func cumSumKernel[T number](outer, n, inner int, excl, rev bool) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		for o := range outer {
			for i := range inner {
				var acc T
				for s := range n {
					j := s
					if rev {
						j = n - 1 - s
					}
					p := (o*n+j)*inner + i
					if excl {
						y[p] = acc
						acc += x[p]
					} else {
						acc += x[p]
						y[p] = acc
					}
				}
			}
		}
		return nil
	})
}

// compileTrilu compiles Trilu: the upper (j − i ≥ k) or lower (j − i ≤ k)
// triangle of the last two dims kept, the rest zeroed; k (input 1,
// default 0) may be computed at run time.
func compileTrilu(c *opCtx) (kernel, error) {
	x := c.input(0)
	upper, err := c.n.attrs.Bool("upper", true)
	if err != nil {
		return nil, err
	}
	if err := c.wantDType(1, "k", tensor.Int64); err != nil {
		return nil, err
	}
	if kk := c.input(1); kk != nil && prod(kk.shape) != 1 {
		return nil, invalidf("input k has shape %v, want a scalar", kk.shape)
	}
	r := len(x.shape)
	if r < 2 {
		return nil, invalidf("input has shape %v, want rank >= 2", x.shape)
	}
	c.setOut(0, x.dtype, clone(x.shape))
	rows, cols := int(x.shape[r-2]), int(x.shape[r-1])
	mats, size := prod(x.shape[:r-2]), elemSize(x.dtype)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		k := int64(0)
		if len(in) > 1 && in[1] != nil {
			k = in[1].Int64At(0)
		}
		k = min(max(k, -math.MaxInt32), math.MaxInt32)
		src, dst := in[0].Data, out[0].Data
		for m := range mats {
			for i := range rows {
				row := (m*rows + i) * cols * size
				for j := range cols {
					keep := int64(j-i) >= k
					if !upper {
						keep = int64(j-i) <= k
					}
					e := dst[row+j*size : row+(j+1)*size]
					if keep {
						copy(e, src[row+j*size:row+(j+1)*size])
					} else {
						clear(e)
					}
				}
			}
		}
		return nil
	}), nil
}
