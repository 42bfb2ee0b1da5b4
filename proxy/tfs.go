package proxy

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TensorFlow Serving REST endpoints (reference/protocols.md §2):
// GET /v1/models/{m}[/versions/{v}], GET .../metadata, POST ...:predict.

const protoTFS = "tfs"

// routeTFS serves rest, the path after /v1/models/, and returns the model
// name, when one was resolved, for metrics.
func (s *Server) routeTFS(ctx *fasthttp.RequestCtx, rest []byte) (string, error) {
	path, verb, hasVerb := bytes.Cut(rest, []byte(":"))
	name, tail, _ := bytes.Cut(path, []byte("/"))
	var version []byte
	switch {
	case bytes.HasPrefix(tail, []byte("versions/")):
		version, tail, _ = bytes.Cut(tail[len("versions/"):], []byte("/"))
		if len(version) == 0 {
			return "", &Error{Status: fasthttp.StatusNotFound, Msg: "empty version in path; want /v1/models/{model}/versions/{version}"}
		}
	case bytes.HasPrefix(tail, []byte("labels/")):
		return "", &Error{Status: fasthttp.StatusNotFound, Msg: "version labels are not supported; want /v1/models/{model}[/versions/{version}]"}
	}
	if len(name) == 0 {
		return "", &Error{Status: fasthttp.StatusNotFound, Msg: "empty model name in path; want /v1/models/{model}"}
	}
	m, err := s.lookup(name, version)
	if err != nil {
		return "", err
	}
	switch {
	case hasVerb && string(verb) == "predict" && len(tail) == 0:
		if !ctx.IsPost() {
			return m.Name, methodNotAllowed(ctx, "POST")
		}
		return m.Name, s.tfsPredict(ctx, m)
	case hasVerb && (string(verb) == "classify" || string(verb) == "regress") && len(tail) == 0:
		return m.Name, badRequest("%s is not supported for model %s (no tf.Example signature); want :predict", verb, m.Name)
	case hasVerb:
		return m.Name, &Error{Status: fasthttp.StatusNotFound, Msg: "unknown method :" + string(verb) + "; want :predict"}
	case len(tail) == 0:
		if !isGet(ctx) {
			return m.Name, methodNotAllowed(ctx, "GET")
		}
		return m.Name, s.tfsStatus(ctx, m.Name, version)
	case string(tail) == "metadata":
		if !isGet(ctx) {
			return m.Name, methodNotAllowed(ctx, "GET")
		}
		return m.Name, s.tfsMetadata(ctx, m)
	}
	return m.Name, &Error{Status: fasthttp.StatusNotFound, Msg: "no TF Serving endpoint " + strconv.Quote(string(ctx.Path())) + "; want /v1/models/{model}[/versions/{version}][/metadata|:predict]"}
}

func (s *Server) tfsStatus(ctx *fasthttp.RequestCtx, name string, version []byte) error {
	b := append([]byte(nil), `{"model_version_status":[`...)
	n := 0
	for _, m := range s.reg.Versions(name) {
		if len(version) > 0 && m.Version != string(version) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"version":`...)
		b = appendString(b, m.Version)
		b = append(b, `,"state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}`...)
	}
	b = append(b, "]}"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func (s *Server) tfsMetadata(ctx *fasthttp.RequestCtx, m *backends.ModelVersion) error {
	b := append([]byte(nil), `{"model_spec":{"name":`...)
	b = appendString(b, m.Name)
	b = append(b, `,"signature_name":"","version":`...)
	b = appendString(b, m.Version)
	b = append(b, `},"metadata":{"signature_def":{"signature_def":{"serving_default":{"inputs":`...)
	b = appendTFSpecs(b, m.Meta.Inputs)
	b = append(b, `,"outputs":`...)
	b = appendTFSpecs(b, m.Meta.Outputs)
	b = append(b, `,"method_name":"tensorflow/serving/predict"}}}}}`...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func appendTFSpecs(b []byte, specs []backends.TensorSpec) []byte {
	b = append(b, '{')
	for i, sp := range specs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, sp.Name)
		b = append(b, `:{"dtype":"`...)
		b = append(b, sp.DType.TFName()...)
		b = append(b, `","tensor_shape":{"dim":[`...)
		for j, d := range sp.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"size":"`...)
			b = strconv.AppendInt(b, d, 10)
			b = append(b, `","name":""}`...)
		}
		b = append(b, `],"unknown_rank":false},"name":`...)
		b = appendString(b, sp.Name)
		b = append(b, '}')
	}
	return append(b, '}')
}

// tfsRequest is a decoded TF Serving predict request.
type tfsRequest struct {
	inputs   []*tensor.Tensor // model input order
	columnar bool             // "inputs" (columnar) rather than "instances" (row)
}

func (s *Server) tfsPredict(ctx *fasthttp.RequestCtx, m *backends.ModelVersion) error {
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	req, err := decodeTFS(p, ctx.PostBody(), m, &s.cfg.Limits)
	if err != nil {
		return err
	}
	h, err := headerHints(ctx)
	if err != nil {
		return err
	}
	out, err := s.infer(arrival(ctx), m, req.inputs, h)
	if err != nil {
		return err
	}
	bb := bytebufferpool.Get()
	bb.B = encodeTFS(bb.B[:0], m, req, out)
	ctx.SetContentType("application/json")
	ctx.SetBody(bb.B)
	bytebufferpool.Put(bb)
	return nil
}

// decodeTFS decodes a TF Serving predict body: exactly one of "instances"
// (row format) or "inputs" (columnar format).
func decodeTFS(p *fastjson.Parser, body []byte, m *backends.ModelVersion, lim *Limits) (*tfsRequest, error) {
	v, err := parseJSON(p, body, lim)
	if err != nil {
		return nil, err
	}
	if sv := v.Get("signature_name"); sv != nil {
		sig, err := sv.StringBytes()
		if err != nil {
			return nil, badRequest("signature_name: got %s; want a string", sv.Type())
		}
		if len(sig) > 0 && string(sig) != "serving_default" {
			return nil, badRequest("signature_name: %q is not a signature of model %s; want \"serving_default\"", sig, m.Name)
		}
	}
	inst, cols := v.Get("instances"), v.Get("inputs")
	switch {
	case inst != nil && cols != nil:
		return nil, badRequest("request has both instances and inputs; want exactly one of them")
	case inst == nil && cols == nil:
		return nil, badRequest("request has neither instances nor inputs; want {\"instances\": [...]} (row format) or {\"inputs\": ...} (columnar format)")
	}
	var byName map[string]*tensor.Tensor
	req := &tfsRequest{columnar: cols != nil}
	if inst != nil {
		byName, err = decodeInstances(inst, m, lim)
	} else {
		byName, err = decodeColumns(cols, m, lim)
	}
	if err != nil {
		return nil, err
	}
	field := "instances"
	if req.columnar {
		field = "inputs"
	}
	if req.inputs, err = prepareInputs(m, byName, field); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeInstances decodes the row format: a list of values for a
// single-input model, or a list of {input: value} objects.
func decodeInstances(v *fastjson.Value, m *backends.ModelVersion, lim *Limits) (map[string]*tensor.Tensor, error) {
	arr, err := v.Array()
	if err != nil {
		return nil, badRequest("instances: got %s; want an array with one element per row", v.Type())
	}
	if len(arr) == 0 {
		return nil, badRequest("instances: empty; want at least one row")
	}
	if arr[0].Type() != fastjson.TypeObject || b64Value(arr[0]) != nil {
		if len(m.Meta.Inputs) != 1 {
			return nil, badRequest("instances: rows are plain values but model %s has %d inputs; want rows of {\"input name\": value}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("instances", v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return nil, err
		}
		return map[string]*tensor.Tensor{sp.Name: t}, nil
	}
	byName := map[string]*tensor.Tensor{}
	for _, sp := range m.Meta.Inputs {
		first := arr[0].Get(sp.Name)
		if first == nil {
			return nil, badRequest("instances[0]: input %q is missing; want %s", sp.Name, inputList(m.Meta.Inputs))
		}
		rowShape := inferShape(first)
		shape := append([]int64{int64(len(arr))}, rowShape...)
		n, err := checkElements("instances", shape, lim)
		if err != nil {
			return nil, err
		}
		t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: tensor.Alloc(n * sp.DType.Size())}
		f := jsonFiller{t: t, lim: lim, b64: true, missing: sp.Missing}
		for i, row := range arr {
			f.field = "instances[" + strconv.Itoa(i) + "]." + sp.Name
			if row.Type() != fastjson.TypeObject {
				return nil, badRequest("instances[%d]: got %s; want an object like instances[0]", i, row.Type())
			}
			rv := row.Get(sp.Name)
			if rv == nil {
				return nil, badRequest("instances[%d]: input %q is missing; want every row to have every input", i, sp.Name)
			}
			if err := f.fillShaped(rv, rowShape, nil); err != nil {
				return nil, err
			}
		}
		byName[sp.Name] = t
	}
	for i, row := range arr {
		if row.Type() != fastjson.TypeObject {
			return nil, badRequest("instances[%d]: got %s; want an object like instances[0]", i, row.Type())
		}
		o, _ := row.Object()
		if o.Len() != len(byName) {
			// Every input is present, so a key is either unknown or repeated.
			var extra, dup string
			var seen []string
			o.Visit(func(k []byte, _ *fastjson.Value) {
				if byName[string(k)] == nil && extra == "" {
					extra = string(k)
				}
				if slices.Contains(seen, string(k)) && dup == "" {
					dup = string(k)
				}
				seen = append(seen, string(k))
			})
			if extra == "" {
				return nil, badRequest("instances[%d]: input %q appears twice; want each input once", i, dup)
			}
			return nil, badRequest("instances[%d]: model %s has no input %q; want %s", i, m.Name, extra, inputList(m.Meta.Inputs))
		}
	}
	return byName, nil
}

// decodeColumns decodes the columnar format: one tensor for a
// single-input model, or an object of named tensors.
func decodeColumns(v *fastjson.Value, m *backends.ModelVersion, lim *Limits) (map[string]*tensor.Tensor, error) {
	if v.Type() != fastjson.TypeObject || b64Value(v) != nil {
		if len(m.Meta.Inputs) != 1 {
			return nil, badRequest("inputs: got one tensor but model %s has %d inputs; want {\"input name\": tensor, ...}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("inputs", v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return nil, err
		}
		return map[string]*tensor.Tensor{sp.Name: t}, nil
	}
	o, _ := v.Object()
	byName := map[string]*tensor.Tensor{}
	var err error
	o.Visit(func(k []byte, val *fastjson.Value) {
		if err != nil {
			return
		}
		name := string(k)
		if byName[name] != nil {
			err = badRequest("inputs.%s: input %q appears twice; want each input once", name, name)
			return
		}
		dt := tensor.Invalid
		for _, sp := range m.Meta.Inputs {
			if sp.Name == name {
				dt = sp.DType
			}
		}
		if dt == tensor.Invalid {
			// Say so before reading the values: with no datatype to fill,
			// their errors would name the wrong problem.
			err = badRequest("inputs.%s: model %s has no input %q; want %s", name, m.Name, name, inputList(m.Meta.Inputs))
			return
		}
		byName[name], err = tensorFromJSON("inputs."+name, val, name, dt, lim, inputMissing(m, name))
	})
	return byName, err
}

// tensorFromJSON builds a tensor of datatype dt whose shape is that of the
// nested JSON arrays v. A BYTES tensor takes JSON strings or TF Serving's
// {"b64": "..."} for binary ones.
func tensorFromJSON(field string, v *fastjson.Value, name string, dt tensor.DataType, lim *Limits, missing bool) (*tensor.Tensor, error) {
	shape := inferShape(v)
	n, err := checkElements(field, shape, lim)
	if err != nil {
		return nil, err
	}
	t := &tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: tensor.Alloc(n * dt.Size())}
	f := jsonFiller{t: t, field: field, lim: lim, b64: true, missing: missing}
	if err := f.fillShaped(v, shape, nil); err != nil {
		return nil, err
	}
	return t, nil
}

// encodeTFS appends the predict response: {"predictions": [...]} for the
// row format, {"outputs": ...} for the columnar format. BYTES outputs are
// JSON strings; an output whose spec has Keys gives one object per row.
func encodeTFS(dst []byte, m *backends.ModelVersion, req *tfsRequest, out []*tensor.Tensor) []byte {
	single := len(out) == 1
	if req.columnar {
		dst = append(dst, `{"outputs":`...)
		if single {
			dst = appendTFSColumn(dst, &m.Meta.Outputs[0], out[0])
			return append(dst, '}')
		}
		dst = append(dst, '{')
		for i, t := range out {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, m.Meta.Outputs[i].Name)
			dst = append(dst, ':')
			dst = appendTFSColumn(dst, &m.Meta.Outputs[i], t)
		}
		return append(dst, "}}"...)
	}
	dst = append(dst, `{"predictions":[`...)
	rows := out[0].BatchSize()
	offs := make([]int, len(out))
	for r := 0; r < rows; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		if !single {
			dst = append(dst, '{')
		}
		for i, t := range out {
			if !single {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendString(dst, m.Meta.Outputs[i].Name)
				dst = append(dst, ':')
			}
			if keys := mapKeys(&m.Meta.Outputs[i], t); keys != nil {
				dst, offs[i] = appendMapRow(dst, t, keys, offs[i], nonFiniteTokens)
				continue
			}
			var rowShape []int64
			if len(t.Shape) > 0 {
				rowShape = t.Shape[1:]
			}
			// offs[i] is an element index, or a byte offset for BYTES.
			dst, offs[i] = appendNested(dst, t, rowShape, offs[i], nonFiniteTokens)
		}
		if !single {
			dst = append(dst, '}')
		}
	}
	return append(dst, "]}"...)
}

// appendTFSColumn appends output t in the columnar format: nested arrays
// of its shape, or for a map output (see mapKeys) an array of one object
// per row.
func appendTFSColumn(dst []byte, sp *backends.TensorSpec, t *tensor.Tensor) []byte {
	keys := mapKeys(sp, t)
	if keys == nil {
		dst, _ = appendNested(dst, t, t.Shape, 0, nonFiniteTokens)
		return dst
	}
	dst = append(dst, '[')
	off := 0
	for r := range t.BatchSize() {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst, off = appendMapRow(dst, t, keys, off, nonFiniteTokens)
	}
	return append(dst, ']')
}
