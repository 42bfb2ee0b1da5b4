package codec

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// checkDepth reports whether body nests JSON arrays and objects deeper
// than max. It runs before parsing so that a hostile body costs one linear
// scan, and skips the contents of strings.
func checkDepth(body []byte, max int) error {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '[', '{':
			depth++
			if depth > max {
				return badRequest("request body: JSON nested deeper than %d levels at byte %d; want at most %d (limits.max_json_depth)", max, i, max)
			}
		case ']', '}':
			depth--
		case '"':
			for i++; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					i++
				}
			}
		}
	}
	return nil
}

// parseJSON parses body with p after the depth check. The returned value
// is valid until p is reused.
func parseJSON(p *fastjson.Parser, body []byte, lim *config.Limits) (*fastjson.Value, error) {
	if len(body) == 0 {
		return nil, badRequest("request body is empty; want a JSON object")
	}
	if err := checkDepth(body, lim.MaxJSONDepth); err != nil {
		return nil, err
	}
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, badRequest("request body is not valid JSON: %s", err)
	}
	if v.Type() != fastjson.TypeObject {
		return nil, badRequest("request body is a JSON %s; want a JSON object", v.Type())
	}
	return v, nil
}

// inferShape returns the shape of the nested JSON arrays v, following the
// first element at each level (a scalar has shape []).
func inferShape(v *fastjson.Value) []int64 {
	var shape []int64
	for v.Type() == fastjson.TypeArray {
		a, _ := v.Array()
		shape = append(shape, int64(len(a)))
		if len(a) == 0 {
			break
		}
		v = a[0]
	}
	return shape
}

// jsonFiller writes JSON leaves into a tensor, converting each to the
// tensor's datatype and naming the field in errors. A numeric tensor's
// Data is allocated up front and filled in place; a BYTES tensor's Data
// starts empty and grows by one length-prefixed element per leaf, so its
// size is bounded by the body's (limits.max_body_bytes) plus 4 bytes per
// element (limits.max_tensor_elements).
type jsonFiller struct {
	t     *tensor.Tensor
	n     int // elements written
	field string
	lim   *config.Limits
	b64   bool // BYTES leaves may be {"b64": "..."} (TF Serving's binary strings)
	// missing: the input takes missing values (backends.TensorSpec.Missing):
	// null is NaN and NaN is accepted whatever lim.AllowNonFinite says.
	missing bool
	num     []byte // the text of the number being converted (numText)
}

// numText returns the text of v, a JSON number, in a buffer reused by the
// next call.
func (f *jsonFiller) numText(v *fastjson.Value) string {
	f.num = v.MarshalTo(f.num[:0])
	return unsafe.String(unsafe.SliceData(f.num), len(f.num))
}

// fillFlat writes every leaf of v, at any nesting, in row-major order
// (KServe V2 allows nested or flat data whatever the shape).
func (f *jsonFiller) fillFlat(v *fastjson.Value) error {
	if v.Type() == fastjson.TypeArray {
		a, _ := v.Array()
		for _, e := range a {
			if err := f.fillFlat(e); err != nil {
				return err
			}
		}
		return nil
	}
	return f.put(v)
}

// fillShaped writes v, which must be nested arrays of exactly shape.
func (f *jsonFiller) fillShaped(v *fastjson.Value, shape []int64, path []byte) error {
	if len(shape) == 0 {
		if v.Type() == fastjson.TypeArray {
			return badRequest("%s%s: got an array; want a scalar (the value is deeper than the shape %v)", f.field, path, f.t.Shape)
		}
		return f.put(v)
	}
	if v.Type() != fastjson.TypeArray {
		return badRequest("%s%s: got %s; want an array of %d values (shape %v)", f.field, path, v.Type(), shape[0], f.t.Shape)
	}
	a, _ := v.Array()
	if int64(len(a)) != shape[0] {
		return badRequest("%s%s: has %d elements; want %d (arrays must be rectangular, shape %v)", f.field, path, len(a), shape[0], f.t.Shape)
	}
	if len(shape) == 1 && f.t.DType == tensor.FP32 && f.n+len(a) <= f.t.Len() {
		// The hot case, a row of FP32 features: convert in place; any
		// element that is not a plain finite number goes through put,
		// which names the problem exactly as the general path would.
		// Null (a missing value) goes through put as well.
		dst := f.t.Float32s()
		for i, e := range a {
			if e.Type() != fastjson.TypeNumber {
				p := append(strconv.AppendInt(append(path, '['), int64(i), 10), ']')
				if err := f.fillShaped(e, shape[1:], p); err != nil {
					return err
				}
				continue
			}
			x, err := parseFloatText(f.numText(e), 32)
			y := float32(x)
			if err != nil || (!f.lim.AllowNonFinite && (x != x || isInf32(y))) {
				if err := f.put(e); err != nil {
					return err
				}
				continue
			}
			dst[f.n] = y
			f.n++
		}
		return nil
	}
	if path == nil {
		// One buffer for the whole walk, not one per element: siblings
		// overwrite each other's suffix, and errors format it at once.
		path = make([]byte, 0, 32)
	}
	for i, e := range a {
		p := append(strconv.AppendInt(append(path, '['), int64(i), 10), ']')
		if err := f.fillShaped(e, shape[1:], p); err != nil {
			return err
		}
	}
	return nil
}

func (f *jsonFiller) put(v *fastjson.Value) error {
	i := f.n
	if i >= f.t.Len() {
		return badRequest("%s: has more than the %d values its shape %v holds", f.field, f.t.Len(), f.t.Shape)
	}
	dt := f.t.DType
	if dt == tensor.Bytes {
		return f.putString(v)
	}
	switch v.Type() {
	case fastjson.TypeNumber:
	case fastjson.TypeNull:
		if !f.missing || !dt.IsFloat() {
			return badRequest("%s: element %d is null; want a number for datatype %s (null, a missing value, is accepted only by models that take missing values, such as tree ensembles)", f.field, i, dt)
		}
		f.t.SetFloat64(i, math.NaN())
		f.n++
		return nil
	case fastjson.TypeTrue, fastjson.TypeFalse:
		if dt != tensor.Bool {
			return badRequest("%s: element %d is a boolean; want a number for datatype %s", f.field, i, dt)
		}
		if v.Type() == fastjson.TypeTrue {
			f.t.Data[i] = 1
		}
		f.n++
		return nil
	default:
		return badRequest("%s: element %d is %s; want a number for datatype %s", f.field, i, v.Type(), dt)
	}
	switch dt {
	case tensor.FP32, tensor.FP64, tensor.FP16, tensor.BF16:
		bits := 64
		if dt == tensor.FP32 {
			bits = 32
		}
		text := f.numText(v)
		x, err := parseFloatText(text, bits)
		if err != nil {
			return badRequest("%s: element %d is not a number (%s); want a number for datatype %s", f.field, i, text, dt)
		}
		if !f.lim.AllowNonFinite && ((math.IsNaN(x) && !f.missing) || math.IsInf(x, 0)) {
			if x64, err := parseFloatText(text, 64); err == nil && !math.IsInf(x64, 0) && !math.IsNaN(x64) {
				return badRequest("%s: element %d is %v, which overflows %s to %v; want a finite number in range (limits.allow_non_finite)", f.field, i, x64, dt, x)
			}
			return badRequest("%s: element %d is %v; want a finite number (NaN and Inf are rejected: limits.allow_non_finite)", f.field, i, x)
		}
		if dt == tensor.FP32 {
			f.t.Float32s()[i] = float32(x)
		} else {
			f.t.SetFloat64(i, x)
		}
		// A finite float64 such as 1e39 rounds to ±Inf in a narrower type.
		if y := f.t.Float64At(i); !f.lim.AllowNonFinite && math.IsInf(y, 0) {
			return badRequest("%s: element %d is %v, which overflows %s to %v; want a finite number in range (limits.allow_non_finite)", f.field, i, x, dt, y)
		}
	case tensor.Bool:
		x, err := v.Int64()
		if err != nil || (x != 0 && x != 1) {
			return badRequest("%s: element %d is %s; want true, false, 0 or 1 for datatype BOOL", f.field, i, v)
		}
		f.t.Data[i] = byte(x)
	case tensor.Uint64:
		x, err := v.Uint64()
		if err != nil {
			return badRequest("%s: element %d is %s; want an integer in [0, 2^64) for datatype UINT64", f.field, i, v)
		}
		f.t.SetInt64(i, int64(x))
	default:
		x, err := v.Int64()
		lo, hi := intRange(dt)
		if err != nil || x < lo || x > hi {
			return badRequest("%s: element %d is %s; want an integer in [%d, %d] for datatype %s", f.field, i, v, lo, hi, dt)
		}
		f.t.SetInt64(i, x)
	}
	f.n++
	return nil
}

// putString appends leaf v, a JSON string (or, with f.b64, a {"b64": ...}
// object), as the next element of a BYTES tensor.
func (f *jsonFiller) putString(v *fastjson.Value) error {
	i := f.n
	switch v.Type() {
	case fastjson.TypeString:
		sb, _ := v.StringBytes()
		f.t.Data = tensor.AppendString(f.t.Data, sb)
	case fastjson.TypeObject:
		enc := b64Value(v)
		if !f.b64 || enc == nil {
			return f.notString(v)
		}
		// Decode in place after a length placeholder: no buffer per element.
		start := len(f.t.Data)
		data := append(f.t.Data, 0, 0, 0, 0)
		out, err := base64.StdEncoding.AppendDecode(data, enc)
		if err != nil {
			out, err = base64.RawStdEncoding.AppendDecode(data, enc)
		}
		if err != nil {
			return badRequest("%s: element %d: b64 is not base64 (%s); want {\"b64\": \"standard base64\"}", f.field, i, err)
		}
		binary.LittleEndian.PutUint32(out[start:], uint32(len(out)-start-4))
		f.t.Data = out
	default:
		return f.notString(v)
	}
	f.n++
	return nil
}

// notString is the error for a leaf v of a BYTES tensor that is not a
// string.
func (f *jsonFiller) notString(v *fastjson.Value) error {
	if f.b64 {
		return badRequest("%s: element %d is %s; want a string for datatype BYTES (or {\"b64\": \"...\"} for binary data)", f.field, f.n, v.Type())
	}
	return badRequest("%s: element %d is %s; want a string for datatype BYTES", f.field, f.n, v.Type())
}

// b64Value returns the encoded bytes of v when v is TF Serving's binary
// string form {"b64": "..."} (exactly that one key), else nil.
func b64Value(v *fastjson.Value) []byte {
	o, err := v.Object()
	if err != nil || o.Len() != 1 {
		return nil
	}
	bv := o.Get("b64")
	if bv == nil {
		return nil
	}
	sb, err := bv.StringBytes()
	if err != nil {
		return nil
	}
	if sb == nil {
		return []byte{}
	}
	return sb
}

func intRange(dt tensor.DataType) (int64, int64) {
	switch dt {
	case tensor.Int8:
		return math.MinInt8, math.MaxInt8
	case tensor.Int16:
		return math.MinInt16, math.MaxInt16
	case tensor.Int32:
		return math.MinInt32, math.MaxInt32
	case tensor.Uint8:
		return 0, math.MaxUint8
	case tensor.Uint16:
		return 0, math.MaxUint16
	case tensor.Uint32:
		return 0, math.MaxUint32
	}
	return math.MinInt64, math.MaxInt64
}

// convertExact converts t to datatype dt like tensor.Convert, but fails
// on the first element dt cannot hold: Convert wraps integers, truncates
// fractions and overflows floats to ±Inf silently, so a client's 3e9 sent
// as INT64 would otherwise reach an INT32 input as -1294967296.
func convertExact(t *tensor.Tensor, dt tensor.DataType) (*tensor.Tensor, error) {
	if t.DType == dt {
		return t, nil
	}
	if t.DType == tensor.Bytes || dt == tensor.Bytes {
		// Strings and numbers do not convert (tensor.Convert would refuse
		// too, with a message about tensors rather than the request).
		return nil, fmt.Errorf("got datatype %s, which does not convert to %s", t.DType, dt)
	}
	n := t.Len()
	if !dt.IsFloat() && t.DType.IsNumeric() && dt.IsNumeric() {
		lo, hi := intRange(dt)
		loF, hiF := float64(lo), float64(hi)+1 // hiF is exclusive; float64(MaxInt64)+1 rounds to 2^63
		switch dt {
		case tensor.Bool:
			lo, hi, loF, hiF = 0, 1, 0, 2
		case tensor.Uint64:
			lo, loF, hiF = 0, 0, 1<<64
		}
		for i := 0; i < n; i++ {
			switch t.DType {
			case tensor.Int64:
				if v := t.Int64At(i); v < lo || v > hi {
					return nil, fmt.Errorf("element %d is %d, out of range for %s", i, v, dt)
				}
			case tensor.Uint64:
				if v := uint64(t.Int64At(i)); v > uint64(hi) {
					return nil, fmt.Errorf("element %d is %d, out of range for %s", i, v, dt)
				}
			default:
				if v := t.Float64At(i); v != math.Trunc(v) || v < loF || v >= hiF {
					return nil, fmt.Errorf("element %d is %v, not an integer in the range of %s", i, v, dt)
				}
			}
		}
	}
	ct, err := tensor.Convert(t, dt)
	if err != nil || !dt.IsFloat() {
		return ct, err
	}
	for i := 0; i < n; i++ {
		if x, y := t.Float64At(i), ct.Float64At(i); math.IsInf(y, 0) && !math.IsInf(x, 0) {
			return nil, fmt.Errorf("element %d is %v, which overflows %s to %v", i, x, dt, y)
		}
	}
	return ct, nil
}

// checkElements rejects shapes with negative dimensions or more elements
// than the limit; it returns the element count.
func checkElements(field string, shape []int64, lim *config.Limits) (int, error) {
	for i, d := range shape {
		if d < 0 {
			return 0, badRequest("%s: dimension %d is %d; want a non-negative size", field, i, d)
		}
	}
	n := tensor.NumElements(shape)
	if n < 0 || n > int64(lim.MaxTensorElements) {
		return 0, &Error{Kind: TooLarge, Msg: "" + field + ": shape " + fmtShape(shape) + " has more elements than the limit of " + strconv.Itoa(lim.MaxTensorElements) + " (limits.max_tensor_elements)"}
	}
	return int(n), nil
}

func fmtShape(shape []int64) string { return string(AppendShape(nil, shape)) }
