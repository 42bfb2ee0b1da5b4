package onnx

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestTensorProtoEncodings decodes the same values from each way a
// TensorProto may carry them: raw_data, packed and unpacked typed fields.
func TestTensorProtoEncodings(t *testing.T) {
	header := func(elem int32, dims []int64, packedDims bool) []byte {
		var b []byte
		if packedDims {
			b = onnxtest.AppendPackedVarints(b, 1, dims)
		} else {
			b = onnxtest.AppendUnpackedVarints(b, 1, dims)
		}
		b = onnxtest.AppendVarint(b, 2, uint64(elem))
		return onnxtest.AppendString(b, 8, "t")
	}
	fixed32s := func(b []byte, num protowire.Number, packed bool, vs ...float32) []byte {
		if !packed {
			for _, v := range vs {
				b = onnxtest.AppendFixed32(b, num, math.Float32bits(v))
			}
			return b
		}
		var p []byte
		for _, v := range vs {
			p = protowire.AppendFixed32(p, math.Float32bits(v))
		}
		return onnxtest.AppendBytes(b, num, p)
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
			b = onnxtest.AppendBytes(b, 10, p)
		}
		return b
	}
	varints := func(b []byte, num protowire.Number, packed bool, vs ...int64) []byte {
		if packed {
			return onnxtest.AppendPackedVarints(b, num, vs)
		}
		return onnxtest.AppendUnpackedVarints(b, num, vs)
	}
	half := func(f float32) int64 { return int64(tensor.Float32ToHalf(f)) }
	tests := []struct {
		name string
		b    []byte
		dt   tensor.DataType
		want []float64
	}{
		{"float packed", fixed32s(header(TypeFloat, sh(3), true), 4, true, 1, -2.5, 3), tensor.FP32, []float64{1, -2.5, 3}},
		{"float unpacked", fixed32s(header(TypeFloat, sh(3), false), 4, false, 1, -2.5, 3), tensor.FP32, []float64{1, -2.5, 3}},
		{"float raw", onnxtest.AppendBytes(header(TypeFloat, sh(2), true), 9, f32(sh(2), 7, -8).Data), tensor.FP32, []float64{7, -8}},
		{"double packed", fixed64s(header(TypeDouble, sh(2), true), true, 0.1, -1e300), tensor.FP64, []float64{0.1, -1e300}},
		{"double unpacked", fixed64s(header(TypeDouble, sh(2), true), false, 0.1, -1e300), tensor.FP64, []float64{0.1, -1e300}},
		{"int64 packed", varints(header(TypeInt64, sh(3), true), 7, true, -1, 0, 1<<40), tensor.Int64, []float64{-1, 0, 1 << 40}},
		{"int64 unpacked", varints(header(TypeInt64, sh(3), true), 7, false, -1, 0, 1<<40), tensor.Int64, []float64{-1, 0, 1 << 40}},
		{"int32", varints(header(TypeInt32, sh(2), true), 5, true, -7, 1<<30), tensor.Int32, []float64{-7, 1 << 30}},
		{"int8", varints(header(TypeInt8, sh(2), true), 5, false, -128, 127), tensor.Int8, []float64{-128, 127}},
		{"uint16", varints(header(TypeUint16, sh(1), true), 5, true, 65535), tensor.Uint16, []float64{65535}},
		{"bool", varints(header(TypeBool, sh(3), true), 5, true, 0, 1, 5), tensor.Bool, []float64{0, 1, 1}},
		{"bool raw", onnxtest.AppendBytes(header(TypeBool, sh(2), true), 9, []byte{0, 2}), tensor.Bool, []float64{0, 1}},
		{"float16", varints(header(TypeFloat16, sh(2), true), 5, true, half(1.5), half(-2)), tensor.FP16, []float64{1.5, -2}},
		{"uint32", varints(header(TypeUint32, sh(1), true), 11, true, 1<<32-1), tensor.Uint32, []float64{1<<32 - 1}},
		{"uint64", varints(header(TypeUint64, sh(1), true), 11, false, 1<<50), tensor.Uint64, []float64{1 << 50}},
		{"scalar", fixed32s(header(TypeFloat, nil, true), 4, true, 4), tensor.FP32, []float64{4}},
		{"empty", header(TypeFloat, sh(0, 3), true), tensor.FP32, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := DecodeTensor(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tp.ToTensor()
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
			tp, err := DecodeTensor(b)
			if err == nil {
				_, err = tp.ToTensor()
			}
			if !errors.Is(err, sentinel) {
				t.Fatalf("error %v, want %v", err, sentinel)
			}
			t.Log(err)
		})
	}
	hdr := onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, sh(2)), 2, TypeFloat)
	f("packed floats not multiple of 4", onnxtest.AppendBytes(hdr, 4, []byte{1, 2, 3}), ErrMalformed)
	f("float field with varint type", onnxtest.AppendVarint(hdr, 4, 3), ErrMalformed)
	f("truncated varint", append(onnxtest.AppendVarint(nil, 2, 1), 0x38, 0xff), ErrMalformed)
	f("negative dim", onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, sh(-2)), 2, TypeFloat), ErrMalformed)
	f("huge dims", onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, sh(1<<40, 1<<40)), 2, TypeFloat), ErrMalformed)
	f("string", onnxtest.AppendBytes(onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, sh(1)), 2, TypeString), 6, []byte("a")), ErrUnsupported)
	f("complex", onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, sh(1)), 2, 14), ErrUnsupported)
	f("segment", onnxtest.AppendBytes(hdr, 3, nil), ErrUnsupported)
	f("rank 17", onnxtest.AppendVarint(onnxtest.AppendPackedVarints(nil, 1, make([]int64, 17)), 2, TypeFloat), ErrUnsupported)
}

func TestAttributeDecoding(t *testing.T) {
	// ints unpacked, type omitted (pre-IR-3 writers).
	b := onnxtest.AppendString(nil, 1, "axes")
	b = onnxtest.AppendUnpackedVarints(b, 8, []int64{0, -1})
	a, err := decodeAttr(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != AttrInts || !reflect.DeepEqual(a.Ints, []int64{0, -1}) {
		t.Fatalf("decoded %s %v, want INTS [0 -1]", a.Type, a.Ints)
	}
	a, err = decodeAttr(onnxtest.AttrFloats("f", 1, 2))
	if err != nil || a.Type != AttrFloats || !reflect.DeepEqual(a.Floats, []float32{1, 2}) {
		t.Fatalf("floats: %v %v %v", a.Type, a.Floats, err)
	}
	a, err = decodeAttr(onnxtest.AttrString("mode", "constant"))
	if err != nil || a.Type != AttrString || string(a.S) != "constant" {
		t.Fatalf("string: %v %q %v", a.Type, a.S, err)
	}
	// An attribute used with the wrong accessor type.
	as := Attrs{a}
	if _, err := as.Int("mode", 0); !errors.Is(err, ErrInvalidModel) {
		t.Fatalf("int(STRING attribute) = %v", err)
	}
	// Packed float attribute list.
	p := onnxtest.AppendString(nil, 1, "f")
	p = onnxtest.AppendVarint(p, 20, uint64(AttrFloats))
	p = onnxtest.AppendBytes(p, 7, append(protowire.AppendFixed32(nil, math.Float32bits(3)), protowire.AppendFixed32(nil, math.Float32bits(4))...))
	if a, err := decodeAttr(p); err != nil || !reflect.DeepEqual(a.Floats, []float32{3, 4}) {
		t.Fatalf("packed floats: %v %v", a.Floats, err)
	}
}

func sh(d ...int64) []int64 { return d }

func f32(shape []int64, v ...float32) *tensor.Tensor { return tensor.FromFloat32s("", shape, v) }
