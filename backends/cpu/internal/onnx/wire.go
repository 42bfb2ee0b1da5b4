package onnx

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// fieldFunc handles one field of a message: b starts at the field's value.
// It returns how many bytes of b the value used, or -1 to skip the field as
// unknown.
type fieldFunc func(num protowire.Number, typ protowire.Type, b []byte) (int, error)

// decodeMessage walks the fields of one protobuf message, calling fn for
// each. Unknown fields are skipped. Every length is checked against the
// bytes left before anything is sliced or allocated.
func decodeMessage(b []byte, fn fieldFunc) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("tag: %w", wireErr(n))
		}
		b = b[n:]
		m, err := fn(num, typ, b)
		if err != nil {
			return err
		}
		if m < 0 {
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("field %d: %w", num, wireErr(m))
			}
		}
		b = b[m:]
	}
	return nil
}

// wireErr wraps a protowire error code in ErrMalformed.
func wireErr(n int) error {
	return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
}

// typeErr reports a field encoded with an unexpected wire type.
func typeErr(num protowire.Number, got, want protowire.Type) error {
	return fmt.Errorf("%w: field %d has wire type %d, want %d", ErrMalformed, num, got, want)
}

// consumeBytes reads a length-delimited value (string, bytes or message).
// The result aliases b.
func consumeBytes(num protowire.Number, typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, typeErr(num, typ, protowire.BytesType)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, fmt.Errorf("field %d: %w", num, wireErr(n))
	}
	return v, n, nil
}

// consumeString reads a string field.
func consumeString(num protowire.Number, typ protowire.Type, b []byte) (string, int, error) {
	v, n, err := consumeBytes(num, typ, b)
	return string(v), n, err
}

// consumeVarint reads a varint field.
func consumeVarint(num protowire.Number, typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, typeErr(num, typ, protowire.VarintType)
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, fmt.Errorf("field %d: %w", num, wireErr(n))
	}
	return v, n, nil
}

// consumeFixed32 reads a fixed32 field (a float).
func consumeFixed32(num protowire.Number, typ protowire.Type, b []byte) (uint32, int, error) {
	if typ != protowire.Fixed32Type {
		return 0, 0, typeErr(num, typ, protowire.Fixed32Type)
	}
	v, n := protowire.ConsumeFixed32(b)
	if n < 0 {
		return 0, 0, fmt.Errorf("field %d: %w", num, wireErr(n))
	}
	return v, n, nil
}

// appendVarints appends one repeated varint field occurrence, packed or
// not, to dst. Each element takes at least one byte of input, so dst grows
// at most by the input size.
func appendVarints(dst []uint64, num protowire.Number, typ protowire.Type, b []byte) ([]uint64, int, error) {
	if typ == protowire.VarintType {
		v, n, err := consumeVarint(num, typ, b)
		return append(dst, v), n, err
	}
	p, n, err := consumeBytes(num, typ, b)
	if err != nil {
		return dst, 0, fmt.Errorf("field %d: not varint nor packed: %w", num, err)
	}
	for len(p) > 0 {
		v, m := protowire.ConsumeVarint(p)
		if m < 0 {
			return dst, 0, fmt.Errorf("field %d: packed: %w", num, wireErr(m))
		}
		dst = append(dst, v)
		p = p[m:]
	}
	return dst, n, nil
}

// appendFixed appends one repeated fixed32 or fixed64 field occurrence,
// packed or not, to dst as raw bits; size is 4 or 8.
func appendFixed(dst []uint64, num protowire.Number, typ protowire.Type, b []byte, size int) ([]uint64, int, error) {
	want := protowire.Fixed32Type
	if size == 8 {
		want = protowire.Fixed64Type
	}
	if typ == want {
		if size == 4 {
			v, n, err := consumeFixed32(num, typ, b)
			return append(dst, uint64(v)), n, err
		}
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return dst, 0, fmt.Errorf("field %d: %w", num, wireErr(n))
		}
		return append(dst, v), n, nil
	}
	p, n, err := consumeBytes(num, typ, b)
	if err != nil {
		return dst, 0, fmt.Errorf("field %d: not fixed%d nor packed: %w", num, 8*size, err)
	}
	if len(p)%size != 0 {
		return dst, 0, fmt.Errorf("%w: field %d: packed length %d is not a multiple of %d", ErrMalformed, num, len(p), size)
	}
	dst = growCap(dst, len(p)/size)
	for i := 0; i < len(p); i += size {
		if size == 4 {
			v, _ := protowire.ConsumeFixed32(p[i:])
			dst = append(dst, uint64(v))
		} else {
			v, _ := protowire.ConsumeFixed64(p[i:])
			dst = append(dst, v)
		}
	}
	return dst, n, nil
}

// growCap makes room for n more elements in s; n is bounded by the input
// length by the callers.
func growCap(s []uint64, n int) []uint64 {
	if cap(s)-len(s) >= n {
		return s
	}
	g := make([]uint64, len(s), len(s)+n)
	copy(g, s)
	return g
}

// toInt64s converts raw varint values to int64 (two's complement).
func toInt64s(v []uint64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// toFloat32s converts raw fixed32 bits to float32.
func toFloat32s(v []uint64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = math.Float32frombits(uint32(x))
	}
	return out
}
