package cpu

import (
	"context"
	"math"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/internal/approx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestFuse checks which neighbours of a matrix multiply fuse merges into
// it, and that fusing changes no bit of the result: each graph is run as
// is and with its intermediate values also declared as graph outputs,
// which prevents fusion, on every kernel set.
func TestFuse(t *testing.T) {
	const k, n = 24, 40 // n crosses a panel boundary of every kernel set
	r := newRand()
	w, wt := randTensor(r, tensor.FP32, k, n), randTensor(r, tensor.FP32, n, k)
	b, b1n := randTensor(r, tensor.FP32, n), randTensor(r, tensor.FP32, 1, n)
	type node struct {
		name, op string
		in       []string
		attrs    [][]byte
	}
	tests := []struct {
		name      string
		threeD    bool   // x is [batch, 3, k] instead of [batch, k]
		nodes     []node // node i writes value "v<i>"; the last is the graph output
		wantNodes int    // after fusion
	}{
		{"Div16+Gemm+Relu", false, []node{
			{"div", "Div", []string{"x", "sixteen"}, nil},
			{"gemm", "Gemm", []string{"v0", "wt", "b"}, [][]byte{onnxtest.AttrInt("transB", 1)}},
			{"relu", "Relu", []string{"v1"}, nil}}, 1},
		{"Mul0.5+Gemm(alpha,beta)+Relu", false, []node{
			{"mul", "Mul", []string{"half", "x"}, nil},
			{"gemm", "Gemm", []string{"v0", "w", "b1n"}, [][]byte{onnxtest.AttrFloat("alpha", 1.5), onnxtest.AttrFloat("beta", -2)}},
			{"relu", "Relu", []string{"v1"}, nil}}, 1},
		{"Div3 not a power of two", false, []node{
			{"div", "Div", []string{"x", "three"}, nil},
			{"gemm", "Gemm", []string{"v0", "wt", "b"}, [][]byte{onnxtest.AttrInt("transB", 1)}}}, 2},
		{"Gemm+Relu+Relu", false, []node{
			{"gemm", "Gemm", []string{"x", "w"}, nil},
			{"relu", "Relu", []string{"v0"}, nil},
			{"relu2", "Relu", []string{"v1"}, nil}}, 2},
		{"Gemm read twice", false, []node{
			{"gemm", "Gemm", []string{"x", "w", "b"}, nil},
			{"relu", "Relu", []string{"v0"}, nil},
			{"add", "Add", []string{"v0", "v1"}, nil}}, 3},
		{"MatMul+Add+Relu", false, []node{
			{"mm", "MatMul", []string{"x", "w"}, nil},
			{"add", "Add", []string{"b", "v0"}, nil},
			{"relu", "Relu", []string{"v1"}, nil}}, 1},
		{"Div16+MatMul3D+Add", true, []node{
			{"div", "Div", []string{"x", "sixteen"}, nil},
			{"mm", "MatMul", []string{"v0", "w"}, nil},
			{"add", "Add", []string{"v1", "b"}, nil}}, 1},
		{"MatMul+Add [1,N] not fused", false, []node{
			{"mm", "MatMul", []string{"x", "w"}, nil},
			{"add", "Add", []string{"v0", "b1n"}, nil}}, 2},
		{"MatMul+Add computed", false, []node{
			{"mm", "MatMul", []string{"x", "w"}, nil},
			{"mm2", "MatMul", []string{"x", "w"}, nil},
			{"add", "Add", []string{"v0", "v1"}, nil}}, 3},
	}
	for _, tc := range tests {
		build := func(exportAll bool) []byte {
			m := onnxtest.NewModel(13)
			if tc.threeD {
				m.Input("x", onnx.TypeFloat, "batch", 3, k)
			} else {
				m.Input("x", onnx.TypeFloat, "batch", k)
			}
			m.Init("w", w).Init("wt", wt).Init("b", b).Init("b1n", b1n).
				Init("sixteen", f32(sh(), 16)).Init("half", f32(sh(1), 0.5)).Init("three", f32(sh(), 3))
			last := len(tc.nodes) - 1
			for i, nd := range tc.nodes {
				out := "v" + string(rune('0'+i))
				m.Node(nd.name, nd.op, nd.in, []string{out}, nd.attrs...)
				if i == last || exportAll {
					m.Output(out)
				}
			}
			return m.Bytes()
		}
		xs := []int64{5, k}
		if tc.threeD {
			xs = []int64{5, 3, k}
		}
		x := randTensor(r, tensor.FP32, xs...)
		for _, ks := range sgemm.Available() {
			t.Run(tc.name+"/"+ks.Name(), func(t *testing.T) {
				fused, err := LoadBytes(build(false), Options{Concurrency: 1, Kernels: ks.Name()})
				if err != nil {
					t.Fatal(err)
				}
				if got := len(fused.g.nodes); got != tc.wantNodes {
					t.Errorf("%d nodes after fusion, want %d", got, tc.wantNodes)
				}
				plain, err := LoadBytes(build(true), Options{Concurrency: 1, Kernels: ks.Name()})
				if err != nil {
					t.Fatal(err)
				}
				got, err := fused.Infer(context.Background(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Infer(context.Background(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				g, w := got[0].Float32s(), want[len(want)-1].Float32s()
				if !sameShape(got[0].Shape, want[len(want)-1].Shape) {
					t.Fatalf("shape %v, unfused %v", got[0].Shape, want[len(want)-1].Shape)
				}
				for i := range w {
					if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
						t.Fatalf("output[%d] = %v, unfused %v", i, g[i], w[i])
					}
				}
			})
		}
	}
}

// TestSoftmaxRows compares every kernel set's FP32 row softmax (the
// vectorised one where the set has it, plain Go otherwise) with
// softmaxKernel's math.Exp version: lengths around the vector widths,
// large magnitudes, and rows holding NaN and infinities.
func TestSoftmaxRows(t *testing.T) {
	r := newRand()
	special := [][]float32{
		{1, float32(math.NaN()), 2},
		{float32(math.Inf(1)), 0, 1},
		{float32(math.Inf(-1)), 0, 1},
		{float32(math.Inf(-1)), float32(math.Inf(-1))},
		{-1000, 1000, 0},
		{88, 88, -88},
	}
	for _, ks := range sgemm.Available() {
		for _, n := range []int{1, 2, 3, 10, 15, 16, 17, 31, 32, 33, 100, 1000} {
			for _, scale := range []float64{1, 40} {
				rows := 3
				x := tensor.New("", tensor.FP32, []int64{int64(rows), int64(n)})
				xs := x.Float32s()
				for i := range xs {
					xs[i] = float32((r.Float64()*2 - 1) * scale)
				}
				checkSoftmax(t, ks, x, rows, n)
			}
		}
		for _, row := range special {
			x := tensor.FromFloat32s("", []int64{1, int64(len(row))}, row)
			checkSoftmax(t, ks, x, 1, len(row))
		}
	}
}

func checkSoftmax(t *testing.T, ks *sgemm.Kernels, x *tensor.Tensor, rows, n int) {
	t.Helper()
	got, want := tensor.New("", tensor.FP32, x.Shape), tensor.New("", tensor.FP32, x.Shape)
	if err := softmaxRowsKernel(ks, rows, n).run([]*tensor.Tensor{x}, []*tensor.Tensor{got}); err != nil {
		t.Fatal(err)
	}
	if err := softmaxKernel[float32](rows, n, 1, false).run([]*tensor.Tensor{x}, []*tensor.Tensor{want}); err != nil {
		t.Fatal(err)
	}
	// The vectorised versions compute x-max in float32 (as PyTorch does),
	// which rounds the exponent by up to |x-max|·2**-24: a relative error
	// of that size in the result.
	xs := x.Float32s()
	for i, w := range want.Float32s() {
		g := got.Float32s()[i]
		row := xs[i/n*n : i/n*n+n]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		rel := 1e-6 + math.Abs(float64(xs[i]-mx))*0x1p-23
		if math.IsNaN(float64(w)) != math.IsNaN(float64(g)) || math.Abs(float64(g-w)) > rel*float64(w)+1e-37 {
			t.Fatalf("%s: softmax of %v: [%d] = %v, want %v", ks.Name(), x.Float32s()[i/n*n:i/n*n+min(n, 8)], i, g, w)
		}
	}
}

// TestExpRow32 checks the inlined exponential against math.Exp.
func TestExpRow32(t *testing.T) {
	var xs []float32
	for x := -750.0; x < 715; x += 0.37 {
		xs = append(xs, float32(x))
	}
	xs = append(xs, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -0.0, 88.72, -103.97)
	dst := make([]float32, 1)
	for _, x := range xs {
		sum := expRow32(dst, []float32{x}, 0)
		want := math.Exp(float64(x))
		switch {
		case x > 709: // near overflow: math.Exp on amd64 already returns +Inf
			if !(sum > 1e307) {
				t.Errorf("exp(%v) = %v, want about %v", x, sum, want)
			}
		case math.IsNaN(want) || math.IsInf(want, 0) || want == 0:
			if sum != want && !(math.IsNaN(sum) && math.IsNaN(want)) {
				t.Errorf("exp(%v) = %v, want %v", x, sum, want)
			}
		case !approx.Equal(sum, want, 1e-11*min(1, want)+0x1p-1074):
			t.Errorf("exp(%v) = %v, want %v (relative error %.3g)", x, sum, want, math.Abs(sum-want)/want)
		}
		if math.Float32bits(dst[0]) != math.Float32bits(float32(sum)) {
			t.Errorf("dst = %v, want float32(%v)", dst[0], sum)
		}
	}
}

// TestFoldBatchNorm checks that a BatchNormalization after a Gemm is
// folded into it (with the Relu after it fused too), for every form of
// B and C, and that the result matches the unfolded graph within FP32
// rounding; where folding is not allowed, the node stays.
func TestFoldBatchNorm(t *testing.T) {
	const k, n = 24, 40
	r := newRand()
	w, wt := randTensor(r, tensor.FP32, k, n), randTensor(r, tensor.FP32, n, k)
	b, b1n := randTensor(r, tensor.FP32, n), randTensor(r, tensor.FP32, 1, n)
	vr := randTensor(r, tensor.FP32, n)
	for i := range vr.Len() {
		vr.SetFloat64(i, math.Abs(vr.Float64At(i))+0.1)
	}
	tests := []struct {
		name      string
		gemmIn    []string
		gemmAttrs [][]byte
		bnAttrs   [][]byte
		readTwice bool // the Gemm's output is also a graph output
		wantNodes int
	}{
		{"B", []string{"x", "w", "b"}, nil, nil, false, 1},
		{"transB", []string{"x", "wt", "b"}, [][]byte{onnxtest.AttrInt("transB", 1)}, nil, false, 1},
		{"C [1,N], alpha, beta", []string{"x", "w", "b1n"}, [][]byte{onnxtest.AttrFloat("alpha", 0.5), onnxtest.AttrFloat("beta", -2)}, [][]byte{onnxtest.AttrFloat("epsilon", 1e-3)}, false, 1},
		{"scalar C", []string{"x", "w", "one"}, nil, nil, false, 1},
		{"no C", []string{"x", "wt"}, [][]byte{onnxtest.AttrInt("transB", 1)}, nil, false, 1},
		{"Gemm read twice", []string{"x", "w", "b"}, nil, nil, true, 3},
	}
	x := randTensor(r, tensor.FP32, 5, k)
	for _, tc := range tests {
		build := func(exportAll bool) []byte {
			m := onnxtest.NewModel(15)
			m.Input("x", onnx.TypeFloat, "batch", k)
			m.Init("w", w).Init("wt", wt).Init("b", b).Init("b1n", b1n).Init("one", f32(sh(), 1)).
				Init("gamma", randTensor(r, tensor.FP32, n)).Init("beta", randTensor(r, tensor.FP32, n)).
				Init("mean", randTensor(r, tensor.FP32, n)).Init("var", vr)
			m.Node("gemm", "Gemm", tc.gemmIn, []string{"v0"}, tc.gemmAttrs...)
			m.Node("bn", "BatchNormalization", []string{"v0", "gamma", "beta", "mean", "var"}, []string{"v1"}, tc.bnAttrs...)
			m.Node("relu", "Relu", []string{"v1"}, []string{"v2"})
			if exportAll || tc.readTwice {
				m.Output("v0")
			}
			if exportAll {
				m.Output("v1")
			}
			m.Output("v2")
			return m.Bytes()
		}
		for _, ks := range sgemm.Available() {
			t.Run(tc.name+"/"+ks.Name(), func(t *testing.T) {
				r = newRand() // same constants in both builds
				folded, err := LoadBytes(build(false), Options{Concurrency: 1, Kernels: ks.Name()})
				if err != nil {
					t.Fatal(err)
				}
				if got := len(folded.g.nodes); got != tc.wantNodes {
					t.Errorf("%d nodes after folding, want %d", got, tc.wantNodes)
				}
				r = newRand()
				plain, err := LoadBytes(build(true), Options{Concurrency: 1, Kernels: ks.Name()})
				if err != nil {
					t.Fatal(err)
				}
				got, err := folded.Infer(context.Background(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Infer(context.Background(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatal(err)
				}
				g, wv := got[len(got)-1], want[len(want)-1]
				expectClose(t, g, toRef(wv))
			})
		}
	}
}
