package cpu

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compileConcat compiles Concat along axis (required, negative allowed)
// for any datatype, as row copies.
func compileConcat(c *opCtx) (kernel, error) {
	if !c.n.attrs.Has("axis") {
		return nil, invalidf("attribute axis is required")
	}
	axis, err := c.n.attrs.Int("axis", 0)
	if err != nil {
		return nil, err
	}
	first := c.input(0)
	if first == nil {
		return nil, invalidf("input 0 is required")
	}
	r := len(first.shape)
	if r == 0 {
		return nil, invalidf("cannot concatenate scalars")
	}
	ax, err := normAxis(axis, r)
	if err != nil {
		return nil, err
	}
	out := clone(first.shape)
	out[ax] = 0
	for i, in := range c.in {
		if in == nil {
			return nil, invalidf("input %d is empty", i)
		}
		if in.dtype != first.dtype || len(in.shape) != r {
			return nil, invalidf("input %d is %s%v, input 0 is %s%v", i, in.dtype, in.shape, first.dtype, first.shape)
		}
		for d := range r {
			if d != ax && in.shape[d] != first.shape[d] {
				return nil, invalidf("input %d has shape %v, input 0 has %v: only axis %d may differ", i, in.shape, first.shape, ax)
			}
		}
		out[ax] += in.shape[ax]
		if tensor.NumElements(out) < 0 {
			return nil, invalidf("output too large")
		}
	}
	c.setOut(0, first.dtype, out)
	outer := prod(first.shape[:ax])
	innerBytes := prod(first.shape[ax+1:]) * elemSize(first.dtype)
	chunks := make([]int, len(c.in)) // bytes per outer index of each input
	for i, in := range c.in {
		chunks[i] = int(in.shape[ax]) * innerBytes
	}
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		d := outs[0].Data
		off := 0
		for o := range outer {
			for i, t := range in {
				n := chunks[i]
				off += copy(d[off:off+n], t.Data[o*n:o*n+n])
			}
		}
		return nil
	}), nil
}

// compileGather compiles Gather for any data datatype with INT32 or INT64
// indices (negative ones count from the end) along any axis. An index out
// of range fails the call.
func compileGather(c *opCtx) (kernel, error) {
	data, idx := c.input(0), c.input(1)
	axis, err := c.n.attrs.Int("axis", 0)
	if err != nil {
		return nil, err
	}
	if err := c.wantDType(1, "indices", tensor.Int64, tensor.Int32); err != nil {
		return nil, err
	}
	r := len(data.shape)
	if r == 0 {
		return nil, invalidf("input data is a scalar")
	}
	ax, err := normAxis(axis, r)
	if err != nil {
		return nil, err
	}
	out := append(append(clone(data.shape[:ax]), idx.shape...), data.shape[ax+1:]...)
	if err := checkShape(out); err != nil {
		return nil, err
	}
	c.setOut(0, data.dtype, out)
	outer, dim := prod(data.shape[:ax]), int(data.shape[ax])
	rowBytes := prod(data.shape[ax+1:]) * elemSize(data.dtype)
	nIdx := prod(idx.shape)
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		src, dst, ix := in[0].Data, outs[0].Data, in[1]
		off := 0
		for o := range outer {
			base := o * dim * rowBytes
			for i := range nIdx {
				k := ix.Int64At(i)
				if k < -int64(dim) || k >= int64(dim) {
					return fmt.Errorf("index %d out of range [%d, %d)", k, -dim, dim)
				}
				if k < 0 {
					k += int64(dim)
				}
				s := base + int(k)*rowBytes
				off += copy(dst[off:off+rowBytes], src[s:s+rowBytes])
			}
		}
		return nil
	}), nil
}

// compileTranspose compiles Transpose (perm defaults to reversing the
// dims) for any datatype.
func compileTranspose(c *opCtx) (kernel, error) {
	x := c.input(0)
	r := len(x.shape)
	perm, ok, err := c.n.attrs.Ints("perm")
	if err != nil {
		return nil, err
	}
	if !ok {
		perm = make([]int64, r)
		for i := range perm {
			perm[i] = int64(r - 1 - i)
		}
	}
	if len(perm) != r {
		return nil, invalidf("perm %v has %d entries, input has rank %d", perm, len(perm), r)
	}
	seen := make([]bool, r)
	out := make([]int64, r)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return nil, invalidf("perm %v is not a permutation of 0..%d", perm, r-1)
		}
		seen[p] = true
		out[i] = x.shape[p]
	}
	c.setOut(0, x.dtype, out)
	inStrides := contiguousStrides(x.shape)
	st := make([]int, r) // input stride of each output dim
	for i, p := range perm {
		st[i] = inStrides[p]
	}
	dims := make([]int, r)
	for i, d := range out {
		dims[i] = int(d)
	}
	switch elemSize(x.dtype) {
	case 1:
		return stridedKernel[uint8](0, dims, st), nil
	case 2:
		return stridedKernel[uint16](0, dims, st), nil
	case 4:
		return stridedKernel[uint32](0, dims, st), nil
	case 8:
		return stridedKernel[uint64](0, dims, st), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}
