package onnx

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// AttrType is AttributeProto.AttributeType.
type AttrType int32

// The attribute types of onnx.proto.
const (
	AttrUndefined AttrType = 0
	AttrFloat     AttrType = 1
	AttrInt       AttrType = 2
	AttrString    AttrType = 3
	AttrTensor    AttrType = 4
	AttrGraph     AttrType = 5
	AttrFloats    AttrType = 6
	AttrInts      AttrType = 7
	AttrStrings   AttrType = 8
	AttrTensors   AttrType = 9
	AttrGraphs    AttrType = 10
	AttrSparse    AttrType = 11
)

// String returns the type's name in onnx.proto (FLOAT, INTS, ...).
func (t AttrType) String() string {
	names := map[AttrType]string{
		AttrUndefined: "UNDEFINED", AttrFloat: "FLOAT", AttrInt: "INT", AttrString: "STRING",
		AttrTensor: "TENSOR", AttrGraph: "GRAPH", AttrFloats: "FLOATS", AttrInts: "INTS",
		AttrStrings: "STRINGS", AttrTensors: "TENSORS", AttrGraphs: "GRAPHS", AttrSparse: "SPARSE_TENSOR",
	}
	if s, ok := names[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", int32(t))
}

// Attr is a decoded AttributeProto. Subgraphs and sparse tensors are
// only noted: no supported operator takes them.
type Attr struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       []byte
	T       *Tensor
	Floats  []float32
	Ints    []int64
	Strings [][]byte
	RefName string // ref_attr_name, only valid inside functions
	Other   AttrType
	seen    [12]bool // which value fields were present, by attrType
}

func decodeAttr(b []byte) (*Attr, error) {
	a := &Attr{}
	var floats, ints []uint64
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		var n int
		var err error
		switch num {
		case 1:
			a.Name, n, err = consumeString(num, typ, b)
		case 20:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			a.Type = AttrType(int32(v))
		case 2:
			var v uint32
			v, n, err = consumeFixed32(num, typ, b)
			a.F, a.seen[AttrFloat] = math.Float32frombits(v), true
		case 3:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			a.I, a.seen[AttrInt] = int64(v), true
		case 4:
			a.S, n, err = consumeBytes(num, typ, b)
			a.seen[AttrString] = true
		case 5:
			var p []byte
			if p, n, err = consumeBytes(num, typ, b); err == nil {
				if a.T, err = DecodeTensor(p); err != nil {
					err = fmt.Errorf("tensor: %w", err)
				}
			}
			a.seen[AttrTensor] = true
		case 7:
			floats, n, err = appendFixed(floats, num, typ, b, 4)
			a.seen[AttrFloats] = true
		case 8:
			ints, n, err = appendVarints(ints, num, typ, b)
			a.seen[AttrInts] = true
		case 9:
			var p []byte
			p, n, err = consumeBytes(num, typ, b)
			a.Strings = append(a.Strings, p)
			a.seen[AttrStrings] = true
		case 21:
			a.RefName, n, err = consumeString(num, typ, b)
		case 6, 11:
			a.Other = AttrGraph
			return -1, nil
		case 10:
			a.Other = AttrTensors
			return -1, nil
		case 22, 23:
			a.Other = AttrSparse
			return -1, nil
		default:
			return -1, nil
		}
		return n, err
	})
	if err != nil {
		return a, err
	}
	a.Floats, a.Ints = toFloat32s(floats), toInt64s(ints)
	if a.Type == AttrUndefined { // pre-IR-3 writers may omit the type
		a.Type = a.Other
		for _, t := range []AttrType{AttrFloat, AttrInt, AttrString, AttrTensor, AttrFloats, AttrInts, AttrStrings} {
			if a.seen[t] {
				a.Type = t
				break
			}
		}
	}
	return a, nil
}

// Attrs is the attribute list of one node, with typed accessors that
// check the attribute type.
type Attrs []*Attr

// Find returns the attribute name, or nil when the node has none.
func (as Attrs) Find(name string) *Attr {
	for _, a := range as {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Has reports whether the node has the attribute name.
func (as Attrs) Has(name string) bool { return as.Find(name) != nil }

// Get returns the attribute name, nil when absent, or an error wrapping
// ErrInvalidModel when its type is not want.
func (as Attrs) Get(name string, want AttrType) (*Attr, error) {
	a := as.Find(name)
	if a == nil {
		return nil, nil
	}
	if a.Type != want {
		return nil, fmt.Errorf("%w: attribute %s has type %s, want %s", ErrInvalidModel, name, a.Type, want)
	}
	return a, nil
}

// Int returns the INT attribute name, or def when absent.
func (as Attrs) Int(name string, def int64) (int64, error) {
	a, err := as.Get(name, AttrInt)
	if a == nil || err != nil {
		return def, err
	}
	return a.I, nil
}

// Float returns the FLOAT attribute name, or def when absent.
func (as Attrs) Float(name string, def float32) (float32, error) {
	a, err := as.Get(name, AttrFloat)
	if a == nil || err != nil {
		return def, err
	}
	return a.F, nil
}

// Ints returns the INTS attribute name and whether it is present.
func (as Attrs) Ints(name string) ([]int64, bool, error) {
	a, err := as.Get(name, AttrInts)
	if a == nil || err != nil {
		return nil, false, err
	}
	return a.Ints, true, nil
}

// Floats returns the FLOATS attribute name and whether it is present.
func (as Attrs) Floats(name string) ([]float32, bool, error) {
	a, err := as.Get(name, AttrFloats)
	if a == nil || err != nil {
		return nil, false, err
	}
	return a.Floats, true, nil
}

// Bool returns a 0/1 INT attribute as a bool, rejecting other values.
func (as Attrs) Bool(name string, def bool) (bool, error) {
	d := int64(0)
	if def {
		d = 1
	}
	v, err := as.Int(name, d)
	if err != nil {
		return false, err
	}
	if v != 0 && v != 1 {
		return false, fmt.Errorf("%w: attribute %s = %d, want 0 or 1", ErrInvalidModel, name, v)
	}
	return v == 1, nil
}

// Strings returns the STRINGS attribute name as strings and whether it is
// present.
func (as Attrs) Strings(name string) ([]string, bool, error) {
	a, err := as.Get(name, AttrStrings)
	if a == nil || err != nil {
		return nil, false, err
	}
	out := make([]string, len(a.Strings))
	for i, s := range a.Strings {
		out[i] = string(s)
	}
	return out, true, nil
}

// Str returns the STRING attribute name, or def when absent.
func (as Attrs) Str(name, def string) (string, error) {
	a, err := as.Get(name, AttrString)
	if a == nil || err != nil {
		return def, err
	}
	return string(a.S), nil
}
