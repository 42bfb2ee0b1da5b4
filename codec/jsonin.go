package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// checkDepth reports whether body nests JSON arrays and objects deeper
// than max, counting brackets outside strings: one linear scan, valid
// JSON or not. parseJSON runs it when validJSON fails, so that a body too
// deep is reported as such even when it is also malformed.
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

// parseJSON checks body (depth and syntax, in one pass when it is fine)
// and returns the index of its top-level object. The checks cover the
// whole body before any field is read, so that a body that is not JSON is
// reported as such whatever its fields say.
func parseJSON(body []byte, lim *config.Limits) (int, error) {
	if len(body) == 0 {
		return 0, badRequest("request body is empty; want a JSON object")
	}
	if err := validJSON(body, lim.MaxJSONDepth); err != nil {
		// The depth error comes first, as a body too deep is reported so
		// whatever else is wrong with it; checkDepth, a scan of brackets
		// alone, fails wherever validJSON met too much nesting.
		if err := checkDepth(body, lim.MaxJSONDepth); err != nil {
			return 0, err
		}
		return 0, badRequest("request body is not valid JSON: %s", err)
	}
	i := skipSpace(body, 0)
	if t := typeAt(body, i); t != typeObject {
		return 0, badRequest("request body is a JSON %s; want a JSON object", t)
	}
	return i, nil
}

// span is where a JSON value is in the body: b[start:end]; start is -1
// for a value that is absent.
type span struct{ start, end int }

// lookup sets vals[k] to where the value of member keys[k] of the object
// at b[obj] is, in one pass over the object, and returns the index after
// the object. The first of repeated keys counts, as it did with fastjson.
func lookup(b []byte, obj int, keys []string, vals []span) int {
	for k := range vals {
		vals[k] = span{-1, -1}
	}
	m, next, ok := firstMember(b, obj)
	for ok {
		end := skipValue(b, m.val)
		for k, key := range keys {
			if vals[k].start < 0 && keyIs(m.key, key) {
				vals[k] = span{m.val, end}
				break
			}
		}
		m, next, ok = nextMember(b, end)
	}
	return next
}

// stringValue returns the string at b[i] with its escapes decoded.
func stringValue(b []byte, i int) string {
	raw := rawString(b, i)
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	return string(appendUnescaped(nil, raw))
}

// int64Value returns the integer at b[i], or false when it is not a JSON
// integer that fits an int64.
func int64Value(b []byte, i int) (int64, bool) {
	if typeAt(b, i) != typeNumber {
		return 0, false
	}
	return parseInt64(b[i:numberEnd(b, i)])
}

// boolValue returns the boolean at b[i], or false for ok when it is none.
func boolValue(b []byte, i int) (v, ok bool) {
	switch typeAt(b, i) {
	case typeTrue:
		return true, true
	case typeFalse:
		return false, true
	}
	return false, false
}

// inferShape returns the shape of the nested JSON arrays at b[i],
// following the first element at each level (a scalar has shape []).
// Each level's array is counted by skipping its elements; as every level
// lies within the one above, that reads the body at most once per level
// (limits.max_json_depth), and for rows of values little more than once.
func inferShape(b []byte, i int) []int64 {
	shape := make([]int64, 0, 4) // one allocation for the usual ranks
	for b[i] == '[' {
		first, ok := firstElem(b, i)
		if !ok {
			return append(shape, 0)
		}
		n, _ := countRest(b, skipValue(b, first))
		shape = append(shape, int64(n+1))
		i = first
	}
	return shape
}

// maxLeaves is the most values JSON text of span bytes can hold: each
// takes at least one byte and all but the last a comma.
func maxLeaves(span int) int { return (span + 1) / 2 }

// jsonFiller writes the JSON leaves of body b into a tensor, converting
// each to the tensor's datatype and naming the field in errors.
//
// A numeric tensor's Data is allocated before filling (see allocData) and
// filled in place; a BYTES tensor's Data starts empty and grows by one
// length-prefixed element per leaf, so its size is bounded by the body's
// (limits.max_body_bytes) plus 4 bytes per element
// (limits.max_tensor_elements).
type jsonFiller struct {
	b     []byte
	t     *tensor.Tensor
	n     int // elements written
	want  int // elements the tensor's shape holds
	field string
	// rowed: the values are those of input sub in row row of field (TF
	// Serving's instances[row].sub); kept apart, and joined only for an
	// error, so that a body of many small rows costs no string per row.
	rowed bool
	row   int
	sub   string
	lim   *config.Limits
	b64   bool // BYTES leaves may be {"b64": "..."} (TF Serving's binary strings)
	// missing: the input takes missing values (backends.TensorSpec.Missing):
	// null is NaN and NaN is accepted whatever lim.AllowNonFinite says.
	missing bool
	// dry: check the leaves but write nothing; t.Data is not allocated
	// because the body cannot hold as many values as the shape declares,
	// so the fill is bound to fail, and must fail with the error it
	// would give with the data allocated (see allocData).
	dry bool
}

// where names the field being filled, for errors.
func (f *jsonFiller) where() string {
	if !f.rowed {
		return f.field
	}
	return f.field + "[" + strconv.Itoa(f.row) + "]." + f.sub
}

// allocData sets up f to fill t, of n elements, from JSON text of span
// bytes: a numeric tensor's Data is allocated only if the text can hold
// n values, else the fill runs dry. Allocation is thus at most 8 bytes
// (FP64, INT64) per 2 bytes of body, whatever shape the client declares;
// a BYTES tensor's at most 2 bytes per byte.
func (f *jsonFiller) allocData(n, span int) {
	f.want = n
	sz := f.t.DType.Size()
	switch {
	case f.t.DType == tensor.Bytes:
		// Strings take at most their text (escapes only shrink, base64
		// decodes to 3/4) plus a 4-byte length each instead of at least
		// 2 bytes of quotes: one buffer of that size is never regrown.
		f.t.Data = make([]byte, 0, span+2*min(n, maxLeaves(span)))
	case n > maxLeaves(span):
		f.dry = true
		f.t.Data = nil
	default:
		f.t.Data = tensor.Alloc(n * sz)
	}
}

// done returns the error of a fill that ran dry without failing, which the
// leaf bound makes impossible; it is there so that a tensor without data
// can never escape.
func (f *jsonFiller) done() error {
	if f.dry {
		return badRequest("%s: has fewer values than its shape %v holds", f.where(), f.t.Shape)
	}
	return nil
}

// fastFP32 converts the plain JSON number at b[i] to float32, or reports
// false for anything the general path must judge (non-finite values,
// NaN tokens, malformed numbers such as 1.2.3). It leaves f.n alone.
func (f *jsonFiller) fastFP32(i int) (float32, int, bool) {
	b := f.b
	if c := b[i]; c != '-' && c-'0' > 9 {
		return 0, 0, false
	}
	y, j := shortFloat32(b, i)
	if j < 0 {
		if y, j = scanFloat32(b, i); j < 0 {
			return 0, 0, false
		}
	}
	if (j < len(b) && isNumChar(b[j])) || refused(float64(y), f.missing, f.lim) {
		return 0, 0, false
	}
	return y, j, true
}

// fillFlat writes every leaf of the value at b[i], at any nesting, in
// row-major order (KServe V2 allows nested or flat data whatever the
// shape), and returns the index after the value.
func (f *jsonFiller) fillFlat(i int) (int, error) {
	b := f.b
	if b[i] != '[' {
		return f.put(i)
	}
	var dst []float32
	if f.t.DType == tensor.FP32 && !f.dry {
		dst = f.t.Float32s()
	}
	e, ok := firstElem(b, i)
	for ok {
		var end int
		if y, j, fast := f.fastFP32(e); fast && dst != nil && f.n < f.want {
			dst[f.n] = y
			f.n++
			end = j
		} else {
			var err error
			if end, err = f.fillFlat(e); err != nil {
				return 0, err
			}
		}
		e, ok = nextElem(b, end)
	}
	return e, nil
}

// elemPath appends [k] to path, the position of an element for errors.
func elemPath(path []byte, k int) []byte {
	return append(strconv.AppendInt(append(path, '['), int64(k), 10), ']')
}

// fillShaped writes the value at b[i], which must be nested arrays of
// exactly shape, and returns the index after it. Errors come out as a
// walk of the whole tree would give them, checking each array's length
// before its elements: when an element fails, the array's own length is
// checked first (reading the rest of it), and a wrong length wins.
func (f *jsonFiller) fillShaped(i int, shape []int64, path []byte) (int, error) {
	b := f.b
	if len(shape) == 0 {
		if b[i] == '[' {
			return 0, badRequest("%s%s: got an array; want a scalar (the value is deeper than the shape %v)", f.where(), path, f.t.Shape)
		}
		return f.put(i)
	}
	if b[i] != '[' {
		return 0, badRequest("%s%s: got %s; want an array of %d values (shape %v)", f.where(), path, typeAt(b, i), shape[0], f.t.Shape)
	}
	var dst []float32 // the hot case, a row of FP32 features: converted in place
	if len(shape) == 1 && f.t.DType == tensor.FP32 && !f.dry {
		dst = f.t.Float32s()
	}
	if path == nil && len(shape) > 1 {
		// One buffer for the whole walk, not one per element: siblings
		// overwrite each other's suffix, and errors format it at once.
		path = make([]byte, 0, 32)
	}
	k := 0
	e, ok := firstElem(b, i)
	for ok {
		if int64(k) == shape[0] {
			rest, _ := countRest(b, skipValue(b, e))
			return 0, f.lengthError(path, k+1+rest, shape)
		}
		var end int
		if y, j, fast := f.fastFP32(e); fast && dst != nil {
			dst[f.n] = y
			f.n++
			end = j
		} else {
			var err error
			if end, err = f.fillShaped(e, shape[1:], elemPath(path, k)); err != nil {
				if rest, _ := countRest(b, end0(b, e, end)); int64(k+1+rest) != shape[0] {
					return 0, f.lengthError(path, k+1+rest, shape)
				}
				return 0, err
			}
		}
		k++
		e, ok = nextElem(b, end)
	}
	if int64(k) != shape[0] {
		return 0, f.lengthError(path, k, shape)
	}
	return e, nil
}

// end0 returns end, the index after the element at b[e], or finds it when
// a failed fill did not say (end 0).
func end0(b []byte, e, end int) int {
	if end > e {
		return end
	}
	return skipValue(b, e)
}

func (f *jsonFiller) lengthError(path []byte, got int, shape []int64) error {
	return badRequest("%s%s: has %d elements; want %d (arrays must be rectangular, shape %v)", f.where(), path, got, shape[0], f.t.Shape)
}

// put writes the leaf at b[i] as element f.n and returns the index after
// it.
func (f *jsonFiller) put(i int) (int, error) {
	b := f.b
	idx := f.n
	if idx >= f.want {
		return 0, badRequest("%s: has more than the %d values its shape %v holds", f.where(), f.want, f.t.Shape)
	}
	dt := f.t.DType
	if dt == tensor.Bytes {
		return f.putString(i)
	}
	typ := typeAt(b, i)
	switch typ {
	case typeNumber:
	case typeNull:
		if !f.missing || !dt.IsFloat() {
			return 0, badRequest("%s: element %d is null; want a number for datatype %s (null, a missing value, is accepted only by models that take missing values, such as tree ensembles)", f.where(), idx, dt)
		}
		if !f.dry {
			f.t.SetFloat64(idx, math.NaN())
		}
		f.n++
		return i + 4, nil
	case typeTrue, typeFalse:
		if dt != tensor.Bool {
			return 0, badRequest("%s: element %d is a boolean; want a number for datatype %s", f.where(), idx, dt)
		}
		end := i + 5
		if typ == typeTrue {
			end = i + 4
			if !f.dry {
				f.t.Data[idx] = 1
			}
		}
		f.n++
		return end, nil
	default:
		return 0, badRequest("%s: element %d is %s; want a number for datatype %s", f.where(), idx, typ, dt)
	}
	end := numberEnd(b, i)
	text := b[i:end]
	switch dt {
	case tensor.FP32, tensor.FP64, tensor.FP16, tensor.BF16:
		bits := 64
		if dt == tensor.FP32 {
			bits = 32
		}
		x, err := parseFloatText(bytesString(text), bits)
		if err != nil {
			return 0, badRequest("%s: element %d is not a number (%s); want a number for datatype %s", f.where(), idx, TruncateBytes(text), dt)
		}
		if refused(x, f.missing, f.lim) {
			if x64, err := parseFloatText(bytesString(text), 64); err == nil && !math.IsInf(x64, 0) && !math.IsNaN(x64) {
				return 0, badRequest("%s: element %d is %v, which overflows %s to %v; want a finite number in range (limits.allow_non_finite)", f.where(), idx, x64, dt, x)
			}
			return 0, badRequest("%s: element %d is %v; want a finite number (NaN and Inf are rejected: limits.allow_non_finite)", f.where(), idx, x)
		}
		if f.dry {
			// A finite float64 such as 1e39 rounds to ±Inf in a narrower
			// type: the same check as below, without the tensor.
			if y := narrow(x, dt); refused(y, f.missing, f.lim) {
				return 0, badRequest("%s: element %d is %v, which overflows %s to %v; want a finite number in range (limits.allow_non_finite)", f.where(), idx, x, dt, y)
			}
			break
		}
		if dt == tensor.FP32 {
			f.t.Float32s()[idx] = float32(x)
		} else {
			f.t.SetFloat64(idx, x)
		}
		// A finite float64 such as 1e39 rounds to ±Inf in a narrower type.
		if y := f.t.Float64At(idx); refused(y, f.missing, f.lim) {
			return 0, badRequest("%s: element %d is %v, which overflows %s to %v; want a finite number in range (limits.allow_non_finite)", f.where(), idx, x, dt, y)
		}
	case tensor.Bool:
		x, ok := parseInt64(text)
		if !ok || (x != 0 && x != 1) {
			return 0, badRequest("%s: element %d is %s; want true, false, 0 or 1 for datatype BOOL", f.where(), idx, TruncateBytes(text))
		}
		if !f.dry {
			f.t.Data[idx] = byte(x)
		}
	case tensor.Uint64:
		x, ok := parseUint64(text)
		if !ok {
			return 0, badRequest("%s: element %d is %s; want an integer in [0, 2^64) for datatype UINT64", f.where(), idx, TruncateBytes(text))
		}
		if !f.dry {
			f.t.SetInt64(idx, int64(x))
		}
	default:
		x, ok := parseInt64(text)
		lo, hi := intRange(dt)
		if !ok || x < lo || x > hi {
			return 0, badRequest("%s: element %d is %s; want an integer in [%d, %d] for datatype %s", f.where(), idx, TruncateBytes(text), lo, hi, dt)
		}
		if !f.dry {
			f.t.SetInt64(idx, x)
		}
	}
	f.n++
	return end, nil
}

// narrow returns x rounded to float datatype dt, as the tensor would
// store it.
func narrow(x float64, dt tensor.DataType) float64 {
	var one [8]byte
	t := tensor.Tensor{DType: dt, Shape: []int64{1}, Data: one[:dt.Size()]}
	t.SetFloat64(0, x)
	return t.Float64At(0)
}

// putString appends the leaf at b[i], a JSON string (or, with f.b64, a
// {"b64": ...} object), as the next element of a BYTES tensor, and
// returns the index after it.
func (f *jsonFiller) putString(i int) (int, error) {
	b := f.b
	idx := f.n
	switch typeAt(b, i) {
	case typeString:
		raw := rawString(b, i)
		f.t.Data = appendJSONString(f.t.Data, raw)
		f.n++
		return i + len(raw) + 2, nil
	case typeObject:
		enc, ok := b64Value(b, i)
		if !f.b64 || !ok {
			return 0, f.notString(i)
		}
		// Decode in place after a length placeholder: no buffer per element.
		start := len(f.t.Data)
		data := append(f.t.Data, 0, 0, 0, 0)
		if bytes.IndexByte(enc, '\\') >= 0 {
			enc = appendUnescaped(nil, enc) // JSON may write / as \/; rare
		}
		out, err := base64.StdEncoding.AppendDecode(data, enc)
		if err != nil {
			out, err = base64.RawStdEncoding.AppendDecode(data, enc)
		}
		if err != nil {
			return 0, badRequest("%s: element %d: b64 is not base64 (%s); want {\"b64\": \"standard base64\"}", f.where(), idx, err)
		}
		binary.LittleEndian.PutUint32(out[start:], uint32(len(out)-start-4))
		f.t.Data = out
		f.n++
		return skipValue(b, i), nil
	}
	return 0, f.notString(i)
}

// appendJSONString appends the string whose raw bytes (between the
// quotes) are raw to BYTES data, length first.
func appendJSONString(data, raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return tensor.AppendString(data, raw)
	}
	start := len(data)
	data = appendUnescaped(append(data, 0, 0, 0, 0), raw)
	binary.LittleEndian.PutUint32(data[start:], uint32(len(data)-start-4))
	return data
}

// notString is the error for the leaf at b[i] of a BYTES tensor that is
// not a string.
func (f *jsonFiller) notString(i int) error {
	typ := typeAt(f.b, i)
	if f.b64 {
		return badRequest("%s: element %d is %s; want a string for datatype BYTES (or {\"b64\": \"...\"} for binary data)", f.where(), f.n, typ)
	}
	return badRequest("%s: element %d is %s; want a string for datatype BYTES", f.where(), f.n, typ)
}

// b64Value returns the encoded bytes (escapes not decoded) of the value
// at b[i] when it is TF Serving's binary string form {"b64": "..."}
// (exactly that one key).
func b64Value(b []byte, i int) ([]byte, bool) {
	if b[i] != '{' {
		return nil, false
	}
	m, _, ok := firstMember(b, i)
	if !ok || !keyIs(m.key, "b64") || b[m.val] != '"' {
		return nil, false
	}
	raw := rawString(b, m.val)
	if _, _, more := nextMember(b, m.val+len(raw)+2); more {
		return nil, false
	}
	return raw, true
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

// maxEchoDims is the most dimensions of a shape an error message writes.
const maxEchoDims = 16

// fmtShape writes shape for an error message, as a JSON array of at most
// maxEchoDims dimensions (then "…"): shapes inferred from a client's
// nested arrays are as deep as limits.max_json_depth allows.
func fmtShape(shape []int64) string {
	if len(shape) <= maxEchoDims {
		return string(AppendShape(nil, shape))
	}
	b := AppendShape(nil, shape[:maxEchoDims])
	return string(append(b[:len(b)-1], ",…]"...))
}
