package cpu

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/internal/approx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// ref is a float64 reference tensor: the tests compute expected outputs
// with straightforward loops over these.
type ref struct {
	shape []int64
	data  []float64
}

func toRef(t *tensor.Tensor) ref {
	r := ref{shape: clone(t.Shape), data: make([]float64, t.Len())}
	for i := range r.data {
		r.data[i] = t.Float64At(i)
	}
	return r
}

func newRef(shape ...int64) ref {
	return ref{shape: shape, data: make([]float64, prod(shape))}
}

// unravel returns the multi-index of flat index i in shape.
func unravel(i int, shape []int64) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % int(shape[d])
		i /= int(shape[d])
	}
	return idx
}

// ravelBroadcast returns the flat index in shape of the trailing-aligned
// multi-index idx, with size-1 dims broadcast.
func ravelBroadcast(idx []int, shape []int64) int {
	off := len(idx) - len(shape)
	flat := 0
	for d, n := range shape {
		k := idx[off+d]
		if n == 1 {
			k = 0
		}
		flat = flat*int(n) + k
	}
	return flat
}

func refBroadcastShape(a, b []int64) []int64 {
	s, err := broadcast(a, b)
	if err != nil {
		panic(err)
	}
	return s
}

func refBinary(a, b ref, f func(x, y float64) float64) ref {
	out := newRef(refBroadcastShape(a.shape, b.shape)...)
	for i := range out.data {
		idx := unravel(i, out.shape)
		out.data[i] = f(a.data[ravelBroadcast(idx, a.shape)], b.data[ravelBroadcast(idx, b.shape)])
	}
	return out
}

func refUnary(a ref, f func(float64) float64) ref {
	out := newRef(a.shape...)
	for i, v := range a.data {
		out.data[i] = f(v)
	}
	return out
}

// refMatMul is numpy.matmul.
func refMatMul(a, b ref) ref {
	as, bs := clone(a.shape), clone(b.shape)
	if len(as) == 1 {
		as = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int64{bs[0], 1}
	}
	m, k, n := as[len(as)-2], as[len(as)-1], bs[len(bs)-1]
	batch := refBroadcastShape(as[:len(as)-2], bs[:len(bs)-2])
	out := newRef(append(clone(batch), m, n)...)
	for i := range out.data {
		idx := unravel(i, out.shape)
		bi, r, c := idx[:len(batch)], idx[len(batch)], idx[len(batch)+1]
		s := 0.0
		ai := ravelBroadcast(append(append(clone64(bi), r), 0), as) // A[..., r, p] = ai + p
		bj := ravelBroadcast(append(append(clone64(bi), 0), c), bs) // B[..., p, c] = bj + p*n
		for p := range int(k) {
			s += a.data[ai+p] * b.data[bj+p*int(n)]
		}
		out.data[i] = s
	}
	shape := append(clone(batch), m, n)
	if len(a.shape) == 1 {
		shape = append(shape[:len(shape)-2], shape[len(shape)-1])
	}
	if len(b.shape) == 1 {
		shape = shape[:len(shape)-1]
	}
	out.shape = shape
	return out
}

func clone64(s []int) []int { return append([]int{}, s...) }

// refTranspose2 transposes a matrix.
func refTranspose2(a ref) ref {
	out := newRef(a.shape[1], a.shape[0])
	for i := range a.shape[0] {
		for j := range a.shape[1] {
			out.data[j*a.shape[0]+i] = a.data[i*a.shape[1]+j]
		}
	}
	return out
}

// refGemm is alpha·A'·B' + beta·C.
func refGemm(a, b ref, c *ref, alpha, beta float64, transA, transB bool) ref {
	if transA {
		a = refTranspose2(a)
	}
	if transB {
		b = refTranspose2(b)
	}
	y := refMatMul(a, b)
	for i := range y.data {
		y.data[i] *= alpha
	}
	if c != nil {
		y = refBinary(y, *c, func(x, cv float64) float64 { return x + beta*cv })
	}
	return y
}

// refSoftmax normalises over [axis:] (opset < 13) or the one axis.
func refSoftmax(x ref, axis int, coerce, log bool) ref {
	out := newRef(x.shape...)
	inGroup := func(i, j int) bool { // same vector?
		a, b := unravel(i, x.shape), unravel(j, x.shape)
		for d := range a {
			if d == axis || coerce && d > axis {
				continue
			}
			if a[d] != b[d] {
				return false
			}
		}
		return true
	}
	for i := range x.data {
		mx := math.Inf(-1)
		for j := range x.data {
			if inGroup(i, j) {
				mx = max(mx, x.data[j])
			}
		}
		sum := 0.0
		for j := range x.data {
			if inGroup(i, j) {
				sum += math.Exp(x.data[j] - mx)
			}
		}
		out.data[i] = math.Exp(x.data[i]-mx) / sum
		if log {
			out.data[i] = x.data[i] - mx - math.Log(sum)
		}
	}
	return out
}

// refArg is numpy argmax/argmin with keepdims and select_last_index.
func refArg(x ref, axis int, keep, last, isMax bool) ref {
	shape := clone(x.shape)
	shape[axis] = 1
	out := newRef(shape...)
	for i := range out.data {
		idx := unravel(i, shape)
		best, bi := 0.0, -1
		for j := range int(x.shape[axis]) {
			idx[axis] = j
			v := x.data[ravelBroadcast(idx, x.shape)]
			better := bi < 0 || (isMax && v > best) || (!isMax && v < best) || (last && v == best)
			if better {
				best, bi = v, j
			}
		}
		out.data[i] = float64(bi)
	}
	if !keep {
		out.shape = append(shape[:axis:axis], shape[axis+1:]...)
	}
	return out
}

// randTensor returns a tensor of deterministic pseudo-random values:
// floats in [-3, 3), integers in [-5, 5].
func randTensor(r *rand.Rand, dt tensor.DataType, shape ...int64) *tensor.Tensor {
	t := tensor.New("", dt, shape)
	for i := range t.Len() {
		if dt.IsFloat() {
			t.SetFloat64(i, r.Float64()*6-3)
		} else {
			t.SetFloat64(i, float64(r.IntN(11)-5))
		}
	}
	return t
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func f32(shape []int64, v ...float32) *tensor.Tensor { return tensor.FromFloat32s("", shape, v) }
func i64(shape []int64, v ...int64) *tensor.Tensor   { return tensor.FromInt64s("", shape, v) }
func sh(d ...int64) []int64                          { return d }

// arg is one input of a one-node test model: a graph input, or an
// initializer when konst is set; an empty name is an absent optional input.
type arg struct {
	name  string
	t     *tensor.Tensor
	konst bool
}

func in(name string, t *tensor.Tensor) arg  { return arg{name: name, t: t} }
func cst(name string, t *tensor.Tensor) arg { return arg{name: name, t: t, konst: true} }

// oneNode builds a model holding one node named "n" with outputs y0..,
// graph inputs declared with their exact shapes.
func oneNode(opset int64, op string, args []arg, nOut int, attrs ...[]byte) []byte {
	return oneNodeIn(onnxtest.NewModel(opset), (*onnxtest.Model).Node, op, args, nOut, attrs...)
}

// oneNodeIn adds to m the graph inputs and constants of args, outputs
// y0.., and one node named "n" added by addNode.
func oneNodeIn(m *onnxtest.Model, addNode func(m *onnxtest.Model, name, op string, ins, outs []string, attrs ...[]byte) *onnxtest.Model,
	op string, args []arg, nOut int, attrs ...[]byte) []byte {
	var names, outs []string
	for _, a := range args {
		names = append(names, a.name)
		switch {
		case a.name == "":
		case a.konst:
			m.Init(a.name, a.t)
		default:
			dims := make([]any, len(a.t.Shape))
			for i, d := range a.t.Shape {
				dims[i] = d
			}
			m.Input(a.name, onnxtest.ElemType(a.t.DType), dims...)
		}
	}
	for i := range nOut {
		outs = append(outs, fmt.Sprintf("y%d", i))
		m.Output(outs[i])
	}
	addNode(m, "n", op, names, outs, attrs...)
	return m.Bytes()
}

// graphInputs returns the non-constant tensors of args, in order.
func graphInputs(args []arg) []*tensor.Tensor {
	var ts []*tensor.Tensor
	for _, a := range args {
		if a.name != "" && !a.konst {
			ts = append(ts, a.t)
		}
	}
	return ts
}

// runModel loads model and runs it on inputs, failing the test on error.
func runModel(t *testing.T, model []byte, inputs ...*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	return runModelWith(t, Options{Concurrency: 1}, model, inputs...)
}

// runModelWith is runModel with the given options.
func runModelWith(t *testing.T, opts Options, model []byte, inputs ...*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	be, err := LoadBytes(model, opts)
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	outs, err := be.Infer(context.Background(), inputs)
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	return outs
}

// expectClose compares got with want: floats within 1e-5 relative to
// magnitude, everything else exactly.
func expectClose(t *testing.T, got *tensor.Tensor, want ref) {
	t.Helper()
	if !sameShape(got.Shape, want.shape) {
		t.Fatalf("output shape %v, want %v", got.Shape, want.shape)
	}
	for i, w := range want.data {
		g := got.Float64At(i)
		if got.DType.IsFloat() {
			tol := 1e-5
			if got.DType == tensor.FP16 || got.DType == tensor.BF16 {
				tol = 1e-2
			}
			if !approx.Equal(g, w, tol) {
				t.Fatalf("output[%d] (%v) = %v, want %v", i, unravel(i, want.shape), g, w)
			}
			continue
		}
		if g != w {
			t.Fatalf("output[%d] (%v) = %v, want %v", i, unravel(i, want.shape), g, w)
		}
	}
}
