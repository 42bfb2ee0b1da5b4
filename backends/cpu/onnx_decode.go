package cpu

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The subset of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto)
// that the engine reads. Field numbers are those of the schema; fields not
// listed are skipped.

// onnxModel is a decoded ModelProto.
type onnxModel struct {
	irVersion int64
	opsets    []onnxOpset
	graph     *onnxGraph
	functions int // model-local functions (field 25), unsupported when used
}

// onnxOpset is an OperatorSetIdProto.
type onnxOpset struct {
	domain  string
	version int64
}

// onnxGraph is a decoded GraphProto.
type onnxGraph struct {
	name         string
	nodes        []*onnxNode
	initializers []*onnxTensor
	sparseInits  int
	inputs       []*onnxValueInfo
	outputs      []*onnxValueInfo
	valueInfo    []*onnxValueInfo
}

// onnxNode is a decoded NodeProto.
type onnxNode struct {
	name, opType, domain string
	inputs, outputs      []string
	attrs                []*onnxAttr
}

// onnxValueInfo is a decoded ValueInfoProto with its TypeProto flattened.
type onnxValueInfo struct {
	name       string
	tensorType bool // type.tensor_type is set
	otherType  bool // a sequence, map, optional or sparse type
	elemType   int32
	hasShape   bool
	dims       []onnxDim
	// A sequence type's element type (seqElem), a map type's key element
	// type and value type (mapKey, mapValue), decoded down to
	// maxTypeDepth levels (enough for ZipMap's seq(map(K, float))).
	// Nested types have no name.
	seqElem  *onnxValueInfo
	mapKey   int32
	mapValue *onnxValueInfo
}

// maxTypeDepth bounds the nesting of sequence and map types that
// decodeTypeProto follows; deeper types are only marked otherType, so
// that a hostile model cannot recurse without bound.
const maxTypeDepth = 4

// onnxDim is a TensorShapeProto.Dimension.
type onnxDim struct {
	value    int64
	hasValue bool
	param    string
}

// decodeModel decodes a serialized ModelProto.
func decodeModel(b []byte) (*onnxModel, error) {
	m := &onnxModel{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1: // ir_version
			v, n, err := consumeVarint(num, typ, b)
			m.irVersion = int64(v)
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
			m.opsets = append(m.opsets, o)
			return n, nil
		case 7: // graph
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, fmt.Errorf("graph: %w", err)
			}
			if m.graph, err = decodeGraph(p); err != nil {
				return 0, fmt.Errorf("graph: %w", err)
			}
			return n, nil
		case 25: // functions
			m.functions++
		}
		return -1, nil
	})
	if err != nil {
		return nil, err
	}
	if m.graph == nil {
		return nil, fmt.Errorf("%w: model has no graph", ErrMalformed)
	}
	return m, nil
}

func decodeOpset(b []byte) (onnxOpset, error) {
	var o onnxOpset
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			s, n, err := consumeString(num, typ, b)
			o.domain = s
			return n, err
		case 2:
			v, n, err := consumeVarint(num, typ, b)
			o.version = int64(v)
			return n, err
		}
		return -1, nil
	})
	return o, err
}

func decodeGraph(b []byte) (*onnxGraph, error) {
	g := &onnxGraph{}
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
					return 0, fmt.Errorf("node %d: %w", len(g.nodes), err)
				}
				g.nodes = append(g.nodes, nd)
			case 5:
				t, err := decodeTensor(p)
				if err != nil {
					return 0, fmt.Errorf("initializer %d: %w", len(g.initializers), err)
				}
				g.initializers = append(g.initializers, t)
			default:
				vi, err := decodeValueInfo(p)
				if err != nil {
					return 0, fmt.Errorf("value info %q: %w", vi.name, err)
				}
				switch num {
				case 11:
					g.inputs = append(g.inputs, vi)
				case 12:
					g.outputs = append(g.outputs, vi)
				default:
					g.valueInfo = append(g.valueInfo, vi)
				}
			}
			return n, nil
		case 2:
			s, n, err := consumeString(num, typ, b)
			g.name = s
			return n, err
		case 15: // sparse_initializer
			g.sparseInits++
		}
		return -1, nil
	})
	return g, err
}

func decodeNode(b []byte) (*onnxNode, error) {
	nd := &onnxNode{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 2, 3, 4, 7:
			s, n, err := consumeString(num, typ, b)
			switch num {
			case 1:
				nd.inputs = append(nd.inputs, s)
			case 2:
				nd.outputs = append(nd.outputs, s)
			case 3:
				nd.name = s
			case 4:
				nd.opType = s
			case 7:
				nd.domain = s
			}
			return n, err
		case 5:
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			a, err := decodeAttr(p)
			if err != nil {
				return 0, fmt.Errorf("attribute %q: %w", a.name, err)
			}
			nd.attrs = append(nd.attrs, a)
			return n, nil
		}
		return -1, nil
	})
	return nd, err
}

func decodeValueInfo(b []byte) (*onnxValueInfo, error) {
	vi := &onnxValueInfo{}
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			s, n, err := consumeString(num, typ, b)
			vi.name = s
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
func decodeTypeProto(b []byte, vi *onnxValueInfo, depth int) error {
	return decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1: // tensor_type
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			vi.tensorType = true
			return n, decodeTensorType(p, vi)
		case 4, 5: // sequence_type, map_type
			vi.otherType = true
			if depth >= maxTypeDepth {
				return -1, nil
			}
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			if num == 4 {
				vi.seqElem = &onnxValueInfo{}
				return n, decodeNestedType(p, 1, vi.seqElem, depth)
			}
			vi.mapValue = &onnxValueInfo{}
			return n, decodeMessage(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				switch num {
				case 1: // key_type
					v, n, err := consumeVarint(num, typ, b)
					vi.mapKey = int32(v)
					return n, err
				case 2: // value_type
					p, n, err := consumeBytes(num, typ, b)
					if err != nil {
						return 0, err
					}
					return n, decodeTypeProto(p, vi.mapValue, depth+1)
				}
				return -1, nil
			})
		case 8, 9: // sparse tensor, optional
			vi.otherType = true
		}
		return -1, nil
	})
}

// decodeNestedType reads the TypeProto in field num of message b (a
// TypeProto.Sequence's elem_type) into vi.
func decodeNestedType(b []byte, field protowire.Number, vi *onnxValueInfo, depth int) error {
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
func decodeTensorType(b []byte, vi *onnxValueInfo) error {
	return decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := consumeVarint(num, typ, b)
			vi.elemType = int32(v)
			return n, err
		case 2:
			p, n, err := consumeBytes(num, typ, b)
			if err != nil {
				return 0, err
			}
			vi.hasShape = true
			vi.dims = vi.dims[:0]
			return n, decodeMessage(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				if num != 1 {
					return -1, nil
				}
				p, n, err := consumeBytes(num, typ, b)
				if err != nil {
					return 0, err
				}
				d, err := decodeDim(p)
				vi.dims = append(vi.dims, d)
				return n, err
			})
		}
		return -1, nil
	})
}

func decodeDim(b []byte) (onnxDim, error) {
	var d onnxDim
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := consumeVarint(num, typ, b)
			d.value, d.hasValue = int64(v), true
			return n, err
		case 2:
			s, n, err := consumeString(num, typ, b)
			d.param = s
			return n, err
		}
		return -1, nil
	})
	return d, err
}
