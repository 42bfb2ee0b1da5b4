package onnx

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/tensor"
)

// ONNX TensorProto.DataType values (onnx.proto).
const (
	TypeFloat    = 1
	TypeUint8    = 2
	TypeInt8     = 3
	TypeUint16   = 4
	TypeInt16    = 5
	TypeInt32    = 6
	TypeInt64    = 7
	TypeString   = 8
	TypeBool     = 9
	TypeFloat16  = 10
	TypeDouble   = 11
	TypeUint32   = 12
	TypeUint64   = 13
	TypeBfloat16 = 16
)

// maxConstElements bounds one constant tensor (1<<28 elements, 1 GiB of
// FP32): larger ones are rejected rather than allocated.
const maxConstElements = 1 << 28

// DataType maps an ONNX element type to a tensor datatype; STRING
// is BYTES (string ids inside the engine, see package cpu).
func DataType(t int32) (tensor.DataType, bool) {
	switch t {
	case TypeString:
		return tensor.Bytes, true
	case TypeFloat:
		return tensor.FP32, true
	case TypeUint8:
		return tensor.Uint8, true
	case TypeInt8:
		return tensor.Int8, true
	case TypeUint16:
		return tensor.Uint16, true
	case TypeInt16:
		return tensor.Int16, true
	case TypeInt32:
		return tensor.Int32, true
	case TypeInt64:
		return tensor.Int64, true
	case TypeBool:
		return tensor.Bool, true
	case TypeFloat16:
		return tensor.FP16, true
	case TypeDouble:
		return tensor.FP64, true
	case TypeUint32:
		return tensor.Uint32, true
	case TypeUint64:
		return tensor.Uint64, true
	case TypeBfloat16:
		return tensor.BF16, true
	}
	return tensor.Invalid, false
}

// Tensor is a decoded TensorProto. The typed repeated fields hold raw
// wire values (varints, or fixed32/fixed64 bits) until toTensor converts
// them; rawData aliases the model bytes.
type Tensor struct {
	Name       string
	dims       []int64
	dataType   int32
	floatData  []uint64 // field 4, fixed32 bits
	int32Data  []uint64 // field 5, varints
	int64Data  []uint64 // field 7, varints
	doubleData []uint64 // field 10, fixed64 bits
	uint64Data []uint64 // field 11, varints
	rawData    []byte   // field 9
	hasRaw     bool
	strings    int  // field 6 occurrences
	external   bool // data_location EXTERNAL or external_data set
	segment    bool
}

// DecodeTensor decodes a serialized TensorProto, such as an initializer
// or a test_data_set_*/*.pb file of the ONNX test suite.
func DecodeTensor(b []byte) (*Tensor, error) {
	t := &Tensor{}
	var dims []uint64
	err := decodeMessage(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		var n int
		var err error
		switch num {
		case 1:
			dims, n, err = appendVarints(dims, num, typ, b)
		case 2:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			t.dataType = int32(v)
		case 3:
			t.segment = true
			return -1, nil
		case 4:
			t.floatData, n, err = appendFixed(t.floatData, num, typ, b, 4)
		case 5:
			t.int32Data, n, err = appendVarints(t.int32Data, num, typ, b)
		case 6:
			t.strings++
			return -1, nil
		case 7:
			t.int64Data, n, err = appendVarints(t.int64Data, num, typ, b)
		case 8:
			t.Name, n, err = consumeString(num, typ, b)
		case 9:
			t.rawData, n, err = consumeBytes(num, typ, b)
			t.hasRaw = true
		case 10:
			t.doubleData, n, err = appendFixed(t.doubleData, num, typ, b, 8)
		case 11:
			t.uint64Data, n, err = appendVarints(t.uint64Data, num, typ, b)
		case 13:
			t.external = true
			return -1, nil
		case 14:
			var v uint64
			v, n, err = consumeVarint(num, typ, b)
			if v == 1 { // EXTERNAL
				t.external = true
			}
		default:
			return -1, nil
		}
		return n, err
	})
	t.dims = toInt64s(dims)
	return t, err
}

// ToTensor converts a decoded TensorProto into a tensor named after it,
// checking that the data matches the dims exactly.
func (t *Tensor) ToTensor() (*tensor.Tensor, error) {
	if t.external {
		return nil, fmt.Errorf("tensor %q: %w: external data (data_location=EXTERNAL); embed the weights in the model file", t.Name, ErrUnsupported)
	}
	if t.segment {
		return nil, fmt.Errorf("tensor %q: %w: segmented tensor", t.Name, ErrUnsupported)
	}
	if t.dataType == TypeString || t.strings > 0 {
		return nil, fmt.Errorf("tensor %q: %w: string tensors", t.Name, ErrUnsupported)
	}
	dt, ok := DataType(t.dataType)
	if !ok {
		return nil, fmt.Errorf("tensor %q: %w: element type %d", t.Name, ErrUnsupported, t.dataType)
	}
	if len(t.dims) > MaxRank {
		return nil, fmt.Errorf("tensor %q: %w: rank %d (at most %d)", t.Name, ErrUnsupported, len(t.dims), MaxRank)
	}
	n := tensor.NumElements(t.dims)
	if n < 0 || n > maxConstElements {
		return nil, fmt.Errorf("tensor %q: %w: invalid or too large dims %v", t.Name, ErrMalformed, t.dims)
	}
	if t.hasRaw {
		if int64(len(t.rawData)) != n*int64(dt.Size()) {
			return nil, fmt.Errorf("tensor %q: %w: raw_data has %d bytes, dims %v of %s need %d",
				t.Name, ErrMalformed, len(t.rawData), t.dims, dt, n*int64(dt.Size()))
		}
		out := tensor.New(t.Name, dt, t.dims)
		copy(out.Data, t.rawData)
		if dt == tensor.Bool {
			for i, v := range out.Data {
				if v != 0 {
					out.Data[i] = 1
				}
			}
		}
		return out, nil
	}
	var vals []uint64
	field := ""
	switch dt {
	case tensor.FP32:
		vals, field = t.floatData, "float_data"
	case tensor.FP64:
		vals, field = t.doubleData, "double_data"
	case tensor.Int64:
		vals, field = t.int64Data, "int64_data"
	case tensor.Uint32, tensor.Uint64:
		vals, field = t.uint64Data, "uint64_data"
	default: // 8- and 16-bit types, INT32, BOOL, FP16, BF16
		vals, field = t.int32Data, "int32_data"
	}
	if int64(len(vals)) != n {
		return nil, fmt.Errorf("tensor %q: %w: %s has %d values, dims %v need %d",
			t.Name, ErrMalformed, field, len(vals), t.dims, n)
	}
	out := tensor.New(t.Name, dt, t.dims)
	d := out.Data
	for i, v := range vals {
		switch dt.Size() {
		case 1:
			if dt == tensor.Bool && v != 0 {
				v = 1
			}
			d[i] = byte(v)
		case 2: // int32_data holds the 16-bit pattern (FP16 and BF16 too)
			binary.LittleEndian.PutUint16(d[2*i:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(d[4*i:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(d[8*i:], v)
		}
	}
	return out, nil
}
