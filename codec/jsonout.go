package codec

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The encoders below append JSON to a caller's buffer without reflection
// or allocation (STYLE.md: no encoding/json on the hot path).

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what RFC 8259 §7
// requires and replacing invalid UTF-8 with U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// nonFinite says how NaN and ±Inf outputs are written: as null (strict
// JSON, the default) or as the NaN/Infinity tokens TF Serving emits.
type nonFinite uint8

const (
	nonFiniteNull nonFinite = iota
	nonFiniteTokens
)

func appendFloat(dst []byte, f float64, bits int, nf nonFinite) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		if nf == nonFiniteNull {
			return append(dst, "null"...)
		}
		switch {
		case math.IsNaN(f):
			return append(dst, "NaN"...)
		case f > 0:
			return append(dst, "Infinity"...)
		default:
			return append(dst, "-Infinity"...)
		}
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// appendElem appends element i of t.
func appendElem(dst []byte, t *tensor.Tensor, i int, nf nonFinite) []byte {
	switch t.DType {
	case tensor.FP32:
		return appendFloat(dst, float64(t.Float32s()[i]), 32, nf)
	case tensor.FP64:
		return appendFloat(dst, t.Float64s()[i], 64, nf)
	case tensor.FP16, tensor.BF16:
		return appendFloat(dst, t.Float64At(i), 32, nf)
	case tensor.Int64:
		return strconv.AppendInt(dst, t.Int64s()[i], 10)
	case tensor.Uint64:
		return strconv.AppendUint(dst, uint64(t.Int64At(i)), 10)
	case tensor.Bool:
		if t.Data[i] != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case tensor.Bytes:
		// Elements have no fixed size: walk to element i. Loops over a
		// BYTES tensor use appendStringAt with a running offset instead.
		off := 0
		for ; i > 0; i-- {
			e, _, ok := tensor.NextString(t.Data[off:])
			if !ok {
				return append(dst, "null"...)
			}
			off += 4 + len(e)
		}
		dst, _ = appendStringAt(dst, t.Data, off)
		return dst
	case tensor.Invalid:
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, int64(t.Float64At(i)), 10)
}

// appendBytesString appends the bytes b as a JSON string, like
// appendString; b is only read during the call.
func appendBytesString(dst, b []byte) []byte {
	return AppendString(dst, unsafe.String(unsafe.SliceData(b), len(b)))
}

// appendStringAt appends the BYTES element at byte offset off of data as a
// JSON string and returns the offset after it. Data that does not hold a
// whole element there (a backend bug: infer validates BYTES outputs)
// appends null and leaves off where it was, so nothing panics.
func appendStringAt(dst, data []byte, off int) ([]byte, int) {
	e, _, ok := tensor.NextString(data[off:])
	if !ok {
		return append(dst, "null"...), off
	}
	return appendBytesString(dst, e), off + 4 + len(e)
}

// appendFlat appends t's elements as one flat JSON array.
func appendFlat(dst []byte, t *tensor.Tensor, nf nonFinite) []byte {
	dst = append(dst, '[')
	n := t.Len()
	if t.DType == tensor.FP32 { // the common case, without the type switch
		for i, v := range t.Float32s() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, float64(v), 32, nf)
		}
		return append(dst, ']')
	}
	if t.DType == tensor.Bytes {
		off := 0
		for i := 0; i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, off = appendStringAt(dst, t.Data, off)
		}
		return append(dst, ']')
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendElem(dst, t, i, nf)
	}
	return append(dst, ']')
}

// appendNested appends the elements of t starting at element off as a
// JSON value of the given shape: a scalar for an empty shape, else nested
// arrays. It returns the buffer and the offset after the last element.
// For a BYTES tensor, whose elements have no fixed size, off is a byte
// offset into t.Data instead of an element index.
func appendNested(dst []byte, t *tensor.Tensor, shape []int64, off int, nf nonFinite) ([]byte, int) {
	if len(shape) == 0 {
		if t.DType == tensor.Bytes {
			return appendStringAt(dst, t.Data, off)
		}
		return appendElem(dst, t, off, nf), off + 1
	}
	dst = append(dst, '[')
	for i := int64(0); i < shape[0]; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst, off = appendNested(dst, t, shape[1:], off, nf)
	}
	return append(dst, ']'), off
}

// AppendShape appends a shape as a JSON array of integers.
func AppendShape(dst []byte, shape []int64) []byte {
	dst = append(dst, '[')
	for i, d := range shape {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, d, 10)
	}
	return append(dst, ']')
}

// mapKeys returns the keys of output spec sp when its tensor t is a map
// per row (ONNX-ML ZipMap): sp.Keys is set, t is numeric and of shape
// [N, len(Keys)]. It returns nil otherwise, and t is written as it is.
func mapKeys(sp *backends.TensorSpec, t *tensor.Tensor) []string {
	if len(sp.Keys) == 0 || !t.DType.IsNumeric() || len(t.Shape) != 2 || t.Shape[1] != int64(len(sp.Keys)) {
		return nil
	}
	return sp.Keys
}

// appendMapRow appends the row of t starting at element off as a JSON
// object {keys[0]: value, ...} in keys order, and returns the offset after
// the row.
func appendMapRow(dst []byte, t *tensor.Tensor, keys []string, off int, nf nonFinite) ([]byte, int) {
	dst = append(dst, '{')
	for k, key := range keys {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, key)
		dst = append(dst, ':')
		dst = appendElem(dst, t, off+k, nf)
	}
	return append(dst, '}'), off + len(keys)
}
