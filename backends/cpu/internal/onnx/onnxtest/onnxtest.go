// Package onnxtest encodes ONNX messages for tests: a tiny protobuf
// encoder written against the field numbers of onnx.proto, independently
// of the decoder (package onnx), so that tests build their models in Go.
// It is imported only by tests.
package onnxtest

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/tensor"
)

// AppendBytes appends field num with the bytes v (wire type bytes).
func AppendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// AppendString appends field num with the string s.
func AppendString(b []byte, num protowire.Number, s string) []byte {
	return AppendBytes(b, num, []byte(s))
}

// AppendVarint appends field num with the varint v.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// AppendFixed32 appends field num with the fixed32 v.
func AppendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// AppendPackedVarints encodes a packed repeated varint field.
func AppendPackedVarints(b []byte, num protowire.Number, vs []int64) []byte {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v))
	}
	return AppendBytes(b, num, p)
}

// AppendUnpackedVarints encodes a repeated varint field one tag per element.
func AppendUnpackedVarints(b []byte, num protowire.Number, vs []int64) []byte {
	for _, v := range vs {
		b = AppendVarint(b, num, uint64(v))
	}
	return b
}

// Element types (TensorProto.DataType), written from onnx.proto
// independently of the decoder under test.
const (
	typeFloat    = 1
	typeUint8    = 2
	typeInt8     = 3
	typeUint16   = 4
	typeInt16    = 5
	typeInt32    = 6
	typeInt64    = 7
	typeString   = 8
	typeBool     = 9
	typeFloat16  = 10
	typeDouble   = 11
	typeUint32   = 12
	typeUint64   = 13
	typeBfloat16 = 16
)

// ElemType returns the ONNX element type of a tensor datatype.
func ElemType(dt tensor.DataType) int32 {
	e, ok := map[tensor.DataType]int32{
		tensor.FP32: typeFloat, tensor.Uint8: typeUint8, tensor.Int8: typeInt8,
		tensor.Uint16: typeUint16, tensor.Int16: typeInt16, tensor.Int32: typeInt32,
		tensor.Int64: typeInt64, tensor.Bytes: typeString, tensor.Bool: typeBool,
		tensor.FP16: typeFloat16, tensor.FP64: typeDouble, tensor.Uint32: typeUint32,
		tensor.Uint64: typeUint64, tensor.BF16: typeBfloat16,
	}[dt]
	if !ok {
		panic("BUG: no ONNX type for " + dt.String())
	}
	return e
}

// TensorProto encodes t as a TensorProto with raw_data, or with the typed
// field (float_data, int64_data, ...) when typed is true.
func TensorProto(name string, t *tensor.Tensor, typed bool) []byte {
	var b []byte
	b = AppendPackedVarints(b, 1, t.Shape)
	b = AppendVarint(b, 2, uint64(ElemType(t.DType)))
	b = AppendString(b, 8, name)
	if !typed {
		return AppendBytes(b, 9, t.Data)
	}
	switch t.DType {
	case tensor.FP32:
		var p []byte
		for _, v := range t.Float32s() {
			p = protowire.AppendFixed32(p, math.Float32bits(v))
		}
		b = AppendBytes(b, 4, p)
	case tensor.FP64:
		var p []byte
		for _, v := range t.Float64s() {
			p = protowire.AppendFixed64(p, math.Float64bits(v))
		}
		b = AppendBytes(b, 10, p)
	case tensor.Int64:
		b = AppendPackedVarints(b, 7, t.Int64s())
	default:
		vs := make([]int64, t.Len())
		for i := range vs {
			vs[i] = int64(t.Float64At(i))
		}
		b = AppendPackedVarints(b, 5, vs)
	}
	return b
}

// AttributeProto constructors.

// AttrFloat encodes a FLOAT AttributeProto.
func AttrFloat(name string, f float32) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 1)
	return AppendFixed32(b, 2, math.Float32bits(f))
}

// AttrInt encodes an INT AttributeProto.
func AttrInt(name string, v int64) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 2)
	return AppendVarint(b, 3, uint64(v))
}

// AttrInts encodes an INTS AttributeProto (packed).
func AttrInts(name string, vs ...int64) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 7)
	return AppendPackedVarints(b, 8, vs)
}

// AttrFloats encodes a FLOATS AttributeProto (unpacked: one tag per value).
func AttrFloats(name string, vs ...float32) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 6)
	for _, v := range vs { // unpacked, to exercise that path
		b = AppendFixed32(b, 7, math.Float32bits(v))
	}
	return b
}

// AttrTensor encodes a TENSOR AttributeProto holding the TensorProto tp.
func AttrTensor(name string, tp []byte) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 4)
	return AppendBytes(b, 5, tp)
}

// AttrString encodes a STRING AttributeProto.
func AttrString(name, s string) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 3)
	return AppendString(b, 4, s)
}

// AttrStrings encodes a STRINGS AttributeProto.
func AttrStrings(name string, ss ...string) []byte {
	b := AppendString(nil, 1, name)
	b = AppendVarint(b, 20, 8)
	for _, s := range ss {
		b = AppendString(b, 9, s)
	}
	return b
}

// opset is an OperatorSetIdProto to import.
type opset struct {
	domain  string
	version int64
}

// Model assembles a ModelProto. Nodes, Inits, Inputs and Outputs hold
// the encoded NodeProtos, TensorProtos and ValueInfoProtos of the graph
// in order; tests may append hand-made ones.
type Model struct {
	ir, opset                     int64 // opset 0: no ai.onnx opset_import
	imports                       []opset
	Nodes, Inits, Inputs, Outputs [][]byte
	GraphExtra                    []byte // raw GraphProto fields appended verbatim
}

// NewMLModel returns a builder importing ai.onnx opset 15 and ai.onnx.ml
// opset ml (skl2onnx's usual pair).
func NewMLModel(ml int64) *Model { return NewModel(15).Import("ai.onnx.ml", ml) }

// Import adds an opset_import for domain.
func (m *Model) Import(domain string, version int64) *Model {
	m.imports = append(m.imports, opset{domain, version})
	return m
}

// MLNode adds a node of domain ai.onnx.ml.
func (m *Model) MLNode(name, op string, ins, outs []string, attrs ...[]byte) *Model {
	m.Node(name, op, ins, outs, attrs...)
	m.Nodes[len(m.Nodes)-1] = AppendString(m.Nodes[len(m.Nodes)-1], 7, "ai.onnx.ml")
	return m
}

// OutputSeqMap declares a graph output of type seq(map(key, value)), as
// ZipMap produces (key onnxString or onnxInt64, value tFloat).
func (m *Model) OutputSeqMap(name string, key, value int32) *Model {
	val := AppendBytes(nil, 1, AppendVarint(nil, 1, uint64(value))) // TypeProto{tensor_type{elem_type}}
	mp := AppendBytes(AppendVarint(nil, 1, uint64(key)), 2, val)    // TypeProto.Map
	elem := AppendBytes(nil, 5, mp)                                 // TypeProto{map_type}
	seq := AppendBytes(nil, 4, AppendBytes(nil, 1, elem))           // TypeProto{sequence_type{elem_type}}
	m.Outputs = append(m.Outputs, AppendBytes(AppendString(nil, 1, name), 2, seq))
	return m
}

// NewModel returns a builder of an IR version 8 model importing ai.onnx
// opset opset (0: no ai.onnx import).
func NewModel(opset int64) *Model { return &Model{ir: 8, opset: opset} }

// ValueInfo encodes a ValueInfoProto; dims are int (dim_value), string
// (dim_param) or nil (no shape at all when passed alone).
func ValueInfo(name string, elem int32, dims []any) []byte {
	var tt []byte
	tt = AppendVarint(tt, 1, uint64(elem))
	if dims != nil {
		var shape []byte
		for _, d := range dims {
			var dim []byte
			switch d := d.(type) {
			case int:
				dim = AppendVarint(dim, 1, uint64(d))
			case int64:
				dim = AppendVarint(dim, 1, uint64(d))
			case string:
				dim = AppendString(dim, 2, d)
			}
			shape = AppendBytes(shape, 1, dim)
		}
		if shape == nil {
			shape = []byte{} // rank 0: a present, empty shape
		}
		tt = AppendBytes(tt, 2, shape)
	}
	typ := AppendBytes(nil, 1, tt)
	b := AppendString(nil, 1, name)
	return AppendBytes(b, 2, typ)
}

// Input declares a graph input of element type elem; dims are int
// (dim_value) or string (dim_param); none is a scalar.
func (m *Model) Input(name string, elem int32, dims ...any) *Model {
	if dims == nil {
		dims = []any{}
	}
	m.Inputs = append(m.Inputs, ValueInfo(name, elem, dims))
	return m
}

// Output declares a graph Output by name only (type and shape inferred).
func (m *Model) Output(name string) *Model {
	m.Outputs = append(m.Outputs, AppendString(nil, 1, name))
	return m
}

// OutputTyped declares a graph output with a type and shape.
func (m *Model) OutputTyped(name string, elem int32, dims ...any) *Model {
	if dims == nil {
		dims = []any{}
	}
	m.Outputs = append(m.Outputs, ValueInfo(name, elem, dims))
	return m
}

// Init adds an initializer encoded with raw_data.
func (m *Model) Init(name string, t *tensor.Tensor) *Model {
	m.Inits = append(m.Inits, TensorProto(name, t, false))
	return m
}

// InitTyped adds an initializer encoded with the typed data field.
func (m *Model) InitTyped(name string, t *tensor.Tensor) *Model {
	m.Inits = append(m.Inits, TensorProto(name, t, true))
	return m
}

// Node adds a node of the default domain with the attributes attrs
// (encoded AttributeProtos).
func (m *Model) Node(name, op string, ins, outs []string, attrs ...[]byte) *Model {
	var b []byte
	for _, s := range ins {
		b = AppendString(b, 1, s)
	}
	for _, s := range outs {
		b = AppendString(b, 2, s)
	}
	b = AppendString(b, 3, name)
	b = AppendString(b, 4, op)
	for _, a := range attrs {
		b = AppendBytes(b, 5, a)
	}
	m.Nodes = append(m.Nodes, b)
	return m
}

// Bytes returns the encoded ModelProto.
func (m *Model) Bytes() []byte {
	var g []byte
	for _, n := range m.Nodes {
		g = AppendBytes(g, 1, n)
	}
	g = AppendString(g, 2, "test")
	for _, t := range m.Inits {
		g = AppendBytes(g, 5, t)
	}
	for _, v := range m.Inputs {
		g = AppendBytes(g, 11, v)
	}
	for _, v := range m.Outputs {
		g = AppendBytes(g, 12, v)
	}
	g = append(g, m.GraphExtra...)
	var b []byte
	b = AppendVarint(b, 1, uint64(m.ir))
	b = AppendString(b, 2, "coalesce-test")
	b = AppendBytes(b, 7, g)
	if m.opset > 0 {
		op := AppendString(nil, 1, "")
		op = AppendVarint(op, 2, uint64(m.opset))
		b = AppendBytes(b, 8, op)
	}
	for _, o := range m.imports {
		op := AppendString(nil, 1, o.domain)
		op = AppendVarint(op, 2, uint64(o.version))
		b = AppendBytes(b, 8, op)
	}
	return b
}
