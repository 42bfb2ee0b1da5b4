package onnx

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The subset of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto)
// that the engine reads. Field numbers are those of the schema; fields not
// listed are skipped.

// Model is a decoded ModelProto.
type Model struct {
	IRVersion int64
	Opsets    []Opset
	Graph     *Graph
	Functions int // model-local functions (field 25), unsupported when used
}

// Opset is an OperatorSetIdProto.
type Opset struct {
	Domain  string
	Version int64
}

// Graph is a decoded GraphProto.
type Graph struct {
	Name         string
	Nodes        []*Node
	Initializers []*Tensor
	SparseInits  int
	Inputs       []*ValueInfo
	Outputs      []*ValueInfo
	ValueInfo    []*ValueInfo
}

// Node is a decoded NodeProto.
type Node struct {
	Name, OpType, Domain string
	Inputs, Outputs      []string
	Attrs                []*Attr
}

// ValueInfo is a decoded ValueInfoProto with its TypeProto flattened.
type ValueInfo struct {
	Name       string
	TensorType bool // type.tensor_type is set
	OtherType  bool // a sequence, map, optional or sparse type
	ElemType   int32
	HasShape   bool
	Dims       []Dim
	// A sequence type's element type (SeqElem), a map type's key element
	// type and value type (mapKey, mapValue), decoded down to
	// maxTypeDepth levels (enough for ZipMap's seq(map(K, float))).
	// Nested types have no name.
	SeqElem  *ValueInfo
	MapKey   int32
	MapValue *ValueInfo
}

// maxTypeDepth bounds the nesting of sequence and map types that
// decodeTypeProto follows; deeper types are only marked otherType, so
// that a hostile model cannot recurse without bound.
const maxTypeDepth = 4

// Dim is a TensorShapeProto.Dimension.
type Dim struct {
	Value    int64
	HasValue bool
	Param    string
}

// Decode decodes a serialized ModelProto.
func Decode(b []byte) (*Model, error) {
	m := &Model{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1: // ir_version
			v, n, err := consumeVarint(num, typ, b)
			m.IRVersion = int64(v)
			return n, err
		case 8: // opset_import
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			o, err := decodeOpset(p)
			if err != nil {
				return 0, fmt.Errorf("opset_import: %w", err)
			}
			m.Opsets = append(m.Opsets, o)
			return n, nil
		case 7: // graph
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, fmt.Errorf("graph: %w", err)
			}
			if m.Graph, err = decodeGraph(p); err != nil {
				return 0, fmt.Errorf("graph: %w", err)
			}
			return n, nil
		case 25: // functions
			m.Functions++
		}
		return -1, nil
	})
	if err != nil {
		return nil, err
	}
	if m.Graph == nil {
		return nil, fmt.Errorf("%w: model has no graph", ErrMalformed)
	}
	return m, nil
}

func decodeOpset(b []byte) (Opset, error) {
	var o Opset
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			s, n, err := consumeString(num, typ, b)
			o.Domain = s
			return n, err
		case 2:
			v, n, err := consumeVarint(num, typ, b)
			o.Version = int64(v)
			return n, err
		}
		return -1, nil
	})
	return o, err
}

func decodeGraph(b []byte) (*Graph, error) {
	g := &Graph{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 5, 11, 12, 13: // node, initializer, input, output, value_info
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			switch num {
			case 1:
				nd, err := decodeNode(p)
				if err != nil {
					return 0, fmt.Errorf("node %d: %w", len(g.Nodes), err)
				}
				g.Nodes = append(g.Nodes, nd)
			case 5:
				t, err := DecodeTensor(p)
				if err != nil {
					return 0, fmt.Errorf("initializer %d: %w", len(g.Initializers), err)
				}
				g.Initializers = append(g.Initializers, t)
			default:
				vi, err := decodeValueInfo(p)
				if err != nil {
					return 0, fmt.Errorf("value info %q: %w", vi.Name, err)
				}
				switch num {
				case 11:
					g.Inputs = append(g.Inputs, vi)
				case 12:
					g.Outputs = append(g.Outputs, vi)
				default:
					g.ValueInfo = append(g.ValueInfo, vi)
				}
			}
			return n, nil
		case 2:
			s, n, err := consumeString(num, typ, b)
			g.Name = s
			return n, err
		case 15: // sparse_initializer
			g.SparseInits++
		}
		return -1, nil
	})
	return g, err
}

func decodeNode(b []byte) (*Node, error) {
	nd := &Node{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 2, 3, 4, 7:
			s, n, err := consumeString(num, typ, b)
			switch num {
			case 1:
				nd.Inputs = append(nd.Inputs, s)
			case 2:
				nd.Outputs = append(nd.Outputs, s)
			case 3:
				nd.Name = s
			case 4:
				nd.OpType = s
			case 7:
				nd.Domain = s
			}
			return n, err
		case 5:
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			a, err := decodeAttr(p)
			if err != nil {
				return 0, fmt.Errorf("attribute %q: %w", a.Name, err)
			}
			nd.Attrs = append(nd.Attrs, a)
			return n, nil
		}
		return -1, nil
	})
	return nd, err
}

func decodeValueInfo(b []byte) (*ValueInfo, error) {
	vi := &ValueInfo{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			s, n, err := consumeString(num, typ, b)
			vi.Name = s
			return n, err
		case 2:
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			return n, decodeTypeProto(p, vi, 0)
		}
		return -1, nil
	})
	return vi, err
}

// decodeTypeProto reads a TypeProto into vi, nested depth levels deep.
func decodeTypeProto(b []byte, vi *ValueInfo, depth int) error {
	return decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1: // tensor_type
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			vi.TensorType = true
			return n, decodeTensorType(p, vi)
		case 4, 5: // sequence_type, map_type
			vi.OtherType = true
			if depth >= maxTypeDepth {
				return -1, nil
			}
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			if num == 4 {
				vi.SeqElem = &ValueInfo{}
				return n, decodeNestedType(p, 1, vi.SeqElem, depth)
			}
			vi.MapValue = &ValueInfo{}
			return n, decodeMessage(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				switch num {
				case 1: // key_type
					v, n, err := consumeVarint(num, typ, b)
					vi.MapKey = int32(v)
					return n, err
				case 2: // value_type
					p, n, err := consumeBytes(num, typ, b)
					if err != nil {
						return 0, err
					}
					return n, decodeTypeProto(p, vi.MapValue, depth+1)
				}
				return -1, nil
			})
		case 8, 9: // sparse tensor, optional
			vi.OtherType = true
		}
		return -1, nil
	})
}

// decodeNestedType reads the TypeProto in field num of message b (a
// TypeProto.Sequence's elem_type) into vi.
func decodeNestedType(b []byte, field protowire.Number, vi *ValueInfo, depth int) error {
	return decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != field {
			return -1, nil
		}
		p, n, err := consumeBytes(num, typ, b)
		if err != nil {
			return 0, err
		}
		return n, decodeTypeProto(p, vi, depth+1)
	})
}

// decodeTensorType reads a TypeProto.Tensor into vi.
func decodeTensorType(b []byte, vi *ValueInfo) error {
	return decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := consumeVarint(num, typ, b)
			vi.ElemType = int32(v)
			return n, err
		case 2:
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			vi.HasShape = true
			vi.Dims = vi.Dims[:0]
			return n, decodeMessage(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				if num != 1 {
					return -1, nil
				}
				p, n, err := consumeBytes(num, typ, b)
				if err != nil {
					return 0, err
				}
				d, err := decodeDim(p)
				vi.Dims = append(vi.Dims, d)
				return n, err
			})
		}
		return -1, nil
	})
}

func decodeDim(b []byte) (Dim, error) {
	var d Dim
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := consumeVarint(num, typ, b)
			d.Value, d.HasValue = int64(v), true
			return n, err
		case 2:
			s, n, err := consumeString(num, typ, b)
			d.Param = s
			return n, err
		}
		return -1, nil
	})
	return d, err
}
