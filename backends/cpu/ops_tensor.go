package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// copyBroadcast returns a kernel copying input 0, broadcast by nb (whose
// first input is input 0), into output 0, for elements of size bytes.
func copyBroadcast(nb *nbcast, size int) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		src, dst := in[0].Data, out[0].Data
		var offs, inc [1]int
		nb.walk(offs[:], inc[:], func(o, n int) {
			if inc[0] != 0 {
				copy(dst[o*size:(o+n)*size], src[offs[0]*size:(offs[0]+n)*size])
				return
			}
			v := src[offs[0]*size : (offs[0]+1)*size]
			for i := range n {
				copy(dst[(o+i)*size:(o+i+1)*size], v)
			}
		})
		return nil
	})
}

// compileExpand compiles Expand: the input broadcast with the constant
// shape (numpy rules, so the output may have more or larger dims than
// the shape).
func compileExpand(c *opCtx) (kernel, error) {
	x := c.input(0)
	shape, err := int64Values(c, 1, "shape")
	if err != nil {
		return nil, err
	}
	out, err := broadcast(x.shape, shape)
	if err != nil {
		return nil, err
	}
	if err := checkShape(out); err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, out)
	return copyBroadcast(newNBcast(out, x.shape), elemSize(x.dtype)), nil
}

// compileTile compiles Tile with constant repeats.
func compileTile(c *opCtx) (kernel, error) {
	x := c.input(0)
	reps, err := int64Values(c, 1, "repeats")
	if err != nil {
		return nil, err
	}
	if len(reps) != len(x.shape) {
		return nil, invalidf("repeats %v has %d values, input rank %d", reps, len(reps), len(x.shape))
	}
	out := clone(x.shape)
	for i, r := range reps {
		if r < 0 {
			return nil, invalidf("repeats %v has a negative value", reps)
		}
		out[i] *= r
	}
	if err := checkShape(out); err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, out)
	size, in := elemSize(x.dtype), clone(x.shape)
	return kernelFunc(func(ins, outs []*tensor.Tensor) error {
		if prod(out) > 0 {
			tile(outs[0].Data, ins[0].Data, in, out, size)
		}
		return nil
	}), nil
}

// tile writes src (shape in) repeated to shape out into dst: each block
// of the innermost dims is built once, then copied along its dim.
func tile(dst, src []byte, in, out []int64, size int) {
	if len(in) == 0 {
		copy(dst, src[:size])
		return
	}
	inner := prod(in[1:]) * size
	outInner := prod(out[1:]) * size
	for i := range int(in[0]) {
		tile(dst[i*outInner:], src[i*inner:], in[1:], out[1:], size)
	}
	block := int(in[0]) * outInner
	for k := 1; k < int(out[0]/in[0]); k++ {
		copy(dst[k*block:(k+1)*block], dst[:block])
	}
}

// compileConstantOfShape compiles ConstantOfShape: the shape input must
// be known at compile time; value (a one-element tensor, default FP32 0)
// fills the output.
func compileConstantOfShape(c *opCtx) (kernel, error) {
	shape, err := int64Values(c, 0, "input")
	if err != nil {
		return nil, err
	}
	for _, d := range shape {
		if d < 0 {
			return nil, invalidf("shape %v has a negative dim", shape)
		}
	}
	if err := checkShape(shape); err != nil {
		return nil, err
	}
	val := tensor.FromFloat32s("", []int64{1}, []float32{0})
	if a, err := c.n.attrs.Get("value", onnx.AttrTensor); err != nil {
		return nil, err
	} else if a != nil {
		if a.T == nil {
			return nil, invalidf("attribute value is empty")
		}
		if val, err = a.T.ToTensor(); err != nil {
			return nil, err
		}
		if val.Len() != 1 {
			return nil, invalidf("attribute value has %d elements, want 1", val.Len())
		}
	}
	if val.DType == tensor.Bytes || elemSize(val.DType) == 0 {
		return nil, unsupportedf("value of type %s", val.DType)
	}
	c.setOut(0, val.DType, shape)
	size := elemSize(val.DType)
	v := val.Data[:size]
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		d := out[0].Data
		for i := 0; i < len(d); i += size {
			copy(d[i:i+size], v)
		}
		return nil
	}), nil
}

// compileRange compiles Range. Its output's length depends on the
// values, so start, limit and delta must be known at compile time; the
// output is a constant.
func compileRange(c *opCtx) (kernel, error) {
	var vals [3]*tensor.Tensor
	for i, name := range []string{"start", "limit", "delta"} {
		t, err := c.constInput(i, name)
		if err != nil {
			return nil, err
		}
		if t.Len() != 1 || t.DType != c.input(0).dtype {
			return nil, invalidf("input %s is %s%v, want a scalar of start's type", name, t.DType, t.Shape)
		}
		vals[i] = t
	}
	dt := vals[0].DType
	switch dt {
	case tensor.FP32, tensor.FP64, tensor.Int16, tensor.Int32, tensor.Int64:
	default:
		return nil, unsupportedf("datatype %s", dt)
	}
	start, limit, delta := vals[0].Float64At(0), vals[1].Float64At(0), vals[2].Float64At(0)
	if delta == 0 {
		return nil, invalidf("delta is 0")
	}
	n := int64(max(math.Ceil((limit-start)/delta), 0))
	if dt == tensor.Int64 || dt == tensor.Int32 || dt == tensor.Int16 {
		s, l, d := vals[0].Int64At(0), vals[1].Int64At(0), vals[2].Int64At(0)
		n = max((l-s+d-sign64(d))/d, 0)
	}
	if n > 1<<28 {
		return nil, unsupportedf("Range of %d elements", n)
	}
	out := tensor.New("", dt, []int64{n})
	for i := range int(n) {
		switch dt {
		case tensor.FP32, tensor.FP64:
			out.SetFloat64(i, start+float64(i)*delta)
		default:
			out.SetFloat64(i, float64(vals[0].Int64At(0)+int64(i)*vals[2].Int64At(0)))
		}
	}
	c.setConst(0, out)
	return nil, nil
}

func sign64(v int64) int64 {
	if v < 0 {
		return -1
	}
	return 1
}

// compileSplit compiles Split along axis into equal parts (the number of
// outputs, or num_outputs from opset 18, the last part smaller when the
// dim does not divide) or the sizes given by the split attribute (before
// opset 13) or the constant split input.
func compileSplit(c *opCtx) (kernel, error) {
	x := c.input(0)
	axis, err := c.n.attrs.Int("axis", 0)
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(axis, len(x.shape))
	if err != nil {
		return nil, err
	}
	sizes, has, err := c.n.attrs.Ints("split")
	if err != nil {
		return nil, err
	}
	if v, err := int64Values(c, 1, "split"); err != nil {
		return nil, err
	} else if v != nil {
		if has {
			return nil, invalidf("split given both as attribute and as input")
		}
		sizes, has = v, true
	}
	nOut := len(c.n.out)
	dim := x.shape[ax]
	if !has {
		parts := int64(nOut)
		if num, err := c.n.attrs.Int("num_outputs", 0); err != nil {
			return nil, err
		} else if num != 0 {
			if num != int64(nOut) {
				return nil, invalidf("num_outputs %d, the node has %d outputs", num, nOut)
			}
		}
		each := (dim + parts - 1) / parts
		if c.opset < 18 || dim%parts == 0 {
			if dim%parts != 0 {
				return nil, invalidf("dim %d of input shape %v does not split into %d equal parts", dim, x.shape, parts)
			}
			each = dim / parts
		}
		for i := range parts {
			sizes = append(sizes, min(each, max(dim-i*each, 0)))
		}
	}
	if len(sizes) != nOut {
		return nil, invalidf("split %v has %d sizes, the node %d outputs", sizes, len(sizes), nOut)
	}
	total := int64(0)
	for _, s := range sizes {
		if s < 0 {
			return nil, invalidf("split %v has a negative size", sizes)
		}
		total += s
	}
	if total != dim {
		return nil, invalidf("split %v sums to %d, dim %d of input shape %v", sizes, total, ax, x.shape)
	}
	for i, s := range sizes {
		o := clone(x.shape)
		o[ax] = s
		c.setOut(i, x.dtype, o)
	}
	outer := prod(x.shape[:ax])
	inner := prod(x.shape[ax+1:]) * elemSize(x.dtype)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		src := in[0].Data
		off := 0
		for o := range outer {
			for i, s := range sizes {
				n := int(s) * inner
				if out[i] != nil {
					copy(out[i].Data[o*n:(o+1)*n], src[off:off+n])
				}
				off += n
			}
		}
		return nil
	}), nil
}

// compilePad compiles Pad in the modes constant, reflect, edge and wrap:
// pads and value as attributes before opset 11, as inputs after (pads
// and axes constant, the constant value possibly computed). Negative
// pads crop.
func compilePad(c *opCtx) (kernel, error) {
	x := c.input(0)
	r := len(x.shape)
	mode, err := c.n.attrs.Str("mode", "constant")
	if err != nil {
		return nil, err
	}
	switch mode {
	case "constant", "reflect", "edge":
	case "wrap":
		if c.opset < 19 {
			return nil, invalidf("mode wrap before opset 19")
		}
	default:
		return nil, unsupportedf("mode %q", mode)
	}
	var pads []int64
	value := 0.0
	if c.opset < 11 {
		p, has, err := c.n.attrs.Ints("pads")
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, invalidf("attribute pads is required")
		}
		pads = p
		v, err := c.n.attrs.Float("value", 0)
		if err != nil {
			return nil, err
		}
		value = float64(v)
	} else {
		if c.n.attrs.Has("pads") || c.n.attrs.Has("value") {
			return nil, invalidf("Pad from opset 11 takes pads and value as inputs")
		}
		if pads, err = int64Values(c, 1, "pads"); err != nil {
			return nil, err
		}
		if pads == nil {
			return nil, invalidf("input pads is required")
		}
	}
	axes := make([]int, r)
	for i := range axes {
		axes[i] = i
	}
	if a, err := int64Values(c, 3, "axes"); err != nil {
		return nil, err
	} else if a != nil {
		axes = axes[:0]
		for _, v := range a {
			ax, err := normAxis(v, r)
			if err != nil {
				return nil, err
			}
			axes = append(axes, ax)
		}
	}
	if len(pads) != 2*len(axes) {
		return nil, invalidf("pads %v has %d values, want %d", pads, len(pads), 2*len(axes))
	}
	begin, end := make([]int, r), make([]int, r)
	for i, ax := range axes {
		begin[ax], end[ax] = int(pads[i]), int(pads[i+len(axes)])
	}
	out := clone(x.shape)
	for d := range r {
		out[d] += int64(begin[d] + end[d])
		if out[d] < 0 {
			return nil, invalidf("pads %v crop dim %d of shape %v below zero", pads, d, x.shape)
		}
		if mode != "constant" && x.shape[d] == 0 && out[d] > 0 {
			return nil, invalidf("mode %s pads the empty dim %d", mode, d)
		}
	}
	c.setOut(0, x.dtype, out)
	// maps[d][o] is the input index along dim d of output index o, -1 in
	// the constant padding.
	maps := make([][]int, r)
	for d := range r {
		n := int(x.shape[d])
		maps[d] = make([]int, out[d])
		for o := range maps[d] {
			i := o - begin[d]
			switch {
			case i >= 0 && i < n:
			case mode == "constant":
				i = -1
			case mode == "edge":
				i = min(max(i, 0), n-1)
			case mode == "wrap":
				i = ((i % n) + n) % n
			default: // reflect
				if n == 1 {
					i = 0
				}
				for i < 0 || i >= n {
					if i < 0 {
						i = -i
					} else {
						i = 2*(n-1) - i
					}
				}
			}
			maps[d][o] = i
		}
	}
	size := elemSize(x.dtype)
	fill := make([]byte, size)
	setValue := func(v float64) {
		t := &tensor.Tensor{DType: x.dtype, Shape: []int64{1}, Data: fill}
		if x.dtype != tensor.Bytes {
			t.SetFloat64(0, v)
		}
	}
	setValue(value)
	hasValueInput := c.opset >= 11 && c.input(2) != nil
	inStr := contiguousStrides(x.shape)
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		v := fill
		if hasValueInput && in[2] != nil && in[2].Len() > 0 {
			v = in[2].Data[:size]
		}
		src, dst := in[0].Data, outs[0].Data
		total := prod(out)
		if total == 0 {
			return nil
		}
		if r == 0 {
			copy(dst, src[:size])
			return nil
		}
		last := int(out[r-1])
		var idx [maxRank]int
		for o := 0; o < total; o += last {
			base, inside := 0, true
			for d := range r - 1 {
				m := maps[d][idx[d]]
				if m < 0 {
					inside = false
					break
				}
				base += m * inStr[d]
			}
			row := dst[o*size : (o+last)*size]
			for j, m := range maps[r-1] {
				e := row[j*size : (j+1)*size]
				if !inside || m < 0 {
					copy(e, v)
				} else {
					copy(e, src[(base+m)*size:(base+m+1)*size])
				}
			}
			for d := r - 2; d >= 0; d-- {
				if idx[d]++; idx[d] < int(out[d]) {
					break
				}
				idx[d] = 0
			}
		}
		return nil
	}), nil
}
