package cpu

import (
	"github.com/coalesce-ml/coalesce/tensor"
)

// compileSlice compiles Slice for any datatype: starts, ends and axes are
// attributes before opset 10; from opset 10 they are inputs (INT32 or
// INT64) together with steps, and must be known at compile time (constants
// or computed from shapes), since they decide the output shape. Bounds are
// clamped as the spec says: to [0, dim] for a positive step and to
// [-1, dim-1] for a negative one, after adding dim to negative values.
func compileSlice(c *opCtx) (kernel, error) {
	x := c.input(0)
	var starts, ends, axes, steps []int64
	var err error
	if c.opset < 10 {
		if len(c.in) > 1 {
			return nil, invalidf("Slice before opset 10 takes starts, ends and axes as attributes, not inputs")
		}
		var ok bool
		if starts, ok, err = c.n.attrs.Ints("starts"); err != nil || !ok {
			return nil, orRequired(err, "attribute starts")
		}
		if ends, ok, err = c.n.attrs.Ints("ends"); err != nil || !ok {
			return nil, orRequired(err, "attribute ends")
		}
		if axes, _, err = c.n.attrs.Ints("axes"); err != nil {
			return nil, err
		}
	} else {
		for _, a := range []string{"starts", "ends", "axes"} {
			if c.n.attrs.Has(a) {
				return nil, invalidf("Slice from opset 10 takes %s as an input, not an attribute", a)
			}
		}
		vals := make([][]int64, 4)
		for i, name := range []string{"starts", "ends", "axes", "steps"} {
			if vals[i], err = intValues(c, i+1, name); err != nil {
				return nil, err
			}
		}
		starts, ends, axes, steps = vals[0], vals[1], vals[2], vals[3]
		if starts == nil || ends == nil {
			return nil, invalidf("inputs starts and ends are required")
		}
	}
	if len(ends) != len(starts) || axes != nil && len(axes) != len(starts) || steps != nil && len(steps) != len(starts) {
		return nil, invalidf("starts %v, ends %v, axes %v and steps %v differ in length", starts, ends, axes, steps)
	}
	r := len(x.shape)
	if axes == nil {
		axes = make([]int64, len(starts))
		for i := range axes {
			axes[i] = int64(i)
		}
	}
	ax, err := normAxes(axes, r)
	if err != nil {
		return nil, err
	}
	out := clone(x.shape)
	first := make([]int, r) // first input index along each dim
	step := make([]int, r)
	for d := range step {
		step[d] = 1
	}
	for i, a := range ax {
		dim := x.shape[a]
		st := int64(1)
		if steps != nil {
			st = steps[i]
		}
		if st == 0 {
			return nil, invalidf("steps %v has a zero", steps)
		}
		// A step longer than the dim takes at most one element, as does
		// dim+1; clamping keeps the arithmetic below from overflowing.
		st = min(max(st, -dim-1), dim+1)
		b, e := sliceBound(starts[i], dim, st), sliceBound(ends[i], dim, st)
		n := int64(0)
		if st > 0 && e > b {
			n = (e-b-1)/st + 1
		} else if st < 0 && b > e {
			n = (b-e-1)/-st + 1
		}
		out[a], first[a], step[a] = n, int(b), int(st)
	}
	c.setOut(0, x.dtype, out)
	strides := contiguousStrides(x.shape)
	base, st := 0, make([]int, r)
	for d := range r {
		if out[d] > 0 {
			base += first[d] * strides[d]
		}
		st[d] = step[d] * strides[d]
	}
	dims := make([]int, r)
	for d, n := range out {
		dims[d] = int(n)
	}
	switch elemSize(x.dtype) {
	case 1:
		return stridedKernel[uint8](base, dims, st), nil
	case 2:
		return stridedKernel[uint16](base, dims, st), nil
	case 4:
		return stridedKernel[uint32](base, dims, st), nil
	case 8:
		return stridedKernel[uint64](base, dims, st), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

// sliceBound normalises a Slice start or end v along a dim of size dim:
// negative values count from the end, then the result is clamped to
// [0, dim] for a positive step and [-1, dim-1] for a negative one.
func sliceBound(v, dim, step int64) int64 {
	if v < 0 {
		v += dim // cannot overflow: dim is small and v negative
	}
	if step > 0 {
		return min(max(v, 0), dim)
	}
	return min(max(v, -1), dim-1)
}

// orRequired returns err, or an ErrInvalidModel error saying what is
// missing when err is nil.
func orRequired(err error, what string) error {
	if err != nil {
		return err
	}
	return invalidf("%s is required", what)
}

// intValues returns a constant 1-D (or scalar) INT32 or INT64 input as
// int64s, or nil when the input is absent.
func intValues(c *opCtx, i int, what string) ([]int64, error) {
	t, err := c.constInput(i, what)
	if err != nil || t == nil {
		return nil, err
	}
	if len(t.Shape) > 1 || t.DType != tensor.Int64 && t.DType != tensor.Int32 {
		return nil, invalidf("input %s is %s%v, want a 1-D INT32 or INT64 tensor", what, t.DType, t.Shape)
	}
	v := make([]int64, t.Len())
	for k := range v {
		v[k] = t.Int64At(k)
	}
	return v, nil
}

// stridedKernel copies the elements of the input at base + Σ idx[d]·st[d]
// (strides may be negative) for every index of an output of shape dims,
// in order.
func stridedKernel[T any](base int, dims, st []int) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		src, dst := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		if len(dst) == 0 {
			return nil
		}
		r := len(dims)
		if r == 0 {
			dst[0] = src[base]
			return nil
		}
		var idx [maxRank]int
		inner, is := dims[r-1], st[r-1]
		off := base
		for o := 0; o < len(dst); o += inner {
			row := dst[o : o+inner]
			if is == 1 {
				copy(row, src[off:off+inner])
			} else {
				for j := range row {
					row[j] = src[off+j*is]
				}
			}
			for k := r - 2; k >= 0; k-- {
				idx[k]++
				off += st[k]
				if idx[k] < dims[k] {
					break
				}
				off -= st[k] * dims[k]
				idx[k] = 0
			}
		}
		return nil
	})
}
