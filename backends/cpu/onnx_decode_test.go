package cpu

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/tensor"
)

// TestTensorProtoEncodings decodes the same values from each way a
// TensorProto may carry them: raw_data, packed and unpacked typed fields.
func TestTensorProtoEncodings(t *testing.T) {
	header := func(elem int32, dims []int64, packedDims bool) []byte {
		var b []byte
		if packedDims {
			b = pbPackedVarints(b, 1, dims)
		} else {
			b = pbUnpackedVarints(b, 1, dims)
		}
		b = pbVarint(b, 2, uint64(elem))
		return pbString(b, 8, "t")
	}
	fixed32s := func(b []byte, num protowire.Number, packed bool, vs ...float32) []byte {
		if !packed {
			for _, v := range vs {
				b = pbFixed32(b, num, math.Float32bits(v))
			}
			return b
		}
		var p []byte
		for _, v := range vs {
			p = protowire.AppendFixed32(p, math.Float32bits(v))
		}
		return pbBytes(b, num, p)
	}
	fixed64s := func(b []byte, packed bool, vs ...float64) []byte {
		var p []byte
		for _, v := range vs {
			if !packed {
				b = protowire.AppendTag(b, 10, protowire.Fixed64Type)
				b = protowire.AppendFixed64(b, math.Float64bits(v))
			}
			p = protowire.AppendFixed64(p, math.Float64bits(v))
		}
		if packed {
			b = pbBytes(b, 10, p)
		}
		return b
	}
	varints := func(b []byte, num protowire.Number, packed bool, vs ...int64) []byte {
		if packed {
			return pbPackedVarints(b, num, vs)
		}
		return pbUnpackedVarints(b, num, vs)
	}
	half := func(f float32) int64 { return int64(tensor.Float32ToHalf(f)) }
	tests := []struct {
		name string
		b    []byte
		dt   tensor.DataType
		want []float64
	}{
		{"float packed", fixed32s(header(tFloat, sh(3), true), 4, true, 1, -2.5, 3), tensor.FP32, []float64{1, -2.5, 3}},
		{"float unpacked", fixed32s(header(tFloat, sh(3), false), 4, false, 1, -2.5, 3), tensor.FP32, []float64{1, -2.5, 3}},
		{"float raw", pbBytes(header(tFloat, sh(2), true), 9, f32(sh(2), 7, -8).Data), tensor.FP32, []float64{7, -8}},
		{"double packed", fixed64s(header(tDouble, sh(2), true), true, 0.1, -1e300), tensor.FP64, []float64{0.1, -1e300}},
		{"double unpacked", fixed64s(header(tDouble, sh(2), true), false, 0.1, -1e300), tensor.FP64, []float64{0.1, -1e300}},
		{"int64 packed", varints(header(tInt64, sh(3), true), 7, true, -1, 0, 1<<40), tensor.Int64, []float64{-1, 0, 1 << 40}},
		{"int64 unpacked", varints(header(tInt64, sh(3), true), 7, false, -1, 0, 1<<40), tensor.Int64, []float64{-1, 0, 1 << 40}},
		{"int32", varints(header(tInt32, sh(2), true), 5, true, -7, 1<<30), tensor.Int32, []float64{-7, 1 << 30}},
		{"int8", varints(header(onnxInt8, sh(2), true), 5, false, -128, 127), tensor.Int8, []float64{-128, 127}},
		{"uint16", varints(header(onnxUint16, sh(1), true), 5, true, 65535), tensor.Uint16, []float64{65535}},
		{"bool", varints(header(tBool, sh(3), true), 5, true, 0, 1, 5), tensor.Bool, []float64{0, 1, 1}},
		{"bool raw", pbBytes(header(tBool, sh(2), true), 9, []byte{0, 2}), tensor.Bool, []float64{0, 1}},
		{"float16", varints(header(onnxFloat16, sh(2), true), 5, true, half(1.5), half(-2)), tensor.FP16, []float64{1.5, -2}},
		{"uint32", varints(header(onnxUint32, sh(1), true), 11, true, 1<<32-1), tensor.Uint32, []float64{1<<32 - 1}},
		{"uint64", varints(header(onnxUint64, sh(1), true), 11, false, 1<<50), tensor.Uint64, []float64{1 << 50}},
		{"scalar", fixed32s(header(tFloat, nil, true), 4, true, 4), tensor.FP32, []float64{4}},
		{"empty", header(tFloat, sh(0, 3), true), tensor.FP32, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := decodeTensor(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tp.toTensor()
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != tc.dt || got.Name != "t" {
				t.Fatalf("decoded %s %q, want %s \"t\"", got.DType, got.Name, tc.dt)
			}
			vals := make([]float64, got.Len())
			for i := range vals {
				vals[i] = got.Float64At(i)
			}
			if len(tc.want) == 0 && len(vals) == 0 {
				return
			}
			if !reflect.DeepEqual(vals, tc.want) {
				t.Fatalf("values %v, want %v", vals, tc.want)
			}
		})
	}
}

func TestTensorProtoErrors(t *testing.T) {
	f := func(name string, b []byte, sentinel error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			tp, err := decodeTensor(b)
			if err == nil {
				_, err = tp.toTensor()
			}
			if !errors.Is(err, sentinel) {
				t.Fatalf("error %v, want %v", err, sentinel)
			}
			t.Log(err)
		})
	}
	hdr := pbVarint(pbPackedVarints(nil, 1, sh(2)), 2, tFloat)
	f("packed floats not multiple of 4", pbBytes(hdr, 4, []byte{1, 2, 3}), ErrMalformed)
	f("float field with varint type", pbVarint(hdr, 4, 3), ErrMalformed)
	f("truncated varint", append(pbVarint(nil, 2, 1), 0x38, 0xff), ErrMalformed)
	f("negative dim", pbVarint(pbPackedVarints(nil, 1, sh(-2)), 2, tFloat), ErrMalformed)
	f("huge dims", pbVarint(pbPackedVarints(nil, 1, sh(1<<40, 1<<40)), 2, tFloat), ErrMalformed)
	f("string", pbBytes(pbVarint(pbPackedVarints(nil, 1, sh(1)), 2, onnxString), 6, []byte("a")), ErrUnsupported)
	f("complex", pbVarint(pbPackedVarints(nil, 1, sh(1)), 2, 14), ErrUnsupported)
	f("segment", pbBytes(hdr, 3, nil), ErrUnsupported)
	f("rank 17", pbVarint(pbPackedVarints(nil, 1, make([]int64, 17)), 2, tFloat), ErrUnsupported)
}

func TestAttributeDecoding(t *testing.T) {
	// ints unpacked, type omitted (pre-IR-3 writers).
	b := pbString(nil, 1, "axes")
	b = pbUnpackedVarints(b, 8, []int64{0, -1})
	a, err := decodeAttr(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.typ != attrInts || !reflect.DeepEqual(a.ints, []int64{0, -1}) {
		t.Fatalf("decoded %s %v, want INTS [0 -1]", a.typ, a.ints)
	}
	a, err = decodeAttr(aFloats("f", 1, 2))
	if err != nil || a.typ != attrFloats || !reflect.DeepEqual(a.floats, []float32{1, 2}) {
		t.Fatalf("floats: %v %v %v", a.typ, a.floats, err)
	}
	a, err = decodeAttr(aString("mode", "constant"))
	if err != nil || a.typ != attrString || string(a.s) != "constant" {
		t.Fatalf("string: %v %q %v", a.typ, a.s, err)
	}
	// An attribute used with the wrong accessor type.
	as := attrs{a}
	if _, err := as.int("mode", 0); !errors.Is(err, ErrInvalidModel) {
		t.Fatalf("int(STRING attribute) = %v", err)
	}
	// Packed float attribute list.
	p := pbString(nil, 1, "f")
	p = pbVarint(p, 20, uint64(attrFloats))
	p = pbBytes(p, 7, append(protowire.AppendFixed32(nil, math.Float32bits(3)), protowire.AppendFixed32(nil, math.Float32bits(4))...))
	if a, err := decodeAttr(p); err != nil || !reflect.DeepEqual(a.floats, []float32{3, 4}) {
		t.Fatalf("packed floats: %v %v", a.floats, err)
	}
}

// TestUnpackedModel loads a model whose initializer uses unpacked typed
// fields and whose attributes use unpacked ints, and runs it.
func TestUnpackedModel(t *testing.T) {
	var shapeTP []byte
	shapeTP = pbUnpackedVarints(shapeTP, 1, sh(2))
	shapeTP = pbVarint(shapeTP, 2, tInt64)
	shapeTP = pbString(shapeTP, 8, "s")
	shapeTP = pbUnpackedVarints(shapeTP, 7, []int64{3, 2})
	perm := pbString(nil, 1, "perm")
	perm = pbVarint(perm, 20, uint64(attrInts))
	perm = pbUnpackedVarints(perm, 8, []int64{1, 0})
	m := newModel(13).input("x", tFloat, 2, 3).output("y").
		node("r", "Reshape", []string{"x", "s"}, []string{"r"}).
		node("t", "Transpose", []string{"r"}, []string{"y"}, perm)
	m.inits = append(m.inits, shapeTP)
	x := iotaT(2, 3)
	outs := runModel(t, m.bytes(), x)
	expectClose(t, outs[0], ref{sh(2, 3), []float64{0, 2, 4, 1, 3, 5}})
}
