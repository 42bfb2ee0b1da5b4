package codec

import (
	"bytes"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TensorFlow Serving REST's predict API (reference/protocols.md §2): a
// body with exactly one of "instances" (row format) or "inputs" (columnar
// format), answered with "predictions" or "outputs" in the same format.
type tfsCodec struct{}

func (tfsCodec) Protocol() string { return ProtoTFS }

// tfsKeys are the members of a predict body that Decode reads.
var tfsKeys = []string{"signature_name", "instances", "inputs"}

// Decode decodes a TF Serving predict body.
func (tfsCodec) Decode(r *Request, body []byte, _ Header) error {
	m, lim := r.Model, r.Limits
	obj, err := parseJSON(body, lim)
	if err != nil {
		return err
	}
	b := body
	var at [3]span // tfsKeys
	lookup(b, obj, tfsKeys, at[:])
	if sv := at[0].start; sv >= 0 {
		if b[sv] != '"' {
			return badRequest("signature_name: got %s; want a string", typeAt(b, sv))
		}
		if sig := rawString(b, sv); len(sig) > 0 && !keyIs(sig, "serving_default") {
			return badRequest("signature_name: %q is not a signature of model %s; want \"serving_default\"", echoString(sig), m.Name)
		}
	}
	inst, cols := at[1], at[2]
	switch {
	case inst.start >= 0 && cols.start >= 0:
		return badRequest("request has both instances and inputs; want exactly one of them")
	case inst.start < 0 && cols.start < 0:
		return badRequest("request has neither instances nor inputs; want {\"instances\": [...]} (row format) or {\"inputs\": ...} (columnar format)")
	}
	r.columnar = cols.start >= 0
	field := "instances"
	if inst.start >= 0 {
		err = decodeInstances(b, inst, m, lim, r.byName)
	} else {
		field = "inputs"
		err = decodeColumns(b, cols, m, lim, r.byName)
	}
	if err != nil {
		return err
	}
	return r.setInputs(r.byName, field)
}

// echoString returns the string whose raw bytes are raw, escapes
// decoded, truncated for an error message.
func echoString(raw []byte) string {
	return TruncateBytes(appendUnescaped(nil, raw[:min(len(raw), 2*maxEcho)]))
}

// decodeInstances decodes the row format at b[v.start:v.end]: a list of
// values for a single-input model, or a list of {input: value} objects.
// The objects are read once per input, which keeps the errors in the
// order of the model's inputs.
func decodeInstances(b []byte, v span, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) error {
	if b[v.start] != '[' {
		return badRequest("instances: got %s; want an array with one element per row", typeAt(b, v.start))
	}
	first, ok := firstElem(b, v.start)
	if !ok {
		return badRequest("instances: empty; want at least one row")
	}
	if _, isB64 := b64Value(b, first); b[first] != '{' || isB64 {
		if len(m.Meta.Inputs) != 1 {
			return badRequest("instances: rows are plain values but model %s has %d inputs; want rows of {\"input name\": value}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("instances", b, v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return err
		}
		byName[sp.Name] = t
		return nil
	}
	rest, _ := countRest(b, skipValue(b, first))
	rows := rest + 1
	// The inputs' values are disjoint parts of the instances, so all of
	// them together hold at most maxLeaves of its bytes: a tensor that
	// would exceed what is left runs dry (jsonFiller.allocData).
	leaves := maxLeaves(v.end - v.start)
	var dry []*jsonFiller
	for _, sp := range m.Meta.Inputs {
		key := []string{sp.Name}
		var at [1]span
		lookup(b, first, key, at[:])
		if at[0].start < 0 {
			return badRequest("instances[0]: input %q is missing; want %s", sp.Name, inputList(m.Meta.Inputs))
		}
		rowShape := inferShape(b, at[0].start)
		shape := append([]int64{int64(rows)}, rowShape...)
		n, err := checkElements("instances", shape, lim)
		if err != nil {
			return err
		}
		t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape}
		f := &jsonFiller{b: b, t: t, field: "instances", rowed: true, sub: sp.Name, lim: lim, b64: true, missing: sp.Missing}
		f.allocData(n, 2*leaves-1)
		switch {
		case f.dry:
			dry = append(dry, f)
		case t.DType == tensor.Bytes:
			t.Data = []byte{} // grows: a capacity per input would be the instances' each
		default:
			leaves -= n
		}
		e, ok := first, true
		for i := 0; ok; i++ {
			f.row = i
			if b[e] != '{' {
				return badRequest("instances[%d]: got %s; want an object like instances[0]", i, typeAt(b, e))
			}
			end := lookup(b, e, key, at[:])
			if at[0].start < 0 {
				return badRequest("instances[%d]: input %q is missing; want every row to have every input", i, sp.Name)
			}
			if _, err := f.fillShaped(at[0].start, rowShape, nil); err != nil {
				return err
			}
			e, ok = nextElem(b, end)
		}
		byName[sp.Name] = t
	}
	if err := checkInstanceKeys(b, first, m, len(byName)); err != nil {
		return err
	}
	for _, f := range dry {
		if err := f.done(); err != nil {
			return err
		}
	}
	return nil
}

// checkInstanceKeys checks that the rows from b[first] on, which have
// every input of m, have no other key and none twice; inputs is the
// number of m's inputs.
func checkInstanceKeys(b []byte, first int, m *backends.ModelVersion, inputs int) error {
	var seenArr [64]bool
	seen := seenArr[:0]
	if inputs > len(seenArr) {
		seen = make([]bool, 0, inputs)
	}
	e, ok := first, true
	for i := 0; ok; i++ {
		if b[e] != '{' {
			return badRequest("instances[%d]: got %s; want an object like instances[0]", i, typeAt(b, e))
		}
		keys := 0
		mb, end, more := firstMember(b, e)
		for more {
			keys++
			mb, end, more = nextMember(b, skipValue(b, mb.val))
		}
		if keys != inputs {
			// Every input is present, so a key is either unknown or
			// repeated; an unknown one is reported first.
			seen = seen[:inputs]
			clear(seen)
			var dup string
			mb, _, more := firstMember(b, e)
			for more {
				name := keyString(b, mb.key)
				idx := m.Meta.Input(name)
				if idx < 0 {
					return badRequest("instances[%d]: model %s has no input %q; want %s", i, m.Name, Truncate(name), inputList(m.Meta.Inputs))
				}
				if seen[idx] && dup == "" {
					dup = name
				}
				seen[idx] = true
				mb, _, more = nextMember(b, skipValue(b, mb.val))
			}
			return badRequest("instances[%d]: input %q appears twice; want each input once", i, Truncate(dup))
		}
		e, ok = nextElem(b, end)
	}
	return nil
}

// decodeColumns decodes the columnar format at b[v.start:v.end]: one
// tensor for a single-input model, or an object of named tensors.
func decodeColumns(b []byte, v span, m *backends.ModelVersion, lim *config.Limits, byName map[string]*tensor.Tensor) error {
	if _, isB64 := b64Value(b, v.start); b[v.start] != '{' || isB64 {
		if len(m.Meta.Inputs) != 1 {
			return badRequest("inputs: got one tensor but model %s has %d inputs; want {\"input name\": tensor, ...}", m.Name, len(m.Meta.Inputs))
		}
		sp := m.Meta.Inputs[0]
		t, err := tensorFromJSON("inputs", b, v, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return err
		}
		byName[sp.Name] = t
		return nil
	}
	mb, _, ok := firstMember(b, v.start)
	for ok {
		end := skipValue(b, mb.val)
		name := keyString(b, mb.key)
		if byName[name] != nil {
			return badRequest("inputs.%s: input %q appears twice; want each input once", Truncate(name), Truncate(name))
		}
		idx := m.Meta.Input(name)
		if idx < 0 {
			// Say so before reading the values: with no datatype to fill,
			// their errors would name the wrong problem.
			return badRequest("inputs.%s: model %s has no input %q; want %s", Truncate(name), m.Name, Truncate(name), inputList(m.Meta.Inputs))
		}
		sp := &m.Meta.Inputs[idx]
		t, err := tensorFromJSON("inputs."+sp.Name, b, span{mb.val, end}, sp.Name, sp.DType, lim, sp.Missing)
		if err != nil {
			return err
		}
		byName[sp.Name] = t
		mb, _, ok = nextMember(b, end)
	}
	return nil
}

// keyString returns raw, a key as written, with its escapes decoded.
func keyString(b []byte, raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	return string(appendUnescaped(nil, raw))
}

// tensorFromJSON builds a tensor of datatype dt whose shape is that of the
// nested JSON arrays at b[v.start:v.end]. A BYTES tensor takes JSON
// strings or TF Serving's {"b64": "..."} for binary ones.
func tensorFromJSON(field string, b []byte, v span, name string, dt tensor.DataType, lim *config.Limits, missing bool) (*tensor.Tensor, error) {
	shape := inferShape(b, v.start)
	n, err := checkElements(field, shape, lim)
	if err != nil {
		return nil, err
	}
	t := &tensor.Tensor{Name: name, DType: dt, Shape: shape}
	f := jsonFiller{b: b, t: t, field: field, lim: lim, b64: true, missing: missing}
	f.allocData(n, v.end-v.start)
	if _, err := f.fillShaped(v.start, shape, nil); err != nil {
		return nil, err
	}
	return t, f.done()
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
