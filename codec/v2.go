package codec

import (
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fastjson"

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
			return badRequest("header Inference-Header-Content-Length is %q; want the byte length of the JSON part, a non-negative integer", hdr)
		}
		if n > len(body) {
			return badRequest("header Inference-Header-Content-Length is %d but the body has only %d bytes; want at most the body length", n, len(body))
		}
		if n == 0 {
			return decodeV2Raw(r, body)
		}
		jsonPart, bin = body[:n], body[n:]
	}
	v, err := parseJSON(&r.parser, jsonPart, lim)
	if err != nil {
		return err
	}
	if idv := v.Get("id"); idv != nil {
		sb, err := idv.StringBytes()
		if err != nil {
			return badRequest("id: got %s; want a string", idv.Type())
		}
		r.id, r.hasID = string(sb), true
	}
	if pv := v.Get("parameters"); pv != nil {
		if pv.Type() != fastjson.TypeObject {
			return badRequest("parameters: got %s; want an object", pv.Type())
		}
		if tv := pv.Get("timeout"); tv != nil {
			us, err := tv.Int64()
			if err != nil || us < 0 {
				return badRequest("parameters.timeout: %s; want a non-negative integer of microseconds", tv)
			}
			r.Timeout = time.Duration(min(us, int64(time.Hour/time.Microsecond))) * time.Microsecond
		}
		if pr := pv.Get("priority"); pr != nil {
			p, err := pr.Int64()
			if err != nil || p < 0 || p > 1<<16 {
				return badRequest("parameters.priority: %s; want a priority level, 1 = highest (0 = the default)", pr)
			}
			r.Priority = int(p)
		}
		if bo := pv.Get("binary_data_output"); bo != nil {
			b, err := bo.Bool()
			if err != nil {
				return badRequest("parameters.binary_data_output: got %s; want true or false", bo.Type())
			}
			r.binaryAll = b
		}
	}
	rest, err := decodeV2Inputs(v.Get("inputs"), bin, m, lim, r.byName)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return badRequest("body has %d bytes of binary data beyond the inputs' binary_data_size; want exactly the sum of binary_data_size after the JSON header", len(rest))
	}
	if err := r.setInputs(r.byName, "inputs"); err != nil {
		return err
	}
	r.Outputs, err = decodeV2Outputs(v.Get("outputs"), m, r.Outputs[:0])
	return err
}

// decodeV2Inputs decodes the inputs array into tensors by name, taking
// binary data from bin in input order, and returns what is left of bin.
// Datatypes are checked against m's inputs here only where they cannot
// convert (BYTES against a numeric input or the reverse); prepareInputs
// checks the rest.
func decodeV2Inputs(iv *fastjson.Value, bin []byte, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) ([]byte, error) {
	if iv == nil {
		return nil, badRequest("inputs: missing; want an array of input tensors")
	}
	arr, err := iv.Array()
	if err != nil {
		return nil, badRequest("inputs: got %s; want an array of input tensors", iv.Type())
	}
	if len(arr) == 0 {
		return nil, badRequest("inputs: empty; want at least one input tensor")
	}
	for i, in := range arr {
		field := "inputs[" + strconv.Itoa(i) + "]"
		if in.Type() != fastjson.TypeObject {
			return nil, badRequest("%s: got %s; want an object with name, shape, datatype and data", field, in.Type())
		}
		name, err := stringField(in, field, "name")
		if err != nil {
			return nil, err
		}
		if _, dup := byName[name]; dup {
			return nil, badRequest("%s.name: input %q appears twice; want each input once", field, name)
		}
		dtName, err := stringField(in, field, "datatype")
		if err != nil {
			return nil, err
		}
		dt, ok := tensor.ParseDataType(dtName)
		if !ok {
			return nil, badRequest("%s.datatype: %q is not a datatype; want one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES", field, dtName)
		}
		idx := m.Meta.Input(name)
		missing := idx >= 0 && m.Meta.Inputs[idx].Missing
		if idx >= 0 {
			if sp := m.Meta.Inputs[idx]; (dt == tensor.Bytes) != (sp.DType == tensor.Bytes) {
				// Numbers convert between numeric datatypes; strings
				// convert to nothing, so say so before reading the data.
				return nil, badRequest("%s.datatype: %s, but input %q of model %s is %s; want datatype %s", field, dt, name, m.Name, sp.DType, sp.DType)
			}
		}
		shape, err := shapeField(in, field)
		if err != nil {
			return nil, err
		}
		n, err := checkElements(field+".shape", shape, lim)
		if err != nil {
			return nil, err
		}
		t := &tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: tensor.Alloc(n * dt.Size())}
		size, hasSize, err := binarySize(in, field)
		if err != nil {
			return nil, err
		}
		data := in.Get("data")
		switch {
		case hasSize && dt == tensor.Bytes:
			if data != nil {
				return nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
			}
			if size > len(bin) {
				return nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
			}
			if err := checkStrings(bin[:size], n, field, shape); err != nil {
				return nil, err
			}
			t.Data = append(make([]byte, 0, size), bin[:size]...) // the request owns its tensors
			bin = bin[size:]
		case hasSize:
			if data != nil {
				return nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
			}
			if size != len(t.Data) {
				return nil, badRequest("%s.parameters.binary_data_size: %d bytes; want %d (shape %v of %s)", field, size, len(t.Data), shape, dt)
			}
			if size > len(bin) {
				return nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
			}
			copy(t.Data, bin[:size])
			bin = bin[size:]
			if err := checkFinite(t, field, lim, missing); err != nil {
				return nil, err
			}
		case data == nil:
			return nil, badRequest("%s.data: missing; want the tensor's values (or parameters.binary_data_size with binary data)", field)
		default:
			f := jsonFiller{t: t, field: field + ".data", lim: lim, missing: missing}
			if data.Type() != fastjson.TypeArray {
				return nil, badRequest("%s.data: got %s; want an array of %d values", field, data.Type(), n)
			}
			if err := f.fillFlat(data); err != nil {
				return nil, err
			}
			if f.n != n {
				return nil, badRequest("%s.data: has %d values; want %d for shape %v", field, f.n, n, shape)
			}
		}
		byName[name] = t
	}
	return bin, nil
}

func decodeV2Outputs(ov *fastjson.Value, m *backends.ModelVersion, outs []Output) ([]Output, error) {
	if ov == nil {
		return outs, nil
	}
	arr, err := ov.Array()
	if err != nil {
		return nil, badRequest("outputs: got %s; want an array of {\"name\": ...}", ov.Type())
	}
	for i, o := range arr {
		field := "outputs[" + strconv.Itoa(i) + "]"
		if o.Type() != fastjson.TypeObject {
			return nil, badRequest("%s: got %s; want an object with a name", field, o.Type())
		}
		name, err := stringField(o, field, "name")
		if err != nil {
			return nil, err
		}
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
		if pv := o.Get("parameters"); pv != nil {
			if pv.Type() != fastjson.TypeObject {
				return nil, badRequest("%s.parameters: got %s; want an object", field, pv.Type())
			}
			if bv := pv.Get("binary_data"); bv != nil {
				b, err := bv.Bool()
				if err != nil {
					return nil, badRequest("%s.parameters.binary_data: got %s; want true or false", field, bv.Type())
				}
				out.Binary = b
			}
		}
		outs = append(outs, out)
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

func stringField(v *fastjson.Value, field, key string) (string, error) {
	f := v.Get(key)
	if f == nil {
		return "", badRequest("%s.%s: missing; want a string", field, key)
	}
	b, err := f.StringBytes()
	if err != nil {
		return "", badRequest("%s.%s: got %s; want a string", field, key, f.Type())
	}
	return string(b), nil
}

func shapeField(v *fastjson.Value, field string) ([]int64, error) {
	sv := v.Get("shape")
	if sv == nil {
		return nil, badRequest("%s.shape: missing; want an array of non-negative integers", field)
	}
	arr, err := sv.Array()
	if err != nil {
		return nil, badRequest("%s.shape: got %s; want an array of non-negative integers", field, sv.Type())
	}
	if len(arr) > 16 {
		return nil, badRequest("%s.shape: %d dimensions; want at most 16", field, len(arr))
	}
	shape := make([]int64, len(arr))
	for i, d := range arr {
		n, err := d.Int64()
		if err != nil || n < 0 {
			return nil, badRequest("%s.shape[%d]: %s; want a non-negative integer", field, i, d)
		}
		shape[i] = n
	}
	return shape, nil
}

func binarySize(v *fastjson.Value, field string) (int, bool, error) {
	pv := v.Get("parameters")
	if pv == nil {
		return 0, false, nil
	}
	if pv.Type() != fastjson.TypeObject {
		return 0, false, badRequest("%s.parameters: got %s; want an object", field, pv.Type())
	}
	sv := pv.Get("binary_data_size")
	if sv == nil {
		return 0, false, nil
	}
	n, err := sv.Int64()
	if err != nil || n < 0 {
		return 0, false, badRequest("%s.parameters.binary_data_size: %s; want a non-negative integer", field, sv)
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
		x := t.Float64At(i)
		if (x != x && !missing) || x > maxFinite || x < -maxFinite {
			return badRequest("%s: element %d is %v; want a finite number (NaN and Inf are rejected: limits.allow_non_finite)", field, i, x)
		}
	}
	return nil
}

const maxFinite = 1.7976931348623157e308

func outputNames(m *backends.ModelVersion) string {
	s := ""
	for i, o := range m.Meta.Outputs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", o.Name)
	}
	return s
}
