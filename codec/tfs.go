package codec

import (
	"slices"
	"strconv"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
	"github.com/valyala/fastjson"
)

// TensorFlow Serving REST's predict API (reference/protocols.md §2): a
// body with exactly one of "instances" (row format) or "inputs" (columnar
// format), answered with "predictions" or "outputs" in the same format.
type tfsCodec struct{}

func (tfsCodec) Protocol() string { return ProtoTFS }

// Decode decodes a TF Serving predict body.
func (tfsCodec) Decode(r *Request, body []byte, _ Header) error {
	m, lim := r.Model, r.Limits
	v, err := parseJSON(&r.parser, body, lim)
	if err != nil {
		return err
	}
	if sv := v.Get("signature_name"); sv != nil {
		sig, err := sv.StringBytes()
		if err != nil {
			return badRequest("signature_name: got %s; want a string", sv.Type())
		}
		if len(sig) > 0 && string(sig) != "serving_default" {
			return badRequest("signature_name: %q is not a signature of model %s; want \"serving_default\"", TruncateBytes(sig), m.Name)
		}
	}
	inst, cols := v.Get("instances"), v.Get("inputs")
	switch {
	case inst != nil && cols != nil:
		return badRequest("request has both instances and inputs; want exactly one of them")
	case inst == nil && cols == nil:
		return badRequest("request has neither instances nor inputs; want {\"instances\": [...]} (row format) or {\"inputs\": ...} (columnar format)")
	}
	r.columnar = cols != nil
	field := "instances"
	if inst != nil {
		err = decodeInstances(inst, m, lim, r.byName)
	} else {
		field = "inputs"
		err = decodeColumns(cols, m, lim, r.byName)
	}
	if err != nil {
		return err
	}
	return r.setInputs(r.byName, field)
}

// decodeInstances decodes the row format: a list of values for a
// single-input model, or a list of {input: value} objects.
func decodeInstances(v *fastjson.Value, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) error {
	arr, err := v.Array()
	if err != nil {
		return badRequest("instances: got %s; want an array with one element per row", v.Type())
	}
	if len(arr) == 0 {
		return badRequest("instances: empty; want at least one row")
	}
	if arr[0].Type() != fastjson.TypeObject || b64Value(arr[0]) != nil {
		if len(m.Meta.Inputs) != 1 {
			return badRequest("instances: rows are plain values but model %s has %d inputs; want rows of {\"input name\": value}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("instances", v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return err
		}
		byName[sp.Name] = t
		return nil
	}
	for _, sp := range m.Meta.Inputs {
		first := arr[0].Get(sp.Name)
		if first == nil {
			return badRequest("instances[0]: input %q is missing; want %s", sp.Name, inputList(m.Meta.Inputs))
		}
		rowShape := inferShape(first)
		shape := append([]int64{int64(len(arr))}, rowShape...)
		n, err := checkElements("instances", shape, lim)
		if err != nil {
			return err
		}
		t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: tensor.Alloc(n * sp.DType.Size())}
		f := jsonFiller{t: t, lim: lim, b64: true, missing: sp.Missing}
		for i, row := range arr {
			f.field = "instances[" + strconv.Itoa(i) + "]." + sp.Name
			if row.Type() != fastjson.TypeObject {
				return badRequest("instances[%d]: got %s; want an object like instances[0]", i, row.Type())
			}
			rv := row.Get(sp.Name)
			if rv == nil {
				return badRequest("instances[%d]: input %q is missing; want every row to have every input", i, sp.Name)
			}
			if err := f.fillShaped(rv, rowShape, nil); err != nil {
				return err
			}
		}
		byName[sp.Name] = t
	}
	for i, row := range arr {
		if row.Type() != fastjson.TypeObject {
			return badRequest("instances[%d]: got %s; want an object like instances[0]", i, row.Type())
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
				return badRequest("instances[%d]: input %q appears twice; want each input once", i, dup)
			}
			return badRequest("instances[%d]: model %s has no input %q; want %s", i, m.Name, extra, inputList(m.Meta.Inputs))
		}
	}
	return nil
}

// decodeColumns decodes the columnar format: one tensor for a
// single-input model, or an object of named tensors.
func decodeColumns(v *fastjson.Value, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) error {
	if v.Type() != fastjson.TypeObject || b64Value(v) != nil {
		if len(m.Meta.Inputs) != 1 {
			return badRequest("inputs: got one tensor but model %s has %d inputs; want {\"input name\": tensor, ...}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("inputs", v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return err
		}
		byName[sp.Name] = t
		return nil
	}
	o, _ := v.Object()
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
		idx := m.Meta.Input(name)
		if idx < 0 {
			// Say so before reading the values: with no datatype to fill,
			// their errors would name the wrong problem.
			err = badRequest("inputs.%s: model %s has no input %q; want %s", name, m.Name, name, inputList(m.Meta.Inputs))
			return
		}
		sp := &m.Meta.Inputs[idx]
		byName[sp.Name], err = tensorFromJSON("inputs."+name, val, sp.Name, sp.DType, lim, sp.Missing)
	})
	return err
}

// tensorFromJSON builds a tensor of datatype dt whose shape is that of the
// nested JSON arrays v. A BYTES tensor takes JSON strings or TF Serving's
// {"b64": "..."} for binary ones.
func tensorFromJSON(field string, v *fastjson.Value, name string, dt tensor.DataType, lim *config.Limits, missing bool) (*tensor.Tensor, error) {
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

// Encode appends the predict response: {"predictions": [...]} for the
// row format, {"outputs": ...} for the columnar format. BYTES outputs are
// JSON strings; an output whose spec has Keys gives one object per row.
func (tfsCodec) Encode(dst []byte, r *Request, out []*tensor.Tensor, h ResponseHeader) ([]byte, error) {
	h.SetContentType("application/json")
	return encodeTFS(dst, r.Model, r.columnar, out), nil
}

func encodeTFS(dst []byte, m *backends.ModelVersion, columnar bool, out []*tensor.Tensor) []byte {
	single := len(out) == 1
	if columnar {
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
			dst = AppendString(dst, m.Meta.Outputs[i].Name)
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
				dst = AppendString(dst, m.Meta.Outputs[i].Name)
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
