package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compileBinary compiles Add, Sub, Mul and Div with numpy multidirectional
// broadcasting (opset 7+). Integer Div truncates toward zero; division by
// zero fails the call.
func compileBinary(c *opCtx) (kernel, error) {
	a, b := c.input(0), c.input(1)
	if a == nil || b == nil {
		return nil, invalidf("inputs A and B are required")
	}
	if a.dtype != b.dtype {
		return nil, invalidf("input A is %s but input B is %s", a.dtype, b.dtype)
	}
	bShape, err := legacyBroadcast(c, a.shape, b.shape)
	if err != nil {
		return nil, err
	}
	out, err := broadcast(a.shape, bShape)
	if err != nil {
		return nil, invalidf("input A has shape %v and input B has shape %v, which do not broadcast", a.shape, b.shape)
	}
	c.setOut(0, a.dtype, out)
	bc := newBcast(a.shape, bShape, out)
	switch a.dtype {
	case tensor.FP32:
		return binaryKernel(bc, binaryFns[float32](c.n.op)), nil
	case tensor.FP64:
		return binaryKernel(bc, binaryFns[float64](c.n.op)), nil
	case tensor.Int32:
		return binaryKernel(bc, binaryFns[int32](c.n.op)), nil
	case tensor.Int64:
		return binaryKernel(bc, binaryFns[int64](c.n.op)), nil
	case tensor.Int8:
		return binaryKernel(bc, binaryFns[int8](c.n.op)), nil
	case tensor.Int16:
		return binaryKernel(bc, binaryFns[int16](c.n.op)), nil
	case tensor.Uint8:
		return binaryKernel(bc, binaryFns[uint8](c.n.op)), nil
	case tensor.Uint16:
		return binaryKernel(bc, binaryFns[uint16](c.n.op)), nil
	case tensor.Uint32:
		return binaryKernel(bc, binaryFns[uint32](c.n.op)), nil
	case tensor.Uint64:
		return binaryKernel(bc, binaryFns[uint64](c.n.op)), nil
	}
	return nil, unsupportedf("datatype %s (supported: FP32, FP64 and the integer types)", a.dtype)
}

func binaryKernel[T number](bc *bcast, fns binFns[T]) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		fns.run(bc, viewAs[T](in[0].Data), viewAs[T](in[1].Data), viewAs[T](out[0].Data))
		return nil
	})
}

// binaryFns returns the inner loops of op. The loops are written out per
// operation so that each compiles to a tight, inlined loop.
func binaryFns[T number](op string) binFns[T] {
	switch op {
	case "Add":
		return binFns[T]{
			vv: func(d, a, b []T) {
				for i := range d {
					d[i] = a[i] + b[i]
				}
			},
			vs: func(d, a, b []T) {
				s := b[0]
				for i := range d {
					d[i] = a[i] + s
				}
			},
			sv: func(d, a, b []T) {
				s := a[0]
				for i := range d {
					d[i] = s + b[i]
				}
			},
		}
	case "Sub":
		return binFns[T]{
			vv: func(d, a, b []T) {
				for i := range d {
					d[i] = a[i] - b[i]
				}
			},
			vs: func(d, a, b []T) {
				s := b[0]
				for i := range d {
					d[i] = a[i] - s
				}
			},
			sv: func(d, a, b []T) {
				s := a[0]
				for i := range d {
					d[i] = s - b[i]
				}
			},
		}
	case "Mul":
		return binFns[T]{
			vv: func(d, a, b []T) {
				for i := range d {
					d[i] = a[i] * b[i]
				}
			},
			vs: func(d, a, b []T) {
				s := b[0]
				for i := range d {
					d[i] = a[i] * s
				}
			},
			sv: func(d, a, b []T) {
				s := a[0]
				for i := range d {
					d[i] = s * b[i]
				}
			},
		}
	case "Div":
		return binFns[T]{
			vv: func(d, a, b []T) {
				for i := range d {
					d[i] = a[i] / b[i]
				}
			},
			// Not a multiplication by 1/s: that would round differently
			// from the reference implementations.
			vs: func(d, a, b []T) {
				s := b[0]
				for i := range d {
					d[i] = a[i] / s
				}
			},
			sv: func(d, a, b []T) {
				s := a[0]
				for i := range d {
					d[i] = s / b[i]
				}
			},
		}
	}
	panic("BUG: binaryFns(" + op + ")")
}

// compileUnary compiles the elementwise activations and math functions.
// Every one runs on FP32 and FP64 (transcendental ones, Erf included,
// computed in float64); Relu, Neg and Abs also on INT32 and
// INT64.
func compileUnary(c *opCtx) (kernel, error) {
	x := c.input(0)
	alpha, err := c.n.attrs.Float("alpha", 0.01) // LeakyRelu only
	if err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, clone(x.shape))
	switch x.dtype {
	case tensor.FP32:
		return unaryKernel(unaryFloat[float32](c.n.op, alpha)), nil
	case tensor.FP64:
		return unaryKernel(unaryFloat[float64](c.n.op, alpha)), nil
	case tensor.Int32:
		if f := unaryInt[int32](c.n.op); f != nil {
			return unaryKernel(f), nil
		}
	case tensor.Int64:
		if f := unaryInt[int64](c.n.op); f != nil {
			return unaryKernel(f), nil
		}
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

func unaryKernel[T number](f func(d, s []T)) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		f(viewAs[T](out[0].Data), viewAs[T](in[0].Data))
		return nil
	})
}

// unaryFloat returns the loop of a floating-point unary op. Transcendental
// functions are evaluated in float64 and rounded once.
func unaryFloat[T float](op string, alpha float32) func(d, s []T) {
	switch op {
	case "Relu":
		return func(d, s []T) {
			for i, v := range s {
				d[i] = max(v, 0)
			}
		}
	case "LeakyRelu":
		a := T(alpha)
		return func(d, s []T) {
			for i, v := range s {
				if v < 0 {
					v *= a
				}
				d[i] = v
			}
		}
	case "Neg":
		return func(d, s []T) {
			for i, v := range s {
				d[i] = -v
			}
		}
	case "Abs":
		return func(d, s []T) {
			for i, v := range s {
				d[i] = T(math.Abs(float64(v)))
			}
		}
	}
	var f func(float64) float64
	switch op {
	case "Sigmoid":
		f = sigmoid64
	case "Tanh":
		f = tanh64
	case "Exp":
		f = exp64
	case "Log":
		f = math.Log
	case "Sqrt":
		f = math.Sqrt
	case "Erf":
		f = math.Erf // float64 to within an ulp, so the FP32 result is correctly rounded or next to it
	default:
		panic("BUG: unaryFloat(" + op + ")")
	}
	return func(d, s []T) {
		for i, v := range s {
			d[i] = T(f(float64(v)))
		}
	}
}

// unaryInt returns the loop of an integer unary op, or nil when op is not
// defined on integers.
func unaryInt[T ~int32 | ~int64](op string) func(d, s []T) {
	switch op {
	case "Relu":
		return func(d, s []T) {
			for i, v := range s {
				d[i] = max(v, 0)
			}
		}
	case "Neg":
		return func(d, s []T) {
			for i, v := range s {
				d[i] = -v
			}
		}
	case "Abs":
		return func(d, s []T) {
			for i, v := range s {
				if v < 0 {
					v = -v
				}
				d[i] = v
			}
		}
	}
	return nil
}

// compileClip compiles Clip: bounds are attributes before opset 11 and
// optional scalar inputs from opset 11 (read at run time when not
// constant). When min > max every value becomes max, as the spec says.
func compileClip(c *opCtx) (kernel, error) {
	x := c.input(0)
	lo, hi := math.Inf(-1), math.Inf(1)
	if c.opset < 11 {
		if len(c.in) > 1 {
			return nil, invalidf("Clip before opset 11 takes bounds as attributes, not inputs")
		}
		l, err := c.n.attrs.Float("min", -math.MaxFloat32)
		if err != nil {
			return nil, err
		}
		h, err := c.n.attrs.Float("max", math.MaxFloat32)
		if err != nil {
			return nil, err
		}
		lo, hi = float64(l), float64(h)
	} else if c.n.attrs.Has("min") || c.n.attrs.Has("max") {
		return nil, invalidf("Clip from opset 11 takes bounds as inputs, not attributes")
	}
	for i := 1; i < 3; i++ {
		if b := c.input(i); b != nil {
			if b.dtype != x.dtype || prod(b.shape) != 1 {
				return nil, invalidf("input %d must be a %s scalar, got %s%v", i, x.dtype, b.dtype, b.shape)
			}
		}
	}
	c.setOut(0, x.dtype, clone(x.shape))
	bound := func(in []*tensor.Tensor, i int, def float64) float64 {
		if i < len(in) && in[i] != nil {
			return in[i].Float64At(0)
		}
		return def
	}
	switch x.dtype {
	case tensor.FP32:
		return clipKernel[float32](lo, hi, bound), nil
	case tensor.FP64:
		return clipKernel[float64](lo, hi, bound), nil
	case tensor.Int32:
		return clipKernel[int32](lo, hi, bound), nil
	case tensor.Int64:
		return clipKernel[int64](lo, hi, bound), nil
	case tensor.Int8:
		return clipKernel[int8](lo, hi, bound), nil
	case tensor.Int16:
		return clipKernel[int16](lo, hi, bound), nil
	case tensor.Uint8:
		return clipKernel[uint8](lo, hi, bound), nil
	case tensor.Uint16:
		return clipKernel[uint16](lo, hi, bound), nil
	case tensor.Uint32:
		return clipKernel[uint32](lo, hi, bound), nil
	case tensor.Uint64:
		return clipKernel[uint64](lo, hi, bound), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

func clipKernel[T number](lo, hi float64, bound func([]*tensor.Tensor, int, float64) float64) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		l, h := bound(in, 1, lo), bound(in, 2, hi)
		s, d := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		for i, v := range s {
			f := float64(v)
			if f < l {
				v = T(l)
			}
			if f > h || l > h {
				v = T(h)
			}
			d[i] = v
		}
		return nil
	})
}

// legacyBroadcast returns the shape B broadcasts as. From opset 7 that
// is b (numpy rules) and the attributes broadcast and axis are invalid.
// Before, B must equal A's shape unless broadcast=1, and then aligns with
// A's dims from axis (default: A's trailing dims), so B gets trailing
// 1s.
func legacyBroadcast(c *opCtx, a, b []int64) ([]int64, error) {
	bc, err := c.n.attrs.Bool("broadcast", false)
	if err != nil {
		return nil, err
	}
	axis, err := c.n.attrs.Int("axis", int64(len(a)-len(b)))
	if err != nil {
		return nil, err
	}
	if c.opset >= 7 {
		if c.n.attrs.Has("broadcast") || c.n.attrs.Has("axis") {
			return nil, invalidf("attributes broadcast and axis exist before opset 7 only")
		}
		return b, nil
	}
	if !bc {
		if !sameShape(a, b) {
			return nil, invalidf("input A has shape %v and B %v without broadcast=1 (opset %d)", a, b, c.opset)
		}
		return b, nil
	}
	if axis < 0 {
		axis += int64(len(a))
	}
	pad := int64(len(a)) - axis - int64(len(b))
	if axis < 0 || pad < 0 {
		return nil, invalidf("input B of shape %v does not fit input A's shape %v from axis %d", b, a, axis)
	}
	out := clone(b)
	for range pad {
		out = append(out, 1)
	}
	return out, nil
}
