package cpu

import (
	"slices"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// compileConstant compiles Constant: its one value attribute becomes a
// compile-time constant, so there is no kernel.
func compileConstant(c *opCtx) (kernel, error) {
	if len(c.n.attrs) != 1 {
		return nil, invalidf("Constant needs exactly one value attribute, has %d", len(c.n.attrs))
	}
	a := c.n.attrs[0]
	var t *tensor.Tensor
	var err error
	switch a.Name {
	case "value":
		if a.Type != onnx.AttrTensor || a.T == nil {
			return nil, invalidf("attribute value has type %s, want TENSOR", a.Type)
		}
		if t, err = a.T.ToTensor(); err != nil {
			return nil, err
		}
	case "value_float":
		v, err := c.n.attrs.Float(a.Name, 0)
		if err != nil {
			return nil, err
		}
		t = tensor.FromFloat32s("", []int64{}, []float32{v})
	case "value_floats":
		v, _, err := c.n.attrs.Floats(a.Name)
		if err != nil {
			return nil, err
		}
		t = tensor.FromFloat32s("", []int64{int64(len(v))}, v)
	case "value_int":
		v, err := c.n.attrs.Int(a.Name, 0)
		if err != nil {
			return nil, err
		}
		t = tensor.FromInt64s("", []int64{}, []int64{v})
	case "value_ints":
		v, _, err := c.n.attrs.Ints(a.Name)
		if err != nil {
			return nil, err
		}
		t = tensor.FromInt64s("", []int64{int64(len(v))}, v)
	case "value_string", "value_strings":
		// BYTES values are vocabulary ids (strings.go).
		var ids []int64
		shape := []int64{}
		if a.Name == "value_string" {
			s, err := c.n.attrs.Str(a.Name, "")
			if err != nil {
				return nil, err
			}
			ids = []int64{c.stringID(s)}
		} else {
			ss, _, err := c.n.attrs.Strings(a.Name)
			if err != nil {
				return nil, err
			}
			ids, shape = c.stringIDs(ss), []int64{int64(len(ss))}
		}
		t = newValue(tensor.Bytes, shape)
		copy(viewAs[int64](t.Data), ids)
	default: // sparse_value
		return nil, unsupportedf("Constant attribute %s", a.Name)
	}
	c.setConst(0, t)
	return nil, nil
}

// compileIdentity compiles Identity as a view of its input.
func compileIdentity(c *opCtx) (kernel, error) {
	x := c.input(0)
	c.setOut(0, x.dtype, clone(x.shape))
	return aliasKernel{}, nil
}

// compileDropout compiles Dropout in inference mode: the output is the
// input and the optional mask is all true. Training mode (a constant true
// training_mode input, opset 12+) is rejected.
func compileDropout(c *opCtx) (kernel, error) {
	x := c.input(0)
	if err := isTest(c); err != nil {
		return nil, err
	}
	if c.opset < 12 && len(c.in) > 1 {
		return nil, invalidf("Dropout before opset 12 takes 1 input, got %d", len(c.in))
	}
	if tm := c.input(2); tm != nil {
		if tm.konst == nil || tm.dtype != tensor.Bool || tm.konst.Len() != 1 {
			return nil, unsupportedf("training_mode must be a constant BOOL scalar")
		}
		if tm.konst.Data[0] != 0 {
			return nil, unsupportedf("Dropout in training mode")
		}
	}
	c.setOut(0, x.dtype, clone(x.shape))
	if !c.hasOut(1) {
		return aliasKernel{}, nil
	}
	if c.opset < 10 {
		return nil, unsupportedf("Dropout mask output before opset 10")
	}
	c.setOut(1, tensor.Bool, clone(x.shape))
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		copy(out[0].Data, in[0].Data)
		for i := range out[1].Data {
			out[1].Data[i] = 1
		}
		return nil
	}), nil
}

// compileShape compiles Shape; the shape is known at compile time, so the
// output is a constant (start and end, opset 15, clamp like slicing).
func compileShape(c *opCtx) (kernel, error) {
	x := c.input(0)
	r := int64(len(x.shape))
	start, err := c.n.attrs.Int("start", 0)
	if err != nil {
		return nil, err
	}
	end, err := c.n.attrs.Int("end", r)
	if err != nil {
		return nil, err
	}
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end = clamp(start), clamp(end)
	dims := []int64{}
	if start < end {
		dims = clone(x.shape[start:end])
	}
	c.setConst(0, tensor.FromInt64s("", []int64{int64(len(dims))}, dims))
	return nil, nil
}

// int64Values returns a constant 1-D (or scalar) INT64 input as a slice.
func int64Values(c *opCtx, i int, what string) ([]int64, error) {
	t, err := c.constInput(i, what)
	if err != nil || t == nil {
		return nil, err
	}
	if t.DType != tensor.Int64 || len(t.Shape) > 1 {
		return nil, invalidf("input %s is %s%v, want a 1-D INT64 tensor", what, t.DType, t.Shape)
	}
	return slices.Clone(t.Int64s()), nil
}

// compileReshape compiles Reshape as a view. The shape input must be known
// at compile time (a constant, or computed from shapes); 0 copies the
// input dim (unless allowzero=1) and one -1 is inferred.
func compileReshape(c *opCtx) (kernel, error) {
	x := c.input(0)
	shape, err := int64Values(c, 1, "shape")
	if err != nil {
		return nil, err
	}
	if shape == nil {
		return nil, invalidf("input shape is required")
	}
	allowZero, err := c.n.attrs.Bool("allowzero", false)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(shape))
	infer, known := -1, 1
	for i, d := range shape {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, invalidf("shape %v has more than one -1", shape)
			}
			infer, out[i] = i, 1
			continue
		case d == 0 && !allowZero:
			if i >= len(x.shape) {
				return nil, invalidf("shape %v copies dim %d (0) of input shape %v, which has no such dim", shape, i, x.shape)
			}
			d = x.shape[i]
		case d < 0:
			return nil, invalidf("shape %v has a negative dim", shape)
		}
		out[i] = d
		if tensor.NumElements(out[:i+1]) < 0 {
			return nil, invalidf("shape %v is too large", shape)
		}
		known *= int(d)
	}
	total := prod(x.shape)
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, invalidf("cannot reshape input shape %v to %v", x.shape, shape)
		}
		out[infer] = int64(total / known)
	}
	if prod(out) != total {
		return nil, invalidf("cannot reshape input shape %v (%d elements) to %v (%v)", x.shape, total, shape, out)
	}
	c.setOut(0, x.dtype, out)
	return aliasKernel{}, nil
}

// compileFlatten compiles Flatten (axis in [-r, r], default 1) as a view.
func compileFlatten(c *opCtx) (kernel, error) {
	x := c.input(0)
	axis, err := c.n.attrs.Int("axis", 1)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	if axis < -int64(r) || axis > int64(r) {
		return nil, invalidf("axis %d out of range for rank %d", axis, r)
	}
	if axis < 0 {
		axis += int64(r)
	}
	c.setOut(0, x.dtype, []int64{int64(prod(x.shape[:axis])), int64(prod(x.shape[axis:]))})
	return aliasKernel{}, nil
}

// axesArg returns Squeeze/Unsqueeze axes: an attribute before opset 13,
// a constant input from 13.
func axesArg(c *opCtx) ([]int64, bool, error) {
	if c.opset < 13 {
		if len(c.in) > 1 {
			return nil, false, invalidf("axes is an attribute before opset 13, not an input")
		}
		return c.n.attrs.Ints("axes")
	}
	if c.n.attrs.Has("axes") {
		return nil, false, invalidf("axes is an input from opset 13, not an attribute")
	}
	v, err := int64Values(c, 1, "axes")
	return v, v != nil, err
}

// normAxes normalises axes against rank r and rejects duplicates.
func normAxes(axes []int64, r int) ([]int, error) {
	out := make([]int, len(axes))
	for i, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out[:i], ax) {
			return nil, invalidf("axis %d repeated in %v", a, axes)
		}
		out[i] = ax
	}
	return out, nil
}

// compileSqueeze compiles Squeeze as a view.
func compileSqueeze(c *opCtx) (kernel, error) {
	x := c.input(0)
	axes, ok, err := axesArg(c)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(x.shape))
	if !ok {
		for i, d := range x.shape {
			drop[i] = d == 1
		}
	} else {
		ax, err := normAxes(axes, len(x.shape))
		if err != nil {
			return nil, err
		}
		for _, a := range ax {
			if x.shape[a] != 1 {
				return nil, invalidf("cannot squeeze axis %d of input shape %v", a, x.shape)
			}
			drop[a] = true
		}
	}
	out := []int64{}
	for i, d := range x.shape {
		if !drop[i] {
			out = append(out, d)
		}
	}
	c.setOut(0, x.dtype, out)
	return aliasKernel{}, nil
}

// compileUnsqueeze compiles Unsqueeze as a view; axes refer to the output.
func compileUnsqueeze(c *opCtx) (kernel, error) {
	x := c.input(0)
	axes, ok, err := axesArg(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, invalidf("axes is required")
	}
	r := len(x.shape) + len(axes)
	if r > maxRank {
		return nil, unsupportedf("rank %d (at most %d)", r, maxRank)
	}
	ax, err := normAxes(axes, r)
	if err != nil {
		return nil, err
	}
	out := make([]int64, r)
	k := 0
	for i := range out {
		if slices.Contains(ax, i) {
			out[i] = 1
			continue
		}
		out[i] = x.shape[k]
		k++
	}
	c.setOut(0, x.dtype, out)
	return aliasKernel{}, nil
}
