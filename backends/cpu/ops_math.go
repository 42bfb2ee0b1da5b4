package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// nbcast walks an output with any number of numpy-broadcast inputs:
// per input, its element strides along each output dim (0 where
// broadcast).
type nbcast struct {
	out     []int64
	strides [][]int
}

func newNBcast(out []int64, ins ...[]int64) *nbcast {
	nb := &nbcast{out: out}
	for _, s := range ins {
		nb.strides = append(nb.strides, broadcastStrides(s, out))
	}
	return nb
}

// walk calls f for each run along the output's last dim: its output
// offset o, length n, and each input's offset and stride along the run.
// offs and inc are reused between calls.
func (nb *nbcast) walk(offs, inc []int, f func(o, n int)) {
	r := len(nb.out)
	total := prod(nb.out)
	if total == 0 {
		return
	}
	clear(offs)
	if r == 0 {
		clear(inc)
		f(0, 1)
		return
	}
	n := int(nb.out[r-1])
	for i, st := range nb.strides {
		inc[i] = st[r-1]
	}
	var idx [maxRank]int
	for o := 0; o < total; o += n {
		f(o, n)
		for d := r - 2; d >= 0; d-- {
			idx[d]++
			for i, st := range nb.strides {
				offs[i] += st[d]
			}
			if idx[d] < int(nb.out[d]) {
				break
			}
			for i, st := range nb.strides {
				offs[i] -= st[d] * int(nb.out[d])
			}
			idx[d] = 0
		}
	}
}

// compileMoreUnary compiles the element-wise functions of one FP32 or
// FP64 input beyond compileUnary's: HardSigmoid, HardSwish, Elu, Selu,
// Celu, ThresholdedRelu, Softplus, Softsign, Reciprocal, Floor, Ceil,
// Round (half to even), Sign (also on integers), Gelu (approximate none
// or tanh). Values are computed in float64 and rounded once.
func compileMoreUnary(c *opCtx) (kernel, error) {
	x := c.input(0)
	as := c.n.attrs
	f64 := func(name string, def float32) float64 {
		v, _ := as.Float(name, def)
		return float64(v)
	}
	for _, a := range as {
		if a.Type != onnx.AttrFloat && a.Name != "approximate" {
			return nil, invalidf("attribute %s has type %s, want FLOAT", a.Name, a.Type)
		}
	}
	var f func(float64) float64
	switch c.n.op {
	case "HardSigmoid":
		al, be := f64("alpha", 0.2), f64("beta", 0.5)
		f = func(v float64) float64 { return max(0, min(1, al*v+be)) }
	case "HardSwish":
		f = func(v float64) float64 { return v * max(0, min(1, v/6+0.5)) }
	case "Elu":
		al := f64("alpha", 1)
		f = func(v float64) float64 {
			if v < 0 {
				return al * (math.Exp(v) - 1)
			}
			return v
		}
	case "Celu":
		al := f64("alpha", 1)
		f = func(v float64) float64 { return max(0, v) + min(0, al*(math.Exp(v/al)-1)) }
	case "Selu":
		al, ga := f64("alpha", 1.67326319217681884765625), f64("gamma", 1.05070102214813232421875)
		f = func(v float64) float64 {
			if v <= 0 {
				return ga * (al*math.Exp(v) - al)
			}
			return ga * v
		}
	case "ThresholdedRelu":
		al := f64("alpha", 1)
		f = func(v float64) float64 {
			if v > al {
				return v
			}
			return 0
		}
	case "Softplus":
		f = func(v float64) float64 {
			if v > 30 {
				return v
			}
			return math.Log1p(math.Exp(v))
		}
	case "Softsign":
		f = func(v float64) float64 { return v / (1 + math.Abs(v)) }
	case "Reciprocal":
		f = func(v float64) float64 { return 1 / v }
	case "Floor":
		f = math.Floor
	case "Ceil":
		f = math.Ceil
	case "Round":
		f = math.RoundToEven
	case "Sign":
		f = func(v float64) float64 {
			switch {
			case v > 0:
				return 1
			case v < 0:
				return -1
			}
			return v // 0 or NaN
		}
	case "Gelu":
		approx, err := as.Str("approximate", "none")
		if err != nil {
			return nil, err
		}
		switch approx {
		case "none":
			f = gelu
		case "tanh":
			f = func(v float64) float64 {
				return 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
			}
		default:
			return nil, unsupportedf("approximate %q (supported: none, tanh)", approx)
		}
	default:
		panic("BUG: compileMoreUnary(" + c.n.op + ")")
	}
	c.setOut(0, x.dtype, clone(x.shape))
	switch x.dtype {
	case tensor.FP32:
		if c.n.op == "Gelu" {
			ks := c.ks
			return unaryKernel(func(d, s []float32) {
				n := ks.GeluPrefix(d, s) // the vector part, where the set has one
				geluRow32(d[n:], s[n:])
			}), nil
		}
		return unaryKernel(mapFloat[float32](f)), nil
	case tensor.FP64:
		return unaryKernel(mapFloat[float64](f)), nil
	}
	if c.n.op == "Sign" {
		switch x.dtype {
		case tensor.Int32:
			return unaryKernel(mapFloat[int32](f)), nil
		case tensor.Int64:
			return unaryKernel(mapFloat[int64](f)), nil
		case tensor.Int8:
			return unaryKernel(mapFloat[int8](f)), nil
		case tensor.Int16:
			return unaryKernel(mapFloat[int16](f)), nil
		case tensor.Uint8:
			return unaryKernel(mapFloat[uint8](f)), nil
		case tensor.Uint16:
			return unaryKernel(mapFloat[uint16](f)), nil
		case tensor.Uint32:
			return unaryKernel(mapFloat[uint32](f)), nil
		case tensor.Uint64:
			return unaryKernel(mapFloat[uint64](f)), nil
		}
	}
	return nil, unsupportedf("datatype %s (supported: FP32, FP64)", x.dtype)
}

func mapFloat[T number](f func(float64) float64) func(d, s []T) {
	return func(d, s []T) {
		for i, v := range s {
			d[i] = T(f(float64(v)))
		}
	}
}

// gelu is x·Φ(x) = x/2·(1 + erf(x/√2)).
func gelu(v float64) float64 { return 0.5 * v * (1 + math.Erf(v*(1/math.Sqrt2))) }

// geluRow32 applies GELU to FP32 values: gelu64 written out without
// calls or branches (the exponential inlined as expSmall, polynomials in
// Estrin's scheme; |x| clamped to 10, where Φ is 1 or 0 to within
// 1e-23), in three passes over blocks of 256 values (the erfc argument,
// the exponential, the product) so that each loop body is short and the
// processor overlaps many values' dependency chains: about 9 ns per
// value on the build machine, against 25 in one pass and 95 for gelu64
// through function values.
func geluRow32(d, s []float32) {
	d = d[:len(s)]
	var u, t [256]float64
	for len(s) > 0 {
		n := min(len(s), len(u))
		for i, v := range s[:n] {
			z := min(math.Abs(float64(v)), 10) * (1 / math.Sqrt2) // NaN stays NaN
			ti := 1 / (1 + 0.5*z)
			t2 := ti * ti
			t4 := t2 * t2
			p01 := -1.26551223 + 1.00002368*ti
			p23 := 0.37409196 + 0.09678418*ti
			p45 := -0.18628806 + 0.27886807*ti
			p67 := -1.13520398 + 1.48851587*ti
			p89 := -0.82215223 + 0.17087277*ti
			u[i] = -z*z + ((p01 + p23*t2) + t4*((p45+p67*t2)+t4*p89))
			t[i] = ti
		}
		for i, ui := range u[:n] {
			u[i] = expSmall(ui)
		}
		for i, v := range s[:n] {
			x := float64(v)
			// Φ(x) is 1 − erfc/2 for x ≥ 0 and erfc/2 below, selected with
			// the sign bit (activations' signs are random: a branch would
			// mispredict half the time).
			h := 0.5 * t[i] * u[i]
			neg := float64(math.Float64bits(x) >> 63)
			y := x * (h*neg + (1-h)*(1-neg))
			if x < -10 {
				// GELU(x) is within 1e-22 of 0 there, but x·h with the
				// argument clamped at 10 is not (−7.6e6 at −1e30), and
				// GELU(−Inf) would be −Inf·h.
				y = 0
			}
			d[i] = float32(y)
		}
		s, d = s[n:], d[n:]
	}
}

// compileCompare compiles Equal, Less, Greater, LessOrEqual and
// GreaterOrEqual (BOOL output, broadcasting) on the numeric types and
// BOOL (Equal).
func compileCompare(c *opCtx) (kernel, error) {
	a, b := c.input(0), c.input(1)
	if a.dtype != b.dtype {
		return nil, invalidf("input A is %s but input B is %s", a.dtype, b.dtype)
	}
	out, err := broadcast(a.shape, b.shape)
	if err != nil {
		return nil, err
	}
	c.setOut(0, tensor.Bool, out)
	nb := newNBcast(out, a.shape, b.shape)
	op := c.n.op
	switch a.dtype {
	case tensor.FP32:
		return cmpKernel[float32](nb, op), nil
	case tensor.FP64:
		return cmpKernel[float64](nb, op), nil
	case tensor.Int32:
		return cmpKernel[int32](nb, op), nil
	case tensor.Int64:
		return cmpKernel[int64](nb, op), nil
	case tensor.Int8:
		return cmpKernel[int8](nb, op), nil
	case tensor.Int16:
		return cmpKernel[int16](nb, op), nil
	case tensor.Uint8, tensor.Bool:
		return cmpKernel[uint8](nb, op), nil
	case tensor.Uint16:
		return cmpKernel[uint16](nb, op), nil
	case tensor.Uint32:
		return cmpKernel[uint32](nb, op), nil
	case tensor.Uint64:
		return cmpKernel[uint64](nb, op), nil
	}
	return nil, unsupportedf("datatype %s", a.dtype)
}

func cmpKernel[T number](nb *nbcast, op string) kernel {
	var f func(x, y T) bool
	switch op {
	case "Equal":
		f = func(x, y T) bool { return x == y }
	case "Less":
		f = func(x, y T) bool { return x < y }
	case "Greater":
		f = func(x, y T) bool { return x > y }
	case "LessOrEqual":
		f = func(x, y T) bool { return x <= y }
	case "GreaterOrEqual":
		f = func(x, y T) bool { return x >= y }
	}
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		a, b, y := viewAs[T](in[0].Data), viewAs[T](in[1].Data), out[0].Data
		var offs, inc [2]int
		nb.walk(offs[:], inc[:], func(o, n int) {
			ia, ib := offs[0], offs[1]
			for i := range n {
				y[o+i] = b2u(f(a[ia], b[ib]))
				ia += inc[0]
				ib += inc[1]
			}
		})
		return nil
	})
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// compileLogical compiles And, Or, Xor (broadcasting) and Not on BOOL.
func compileLogical(c *opCtx) (kernel, error) {
	for i := range c.in {
		if err := c.wantDType(i, "input", tensor.Bool); err != nil {
			return nil, err
		}
	}
	a := c.input(0)
	if c.n.op == "Not" {
		c.setOut(0, tensor.Bool, clone(a.shape))
		return kernelFunc(func(in, out []*tensor.Tensor) error {
			for i, v := range in[0].Data {
				out[0].Data[i] = v ^ 1
			}
			return nil
		}), nil
	}
	b := c.input(1)
	out, err := broadcast(a.shape, b.shape)
	if err != nil {
		return nil, err
	}
	c.setOut(0, tensor.Bool, out)
	nb := newNBcast(out, a.shape, b.shape)
	var f func(x, y byte) byte
	switch c.n.op {
	case "And":
		f = func(x, y byte) byte { return x & y }
	case "Or":
		f = func(x, y byte) byte { return x | y }
	default:
		f = func(x, y byte) byte { return x ^ y }
	}
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		a, b, y := in[0].Data, in[1].Data, outs[0].Data
		var offs, inc [2]int
		nb.walk(offs[:], inc[:], func(o, n int) {
			ia, ib := offs[0], offs[1]
			for i := range n {
				y[o+i] = f(a[ia], b[ib])
				ia += inc[0]
				ib += inc[1]
			}
		})
		return nil
	}), nil
}

// compileWhere compiles Where(condition, X, Y) with three-way
// broadcasting, for any datatype of X and Y.
func compileWhere(c *opCtx) (kernel, error) {
	cond, x, y := c.input(0), c.input(1), c.input(2)
	if err := c.wantDType(0, "condition", tensor.Bool); err != nil {
		return nil, err
	}
	if x.dtype != y.dtype {
		return nil, invalidf("input X is %s but input Y is %s", x.dtype, y.dtype)
	}
	out, err := broadcast(cond.shape, x.shape)
	if err == nil {
		out, err = broadcast(out, y.shape)
	}
	if err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, out)
	nb := newNBcast(out, cond.shape, x.shape, y.shape)
	size := elemSize(x.dtype)
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		cv, xv, yv, d := in[0].Data, in[1].Data, in[2].Data, outs[0].Data
		var offs, inc [3]int
		nb.walk(offs[:], inc[:], func(o, n int) {
			ic, ix, iy := offs[0], offs[1], offs[2]
			for i := range n {
				src, at := yv, iy
				if cv[ic] != 0 {
					src, at = xv, ix
				}
				copy(d[(o+i)*size:(o+i+1)*size], src[at*size:(at+1)*size])
				ic += inc[0]
				ix += inc[1]
				iy += inc[2]
			}
		})
		return nil
	}), nil
}

// compileVariadic compiles Sum, Mean, Min and Max over any number of
// broadcast inputs of one datatype (FP32, FP64, INT32, INT64; Min and
// Max on every numeric type). Min and Max propagate NaN.
func compileVariadic(c *opCtx) (kernel, error) {
	first := c.input(0)
	out := clone(first.shape)
	var shapes [][]int64
	for i, in := range c.in {
		if in == nil {
			return nil, invalidf("input %d is empty", i)
		}
		if in.dtype != first.dtype {
			return nil, invalidf("input %d is %s, input 0 %s", i, in.dtype, first.dtype)
		}
		var err error
		if out, err = broadcast(out, in.shape); err != nil {
			return nil, err
		}
		shapes = append(shapes, in.shape)
	}
	c.setOut(0, first.dtype, out)
	var nbs []*nbcast
	for _, s := range shapes {
		nbs = append(nbs, newNBcast(out, out, s))
	}
	op := c.n.op
	switch first.dtype {
	case tensor.FP32:
		return variadicKernel[float32](nbs, op), nil
	case tensor.FP64:
		return variadicKernel[float64](nbs, op), nil
	case tensor.Int32:
		return variadicKernel[int32](nbs, op), nil
	case tensor.Int64:
		return variadicKernel[int64](nbs, op), nil
	}
	if op == "Min" || op == "Max" {
		switch first.dtype {
		case tensor.Int8:
			return variadicKernel[int8](nbs, op), nil
		case tensor.Int16:
			return variadicKernel[int16](nbs, op), nil
		case tensor.Uint8:
			return variadicKernel[uint8](nbs, op), nil
		case tensor.Uint16:
			return variadicKernel[uint16](nbs, op), nil
		case tensor.Uint32:
			return variadicKernel[uint32](nbs, op), nil
		case tensor.Uint64:
			return variadicKernel[uint64](nbs, op), nil
		}
	}
	return nil, unsupportedf("datatype %s", first.dtype)
}

func variadicKernel[T number](nbs []*nbcast, op string) kernel {
	var f func(acc, v T) T
	switch op {
	case "Sum", "Mean":
		f = func(acc, v T) T { return acc + v }
	case "Max":
		f = func(acc, v T) T {
			if v > acc || v != v {
				return v
			}
			return acc
		}
	case "Min":
		f = func(acc, v T) T {
			if v < acc || v != v {
				return v
			}
			return acc
		}
	}
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[T](out[0].Data)
		var offs, inc [2]int
		for k, nb := range nbs {
			x := viewAs[T](in[k].Data)
			nb.walk(offs[:], inc[:], func(o, n int) {
				ix := offs[1]
				for i := range n {
					if k == 0 {
						y[o+i] = x[ix]
					} else {
						y[o+i] = f(y[o+i], x[ix])
					}
					ix += inc[1]
				}
			})
		}
		if op == "Mean" {
			n := T(len(nbs))
			for i := range y {
				y[i] /= n
			}
		}
		return nil
	})
}

// compilePRelu compiles PRelu: x < 0 ? slope·x : x, slope broadcast to
// x's shape.
func compilePRelu(c *opCtx) (kernel, error) {
	x, sl := c.input(0), c.input(1)
	if err := c.wantDType(0, "X", tensor.FP32, tensor.FP64); err != nil {
		return nil, err
	}
	if sl.dtype != x.dtype {
		return nil, invalidf("input slope is %s, X %s", sl.dtype, x.dtype)
	}
	slope := sl.shape
	if c.opset < 7 && prod(slope) > 1 && len(slope) == 1 && len(x.shape) >= 2 {
		// Opset 6: a 1-D slope holds one value per channel (dim 1).
		slope = []int64{slope[0]}
		for range len(x.shape) - 2 {
			slope = append(slope, 1)
		}
	}
	out, err := broadcast(x.shape, slope)
	if err != nil {
		return nil, err
	}
	if !sameShape(out, x.shape) {
		return nil, invalidf("input slope of shape %v does not broadcast to X's shape %v", sl.shape, x.shape)
	}
	c.setOut(0, x.dtype, out)
	nb := newNBcast(out, x.shape, slope)
	if x.dtype == tensor.FP64 {
		return preluKernel[float64](nb), nil
	}
	return preluKernel[float32](nb), nil
}

func preluKernel[T float](nb *nbcast) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, s, y := viewAs[T](in[0].Data), viewAs[T](in[1].Data), viewAs[T](out[0].Data)
		var offs, inc [2]int
		nb.walk(offs[:], inc[:], func(o, n int) {
			ix, is := offs[0], offs[1]
			for i := range n {
				v := x[ix]
				if v < 0 {
					v *= s[is]
				}
				y[o+i] = v
				ix += inc[0]
				is += inc[1]
			}
		})
		return nil
	})
}
