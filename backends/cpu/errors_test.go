package cpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// expectLoadError runs a subtest checking that LoadBytes fails on model
// with an error wrapping sentinel and containing want.
func expectLoadError(t *testing.T, name string, model []byte, sentinel error, want string) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		_, err := LoadBytes(model, Options{})
		if err == nil {
			t.Fatalf("LoadBytes succeeded, want error containing %q", want)
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("LoadBytes error %q does not wrap %v", err, sentinel)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadBytes error %q does not contain %q", err, want)
		}
	})
}

// TestLoadErrors checks that models this engine cannot run correctly fail
// at load with an error that names the node or the problem.
func TestLoadErrors(t *testing.T) {
	w := tensor.New("", tensor.FP32, sh(256, 65))
	f := func(name string, model []byte, sentinel error, want string) {
		t.Helper()
		expectLoadError(t, name, model, sentinel, want)
	}
	gemm := func(attrs ...[]byte) []byte {
		return onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 64).Output("y").Init("W", tensor.New("", tensor.FP32, sh(10, 64))).
			Node("/fc1/Gemm", "Gemm", []string{"x", "W"}, []string{"y"}, attrs...).Bytes()
	}

	f("unsupported op", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("/lp", "LpPool", []string{"x"}, []string{"y"}).Bytes(),
		ErrUnsupported, `node "/lp" (LpPool): unsupported: operator "LpPool"`)
	f("empty", nil, ErrMalformed, "model has no graph")
	f("gemm K mismatch", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "batch", 64).Output("y").Init("W", w).
		Node("/fc1/Gemm", "Gemm", []string{"x", "W"}, []string{"y"}, onnxtest.AttrInt("transB", 1)).Bytes(),
		ErrInvalidModel, `node "/fc1/Gemm" (Gemm): invalid model: input B has shape [256 65], want K=64`)
	f("bad transA", gemm(onnxtest.AttrInt("transA", 2)), ErrInvalidModel, `node "/fc1/Gemm" (Gemm): invalid model: attribute transA = 2, want 0 or 1`)
	f("wrong attribute type", gemm(onnxtest.AttrFloat("transB", 1)), ErrInvalidModel, "attribute transB has type FLOAT, want INT")
	f("unknown attribute", gemm(onnxtest.AttrInt("transC", 1)), ErrUnsupported, `node "/fc1/Gemm" (Gemm): unsupported: attribute "transC"`)
	f("legacy attribute", gemm(onnxtest.AttrInt("broadcast", 1)), ErrInvalidModel, `node "/fc1/Gemm" (Gemm): invalid model: attribute broadcast exists before opset 7 only`)
	f("softmax axis", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("sm", "Softmax", []string{"x"}, []string{"y"}, onnxtest.AttrInt("axis", 2)).Bytes(),
		ErrInvalidModel, `node "sm" (Softmax): invalid model: axis 2 out of range for rank 2`)
	f("argmax keepdims", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("am", "ArgMax", []string{"x"}, []string{"y"}, onnxtest.AttrInt("keepdims", 3)).Bytes(),
		ErrInvalidModel, "attribute keepdims = 3")
	f("add no broadcast", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").Init("b", tensor.New("", tensor.FP32, sh(4))).
		Node("add", "Add", []string{"x", "b"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "add" (Add): invalid model: input A has shape [2 3] and input B has shape [4], which do not broadcast`)
	f("dtype mismatch", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").Init("b", i64(sh(1), 1)).
		Node("add", "Add", []string{"x", "b"}, []string{"y"}).Bytes(),
		ErrInvalidModel, "input A is FP32 but input B is INT64")
	f("matmul int", onnxtest.NewModel(13).Input("x", onnx.TypeInt64, 2, 2).Output("y").
		Node("mm", "MatMul", []string{"x", "x"}, []string{"y"}).Bytes(),
		ErrUnsupported, `node "mm" (MatMul): unsupported: input A is INT64`)
	f("reshape count", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 6).Output("y").Init("s", i64(sh(2), 5, 5)).
		Node("r", "Reshape", []string{"x", "s"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "r" (Reshape): invalid model: cannot reshape input shape [2 6]`)
	f("reshape non-constant shape", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2, 6).Input("s", onnx.TypeInt64, 2).Output("y").
		Node("r", "Reshape", []string{"x", "s"}, []string{"y"}).Bytes(),
		ErrUnsupported, "input shape must be a constant")
	f("missing input", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("r", "Relu", []string{"nope"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "r" (Relu): invalid model: input "nope" is not a graph input, initializer or node output`)
	f("empty required input", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("g", "Gemm", []string{"x", ""}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "g" (Gemm): invalid model: input 1 is required`)
	f("too many inputs", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("r", "Relu", []string{"x", "x"}, []string{"y"}).Bytes(),
		ErrInvalidModel, "2 inputs, want 1 to 1")
	f("cycle", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("a", "Add", []string{"x", "b"}, []string{"a"}).
		Node("b", "Relu", []string{"a"}, []string{"b"}).
		Node("c", "Relu", []string{"a"}, []string{"y"}).Bytes(),
		ErrInvalidModel, "cycle")
	f("duplicate output", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").
		Node("a", "Relu", []string{"x"}, []string{"y"}).
		Node("b", "Relu", []string{"x"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "b" (Relu): invalid model: output "y" is already defined`)
	f("unknown output", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("z").
		Node("a", "Relu", []string{"x"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `graph output "z" is not produced`)
	f("declared output type", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).OutputTyped("y", onnx.TypeInt64, "N", 3).
		Node("a", "Relu", []string{"x"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `graph output "y" is declared as element type 7 but computes FP32`)
	f("input without shape", func() []byte {
		m := onnxtest.NewModel(13).Output("y").Node("a", "Relu", []string{"x"}, []string{"y"})
		m.Inputs = append(m.Inputs, onnxtest.ValueInfo("x", onnx.TypeFloat, nil))
		return m.Bytes()
	}(), ErrUnsupported, `graph input "x": unsupported: no shape declared`)
	f("opset too old", func() []byte { m := onnxtest.NewModel(5).Input("x", onnx.TypeFloat, 1).Output("x"); return m.Bytes() }(),
		ErrUnsupported, "ai.onnx opset 5 (supported: 6 to 23)")
	f("opset too new", func() []byte { m := onnxtest.NewModel(99).Input("x", onnx.TypeFloat, 1).Output("x"); return m.Bytes() }(),
		ErrUnsupported, "ai.onnx opset 99")
	f("external data", func() []byte {
		tp := onnxtest.TensorProto("W", tensor.New("", tensor.FP32, sh(10, 64)), true)
		tp = onnxtest.AppendVarint(tp, 14, 1) // data_location = EXTERNAL
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 64).Output("y").
			Node("g", "Gemm", []string{"x", "W"}, []string{"y"}, onnxtest.AttrInt("transB", 1))
		m.Inits = append(m.Inits, tp)
		return m.Bytes()
	}(), ErrUnsupported, `tensor "W": unsupported: external data`)
	f("external data entries", func() []byte {
		tp := onnxtest.AppendPackedVarints(nil, 1, sh(2))
		tp = onnxtest.AppendVarint(tp, 2, onnx.TypeFloat)
		tp = onnxtest.AppendString(tp, 8, "W")
		tp = onnxtest.AppendBytes(tp, 13, onnxtest.AppendString(onnxtest.AppendString(nil, 1, "location"), 2, "weights.bin"))
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2).Output("y").Node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.Inits = append(m.Inits, tp)
		return m.Bytes()
	}(), ErrUnsupported, "external data")
	f("sparse initializer", func() []byte {
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2).Output("y").Node("a", "Relu", []string{"x"}, []string{"y"})
		m.GraphExtra = onnxtest.AppendBytes(nil, 15, []byte{})
		return m.Bytes()
	}(), ErrUnsupported, "sparse initializers")
	f("raw_data length", func() []byte {
		tp := onnxtest.AppendPackedVarints(nil, 1, sh(3))
		tp = onnxtest.AppendVarint(tp, 2, onnx.TypeFloat)
		tp = onnxtest.AppendString(tp, 8, "W")
		tp = onnxtest.AppendBytes(tp, 9, make([]byte, 8))
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 3).Output("y").Node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.Inits = append(m.Inits, tp)
		return m.Bytes()
	}(), ErrMalformed, `tensor "W": malformed model: raw_data has 8 bytes, dims [3] of FP32 need 12`)
	f("float_data count", func() []byte {
		tp := onnxtest.AppendPackedVarints(nil, 1, sh(3))
		tp = onnxtest.AppendVarint(tp, 2, onnx.TypeFloat)
		tp = onnxtest.AppendString(tp, 8, "W")
		tp = onnxtest.AppendFixed32(tp, 4, 0)
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 3).Output("y").Node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.Inits = append(m.Inits, tp)
		return m.Bytes()
	}(), ErrMalformed, "float_data has 1 values, dims [3] need 3")
	f("non-default domain", func() []byte {
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 3).Output("y")
		nd := onnxtest.AppendString(onnxtest.AppendString(onnxtest.AppendString(onnxtest.AppendString(nil, 1, "x"), 2, "y"), 4, "FusedGemm"), 7, "com.microsoft")
		m.Nodes = append(m.Nodes, nd)
		return m.Bytes()
	}(), ErrUnsupported, `node #0 (FusedGemm): unsupported: domain "com.microsoft"`)
	f("dropout training", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 3).Output("y").Init("tm", func() *tensor.Tensor {
		b := tensor.New("", tensor.Bool, sh())
		b.Data[0] = 1
		return b
	}()).Node("d", "Dropout", []string{"x", "", "tm"}, []string{"y"}).Bytes(),
		ErrUnsupported, `node "d" (Dropout): unsupported: Dropout in training mode`)
	f("intermediate memory limit", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "N", 100000, 1).Output("y").
		Init("b", tensor.New("", tensor.FP32, sh(1, 1, 20000))).
		Node("add", "Add", []string{"x", "b"}, []string{"y"}).Bytes(),
		ErrUnsupported, "bytes of intermediate memory")
	f("constant folding div by zero", onnxtest.NewModel(13).Input("x", onnx.TypeInt64, 1).Output("y").
		Init("a", i64(sh(1), 1)).Init("z", i64(sh(1), 0)).
		Node("div", "Div", []string{"a", "z"}, []string{"q"}).
		Node("add", "Add", []string{"x", "q"}, []string{"y"}).Bytes(),
		ErrInvalidModel, `node "div" (Div): invalid model: constant folding failed`)
}

// TestTruncatedModels cuts a valid model at every length: each prefix must
// fail to load (or, when it happens to end on a field boundary, load or
// fail cleanly), never panic.
func TestTruncatedModels(t *testing.T) {
	r := newRand()
	model := mlpModel(randTensor(r, tensor.FP32, 4, 3), randTensor(r, tensor.FP32, 4),
		randTensor(r, tensor.FP32, 4, 2), randTensor(r, tensor.FP32, 2))
	malformed := 0
	for n := range len(model) {
		_, err := LoadBytes(model[:n], Options{Concurrency: 1})
		if testing.Verbose() && n%97 == 0 {
			t.Logf("prefix %d: %v", n, err)
		}
		if err == nil {
			continue
		}
		if strings.Contains(err.Error(), "BUG") {
			t.Fatalf("prefix %d: %v", n, err)
		}
		if errors.Is(err, ErrMalformed) {
			malformed++
		}
	}
	if malformed == 0 {
		t.Fatal("no truncated prefix reported ErrMalformed")
	}
	// A truncation inside a length-delimited field is always malformed.
	_, err := LoadBytes(model[:len(model)-1], Options{})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "cpu: decode:") {
		t.Fatalf("LoadBytes(model minus one byte) = %v, want a decode error", err)
	}
	// Garbage.
	for _, b := range [][]byte{{0xff}, {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, []byte("not a model at all"), {0x3a, 0x02, 0x0a}} {
		if _, err := LoadBytes(b, Options{}); err == nil {
			t.Errorf("LoadBytes(%q) succeeded", b)
		}
	}
}
