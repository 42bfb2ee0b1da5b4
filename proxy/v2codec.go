package proxy

import (
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// v2Request is a decoded KServe V2 inference request. It owns all its
// memory: nothing points into the fasthttp request.
type v2Request struct {
	id     string
	hasID  bool
	inputs []*tensor.Tensor // model input order
	// outputs lists the requested outputs in request order; empty means
	// all outputs of the model.
	outputs    []v2Output
	binaryAll  bool // parameters.binary_data_output
	rawRequest bool // Inference-Header-Content-Length: 0
	// parameters.timeout (µs, Triton's schedule_policy extension) and
	// parameters.priority (1 = highest); 0 when absent.
	timeout  time.Duration
	priority int
}

type v2Output struct {
	index  int // in the model's outputs
	binary bool
}

// decodeV2 decodes a V2 infer body. hdr is the value of the
// Inference-Header-Content-Length header (nil when absent): the JSON part
// is then the first hdr bytes and binary tensor data follows it.
func decodeV2(p *fastjson.Parser, body, hdr []byte, m *backends.ModelVersion, lim *Limits) (*v2Request, error) {
	jsonPart, bin := body, []byte(nil)
	if hdr != nil {
		n, err := strconv.Atoi(string(hdr))
		if err != nil || n < 0 {
			return nil, badRequest("header Inference-Header-Content-Length is %q; want the byte length of the JSON part, a non-negative integer", hdr)
		}
		if n > len(body) {
			return nil, badRequest("header Inference-Header-Content-Length is %d but the body has only %d bytes; want at most the body length", n, len(body))
		}
		if n == 0 {
			return decodeV2Raw(body, m, lim)
		}
		jsonPart, bin = body[:n], body[n:]
	}
	v, err := parseJSON(p, jsonPart, lim)
	if err != nil {
		return nil, err
	}
	req := &v2Request{}
	if idv := v.Get("id"); idv != nil {
		sb, err := idv.StringBytes()
		if err != nil {
			return nil, badRequest("id: got %s; want a string", idv.Type())
		}
		req.id, req.hasID = string(sb), true
	}
	if pv := v.Get("parameters"); pv != nil {
		if pv.Type() != fastjson.TypeObject {
			return nil, badRequest("parameters: got %s; want an object", pv.Type())
		}
		if tv := pv.Get("timeout"); tv != nil {
			us, err := tv.Int64()
			if err != nil || us < 0 {
				return nil, badRequest("parameters.timeout: %s; want a non-negative integer of microseconds", tv)
			}
			req.timeout = time.Duration(min(us, int64(time.Hour/time.Microsecond))) * time.Microsecond
		}
		if pr := pv.Get("priority"); pr != nil {
			p, err := pr.Int64()
			if err != nil || p < 0 || p > 1<<16 {
				return nil, badRequest("parameters.priority: %s; want a priority level, 1 = highest (0 = the default)", pr)
			}
			req.priority = int(p)
		}
		if bo := pv.Get("binary_data_output"); bo != nil {
			b, err := bo.Bool()
			if err != nil {
				return nil, badRequest("parameters.binary_data_output: got %s; want true or false", bo.Type())
			}
			req.binaryAll = b
		}
	}
	byName, rest, err := decodeV2Inputs(v.Get("inputs"), bin, m, lim)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, badRequest("body has %d bytes of binary data beyond the inputs' binary_data_size; want exactly the sum of binary_data_size after the JSON header", len(rest))
	}
	if req.inputs, err = prepareInputs(m, byName, "inputs"); err != nil {
		return nil, err
	}
	if req.outputs, err = decodeV2Outputs(v.Get("outputs"), m); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeV2Inputs decodes the inputs array into tensors by name, taking
// binary data from bin in input order, and returns what is left of bin.
// Datatypes are checked against m's inputs here only where they cannot
// convert (BYTES against a numeric input or the reverse); prepareInputs
// checks the rest.
func decodeV2Inputs(iv *fastjson.Value, bin []byte, m *backends.ModelVersion, lim *Limits) (map[string]*tensor.Tensor, []byte, error) {
	if iv == nil {
		return nil, nil, badRequest("inputs: missing; want an array of input tensors")
	}
	arr, err := iv.Array()
	if err != nil {
		return nil, nil, badRequest("inputs: got %s; want an array of input tensors", iv.Type())
	}
	if len(arr) == 0 {
		return nil, nil, badRequest("inputs: empty; want at least one input tensor")
	}
	byName := make(map[string]*tensor.Tensor, len(arr))
	for i, in := range arr {
		field := "inputs[" + strconv.Itoa(i) + "]"
		if in.Type() != fastjson.TypeObject {
			return nil, nil, badRequest("%s: got %s; want an object with name, shape, datatype and data", field, in.Type())
		}
		name, err := stringField(in, field, "name")
		if err != nil {
			return nil, nil, err
		}
		if _, dup := byName[name]; dup {
			return nil, nil, badRequest("%s.name: input %q appears twice; want each input once", field, name)
		}
		dtName, err := stringField(in, field, "datatype")
		if err != nil {
			return nil, nil, err
		}
		dt, ok := tensor.ParseDataType(dtName)
		if !ok {
			return nil, nil, badRequest("%s.datatype: %q is not a datatype; want one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES", field, dtName)
		}
		for _, sp := range m.Meta.Inputs {
			if sp.Name == name && (dt == tensor.Bytes) != (sp.DType == tensor.Bytes) {
				// Numbers convert between numeric datatypes; strings
				// convert to nothing, so say so before reading the data.
				return nil, nil, badRequest("%s.datatype: %s, but input %q of model %s is %s; want datatype %s", field, dt, name, m.Name, sp.DType, sp.DType)
			}
		}
		shape, err := shapeField(in, field)
		if err != nil {
			return nil, nil, err
		}
		n, err := checkElements(field+".shape", shape, lim)
		if err != nil {
			return nil, nil, err
		}
		t := &tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: tensor.Alloc(n * dt.Size())}
		size, hasSize, err := binarySize(in, field)
		if err != nil {
			return nil, nil, err
		}
		data := in.Get("data")
		switch {
		case hasSize && dt == tensor.Bytes:
			if data != nil {
				return nil, nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
			}
			if size > len(bin) {
				return nil, nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
			}
			if err := checkStrings(bin[:size], n, field, shape); err != nil {
				return nil, nil, err
			}
			t.Data = append(make([]byte, 0, size), bin[:size]...) // the request owns its tensors
			bin = bin[size:]
		case hasSize:
			if data != nil {
				return nil, nil, badRequest("%s: has both data and parameters.binary_data_size; want one of them", field)
			}
			if size != len(t.Data) {
				return nil, nil, badRequest("%s.parameters.binary_data_size: %d bytes; want %d (shape %v of %s)", field, size, len(t.Data), shape, dt)
			}
			if size > len(bin) {
				return nil, nil, badRequest("%s.parameters.binary_data_size: %d bytes but only %d bytes of binary data remain; want the blobs after the JSON header, in input order", field, size, len(bin))
			}
			copy(t.Data, bin[:size])
			bin = bin[size:]
			if err := checkFinite(t, field, lim, inputMissing(m, name)); err != nil {
				return nil, nil, err
			}
		case data == nil:
			return nil, nil, badRequest("%s.data: missing; want the tensor's values (or parameters.binary_data_size with binary data)", field)
		default:
			f := jsonFiller{t: t, field: field + ".data", lim: lim, missing: inputMissing(m, name)}
			if data.Type() != fastjson.TypeArray {
				return nil, nil, badRequest("%s.data: got %s; want an array of %d values", field, data.Type(), n)
			}
			if err := f.fillFlat(data); err != nil {
				return nil, nil, err
			}
			if f.n != n {
				return nil, nil, badRequest("%s.data: has %d values; want %d for shape %v", field, f.n, n, shape)
			}
		}
		byName[name] = t
	}
	return byName, bin, nil
}

func decodeV2Outputs(ov *fastjson.Value, m *backends.ModelVersion) ([]v2Output, error) {
	if ov == nil {
		return nil, nil
	}
	arr, err := ov.Array()
	if err != nil {
		return nil, badRequest("outputs: got %s; want an array of {\"name\": ...}", ov.Type())
	}
	outs := make([]v2Output, 0, len(arr))
	for i, o := range arr {
		field := "outputs[" + strconv.Itoa(i) + "]"
		if o.Type() != fastjson.TypeObject {
			return nil, badRequest("%s: got %s; want an object with a name", field, o.Type())
		}
		name, err := stringField(o, field, "name")
		if err != nil {
			return nil, err
		}
		idx := outputIndex(m, name)
		if idx < 0 {
			return nil, badRequest("%s.name: model %s has no output %q; want one of %s", field, m.Name, name, outputNames(m))
		}
		for _, prev := range outs {
			if prev.index == idx {
				return nil, badRequest("%s.name: output %q is requested twice; want each output once", field, name)
			}
		}
		out := v2Output{index: idx}
		if pv := o.Get("parameters"); pv != nil {
			if pv.Type() != fastjson.TypeObject {
				return nil, badRequest("%s.parameters: got %s; want an object", field, pv.Type())
			}
			if bv := pv.Get("binary_data"); bv != nil {
				b, err := bv.Bool()
				if err != nil {
					return nil, badRequest("%s.parameters.binary_data: got %s; want true or false", field, bv.Type())
				}
				out.binary = b
			}
		}
		outs = append(outs, out)
	}
	return outs, nil
}

// decodeV2Raw decodes a raw binary request (Inference-Header-Content-Length
// 0): the body is the bytes of the model's only input, batch 1.
func decodeV2Raw(body []byte, m *backends.ModelVersion, lim *Limits) (*v2Request, error) {
	if len(m.Meta.Inputs) != 1 {
		return nil, badRequest("raw binary request (Inference-Header-Content-Length: 0) to model %s with %d inputs; want a model with exactly one input", m.Name, len(m.Meta.Inputs))
	}
	sp := m.Meta.Inputs[0]
	shape := append([]int64(nil), sp.Shape...)
	for i := range shape {
		if i == 0 {
			shape[i] = 1
		} else if shape[i] < 0 {
			return nil, badRequest("raw binary request to model %s whose input %q has variable shape %v; want a JSON header with the shape", m.Name, sp.Name, sp.Shape)
		}
	}
	n, err := checkElements("raw input", shape, lim)
	if err != nil {
		return nil, err
	}
	if sp.DType == tensor.Bytes {
		if err := checkStrings(body, n, "raw binary request", shape); err != nil {
			return nil, err
		}
		t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: append(make([]byte, 0, len(body)), body...)}
		return &v2Request{inputs: []*tensor.Tensor{t}, binaryAll: true, rawRequest: true}, nil
	}
	if len(body) != n*sp.DType.Size() {
		return nil, badRequest("raw binary request: body has %d bytes; want %d (one row of %s %v)", len(body), n*sp.DType.Size(), sp.DType, sp.Shape[1:])
	}
	t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: tensor.Alloc(len(body))}
	copy(t.Data, body)
	if err := checkFinite(t, "raw input", lim, sp.Missing); err != nil {
		return nil, err
	}
	return &v2Request{inputs: []*tensor.Tensor{t}, binaryAll: true, rawRequest: true}, nil
}

// encodeV2 appends the V2 response to dst. When any output is binary it
// returns the length of the JSON header (for Inference-Header-Content-Length)
// with the blobs after it; else -1.
func encodeV2(dst []byte, m *backends.ModelVersion, req *v2Request, out []*tensor.Tensor) ([]byte, int) {
	outs := req.outputs
	if len(outs) == 0 {
		outs = make([]v2Output, len(out))
		for i := range out {
			outs[i] = v2Output{index: i, binary: req.binaryAll}
		}
	} else if req.binaryAll {
		for i := range outs {
			outs[i].binary = true
		}
	}
	start := len(dst)
	dst = append(dst, `{"model_name":`...)
	dst = appendString(dst, m.Name)
	dst = append(dst, `,"model_version":`...)
	dst = appendString(dst, m.Version)
	if req.hasID {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, req.id)
	}
	dst = append(dst, `,"outputs":[`...)
	anyBinary := false
	for i, o := range outs {
		t := out[o.index]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, m.Meta.Outputs[o.index].Name)
		dst = append(dst, `,"datatype":"`...)
		dst = append(dst, t.DType.String()...)
		dst = append(dst, `","shape":`...)
		dst = appendShape(dst, t.Shape)
		if o.binary {
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
		if o.binary {
			dst = append(dst, out[o.index].Data...)
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
func checkFinite(t *tensor.Tensor, field string, lim *Limits, missing bool) error {
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

// inputMissing reports whether model m's input name takes missing values.
func inputMissing(m *backends.ModelVersion, name string) bool {
	for _, sp := range m.Meta.Inputs {
		if sp.Name == name {
			return sp.Missing
		}
	}
	return false
}

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
