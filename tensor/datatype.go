// Package tensor defines the tensor type every Coalesce package shares: a
// datatype, a shape and contiguous row-major little-endian data, with
// concatenation and splitting along the batch dimension.
package tensor

// DataType is the element type of a tensor. Names follow KServe V2
// (see String); the zero value is Invalid.
type DataType uint8

// The datatypes of the KServe V2 protocol.
const (
	Invalid DataType = iota
	Bool
	Uint8
	Uint16
	Uint32
	Uint64
	Int8
	Int16
	Int32
	Int64
	FP16
	FP32
	FP64
	BF16
	Bytes
)

var dtypeNames = [...]string{
	Invalid: "INVALID",
	Bool:    "BOOL",
	Uint8:   "UINT8",
	Uint16:  "UINT16",
	Uint32:  "UINT32",
	Uint64:  "UINT64",
	Int8:    "INT8",
	Int16:   "INT16",
	Int32:   "INT32",
	Int64:   "INT64",
	FP16:    "FP16",
	FP32:    "FP32",
	FP64:    "FP64",
	BF16:    "BF16",
	Bytes:   "BYTES",
}

var dtypeSizes = [...]int{
	Bool: 1, Uint8: 1, Uint16: 2, Uint32: 4, Uint64: 8,
	Int8: 1, Int16: 2, Int32: 4, Int64: 8,
	FP16: 2, FP32: 4, FP64: 8, BF16: 2, Bytes: 0,
}

// String returns the KServe V2 name of d ("FP32", "INT64", ...).
func (d DataType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return "INVALID"
}

// Size returns the number of bytes of one element, or 0 for Bytes and
// Invalid, whose elements have no fixed size.
func (d DataType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DataType) IsFloat() bool { return d == FP16 || d == FP32 || d == FP64 || d == BF16 }

// IsNumeric reports whether d holds numbers (every type but Bytes and Invalid;
// Bool counts as numeric 0/1).
func (d DataType) IsNumeric() bool { return d != Invalid && d != Bytes }

// ParseDataType returns the datatype named s in KServe V2 spelling
// (case-sensitive, as the protocol specifies), or Invalid and false.
func ParseDataType(s string) (DataType, bool) {
	for i := Bool; i <= Bytes; i++ {
		if dtypeNames[i] == s {
			return i, true
		}
	}
	return Invalid, false
}

// TFName returns the TensorFlow name of d ("DT_FLOAT", ...), used by the
// TF Serving metadata endpoint.
func (d DataType) TFName() string {
	switch d {
	case Bool:
		return "DT_BOOL"
	case Uint8:
		return "DT_UINT8"
	case Uint16:
		return "DT_UINT16"
	case Uint32:
		return "DT_UINT32"
	case Uint64:
		return "DT_UINT64"
	case Int8:
		return "DT_INT8"
	case Int16:
		return "DT_INT16"
	case Int32:
		return "DT_INT32"
	case Int64:
		return "DT_INT64"
	case FP16:
		return "DT_HALF"
	case FP32:
		return "DT_FLOAT"
	case FP64:
		return "DT_DOUBLE"
	case BF16:
		return "DT_BFLOAT16"
	case Bytes:
		return "DT_STRING"
	}
	return "DT_INVALID"
}
