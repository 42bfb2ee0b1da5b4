package cpu

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// attrType is AttributeProto.AttributeType.
type attrType int32

// The attribute types of onnx.proto.
const (
	attrUndefined attrType = 0
	attrFloat     attrType = 1
	attrInt       attrType = 2
	attrString    attrType = 3
	attrTensor    attrType = 4
	attrGraph     attrType = 5
	attrFloats    attrType = 6
	attrInts      attrType = 7
	attrStrings   attrType = 8
	attrTensors   attrType = 9
	attrGraphs    attrType = 10
	attrSparse    attrType = 11
)

func (t attrType) String() string {
	names := map[attrType]string{
		attrUndefined: "UNDEFINED", attrFloat: "FLOAT", attrInt: "INT", attrString: "STRING",
		attrTensor: "TENSOR", attrGraph: "GRAPH", attrFloats: "FLOATS", attrInts: "INTS",
		attrStrings: "STRINGS", attrTensors: "TENSORS", attrGraphs: "GRAPHS", attrSparse: "SPARSE_TENSOR",
	}
	if s, ok := names[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", int32(t))
}

// onnxAttr is a decoded AttributeProto. Subgraphs and sparse tensors are
// only noted: no supported operator takes them.
type onnxAttr struct {
	name    string
	typ     attrType
	f       float32
	i       int64
	s       []byte
	t       *onnxTensor
	floats  []float32
	ints    []int64
	strings [][]byte
	refName string // ref_attr_name, only valid inside functions
	other   attrType
	seen    [12]bool // which value fields were present, by attrType
}

func decodeAttr(b []byte) (*onnxAttr, error) {
	a := &onnxAttr{}
	var floats, ints []uint64
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		var n int
		var err error
		switch num {
		case 1:
			a.name, n, err = consumeString(num, typ, b)
		case 20:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			a.typ = attrType(int32(v))
		case 2:
			var v uint32
			v, n, err = consumeFixed32(num, typ, b)
			a.f, a.seen[attrFloat] = math.Float32frombits(v), true
		case 3:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			a.i, a.seen[attrInt] = int64(v), true
		case 4:
			a.s, n, err = consumeBytes(num, typ, b)
			a.seen[attrString] = true
		case 5:
			var p []byte
			if p, n, err = consumeBytes(num, typ, b); err == nil {
				if a.t, err = decodeTensor(p); err != nil {
					err = fmt.Errorf("tensor: %w", err)
				}
			}
			a.seen[attrTensor] = true
		case 7:
			floats, n, err = appendFixed(floats, num, typ, b, 4)
			a.seen[attrFloats] = true
		case 8:
			ints, n, err = appendVarints(ints, num, typ, b)
			a.seen[attrInts] = true
		case 9:
			var p []byte
			p, n, err = consumeBytes(num, typ, b)
			a.strings = append(a.strings, p)
			a.seen[attrStrings] = true
		case 21:
			a.refName, n, err = consumeString(num, typ, b)
		case 6, 11:
			a.other = attrGraph
			return -1, nil
		case 10:
			a.other = attrTensors
			return -1, nil
		case 22, 23:
			a.other = attrSparse
			return -1, nil
		default:
			return -1, nil
		}
		return n, err
	})
	if err != nil {
		return a, err
	}
	a.floats, a.ints = toFloat32s(floats), toInt64s(ints)
	if a.typ == attrUndefined { // pre-IR-3 writers may omit the type
		a.typ = a.other
		for _, t := range []attrType{attrFloat, attrInt, attrString, attrTensor, attrFloats, attrInts, attrStrings} {
			if a.seen[t] {
				a.typ = t
				break
			}
		}
	}
	return a, nil
}

// attrs is the attribute list of one node, with typed accessors that
// check the attribute type.
type attrs []*onnxAttr

func (as attrs) find(name string) *onnxAttr {
	for _, a := range as {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (as attrs) has(name string) bool { return as.find(name) != nil }

func (as attrs) get(name string, want attrType) (*onnxAttr, error) {
	a := as.find(name)
	if a == nil {
		return nil, nil
	}
	if a.typ != want {
		return nil, fmt.Errorf("%w: attribute %s has type %s, want %s", ErrInvalidModel, name, a.typ, want)
	}
	return a, nil
}

// int returns the INT attribute name, or def when absent.
func (as attrs) int(name string, def int64) (int64, error) {
	a, err := as.get(name, attrInt)
	if a == nil || err != nil {
		return def, err
	}
	return a.i, nil
}

// float returns the FLOAT attribute name, or def when absent.
func (as attrs) float(name string, def float32) (float32, error) {
	a, err := as.get(name, attrFloat)
	if a == nil || err != nil {
		return def, err
	}
	return a.f, nil
}

// ints returns the INTS attribute name and whether it is present.
func (as attrs) ints(name string) ([]int64, bool, error) {
	a, err := as.get(name, attrInts)
	if a == nil || err != nil {
		return nil, false, err
	}
	return a.ints, true, nil
}

// floats returns the FLOATS attribute name and whether it is present.
func (as attrs) floats(name string) ([]float32, bool, error) {
	a, err := as.get(name, attrFloats)
	if a == nil || err != nil {
		return nil, false, err
	}
	return a.floats, true, nil
}

// boolInt returns a 0/1 INT attribute as a bool, rejecting other values.
func (as attrs) boolInt(name string, def bool) (bool, error) {
	d := int64(0)
	if def {
		d = 1
	}
	v, err := as.int(name, d)
	if err != nil {
		return false, err
	}
	if v != 0 && v != 1 {
		return false, fmt.Errorf("%w: attribute %s = %d, want 0 or 1", ErrInvalidModel, name, v)
	}
	return v == 1, nil
}

// strs returns the STRINGS attribute name as strings and whether it is
// present.
func (as attrs) strs(name string) ([]string, bool, error) {
	a, err := as.get(name, attrStrings)
	if a == nil || err != nil {
		return nil, false, err
	}
	out := make([]string, len(a.strings))
	for i, s := range a.strings {
		out[i] = string(s)
	}
	return out, true, nil
}
