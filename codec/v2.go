package codec

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// KServe V2 / Open Inference Protocol REST inference (reference/protocols.md
// §1), with the binary tensor data extension: the JSON part may be followed
// by raw tensor bytes (Inference-Header-Content-Length gives the JSON part's
// length), and an empty JSON part (length 0) makes the whole body the bytes
// of the model's only input.
type v2Codec struct{}

func (v2Codec) Protocol() string { return ProtoV2 }

// Keys read from V2 objects, in the order of the spans lookup fills.
var (
	v2RequestKeys = []string{"id", "parameters", "inputs", "outputs"}
	v2ParamKeys   = []string{"timeout", "priority", "binary_data_output"}
	v2InputKeys   = []string{"name", "datatype", "shape", "parameters", "data"}
	v2OutputKeys  = []string{"name", "parameters"}
	binaryKeys    = []string{"binary_data_size"}
	binaryOutKeys = []string{"binary_data"}
)

// Decode decodes a V2 infer body. hdr is the value of the
// Inference-Header-Content-Length header (nil when absent): the JSON part
// is then the first hdr bytes and binary tensor data follows it.
func (v2Codec) Decode(r *Request, body []byte, h Header) error {
	m, lim := r.Model, r.Limits
	hdr := h.Peek("Inference-Header-Content-Length")
	jsonPart, bin := body, []byte(nil)
	if hdr != nil {
		n, err := strconv.Atoi(string(hdr))
		if err != nil || n < 0 {
			return badRequest("header Inference-Header-Content-Length is %q; want the byte length of the JSON part, a non-negative integer", TruncateBytes(hdr))
		}
		if n > len(body) {
			return badRequest("header Inference-Header-Content-Length is %d but the body has only %d bytes; want at most the body length", n, len(body))
		}
		if n == 0 {
			return decodeV2Raw(r, body)
		}
		jsonPart, bin = body[:n], body[n:]
	}
	obj, err := parseJSON(jsonPart, lim)
	if err != nil {
		return err
	}
	b := jsonPart
	var at [4]span // v2RequestKeys
	lookup(b, obj, v2RequestKeys, at[:])
	if i := at[0].start; i >= 0 {
		if b[i] != '"' {
			return badRequest("id: got %s; want a string", typeAt(b, i))
		}
		r.id, r.hasID = stringValue(b, i), true
	}
	if pv := at[1].start; pv >= 0 {
		if b[pv] != '{' {
			return badRequest("parameters: got %s; want an object", typeAt(b, pv))
		}
		var p [3]span // v2ParamKeys
		lookup(b, pv, v2ParamKeys, p[:])
		if tv := p[0].start; tv >= 0 {
			us, ok := int64Value(b, tv)
			if !ok || us < 0 {
				return badRequest("parameters.timeout: %s; want a non-negative integer of microseconds", echoValue(b, tv))
			}
			r.Timeout = time.Duration(min(us, int64(time.Hour/time.Microsecond))) * time.Microsecond
		}
		if pr := p[1].start; pr >= 0 {
			p, ok := int64Value(b, pr)
			if !ok || p < 0 || p > 1<<16 {
				return badRequest("parameters.priority: %s; want a priority level, 1 = highest (0 = the default)", echoValue(b, pr))
			}
			r.Priority = int(p)
		}
		if bo := p[2].start; bo >= 0 {
			v, ok := boolValue(b, bo)
			if !ok {
				return badRequest("parameters.binary_data_output: got %s; want true or false", typeAt(b, bo))
			}
			r.binaryAll = v
		}
	}
	rest, err := decodeV2Inputs(b, at[2].start, bin, m, lim, r.byName)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return badRequest("body has %d bytes of binary data beyond the inputs' binary_data_size; want exactly the sum of binary_data_size after the JSON header", len(rest))
	}
	if err := r.setInputs(r.byName, "inputs"); err != nil {
		return err
	}
	r.Outputs, err = decodeV2Outputs(b, at[3].start, m, r.Outputs[:0])
	return err
}

// decodeV2Inputs decodes the inputs array at b[iv] (-1: absent) into
// tensors by name, taking binary data from bin in input order, and
// returns what is left of bin. Datatypes are checked against m's inputs
// here only where they cannot convert (BYTES against a numeric input or
// the reverse); prepareInputs checks the rest. No tensor is allocated
// before its source is known to hold it: binary data of the right size,
// or JSON text long enough for its elements (jsonFiller.allocData).
func decodeV2Inputs(b []byte, iv int, bin []byte, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) ([]byte, error) {
	if iv < 0 {
		return nil, badRequest("inputs: missing; want an array of input tensors")
	}
	if b[iv] != '[' {
		return nil, badRequest("inputs: got %s; want an array of input tensors", typeAt(b, iv))
	}
	e, ok := firstElem(b, iv)
	if !ok {
		return nil, badRequest("inputs: empty; want at least one input tensor")
	}
	for i := 0; ok; i++ {
		names := v2InputNames(i)
		field := names.field
		if b[e] != '{' {
			return nil, badRequest("%s: got %s; want an object with name, shape, datatype and data", field, typeAt(b, e))
		}
		var at [5]span // v2InputKeys
		end := lookup(b, e, v2InputKeys, at[:])
		t, err := decodeV2Input(b, at, names, m, lim, byName)
		if err != nil {
			return nil, err
		}
		if bin, err = fillV2Input(b, t, at, bin, names, m, lim); err != nil {
			return nil, err
		}
		byName[t.Name] = t
		e, ok = nextElem(b, end)
	}
	return bin, nil
}

// v2Names are the names of input i's fields in errors.
type v2Names struct{ field, data, shape string }

// v2FirstNames are those of the first inputs, which nearly every request
// has: naming them costs no allocation on the request path.
var v2FirstNames = [...]v2Names{
	{"inputs[0]", "inputs[0].data", "inputs[0].shape"},
	{"inputs[1]", "inputs[1].data", "inputs[1].shape"},
	{"inputs[2]", "inputs[2].data", "inputs[2].shape"},
	{"inputs[3]", "inputs[3].data", "inputs[3].shape"},
}

func v2InputNames(i int) v2Names {
	if i < len(v2FirstNames) {
		return v2FirstNames[i]
	}
	f := "inputs[" + strconv.Itoa(i) + "]"
	return v2Names{f, f + ".data", f + ".shape"}
}

// decodeV2Input reads the name, datatype and shape of the input whose
// fields are at, and returns its tensor without data.
func decodeV2Input(b []byte, at [5]span, names v2Names, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) (*tensor.Tensor, error) {
	field := names.field
	if err := stringField(b, at[0].start, field, "name"); err != nil {
		return nil, err
	}
	rawName := rawString(b, at[0].start)
	idx := -1
	var name string
	if bytes.IndexByte(rawName, '\\') < 0 {
		// A name of the model's is the spec's string: no copy.
		if idx = m.Meta.Input(bytesString(rawName)); idx >= 0 {
			name = m.Meta.Inputs[idx].Name
		}
	}
	if idx < 0 {
		name = stringValue(b, at[0].start)
		idx = m.Meta.Input(name)
	}
	if _, dup := byName[name]; dup {
		return nil, badRequest("%s.name: input %q appears twice; want each input once", field, Truncate(name))
	}
	if err := stringField(b, at[1].start, field, "datatype"); err != nil {
		return nil, err
	}
	dtName := rawString(b, at[1].start)
	dt, ok := tensor.ParseDataType(bytesString(dtName))
	if !ok {
		return nil, badRequest("%s.datatype: %q is not a datatype; want one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES", field, TruncateBytes(dtName))
	}
	if idx >= 0 {
		if sp := m.Meta.Inputs[idx]; (dt == tensor.Bytes) != (sp.DType == tensor.Bytes) {
			// Numbers convert between numeric datatypes; strings
			// convert to nothing, so say so before reading the data.
			return nil, badRequest("%s.datatype: %s, but input %q of model %s is %s; want datatype %s", field, dt, name, m.Name, sp.DType, sp.DType)
		}
	}
	shape, err := shapeField(b, at[2].start, field)
	if err != nil {
		return nil, err
	}
	if _, err := checkElements(names.shape, shape, lim); err != nil {
		return nil, err
	}
	return &tensor.Tensor{Name: name, DType: dt, Shape: shape}, nil
}

// fillV2Input fills t from its binary data (taken from bin, whose rest it
// returns) or its JSON data.
func fillV2Input(b []byte, t *tensor.Tensor, at [5]span, bin []byte, names v2Names, m *backends.ModelVersion, lim *config.Limits) ([]byte, error) {
	field := names.field
	idx := m.Meta.Input(t.Name)
	missing := idx >= 0 && m.Meta.Inputs[idx].Missing
	n := int(tensor.NumElements(t.Shape)) // checked by checkElements
	size, hasSize, err := binarySize(b, at[3].start, field)
	if err != nil {
		return nil, err
	}
	data := at[4]
	switch {
	case hasSize && t.DType == tensor.Bytes:
		if data.start >= 0 {
			return nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
		}
		if size > len(bin) {
			return nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
		}
		if err := checkStrings(bin[:size], n, field, t.Shape); err != nil {
			return nil, err
		}
		t.Data = append(make([]byte, 0, size), bin[:size]...) // the request owns its tensors
		return bin[size:], nil
	case hasSize:
		if data.start >= 0 {
			return nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
		}
		if want := n * t.DType.Size(); size != want {
			return nil, badRequest("%s.parameters.binary_data_size: %d bytes; want %d (shape %v of %s)", field, size, want, t.Shape, t.DType)
		}
		if size > len(bin) {
			return nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
		}
		t.Data = tensor.Alloc(size)
		copy(t.Data, bin[:size])
		if err := checkFinite(t, field, lim, missing); err != nil {
			return nil, err
		}
		return bin[size:], nil
	case data.start < 0:
		return nil, badRequest("%s.data: missing; want the tensor's values (or parameters.binary_data_size with binary data)", field)
	}
	if b[data.start] != '[' {
		return nil, badRequest("%s.data: got %s; want an array of %d values", field, typeAt(b, data.start), n)
	}
	f := jsonFiller{b: b, t: t, field: names.data, lim: lim, missing: missing}
	f.allocData(n, data.end-data.start)
	if _, err := f.fillFlat(data.start); err != nil {
		return nil, err
	}
	if f.n != n {
		return nil, badRequest("%s.data: has %d values; want %d for shape %v", field, f.n, n, t.Shape)
	}
	return bin, f.done()
}

// decodeV2Outputs decodes the outputs array at b[ov] (-1: absent) into
// outs.
func decodeV2Outputs(b []byte, ov int, m *backends.ModelVersion, outs []Output) ([]Output, error) {
	if ov < 0 {
		return outs, nil
	}
	if b[ov] != '[' {
		return nil, badRequest("outputs: got %s; want an array of {\"name\": ...}", typeAt(b, ov))
	}
	e, ok := firstElem(b, ov)
	for i := 0; ok; i++ {
		field := "outputs[" + strconv.Itoa(i) + "]"
		if b[e] != '{' {
			return nil, badRequest("%s: got %s; want an object with a name", field, typeAt(b, e))
		}
		var at [2]span // v2OutputKeys
		end := lookup(b, e, v2OutputKeys, at[:])
		if err := stringField(b, at[0].start, field, "name"); err != nil {
			return nil, err
		}
		name := stringValue(b, at[0].start)
		idx := m.Meta.Output(name)
		if idx < 0 {
			return nil, badRequest("%s.name: model %s has no output %q; want one of %s", field, m.Name, Truncate(name), outputNames(m))
		}
		for _, prev := range outs {
			if prev.Index == idx {
				return nil, badRequest("%s.name: output %q is requested twice; want each output once", field, Truncate(name))
			}
		}
		out := Output{Index: idx}
		if pv := at[1].start; pv >= 0 {
			if b[pv] != '{' {
				return nil, badRequest("%s.parameters: got %s; want an object", field, typeAt(b, pv))
			}
			var p [1]span // binaryOutKeys
			lookup(b, pv, binaryOutKeys, p[:])
			if bv := p[0].start; bv >= 0 {
				v, ok := boolValue(b, bv)
				if !ok {
					return nil, badRequest("%s.parameters.binary_data: got %s; want true or false", field, typeAt(b, bv))
				}
				out.Binary = v
			}
		}
		outs = append(outs, out)
		e, ok = nextElem(b, end)
	}
	return outs, nil
}

// decodeV2Raw decodes a raw binary request (Inference-Header-Content-Length
// 0): the body is the bytes of the model's only input, batch 1.
func decodeV2Raw(r *Request, body []byte) error {
	m, lim := r.Model, r.Limits
	if len(m.Meta.Inputs) != 1 {
		return badRequest("raw binary request (Inference-Header-Content-Length: 0) to model %s with %d inputs; want a model with exactly one input", m.Name, len(m.Meta.Inputs))
	}
	sp := m.Meta.Inputs[0]
	shape := append([]int64(nil), sp.Shape...)
	for i := range shape {
		if i == 0 {
			shape[i] = 1
		} else if shape[i] < 0 {
			return badRequest("raw binary request to model %s whose input %q has variable shape %v; want a JSON header with the shape", m.Name, sp.Name, sp.Shape)
		}
	}
	n, err := checkElements("raw input", shape, lim)
	if err != nil {
		return err
	}
	if sp.DType == tensor.Bytes {
		if err := checkStrings(body, n, "raw binary request", shape); err != nil {
			return err
		}
		t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: append(make([]byte, 0, len(body)), body...)}
		r.Inputs, r.binaryAll, r.raw = append(r.inputsArray[:0], t), true, true
		return nil
	}
	if len(body) != n*sp.DType.Size() {
		return badRequest("raw binary request: body has %d bytes; want %d (one row of %s %v)", len(body), n*sp.DType.Size(), sp.DType, sp.Shape[1:])
	}
	t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: tensor.Alloc(len(body))}
	copy(t.Data, body)
	if err := checkFinite(t, "raw input", lim, sp.Missing); err != nil {
		return err
	}
	r.Inputs, r.binaryAll, r.raw = append(r.inputsArray[:0], t), true, true
	return nil
}

// Encode appends the V2 response to dst and sets its content type and,
// when any output is binary, Inference-Header-Content-Length.
func (v2Codec) Encode(dst []byte, r *Request, out []*tensor.Tensor, h ResponseHeader) ([]byte, error) {
	dst, jsonLen := encodeV2(dst, r, out)
	if jsonLen >= 0 {
		h.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
		h.SetContentType("application/octet-stream")
	} else {
		h.SetContentType("application/json")
	}
	return dst, nil
}

// encodeV2 appends the V2 response to dst. When any output is binary it
// returns the length of the JSON header (for Inference-Header-Content-Length)
// with the blobs after it; else -1.
func encodeV2(dst []byte, r *Request, out []*tensor.Tensor) ([]byte, int) {
	m := r.Model
	if len(r.Outputs) == 0 {
		for i := range out {
			r.Outputs = append(r.Outputs, Output{Index: i, Binary: r.binaryAll})
		}
	} else if r.binaryAll {
		for i := range r.Outputs {
			r.Outputs[i].Binary = true
		}
	}
	outs := r.Outputs
	start := len(dst)
	dst = append(dst, `{"model_name":`...)
	dst = AppendString(dst, m.Name)
	dst = append(dst, `,"model_version":`...)
	dst = AppendString(dst, m.Version)
	if r.hasID {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, r.id)
	}
	dst = append(dst, `,"outputs":[`...)
	anyBinary := false
	for i, o := range outs {
		t := out[o.Index]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = AppendString(dst, m.Meta.Outputs[o.Index].Name)
		dst = append(dst, `,"datatype":"`...)
		dst = append(dst, t.DType.String()...)
		dst = append(dst, `","shape":`...)
		dst = AppendShape(dst, t.Shape)
		if o.Binary {
			anyBinary = true
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(t.Data)), 10)
			dst = append(dst, "}}"...)
			continue
		}
		dst = append(dst, `,"data":`...)
		dst = appendFlat(dst, t, nonFiniteNull)
		dst = append(dst, '}')
	}
	dst = append(dst, "]}"...)
	if !anyBinary {
		return dst, -1
	}
	jsonLen := len(dst) - start
	for _, o := range outs {
		if o.Binary {
			dst = append(dst, out[o.Index].Data...)
		}
	}
	return dst, jsonLen
}

// stringField checks that the value of key in the object of field, at
// b[i] (-1: absent), is a string.
func stringField(b []byte, i int, field, key string) error {
	if i < 0 {
		return badRequest("%s.%s: missing; want a string", field, key)
	}
	if b[i] != '"' {
		return badRequest("%s.%s: got %s; want a string", field, key, typeAt(b, i))
	}
	return nil
}

// maxDims is the most dimensions a V2 shape may have.
const maxDims = 16

// shapeField reads the shape of field at b[i] (-1: absent).
func shapeField(b []byte, i int, field string) ([]int64, error) {
	if i < 0 {
		return nil, badRequest("%s.shape: missing; want an array of non-negative integers", field)
	}
	if b[i] != '[' {
		return nil, badRequest("%s.shape: got %s; want an array of non-negative integers", field, typeAt(b, i))
	}
	e, ok := firstElem(b, i)
	if !ok {
		return []int64{}, nil
	}
	n, _ := countRest(b, skipValue(b, e))
	if n+1 > maxDims {
		return nil, badRequest("%s.shape: %d dimensions; want at most %d", field, n+1, maxDims)
	}
	shape := make([]int64, 0, n+1)
	for k := 0; ok; k++ {
		d, isInt := int64Value(b, e)
		if !isInt || d < 0 {
			return nil, badRequest("%s.shape[%d]: %s; want a non-negative integer", field, k, echoValue(b, e))
		}
		shape = append(shape, d)
		e, ok = nextElem(b, skipValue(b, e))
	}
	return shape, nil
}

// binarySize reads parameters.binary_data_size of field from the
// parameters object at b[pv] (-1: absent).
func binarySize(b []byte, pv int, field string) (int, bool, error) {
	if pv < 0 {
		return 0, false, nil
	}
	if b[pv] != '{' {
		return 0, false, badRequest("%s.parameters: got %s; want an object", field, typeAt(b, pv))
	}
	var at [1]span // binaryKeys
	lookup(b, pv, binaryKeys, at[:])
	sv := at[0].start
	if sv < 0 {
		return 0, false, nil
	}
	n, ok := int64Value(b, sv)
	if !ok || n < 0 {
		return 0, false, badRequest("%s.parameters.binary_data_size: %s; want a non-negative integer", field, echoValue(b, sv))
	}
	if n > 1<<40 {
		return 0, false, badRequest("%s.parameters.binary_data_size: %d is too large", field, n)
	}
	return int(n), true, nil
}

// checkStrings checks that data, binary BYTES data of the tensor in field,
// holds exactly n elements in the V2 layout (a 4-byte little-endian length
// before each element's bytes).
func checkStrings(data []byte, n int, field string, shape []int64) error {
	got, err := tensor.CountStrings(data)
	if err != nil {
		return badRequest("%s: BYTES binary data: %s; want %d elements, each a 4-byte little-endian length followed by that many bytes", field, err, n)
	}
	if got != n {
		return badRequest("%s: BYTES binary data of %d bytes holds %d elements; want %d for shape %v", field, len(data), got, n, shape)
	}
	return nil
}

// checkFinite rejects NaN and ±Inf in floating-point binary data unless
// the limits allow them; missing (an input that takes missing values)
// accepts NaN.
func checkFinite(t *tensor.Tensor, field string, lim *config.Limits, missing bool) error {
	if lim.AllowNonFinite || !t.DType.IsFloat() {
		return nil
	}
	n := t.Len()
	for i := 0; i < n; i++ {
		if x := t.Float64At(i); refused(x, missing, lim) {
			return badRequest("%s: element %d is %v; want a finite number (NaN and Inf are rejected: limits.allow_non_finite)", field, i, x)
		}
	}
	return nil
}

// outputNames lists the outputs of m (at most maxListed) for an error
// message.
func outputNames(m *backends.ModelVersion) string {
	var b []byte
	for i, o := range m.Meta.Outputs {
		if i > 0 {
			b = append(b, ", "...)
		}
		if i == maxListed {
			b = fmt.Appendf(b, "… (%d outputs)", len(m.Meta.Outputs))
			break
		}
		b = fmt.Appendf(b, "%q", Truncate(o.Name))
	}
	return string(b)
}
