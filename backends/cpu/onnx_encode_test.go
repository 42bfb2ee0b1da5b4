package cpu

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/tensor"
)

// A tiny protobuf encoder of the ONNX messages the tests need, written
// against the field numbers of onnx.proto, so that tests build their
// models in Go.

func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbString(b []byte, num protowire.Number, s string) []byte {
	return pbBytes(b, num, []byte(s))
}

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func pbFixed32(b []byte, num protowire.Number, v uint32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// pbPackedVarints encodes a packed repeated varint field.
func pbPackedVarints(b []byte, num protowire.Number, vs []int64) []byte {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v))
	}
	return pbBytes(b, num, p)
}

// pbUnpackedVarints encodes a repeated varint field one tag per element.
func pbUnpackedVarints(b []byte, num protowire.Number, vs []int64) []byte {
	for _, v := range vs {
		b = pbVarint(b, num, uint64(v))
	}
	return b
}

// Element types (TensorProto.DataType).
const (
	tFloat  = onnxFloat
	tInt32  = onnxInt32
	tInt64  = onnxInt64
	tBool   = onnxBool
	tDouble = onnxDouble
)

// elemOf maps a tensor datatype back to its ONNX element type.
func elemOf(dt tensor.DataType) int32 {
	for e := int32(1); e <= 16; e++ {
		if d, ok := dtypeFromONNX(e); ok && d == dt {
			return e
		}
	}
	panic("BUG: no ONNX type for " + dt.String())
}

// tensorProto encodes t as a TensorProto with raw_data, or with the typed
// field (float_data, int64_data, ...) when typed is true.
func tensorProto(name string, t *tensor.Tensor, typed bool) []byte {
	var b []byte
	b = pbPackedVarints(b, 1, t.Shape)
	b = pbVarint(b, 2, uint64(elemOf(t.DType)))
	b = pbString(b, 8, name)
	if !typed {
		return pbBytes(b, 9, t.Data)
	}
	switch t.DType {
	case tensor.FP32:
		var p []byte
		for _, v := range t.Float32s() {
			p = protowire.AppendFixed32(p, math.Float32bits(v))
		}
		b = pbBytes(b, 4, p)
	case tensor.FP64:
		var p []byte
		for _, v := range t.Float64s() {
			p = protowire.AppendFixed64(p, math.Float64bits(v))
		}
		b = pbBytes(b, 10, p)
	case tensor.Int64:
		b = pbPackedVarints(b, 7, t.Int64s())
	default:
		vs := make([]int64, t.Len())
		for i := range vs {
			vs[i] = int64(t.Float64At(i))
		}
		b = pbPackedVarints(b, 5, vs)
	}
	return b
}

// attribute constructors (AttributeProto).

func aFloat(name string, f float32) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 1)
	return pbFixed32(b, 2, math.Float32bits(f))
}

func aInt(name string, v int64) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 2)
	return pbVarint(b, 3, uint64(v))
}

func aInts(name string, vs ...int64) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 7)
	return pbPackedVarints(b, 8, vs)
}

func aFloats(name string, vs ...float32) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 6)
	for _, v := range vs { // unpacked, to exercise that path
		b = pbFixed32(b, 7, math.Float32bits(v))
	}
	return b
}

func aTensor(name string, tp []byte) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 4)
	return pbBytes(b, 5, tp)
}

func aString(name, s string) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 3)
	return pbString(b, 4, s)
}

func aStrings(name string, ss ...string) []byte {
	b := pbString(nil, 1, name)
	b = pbVarint(b, 20, 8)
	for _, s := range ss {
		b = pbString(b, 9, s)
	}
	return b
}

// modelBuilder assembles a ModelProto.
type modelBuilder struct {
	ir, opset                     int64 // opset 0: no ai.onnx opset_import
	imports                       []onnxOpset
	nodes, inits, inputs, outputs [][]byte
	graphExtra                    []byte // raw GraphProto fields appended verbatim
}

// newMLModel returns a builder importing ai.onnx opset 15 and ai.onnx.ml
// opset ml (skl2onnx's usual pair).
func newMLModel(ml int64) *modelBuilder { return newModel(15).importOpset(mlDomain, ml) }

// importOpset adds an opset_import for domain.
func (m *modelBuilder) importOpset(domain string, version int64) *modelBuilder {
	m.imports = append(m.imports, onnxOpset{domain: domain, version: version})
	return m
}

// mlNode adds a node of domain ai.onnx.ml.
func (m *modelBuilder) mlNode(name, op string, ins, outs []string, attrs ...[]byte) *modelBuilder {
	m.node(name, op, ins, outs, attrs...)
	m.nodes[len(m.nodes)-1] = pbString(m.nodes[len(m.nodes)-1], 7, mlDomain)
	return m
}

// outputSeqMap declares a graph output of type seq(map(key, value)), as
// ZipMap produces (key onnxString or onnxInt64, value tFloat).
func (m *modelBuilder) outputSeqMap(name string, key, value int32) *modelBuilder {
	val := pbBytes(nil, 1, pbVarint(nil, 1, uint64(value))) // TypeProto{tensor_type{elem_type}}
	mp := pbBytes(pbVarint(nil, 1, uint64(key)), 2, val)    // TypeProto.Map
	elem := pbBytes(nil, 5, mp)                             // TypeProto{map_type}
	seq := pbBytes(nil, 4, pbBytes(nil, 1, elem))           // TypeProto{sequence_type{elem_type}}
	m.outputs = append(m.outputs, pbBytes(pbString(nil, 1, name), 2, seq))
	return m
}

func newModel(opset int64) *modelBuilder { return &modelBuilder{ir: 8, opset: opset} }

// valueInfo encodes a ValueInfoProto; dims are int (dim_value), string
// (dim_param) or nil (no shape at all when passed alone).
func valueInfoProto(name string, elem int32, dims []any) []byte {
	var tt []byte
	tt = pbVarint(tt, 1, uint64(elem))
	if dims != nil {
		var shape []byte
		for _, d := range dims {
			var dim []byte
			switch d := d.(type) {
			case int:
				dim = pbVarint(dim, 1, uint64(d))
			case int64:
				dim = pbVarint(dim, 1, uint64(d))
			case string:
				dim = pbString(dim, 2, d)
			}
			shape = pbBytes(shape, 1, dim)
		}
		if shape == nil {
			shape = []byte{} // rank 0: a present, empty shape
		}
		tt = pbBytes(tt, 2, shape)
	}
	typ := pbBytes(nil, 1, tt)
	b := pbString(nil, 1, name)
	return pbBytes(b, 2, typ)
}

func (m *modelBuilder) input(name string, elem int32, dims ...any) *modelBuilder {
	if dims == nil {
		dims = []any{}
	}
	m.inputs = append(m.inputs, valueInfoProto(name, elem, dims))
	return m
}

// output declares a graph output by name only (type and shape inferred).
func (m *modelBuilder) output(name string) *modelBuilder {
	m.outputs = append(m.outputs, pbString(nil, 1, name))
	return m
}

// outputTyped declares a graph output with a type and shape.
func (m *modelBuilder) outputTyped(name string, elem int32, dims ...any) *modelBuilder {
	if dims == nil {
		dims = []any{}
	}
	m.outputs = append(m.outputs, valueInfoProto(name, elem, dims))
	return m
}

func (m *modelBuilder) init(name string, t *tensor.Tensor) *modelBuilder {
	m.inits = append(m.inits, tensorProto(name, t, false))
	return m
}

func (m *modelBuilder) initTyped(name string, t *tensor.Tensor) *modelBuilder {
	m.inits = append(m.inits, tensorProto(name, t, true))
	return m
}

func (m *modelBuilder) node(name, op string, ins, outs []string, attrs ...[]byte) *modelBuilder {
	var b []byte
	for _, s := range ins {
		b = pbString(b, 1, s)
	}
	for _, s := range outs {
		b = pbString(b, 2, s)
	}
	b = pbString(b, 3, name)
	b = pbString(b, 4, op)
	for _, a := range attrs {
		b = pbBytes(b, 5, a)
	}
	m.nodes = append(m.nodes, b)
	return m
}

func (m *modelBuilder) bytes() []byte {
	var g []byte
	for _, n := range m.nodes {
		g = pbBytes(g, 1, n)
	}
	g = pbString(g, 2, "test")
	for _, t := range m.inits {
		g = pbBytes(g, 5, t)
	}
	for _, v := range m.inputs {
		g = pbBytes(g, 11, v)
	}
	for _, v := range m.outputs {
		g = pbBytes(g, 12, v)
	}
	g = append(g, m.graphExtra...)
	var b []byte
	b = pbVarint(b, 1, uint64(m.ir))
	b = pbString(b, 2, "coalesce-test")
	b = pbBytes(b, 7, g)
	if m.opset > 0 {
		op := pbString(nil, 1, "")
		op = pbVarint(op, 2, uint64(m.opset))
		b = pbBytes(b, 8, op)
	}
	for _, o := range m.imports {
		op := pbString(nil, 1, o.domain)
		op = pbVarint(op, 2, uint64(o.version))
		b = pbBytes(b, 8, op)
	}
	return b
}
