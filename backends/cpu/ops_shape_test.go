package cpu

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// iota returns the FP32 tensor 0, 1, 2, ... of shape.
func iotaT(shape ...int64) *tensor.Tensor {
	t := tensor.New("", tensor.FP32, shape)
	for i := range t.Len() {
		t.Float32s()[i] = float32(i)
	}
	return t
}

func TestReshapeLikeOps(t *testing.T) {
	x := iotaT(2, 3, 4)
	same := toRef(x)
	with := func(shape ...int64) ref { r := same; r.shape = shape; return r }
	tests := []struct {
		name  string
		opset int64
		op    string
		args  []arg
		attrs [][]byte
		want  ref
	}{
		{"Flatten/default", 13, "Flatten", nil, nil, with(2, 12)},
		{"Flatten/axis0", 13, "Flatten", nil, [][]byte{onnxtest.AttrInt("axis", 0)}, with(1, 24)},
		{"Flatten/axis2", 13, "Flatten", nil, [][]byte{onnxtest.AttrInt("axis", 2)}, with(6, 4)},
		{"Flatten/axis3", 13, "Flatten", nil, [][]byte{onnxtest.AttrInt("axis", 3)}, with(24, 1)},
		{"Flatten/axis-1", 13, "Flatten", nil, [][]byte{onnxtest.AttrInt("axis", -1)}, with(6, 4)},
		{"Reshape/plain", 13, "Reshape", []arg{cst("s", i64(sh(2), 4, 6))}, nil, with(4, 6)},
		{"Reshape/zero and -1", 13, "Reshape", []arg{cst("s", i64(sh(3), 0, -1, 2))}, nil, with(2, 6, 2)},
		{"Reshape/-1 only", 13, "Reshape", []arg{cst("s", i64(sh(1), -1))}, nil, with(24)},
		{"Reshape/allowzero=0", 14, "Reshape", []arg{cst("s", i64(sh(2), 0, 12))}, [][]byte{onnxtest.AttrInt("allowzero", 0)}, with(2, 12)},
		{"Identity", 13, "Identity", nil, nil, same},
		{"Dropout/opset7", 7, "Dropout", nil, [][]byte{onnxtest.AttrFloat("ratio", 0.3)}, same},
		{"Dropout/opset13 ratio", 13, "Dropout", []arg{cst("r", f32(sh(), 0.5))}, nil, same},
		{"Dropout/opset13 training false", 13, "Dropout", []arg{{}, cst("tm", tensor.New("", tensor.Bool, sh()))}, nil, same},
		{"Squeeze/none", 11, "Squeeze", nil, nil, same},
		{"Unsqueeze/attr", 11, "Unsqueeze", nil, [][]byte{onnxtest.AttrInts("axes", 0, 4)}, with(1, 2, 3, 4, 1)},
		{"Unsqueeze/input", 13, "Unsqueeze", []arg{cst("a", i64(sh(2), -1, 1))}, nil, with(2, 1, 3, 4, 1)},
		{"Transpose/identity perm", 13, "Transpose", nil, [][]byte{onnxtest.AttrInts("perm", 0, 1, 2)}, same},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]arg{in("x", x)}, tc.args...)
			outs := runModel(t, oneNode(tc.opset, tc.op, args, 1, tc.attrs...), x)
			expectClose(t, outs[0], tc.want)
		})
	}
}

func TestSqueeze(t *testing.T) {
	x := iotaT(1, 3, 1, 2)
	with := func(shape ...int64) ref { r := toRef(x); r.shape = shape; return r }
	tests := []struct {
		name  string
		opset int64
		args  []arg
		attrs [][]byte
		want  ref
	}{
		{"all", 13, nil, nil, with(3, 2)},
		{"attr", 11, nil, [][]byte{onnxtest.AttrInts("axes", 0)}, with(3, 1, 2)},
		{"attr negative", 11, nil, [][]byte{onnxtest.AttrInts("axes", -2)}, with(1, 3, 2)},
		{"input", 13, []arg{cst("a", i64(sh(2), 0, 2))}, nil, with(3, 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]arg{in("x", x)}, tc.args...)
			outs := runModel(t, oneNode(tc.opset, "Squeeze", args, 1, tc.attrs...), x)
			expectClose(t, outs[0], tc.want)
		})
	}
}

func TestDropoutMask(t *testing.T) {
	x := iotaT(2, 3)
	outs := runModel(t, oneNode(13, "Dropout", []arg{in("x", x)}, 2), x)
	expectClose(t, outs[0], toRef(x))
	if outs[1].DType != tensor.Bool {
		t.Fatalf("mask is %s, want BOOL", outs[1].DType)
	}
	expectClose(t, outs[1], ref{shape: sh(2, 3), data: []float64{1, 1, 1, 1, 1, 1}})
}

func TestTranspose(t *testing.T) {
	x := iotaT(2, 3, 4)
	tests := []struct {
		perm []int64 // nil: default (reverse)
	}{{nil}, {sh(1, 0, 2)}, {sh(2, 0, 1)}, {sh(0, 2, 1)}}
	for _, dt := range []tensor.DataType{tensor.FP32, tensor.Int64, tensor.Bool} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%v", dt, tc.perm), func(t *testing.T) {
				xt, _ := tensor.Convert(x, dt)
				var attrs [][]byte
				perm := tc.perm
				if perm == nil {
					perm = sh(2, 1, 0)
				} else {
					attrs = append(attrs, onnxtest.AttrInts("perm", perm...))
				}
				outs := runModel(t, oneNode(13, "Transpose", []arg{in("x", xt)}, 1, attrs...), xt)
				out := make([]int64, 3)
				for i, p := range perm {
					out[i] = x.Shape[p]
				}
				want := newRef(out...)
				for i := range want.data {
					o := unravel(i, out)
					src := make([]int, 3)
					for k, p := range perm {
						src[p] = o[k]
					}
					want.data[i] = xt.Float64At(ravelBroadcast(src, x.Shape))
				}
				expectClose(t, outs[0], want)
			})
		}
	}
}

func TestConcat(t *testing.T) {
	a, b := iotaT(2, 3), randTensor(newRand(), tensor.FP32, 2, 2)
	c := randTensor(newRand(), tensor.FP32, 1, 3)
	tests := []struct {
		name string
		args []arg
		axis int64
		want func() ref
	}{
		{"axis1", []arg{in("a", a), in("b", b)}, 1, func() ref {
			r := newRef(2, 5)
			for i := range 2 {
				for j := range 5 {
					if j < 3 {
						r.data[i*5+j] = a.Float64At(i*3 + j)
					} else {
						r.data[i*5+j] = b.Float64At(i*2 + j - 3)
					}
				}
			}
			return r
		}},
		{"axis-1 const", []arg{in("a", a), cst("b", b)}, -1, nil},
		{"axis0 three", []arg{in("a", a), cst("c", c), in("a2", a)}, 0, func() ref {
			r := ref{shape: sh(5, 3)}
			r.data = append(append(append(r.data, toRef(a).data...), toRef(c).data...), toRef(a).data...)
			return r
		}},
	}
	tests[1].want = tests[0].want
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outs := runModel(t, oneNode(13, "Concat", tc.args, 1, onnxtest.AttrInt("axis", tc.axis)), graphInputs(tc.args)...)
			expectClose(t, outs[0], tc.want())
		})
	}
}

func TestGather(t *testing.T) {
	x := iotaT(4, 3)
	tests := []struct {
		name string
		idx  *tensor.Tensor
		axis int64
		want ref
	}{
		{"axis0", i64(sh(2), 2, 0), 0, ref{sh(2, 3), []float64{6, 7, 8, 0, 1, 2}}},
		{"axis0 negative", i64(sh(1), -1), 0, ref{sh(1, 3), []float64{9, 10, 11}}},
		{"axis0 scalar", i64(sh(), 1), 0, ref{sh(3), []float64{3, 4, 5}}},
		{"axis0 2-D", i64(sh(2, 2), 0, 1, 3, 3), 0, ref{sh(2, 2, 3), []float64{0, 1, 2, 3, 4, 5, 9, 10, 11, 9, 10, 11}}},
		{"axis1", i64(sh(2), 2, -3), 1, ref{sh(4, 2), []float64{2, 0, 5, 3, 8, 6, 11, 9}}},
		{"axis-1 int32", func() *tensor.Tensor { t, _ := tensor.Convert(i64(sh(1), 1), tensor.Int32); return t }(), -1, ref{sh(4, 1), []float64{1, 4, 7, 10}}},
	}
	for _, tc := range tests {
		for _, konst := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/const=%v", tc.name, konst), func(t *testing.T) {
				args := []arg{in("x", x), {name: "i", t: tc.idx, konst: konst}}
				outs := runModel(t, oneNode(13, "Gather", args, 1, onnxtest.AttrInt("axis", tc.axis)), graphInputs(args)...)
				expectClose(t, outs[0], tc.want)
			})
		}
	}
	t.Run("out of range", func(t *testing.T) {
		args := []arg{in("x", x), in("i", i64(sh(1), 4))}
		be, err := LoadBytes(oneNode(13, "Gather", args, 1), Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = be.Infer(context.Background(), graphInputs(args))
		if err == nil || !strings.Contains(err.Error(), `node "n" (Gather): index 4 out of range`) {
			t.Fatalf("Infer = %v, want index out of range naming the node", err)
		}
	})
}

func TestCast(t *testing.T) {
	x := f32(sh(6), -2.7, -0.5, 0, 0.5, 1.9, 300)
	tests := []struct {
		to   int32
		dt   tensor.DataType
		want []float64
	}{
		{onnx.TypeInt64, tensor.Int64, []float64{-2, 0, 0, 0, 1, 300}},
		{onnx.TypeInt32, tensor.Int32, []float64{-2, 0, 0, 0, 1, 300}},
		{onnx.TypeDouble, tensor.FP64, []float64{-2.7, -0.5, 0, 0.5, 1.9, 300}},
		{onnx.TypeBool, tensor.Bool, []float64{1, 1, 0, 1, 1, 1}},
		{onnx.TypeFloat16, tensor.FP16, []float64{-2.7, -0.5, 0, 0.5, 1.9, 300}},
		{onnx.TypeFloat, tensor.FP32, []float64{-2.7, -0.5, 0, 0.5, 1.9, 300}},
	}
	for _, tc := range tests {
		t.Run(tc.dt.String(), func(t *testing.T) {
			outs := runModel(t, oneNode(13, "Cast", []arg{in("x", x)}, 1, onnxtest.AttrInt("to", int64(tc.to))), x)
			if outs[0].DType != tc.dt {
				t.Fatalf("output is %s, want %s", outs[0].DType, tc.dt)
			}
			want := ref{shape: sh(6), data: tc.want}
			if tc.dt.IsFloat() {
				for i := range want.data {
					want.data[i] = float64(float32(want.data[i]))
				}
			}
			expectClose(t, outs[0], want)
		})
	}
	t.Run("chain INT64->FP32->BOOL->FP64", func(t *testing.T) {
		xi := i64(sh(4), -3, 0, 7, 1<<40)
		m := onnxtest.NewModel(13).Input("x", onnx.TypeInt64, 4).Output("y").
			Node("c1", "Cast", []string{"x"}, []string{"f"}, onnxtest.AttrInt("to", onnx.TypeFloat)).
			Node("c2", "Cast", []string{"f"}, []string{"b"}, onnxtest.AttrInt("to", onnx.TypeBool)).
			Node("c3", "Cast", []string{"b"}, []string{"d"}, onnxtest.AttrInt("to", onnx.TypeDouble)).
			Node("add", "Add", []string{"d", "d"}, []string{"y"}).Bytes()
		outs := runModel(t, m, xi)
		expectClose(t, outs[0], ref{sh(4), []float64{2, 0, 2, 2}})
	})
}

func TestConstantAndShape(t *testing.T) {
	tests := []struct {
		name  string
		opset int64
		attr  []byte
		want  ref
		dt    tensor.DataType
	}{
		{"value", 13, onnxtest.AttrTensor("value", onnxtest.TensorProto("", f32(sh(2), 1.5, -2), true)), ref{sh(2), []float64{1.5, -2}}, tensor.FP32},
		{"value raw", 13, onnxtest.AttrTensor("value", onnxtest.TensorProto("", i64(sh(1, 2), 7, -8), false)), ref{sh(1, 2), []float64{7, -8}}, tensor.Int64},
		{"value_float", 13, onnxtest.AttrFloat("value_float", 2.5), ref{sh(), []float64{2.5}}, tensor.FP32},
		{"value_floats", 13, onnxtest.AttrFloats("value_floats", 1, 2, 3), ref{sh(3), []float64{1, 2, 3}}, tensor.FP32},
		{"value_int", 13, onnxtest.AttrInt("value_int", -4), ref{sh(), []float64{-4}}, tensor.Int64},
		{"value_ints", 13, onnxtest.AttrInts("value_ints", 4, 5), ref{sh(2), []float64{4, 5}}, tensor.Int64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// y = Identity(Constant) + 0 * Cast(x): the graph still needs an input.
			m := onnxtest.NewModel(tc.opset).Input("x", onnx.TypeFloat, 1).Output("y").
				Node("k", "Constant", nil, []string{"c"}, tc.attr).
				Node("id", "Identity", []string{"c"}, []string{"y"}).Bytes()
			outs := runModel(t, m, f32(sh(1), 0))
			if outs[0].DType != tc.dt {
				t.Fatalf("output is %s, want %s", outs[0].DType, tc.dt)
			}
			expectClose(t, outs[0], tc.want)
		})
	}
	x := iotaT(2, 3, 4)
	for _, se := range []struct {
		start, end *int64
		want       []float64
	}{{nil, nil, []float64{2, 3, 4}}, {ptr(int64(1)), nil, []float64{3, 4}}, {nil, ptr(int64(-1)), []float64{2, 3}}, {ptr(int64(-2)), ptr(int64(10)), []float64{3, 4}}, {ptr(int64(2)), ptr(int64(1)), nil}} {
		t.Run(fmt.Sprintf("Shape/%v", se.want), func(t *testing.T) {
			var attrs [][]byte
			if se.start != nil {
				attrs = append(attrs, onnxtest.AttrInt("start", *se.start))
			}
			if se.end != nil {
				attrs = append(attrs, onnxtest.AttrInt("end", *se.end))
			}
			outs := runModel(t, oneNode(15, "Shape", []arg{in("x", x)}, 1, attrs...), x)
			expectClose(t, outs[0], ref{sh(int64(len(se.want))), se.want})
		})
	}
}

// torchViewModel is what torch exports for x.view(x.size(0), -1) followed
// by a Linear layer and a ReLU, with a dynamic batch dimension; opset 11
// (Unsqueeze axes as attribute) or 13 (as input).
func torchViewModel(opset int64, w, b *tensor.Tensor) []byte {
	m := onnxtest.NewModel(opset).Input("x", onnx.TypeFloat, "batch", 2, 3).Output("y").
		Init("W", w).Init("B", b).
		Node("/Shape", "Shape", []string{"x"}, []string{"s"}).
		Node("/Constant", "Constant", nil, []string{"zero"}, onnxtest.AttrTensor("value", onnxtest.TensorProto("", i64(sh(), 0), false))).
		Node("/Gather", "Gather", []string{"s", "zero"}, []string{"n"}, onnxtest.AttrInt("axis", 0))
	if opset < 13 {
		m.Node("/Unsqueeze", "Unsqueeze", []string{"n"}, []string{"n1"}, onnxtest.AttrInts("axes", 0))
	} else {
		m.Node("/Constant_1", "Constant", nil, []string{"ax"}, onnxtest.AttrTensor("value", onnxtest.TensorProto("", i64(sh(1), 0), false))).
			Node("/Unsqueeze", "Unsqueeze", []string{"n", "ax"}, []string{"n1"})
	}
	return m.Node("/Constant_2", "Constant", nil, []string{"m1"}, onnxtest.AttrTensor("value", onnxtest.TensorProto("", i64(sh(1), -1), false))).
		Node("/Concat", "Concat", []string{"n1", "m1"}, []string{"shape"}, onnxtest.AttrInt("axis", 0)).
		Node("/Reshape", "Reshape", []string{"x", "shape"}, []string{"flat"}).
		Node("/fc/Gemm", "Gemm", []string{"flat", "W", "B"}, []string{"g"}, onnxtest.AttrInt("transB", 1)).
		Node("/Relu", "Relu", []string{"g"}, []string{"y"}).Bytes()
}

func TestDynamicBatchViewPattern(t *testing.T) {
	r := newRand()
	w, b := randTensor(r, tensor.FP32, 5, 6), randTensor(r, tensor.FP32, 5)
	for _, opset := range []int64{11, 13} {
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) {
			be, err := LoadBytes(torchViewModel(opset, w, b), Options{MaxBatchSize: 64, Concurrency: 2})
			if err != nil {
				t.Fatal(err)
			}
			md := be.Metadata()
			if got := fmt.Sprint(md.Inputs[0].Shape, md.Outputs[0].Shape); got != "[-1 2 3] [-1 5]" {
				t.Fatalf("metadata shapes %s, want [-1 2 3] [-1 5]", got)
			}
			for _, n := range []int64{1, 7, 3, 64, 7} {
				x := randTensor(r, tensor.FP32, n, 2, 3)
				outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
				if err != nil {
					t.Fatalf("batch %d: %v", n, err)
				}
				flat := toRef(x)
				flat.shape = sh(n, 6)
				c := toRef(b)
				want := refUnary(refGemm(flat, toRef(w), &c, 1, 1, false, true), func(v float64) float64 { return max(v, 0) })
				expectClose(t, outs[0], want)
			}
		})
	}
}

// TestMLPChain runs a small MLP end to end at several batch sizes, which
// exercises arena reuse between steps.
func TestMLPChain(t *testing.T) {
	r := newRand()
	w1, b1 := randTensor(r, tensor.FP32, 16, 8), randTensor(r, tensor.FP32, 16)
	w2, b2 := randTensor(r, tensor.FP32, 16, 4), randTensor(r, tensor.FP32, 4)
	m := mlpModel(w1, b1, w2, b2)
	be, err := LoadBytes(m, Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{1, 2, 5, 33, 2} {
		x := randTensor(r, tensor.FP32, n, 8)
		outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		scaled := refBinary(toRef(x), ref{sh(), []float64{4}}, func(a, b float64) float64 { return a / b })
		c1, c2 := toRef(b1), toRef(b2)
		h := refUnary(refGemm(scaled, toRef(w1), &c1, 1, 1, false, true), func(v float64) float64 { return max(v, 0) })
		logits := refGemm(h, toRef(w2), &c2, 1, 1, false, false)
		expectClose(t, outs[0], logits)
		expectClose(t, outs[1], refSoftmax(logits, 1, false, false))
		expectClose(t, outs[2], refArg(logits, 1, false, false, true))
	}
}

// mlpModel is Div(x, 4) → Gemm(transB) → Relu → MatMul+Add → logits,
// Softmax → probabilities, ArgMax → label.
func mlpModel(w1, b1, w2, b2 *tensor.Tensor) []byte {
	in := w1.Shape[1]
	return onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", in).
		OutputTyped("logits", onnx.TypeFloat, "N", w2.Shape[1]).OutputTyped("probabilities", onnx.TypeFloat, "N", w2.Shape[1]).OutputTyped("label", onnx.TypeInt64, "N").
		InitTyped("w1", w1).Init("b1", b1).Init("w2", w2).Init("b2", b2).Init("four", f32(sh(), 4)).
		Node("/div", "Div", []string{"x", "four"}, []string{"xs"}).
		Node("/fc1/Gemm", "Gemm", []string{"xs", "w1", "b1"}, []string{"h1"}, onnxtest.AttrInt("transB", 1)).
		Node("/relu", "Relu", []string{"h1"}, []string{"h"}).
		Node("/fc2/MatMul", "MatMul", []string{"h", "w2"}, []string{"mm"}).
		Node("/fc2/Add", "Add", []string{"mm", "b2"}, []string{"logits"}).
		Node("/softmax", "Softmax", []string{"logits"}, []string{"probabilities"}, onnxtest.AttrInt("axis", 1)).
		Node("/argmax", "ArgMax", []string{"logits"}, []string{"label"}, onnxtest.AttrInt("axis", 1), onnxtest.AttrInt("keepdims", 0)).Bytes()
}
