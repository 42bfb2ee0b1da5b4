package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/internal/approx"
	"github.com/coalesce-ml/coalesce/tensor"
)

func TestBinaryOps(t *testing.T) {
	fns := map[string]func(x, y float64) float64{
		"Add": func(x, y float64) float64 { return x + y },
		"Sub": func(x, y float64) float64 { return x - y },
		"Mul": func(x, y float64) float64 { return x * y },
		"Div": func(x, y float64) float64 { return x / y },
	}
	shapes := []struct{ a, b []int64 }{
		{sh(2, 3), sh(2, 3)},
		{sh(2, 3), sh(3)},
		{sh(3), sh(2, 3)},
		{sh(2, 3), sh(2, 1)},
		{sh(2, 1, 4), sh(3, 1)},
		{sh(2, 3), sh()},
		{sh(), sh(4)},
		{sh(3, 1, 5), sh(1, 4, 1)},
		{sh(2, 3, 4, 5), sh(3, 1, 5)},
		{sh(1), sh(4)},
	}
	r := newRand()
	for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
		for _, s := range shapes {
			for _, konstB := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v%v/const=%v", op, s.a, s.b, konstB), func(t *testing.T) {
					a, b := randTensor(r, tensor.FP32, s.a...), randTensor(r, tensor.FP32, s.b...)
					args := []arg{in("a", a), {name: "b", t: b, konst: konstB}}
					outs := runModel(t, oneNode(13, op, args, 1), graphInputs(args)...)
					expectClose(t, outs[0], refBinary(toRef(a), toRef(b), fns[op]))
				})
			}
		}
	}
	for _, dt := range []tensor.DataType{tensor.FP64, tensor.Int32, tensor.Int64} {
		for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
			t.Run(fmt.Sprintf("%s/%s", op, dt), func(t *testing.T) {
				a, b := randTensor(r, dt, 3, 4), randTensor(r, dt, 4)
				if !dt.IsFloat() { // no division by zero, and truncation toward zero
					b = tensor.New("", dt, sh(4))
					for i, v := range []float64{3, -2, 7, 1} {
						b.SetFloat64(i, v)
					}
				}
				args := []arg{in("a", a), in("b", b)}
				f := fns[op]
				if op == "Div" && !dt.IsFloat() {
					f = func(x, y float64) float64 { return math.Trunc(x / y) }
				}
				outs := runModel(t, oneNode(13, op, args, 1), a, b)
				if outs[0].DType != dt {
					t.Fatalf("output is %s, want %s", outs[0].DType, dt)
				}
				expectClose(t, outs[0], refBinary(toRef(a), toRef(b), f))
			})
		}
	}
}

func TestUnaryOps(t *testing.T) {
	sigmoid := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	tests := []struct {
		op    string
		attrs [][]byte
		f     func(float64) float64
		dts   []tensor.DataType
	}{
		{"Relu", nil, func(x float64) float64 { return max(x, 0) }, []tensor.DataType{tensor.FP32, tensor.FP64, tensor.Int32, tensor.Int64}},
		{"LeakyRelu", nil, func(x float64) float64 { return map[bool]float64{true: 0.01 * x, false: x}[x < 0] }, []tensor.DataType{tensor.FP32}},
		{"LeakyRelu", [][]byte{onnxtest.AttrFloat("alpha", 0.2)}, func(x float64) float64 { return map[bool]float64{true: 0.2 * x, false: x}[x < 0] }, []tensor.DataType{tensor.FP32, tensor.FP64}},
		{"Sigmoid", nil, sigmoid, []tensor.DataType{tensor.FP32, tensor.FP64}},
		{"Tanh", nil, math.Tanh, []tensor.DataType{tensor.FP32}},
		{"Exp", nil, math.Exp, []tensor.DataType{tensor.FP32, tensor.FP64}},
		{"Log", nil, func(x float64) float64 { return math.Log(math.Abs(x) + 0.5) }, []tensor.DataType{tensor.FP32}},
		{"Sqrt", nil, func(x float64) float64 { return math.Sqrt(math.Abs(x) + 0.5) }, []tensor.DataType{tensor.FP32}},
		{"Neg", nil, func(x float64) float64 { return -x }, []tensor.DataType{tensor.FP32, tensor.Int32, tensor.Int64}},
		{"Abs", nil, math.Abs, []tensor.DataType{tensor.FP32, tensor.FP64, tensor.Int64}},
	}
	r := newRand()
	for _, tc := range tests {
		for _, dt := range tc.dts {
			t.Run(fmt.Sprintf("%s/%s/attrs=%d", tc.op, dt, len(tc.attrs)), func(t *testing.T) {
				x := randTensor(r, dt, 2, 3, 5)
				want := refUnary(toRef(x), tc.f)
				if tc.op == "Log" || tc.op == "Sqrt" { // feed |x|+0.5: positive inputs
					for i := range x.Len() {
						x.SetFloat64(i, math.Abs(x.Float64At(i))+0.5)
					}
					want = refUnary(toRef(x), map[string]func(float64) float64{"Log": math.Log, "Sqrt": math.Sqrt}[tc.op])
				}
				outs := runModel(t, oneNode(13, tc.op, []arg{in("x", x)}, 1, tc.attrs...), x)
				expectClose(t, outs[0], want)
			})
		}
	}
}

func TestClip(t *testing.T) {
	x := f32(sh(2, 4), -5, -1, -0.5, 0, 0.5, 1, 2, 9)
	clip := func(lo, hi float64) ref {
		return refUnary(toRef(x), func(v float64) float64 {
			if lo > hi {
				return hi
			}
			return min(max(v, lo), hi)
		})
	}
	inf := math.Inf(1)
	tests := []struct {
		name  string
		opset int64
		args  []arg
		attrs [][]byte
		want  ref
	}{
		{"opset7/both", 7, []arg{in("x", x)}, [][]byte{onnxtest.AttrFloat("min", -1), onnxtest.AttrFloat("max", 1)}, clip(-1, 1)},
		{"opset7/none", 7, []arg{in("x", x)}, nil, clip(-inf, inf)},
		{"opset11/both", 11, []arg{in("x", x), cst("lo", f32(sh(), -0.5)), cst("hi", f32(sh(), 2))}, nil, clip(-0.5, 2)},
		{"opset13/min only", 13, []arg{in("x", x), cst("lo", f32(sh(), 0))}, nil, clip(0, inf)},
		{"opset13/max only", 13, []arg{in("x", x), {}, cst("hi", f32(sh(), 0.5))}, nil, clip(-inf, 0.5)},
		{"opset13/runtime bounds", 13, []arg{in("x", x), in("lo", f32(sh(), -1)), in("hi", f32(sh(), 1))}, nil, clip(-1, 1)},
		{"opset13/min>max", 13, []arg{in("x", x), cst("lo", f32(sh(), 2)), cst("hi", f32(sh(), 1))}, nil, clip(2, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outs := runModel(t, oneNode(tc.opset, "Clip", tc.args, 1, tc.attrs...), graphInputs(tc.args)...)
			expectClose(t, outs[0], tc.want)
		})
	}
	t.Run("int64", func(t *testing.T) {
		xi := i64(sh(5), -7, -1, 0, 3, 10)
		args := []arg{in("x", xi), cst("lo", i64(sh(), -2)), cst("hi", i64(sh(), 4))}
		outs := runModel(t, oneNode(13, "Clip", args, 1), xi)
		expectClose(t, outs[0], ref{shape: sh(5), data: []float64{-2, -1, 0, 3, 4}})
	})
}

// TestGemm runs Gemm through the backend with every kernel set for all
// transpositions, C shapes, constant or computed B and scales.
func TestGemm(t *testing.T) {
	for _, ks := range sgemm.Available() {
		t.Run(ks.Name(), func(t *testing.T) { testGemm(t, Options{Concurrency: 1, Kernels: ks.Name()}) })
	}
}

func testGemm(t *testing.T, opts Options) {
	r := newRand()
	const m, k, n = 5, 7, 6
	cShapes := [][]int64{nil, sh(), sh(n), sh(1, n), sh(m, 1), sh(m, n), sh(1, 1)}
	for _, transA := range []bool{false, true} {
		for _, transB := range []bool{false, true} {
			for _, cs := range cShapes {
				for _, konstB := range []bool{false, true} {
					for _, ab := range [][2]float32{{1, 1}, {0.5, -2}, {1, 0}} {
						name := fmt.Sprintf("tA=%v/tB=%v/C=%v/constB=%v/alpha=%v/beta=%v", transA, transB, cs, konstB, ab[0], ab[1])
						t.Run(name, func(t *testing.T) {
							as, bs := sh(m, k), sh(k, n)
							if transA {
								as = sh(k, m)
							}
							if transB {
								bs = sh(n, k)
							}
							a, b := randTensor(r, tensor.FP32, as...), randTensor(r, tensor.FP32, bs...)
							args := []arg{in("a", a), {name: "b", t: b, konst: konstB}}
							var cref *ref
							if cs != nil {
								c := randTensor(r, tensor.FP32, cs...)
								args = append(args, cst("c", c))
								cr := toRef(c)
								cref = &cr
							}
							attrs := [][]byte{onnxtest.AttrInt("transA", b2i(transA)), onnxtest.AttrInt("transB", b2i(transB)),
								onnxtest.AttrFloat("alpha", ab[0]), onnxtest.AttrFloat("beta", ab[1])}
							outs := runModelWith(t, opts, oneNode(13, "Gemm", args, 1, attrs...), graphInputs(args)...)
							expectClose(t, outs[0], refGemm(toRef(a), toRef(b), cref, float64(ab[0]), float64(ab[1]), transA, transB))
						})
					}
				}
			}
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestMatMul(t *testing.T) {
	r := newRand()
	tests := []struct{ a, b []int64 }{
		{sh(3, 4), sh(4, 5)},
		{sh(4), sh(4, 5)},
		{sh(3, 4), sh(4)},
		{sh(4), sh(4)},
		{sh(2, 3, 4), sh(4, 5)},
		{sh(2, 3, 4), sh(2, 4, 5)},
		{sh(2, 1, 3, 4), sh(3, 4, 5)},
		{sh(3, 4), sh(2, 4, 5)},
		{sh(1, 70, 300), sh(300, 600)}, // crosses the sgemm cache blocks
	}
	for _, tc := range tests {
		for _, konstB := range []bool{false, true} {
			a, b := randTensor(r, tensor.FP32, tc.a...), randTensor(r, tensor.FP32, tc.b...)
			for _, ks := range sgemm.Available() {
				t.Run(fmt.Sprintf("%v@%v/const=%v/%s", tc.a, tc.b, konstB, ks.Name()), func(t *testing.T) {
					args := []arg{in("a", a), {name: "b", t: b, konst: konstB}}
					outs := runModelWith(t, Options{Concurrency: 1, Kernels: ks.Name()}, oneNode(13, "MatMul", args, 1), graphInputs(args)...)
					want := refMatMul(toRef(a), toRef(b))
					// Sums of k products: the float32 rounding grows like sqrt(k).
					expectCloseTol(t, outs[0], want, 1e-5*math.Sqrt(float64(tc.a[len(tc.a)-1])))
				})
			}
		}
	}
}

// expectCloseTol is expectClose with a given relative tolerance.
func expectCloseTol(t *testing.T, got *tensor.Tensor, want ref, tol float64) {
	t.Helper()
	if !sameShape(got.Shape, want.shape) {
		t.Fatalf("output shape %v, want %v", got.Shape, want.shape)
	}
	for i, w := range want.data {
		if g := got.Float64At(i); !approx.Equal(g, w, tol) {
			t.Fatalf("output[%d] = %v, want %v", i, g, w)
		}
	}
}

func TestSoftmax(t *testing.T) {
	r := newRand()
	x := randTensor(r, tensor.FP32, 2, 3, 4)
	tests := []struct {
		opset int64
		axis  *int64
		want  int  // normalised axis
		coerc bool // opset < 13: flatten from axis on
	}{
		{11, nil, 1, true},
		{11, ptr(int64(2)), 2, true},
		{11, ptr(int64(-1)), 2, true},
		{11, ptr(int64(0)), 0, true},
		{13, nil, 2, false},
		{13, ptr(int64(1)), 1, false},
		{13, ptr(int64(0)), 0, false},
		{13, ptr(int64(-3)), 0, false},
	}
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		for _, tc := range tests {
			name := fmt.Sprintf("%s/opset%d/axis=%v", op, tc.opset, tc.want)
			t.Run(name, func(t *testing.T) {
				var attrs [][]byte
				if tc.axis != nil {
					attrs = append(attrs, onnxtest.AttrInt("axis", *tc.axis))
				}
				outs := runModel(t, oneNode(tc.opset, op, []arg{in("x", x)}, 1, attrs...), x)
				expectClose(t, outs[0], refSoftmax(toRef(x), tc.want, tc.coerc, op == "LogSoftmax"))
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestArgMaxArgMin(t *testing.T) {
	// Ties on purpose: values drawn from few integers.
	x := tensor.New("", tensor.FP32, sh(3, 4, 5))
	r := newRand()
	for i := range x.Len() {
		x.SetFloat64(i, float64(r.IntN(4)))
	}
	for _, op := range []string{"ArgMax", "ArgMin"} {
		for _, axis := range []int64{0, 1, 2, -1} {
			for _, keep := range []bool{true, false} {
				for _, last := range []bool{false, true} {
					name := fmt.Sprintf("%s/axis=%d/keepdims=%v/last=%v", op, axis, keep, last)
					t.Run(name, func(t *testing.T) {
						attrs := [][]byte{onnxtest.AttrInt("axis", axis), onnxtest.AttrInt("keepdims", b2i(keep)), onnxtest.AttrInt("select_last_index", b2i(last))}
						outs := runModel(t, oneNode(13, op, []arg{in("x", x)}, 1, attrs...), x)
						if outs[0].DType != tensor.Int64 {
							t.Fatalf("output is %s, want INT64", outs[0].DType)
						}
						ax, _ := normAxis(axis, 3)
						expectClose(t, outs[0], refArg(toRef(x), ax, keep, last, op == "ArgMax"))
					})
				}
			}
		}
	}
	t.Run("defaults/int64", func(t *testing.T) {
		xi := i64(sh(2, 3), 1, 9, 3, 4, 2, 8)
		outs := runModel(t, oneNode(11, "ArgMax", []arg{in("x", xi)}, 1), xi)
		expectClose(t, outs[0], ref{shape: sh(1, 3), data: []float64{1, 0, 1}})
	})
}

func TestBatchNormalization(t *testing.T) {
	r := newRand()
	x := randTensor(r, tensor.FP32, 2, 3, 2, 2)
	scale, bias, mean := randTensor(r, tensor.FP32, 3), randTensor(r, tensor.FP32, 3), randTensor(r, tensor.FP32, 3)
	vr := f32(sh(3), 0.5, 1, 2)
	for _, eps := range []*float32{nil, ptr(float32(1e-3))} {
		t.Run(fmt.Sprintf("eps=%v", eps != nil), func(t *testing.T) {
			e := 1e-5
			var attrs [][]byte
			if eps != nil {
				attrs, e = [][]byte{onnxtest.AttrFloat("epsilon", *eps)}, float64(*eps)
			}
			args := []arg{in("x", x), cst("s", scale), cst("b", bias), cst("m", mean), cst("v", vr)}
			outs := runModel(t, oneNode(15, "BatchNormalization", args, 1, attrs...), x)
			want := newRef(x.Shape...)
			for i := range want.data {
				c := unravel(i, x.Shape)[1]
				want.data[i] = (x.Float64At(i)-mean.Float64At(c))/math.Sqrt(vr.Float64At(c)+e)*scale.Float64At(c) + bias.Float64At(c)
			}
			expectClose(t, outs[0], want)
		})
	}
}

// TestFastMath checks exp64, sigmoid64, tanh64 and gelu64 against the
// math package over a sweep of arguments, relative to max(1, |want|)
// for GELU (its absolute error scales with |x|).
func TestFastMath(t *testing.T) {
	gelu := func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
	tests := []struct {
		name      string
		fast, ref func(float64) float64
		tol       float64
		rel       bool
	}{
		{"exp", exp64, math.Exp, 1e-11, true},
		{"sigmoid", sigmoid64, func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, 1e-11, true},
		{"tanh", tanh64, math.Tanh, 1e-10, true},
		{"gelu", gelu64, gelu, 2e-7, false},
	}
	for _, tt := range tests {
		for x := -40.0; x <= 40; x += 0.0137 {
			got, want := tt.fast(x), tt.ref(x)
			scale := max(1, math.Abs(want))
			if tt.rel {
				scale = math.Abs(want)
			}
			if d := math.Abs(got - want); d > tt.tol*scale {
				t.Fatalf("%s(%v) = %v; want %v (error %.3g)", tt.name, x, got, want, d/scale)
			}
		}
		for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 800, -800} {
			got, want := tt.fast(x), tt.ref(x)
			if !(got == want || math.IsNaN(got) && math.IsNaN(want) || math.Abs(got-want) <= 1e-300) {
				t.Errorf("%s(%v) = %v; want %v", tt.name, x, got, want)
			}
		}
	}
}

// TestGeluRow32 checks the written-out GELU loop, and each kernel set's
// vector GELU (sgemm.Kernels.GeluPrefix, the scalar loop doing the
// rest), against the exact formula, special values included (first, so
// that the vector part sees them).
func TestGeluRow32(t *testing.T) {
	xs := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 9.9, -9.9, 10, -10, 10.1, -10.1, 1e30, -1e30}
	for x := -30.0; x <= 30; x += 0.0071 {
		xs = append(xs, float32(x))
	}
	got := make([]float32, len(xs))
	for _, ks := range append([]*sgemm.Kernels{nil}, sgemm.Available()...) {
		n, name := 0, "scalar"
		if ks != nil {
			n, name = ks.GeluPrefix(got, xs), ks.Name()
		}
		geluRow32(got[n:], xs[n:])
		checkGelu(t, fmt.Sprintf("%s (%d vector)", name, n), xs, got)
	}
}

func checkGelu(t *testing.T, name string, xs, got []float32) {
	t.Helper()
	for i, v := range xs {
		x := float64(v)
		want := 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		if math.IsNaN(x) {
			if !math.IsNaN(float64(got[i])) {
				t.Errorf("%s: gelu(NaN) = %v", name, got[i])
			}
			continue
		}
		if math.IsInf(x, -1) {
			want = 0
		}
		if d := math.Abs(float64(got[i]) - want); d > 3e-7*max(1, math.Abs(want)) {
			t.Errorf("%s: gelu(%v) = %v; want %v", name, v, got[i], want)
		}
	}
}
