package cpu

import (
	"errors"
	"strings"
	"testing"

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
		return newModel(13).input("x", tFloat, "N", 64).output("y").init("W", tensor.New("", tensor.FP32, sh(10, 64))).
			node("/fc1/Gemm", "Gemm", []string{"x", "W"}, []string{"y"}, attrs...).bytes()
	}

	f("unsupported op", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("/conv", "Conv", []string{"x"}, []string{"y"}).bytes(),
		ErrUnsupported, `node "/conv" (Conv): unsupported: operator "Conv"`)
	f("empty", nil, ErrMalformed, "model has no graph")
	f("gemm K mismatch", newModel(13).input("x", tFloat, "batch", 64).output("y").init("W", w).
		node("/fc1/Gemm", "Gemm", []string{"x", "W"}, []string{"y"}, aInt("transB", 1)).bytes(),
		ErrInvalidModel, `node "/fc1/Gemm" (Gemm): invalid model: input B has shape [256 65], want K=64`)
	f("bad transA", gemm(aInt("transA", 2)), ErrInvalidModel, `node "/fc1/Gemm" (Gemm): invalid model: attribute transA = 2, want 0 or 1`)
	f("wrong attribute type", gemm(aFloat("transB", 1)), ErrInvalidModel, "attribute transB has type FLOAT, want INT")
	f("unknown attribute", gemm(aInt("broadcast", 1)), ErrUnsupported, `node "/fc1/Gemm" (Gemm): unsupported: attribute "broadcast"`)
	f("softmax axis", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("sm", "Softmax", []string{"x"}, []string{"y"}, aInt("axis", 2)).bytes(),
		ErrInvalidModel, `node "sm" (Softmax): invalid model: axis 2 out of range for rank 2`)
	f("argmax keepdims", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("am", "ArgMax", []string{"x"}, []string{"y"}, aInt("keepdims", 3)).bytes(),
		ErrInvalidModel, "attribute keepdims = 3")
	f("add no broadcast", newModel(13).input("x", tFloat, "N", 3).output("y").init("b", tensor.New("", tensor.FP32, sh(4))).
		node("add", "Add", []string{"x", "b"}, []string{"y"}).bytes(),
		ErrInvalidModel, `node "add" (Add): invalid model: input A has shape [2 3] and input B has shape [4], which do not broadcast`)
	f("dtype mismatch", newModel(13).input("x", tFloat, "N", 3).output("y").init("b", i64(sh(1), 1)).
		node("add", "Add", []string{"x", "b"}, []string{"y"}).bytes(),
		ErrInvalidModel, "input A is FP32 but input B is INT64")
	f("matmul int", newModel(13).input("x", tInt64, 2, 2).output("y").
		node("mm", "MatMul", []string{"x", "x"}, []string{"y"}).bytes(),
		ErrUnsupported, `node "mm" (MatMul): unsupported: input A is INT64`)
	f("reshape count", newModel(13).input("x", tFloat, "N", 6).output("y").init("s", i64(sh(2), 5, 5)).
		node("r", "Reshape", []string{"x", "s"}, []string{"y"}).bytes(),
		ErrInvalidModel, `node "r" (Reshape): invalid model: cannot reshape input shape [2 6]`)
	f("reshape non-constant shape", newModel(13).input("x", tFloat, 2, 6).input("s", tInt64, 2).output("y").
		node("r", "Reshape", []string{"x", "s"}, []string{"y"}).bytes(),
		ErrUnsupported, "input shape must be a constant")
	f("missing input", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("r", "Relu", []string{"nope"}, []string{"y"}).bytes(),
		ErrInvalidModel, `node "r" (Relu): invalid model: input "nope" is not a graph input, initializer or node output`)
	f("empty required input", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("g", "Gemm", []string{"x", ""}, []string{"y"}).bytes(),
		ErrInvalidModel, `node "g" (Gemm): invalid model: input 1 is required`)
	f("too many inputs", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("r", "Relu", []string{"x", "x"}, []string{"y"}).bytes(),
		ErrInvalidModel, "2 inputs, want 1 to 1")
	f("cycle", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("a", "Add", []string{"x", "b"}, []string{"a"}).
		node("b", "Relu", []string{"a"}, []string{"b"}).
		node("c", "Relu", []string{"a"}, []string{"y"}).bytes(),
		ErrInvalidModel, "cycle")
	f("duplicate output", newModel(13).input("x", tFloat, "N", 3).output("y").
		node("a", "Relu", []string{"x"}, []string{"y"}).
		node("b", "Relu", []string{"x"}, []string{"y"}).bytes(),
		ErrInvalidModel, `node "b" (Relu): invalid model: output "y" is already defined`)
	f("unknown output", newModel(13).input("x", tFloat, "N", 3).output("z").
		node("a", "Relu", []string{"x"}, []string{"y"}).bytes(),
		ErrInvalidModel, `graph output "z" is not produced`)
	f("declared output type", newModel(13).input("x", tFloat, "N", 3).outputTyped("y", tInt64, "N", 3).
		node("a", "Relu", []string{"x"}, []string{"y"}).bytes(),
		ErrInvalidModel, `graph output "y" is declared as element type 7 but computes FP32`)
	f("input without shape", func() []byte {
		m := newModel(13).output("y").node("a", "Relu", []string{"x"}, []string{"y"})
		m.inputs = append(m.inputs, valueInfoProto("x", tFloat, nil))
		return m.bytes()
	}(), ErrUnsupported, `graph input "x": unsupported: no shape declared`)
	f("opset too old", func() []byte { m := newModel(6).input("x", tFloat, 1).output("x"); return m.bytes() }(),
		ErrUnsupported, "ai.onnx opset 6 (supported: 7 to 23)")
	f("opset too new", func() []byte { m := newModel(99).input("x", tFloat, 1).output("x"); return m.bytes() }(),
		ErrUnsupported, "ai.onnx opset 99")
	f("external data", func() []byte {
		tp := tensorProto("W", tensor.New("", tensor.FP32, sh(10, 64)), true)
		tp = pbVarint(tp, 14, 1) // data_location = EXTERNAL
		m := newModel(13).input("x", tFloat, "N", 64).output("y").
			node("g", "Gemm", []string{"x", "W"}, []string{"y"}, aInt("transB", 1))
		m.inits = append(m.inits, tp)
		return m.bytes()
	}(), ErrUnsupported, `tensor "W": unsupported: external data`)
	f("external data entries", func() []byte {
		tp := pbPackedVarints(nil, 1, sh(2))
		tp = pbVarint(tp, 2, tFloat)
		tp = pbString(tp, 8, "W")
		tp = pbBytes(tp, 13, pbString(pbString(nil, 1, "location"), 2, "weights.bin"))
		m := newModel(13).input("x", tFloat, 2).output("y").node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.inits = append(m.inits, tp)
		return m.bytes()
	}(), ErrUnsupported, "external data")
	f("sparse initializer", func() []byte {
		m := newModel(13).input("x", tFloat, 2).output("y").node("a", "Relu", []string{"x"}, []string{"y"})
		m.graphExtra = pbBytes(nil, 15, []byte{})
		return m.bytes()
	}(), ErrUnsupported, "sparse initializers")
	f("raw_data length", func() []byte {
		tp := pbPackedVarints(nil, 1, sh(3))
		tp = pbVarint(tp, 2, tFloat)
		tp = pbString(tp, 8, "W")
		tp = pbBytes(tp, 9, make([]byte, 8))
		m := newModel(13).input("x", tFloat, 3).output("y").node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.inits = append(m.inits, tp)
		return m.bytes()
	}(), ErrMalformed, `tensor "W": malformed model: raw_data has 8 bytes, dims [3] of FP32 need 12`)
	f("float_data count", func() []byte {
		tp := pbPackedVarints(nil, 1, sh(3))
		tp = pbVarint(tp, 2, tFloat)
		tp = pbString(tp, 8, "W")
		tp = pbFixed32(tp, 4, 0)
		m := newModel(13).input("x", tFloat, 3).output("y").node("a", "Add", []string{"x", "W"}, []string{"y"})
		m.inits = append(m.inits, tp)
		return m.bytes()
	}(), ErrMalformed, "float_data has 1 values, dims [3] need 3")
	f("non-default domain", func() []byte {
		m := newModel(13).input("x", tFloat, 3).output("y")
		nd := pbString(pbString(pbString(pbString(nil, 1, "x"), 2, "y"), 4, "FusedGemm"), 7, "com.microsoft")
		m.nodes = append(m.nodes, nd)
		return m.bytes()
	}(), ErrUnsupported, `node #0 (FusedGemm): unsupported: domain "com.microsoft"`)
	f("dropout training", newModel(13).input("x", tFloat, "N", 3).output("y").init("tm", func() *tensor.Tensor {
		b := tensor.New("", tensor.Bool, sh())
		b.Data[0] = 1
		return b
	}()).node("d", "Dropout", []string{"x", "", "tm"}, []string{"y"}).bytes(),
		ErrUnsupported, `node "d" (Dropout): unsupported: Dropout in training mode`)
	f("intermediate memory limit", newModel(13).input("x", tFloat, "N", 100000, 1).output("y").
		init("b", tensor.New("", tensor.FP32, sh(1, 1, 20000))).
		node("add", "Add", []string{"x", "b"}, []string{"y"}).bytes(),
		ErrUnsupported, "bytes of intermediate memory")
	f("constant folding div by zero", newModel(13).input("x", tInt64, 1).output("y").
		init("a", i64(sh(1), 1)).init("z", i64(sh(1), 0)).
		node("div", "Div", []string{"a", "z"}, []string{"q"}).
		node("add", "Add", []string{"x", "q"}, []string{"y"}).bytes(),
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
