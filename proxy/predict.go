package proxy

import (
	"fmt"
	"strconv"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The seed document's protocol: POST /predict {"features": [...]} returns
// {"prediction": [...]}, one element per row. A features array of one
// row's shape predicts one row; an array of rows predicts each.
// ?model={name} (and optionally &version={v}) picks a model other than
// the default. What "prediction" holds is set per model in config.yaml
// (predict.output, predict.transform, predict.labels).

const protoPredict = "predict"

func (s *Server) predict(ctx *fasthttp.RequestCtx) (string, error) {
	if !ctx.IsPost() {
		return "", methodNotAllowed(ctx, "POST")
	}
	m := s.defModel
	args := ctx.QueryArgs()
	if name, version := args.Peek("model"), args.Peek("version"); len(name) > 0 || len(version) > 0 {
		if len(name) == 0 {
			name = []byte(m.Name)
		}
		var err error
		if m, err = s.lookup(name, version); err != nil {
			return "", err
		}
	}
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	inputs, err := decodePredict(p, ctx.PostBody(), m, &s.cfg.Limits)
	if err != nil {
		return m.Name, err
	}
	h, err := headerHints(ctx)
	if err != nil {
		return m.Name, err
	}
	out, err := s.infer(arrival(ctx), m, inputs, h)
	if err != nil {
		return m.Name, err
	}
	bb := bytebufferpool.Get()
	bb.B, err = encodePredict(bb.B[:0], m, out)
	if err == nil {
		ctx.SetContentType("application/json")
		ctx.SetBody(bb.B)
	}
	bytebufferpool.Put(bb)
	return m.Name, err
}

// predictInput returns the index of the model input that features fill.
func predictInput(m *backends.ModelVersion) (int, error) {
	if name := m.Config.Predict.Input; name != "" {
		for i, sp := range m.Meta.Inputs {
			if sp.Name == name {
				return i, nil
			}
		}
	}
	if len(m.Meta.Inputs) != 1 {
		return 0, badRequest("model %s has %d inputs and /predict fills one; want the KServe V2 or TF Serving endpoint, or predict.input in the model's config.yaml", m.Name, len(m.Meta.Inputs))
	}
	return 0, nil
}

// decodePredict decodes {"features": ...} into the model's inputs.
func decodePredict(p *fastjson.Parser, body []byte, m *backends.ModelVersion, lim *Limits) ([]*tensor.Tensor, error) {
	if idx, err := predictInput(m); err == nil {
		if t, ok := fastPredict(body, &m.Meta.Inputs[idx], lim); ok {
			return prepareOne(m, t, "features")
		}
	}
	return decodePredictJSON(p, body, m, lim)
}

// decodePredictJSON is decodePredict's general path: any body, through a
// parsed JSON tree, with precise errors.
func decodePredictJSON(p *fastjson.Parser, body []byte, m *backends.ModelVersion, lim *Limits) ([]*tensor.Tensor, error) {
	v, err := parseJSON(p, body, lim)
	if err != nil {
		return nil, err
	}
	fv := v.Get("features")
	idx, err := predictInput(m)
	if err != nil {
		return nil, err
	}
	sp := m.Meta.Inputs[idx]
	values := "numbers"
	if sp.DType == tensor.Bytes {
		values = "strings"
	}
	if fv == nil {
		return nil, badRequest("features: missing; want {\"features\": [%s]} for one row or [[%s], ...] for several", values, values)
	}
	if fv.Type() != fastjson.TypeArray {
		return nil, badRequest("features: got %s; want an array of %s (one row) or of rows", fv.Type(), values)
	}
	shape := inferShape(fv)
	switch {
	case len(shape) == len(sp.Shape)-1: // one row
		shape = append([]int64{1}, shape...)
	case len(shape) == len(sp.Shape): // several rows
	default:
		return nil, badRequest("features: has %d dimensions; want %d (one row of %v) or %d (a list of rows) for model %s input %q",
			len(shape), len(sp.Shape)-1, sp.Shape[1:], len(sp.Shape), m.Name, sp.Name)
	}
	if shape[0] == 0 {
		return nil, badRequest("features: empty; want at least one row")
	}
	n, err := checkElements("features", shape, lim)
	if err != nil {
		return nil, err
	}
	t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape, Data: tensor.Alloc(n * sp.DType.Size())}
	f := jsonFiller{t: t, field: "features", lim: lim, missing: sp.Missing}
	fillShape := shape
	if len(inferShape(fv)) < len(shape) {
		fillShape = shape[1:]
	}
	if err := f.fillShaped(fv, fillShape, nil); err != nil {
		return nil, err
	}
	return prepareOne(m, t, "features")
}

// encodePredict appends {"prediction": [...]} with one element per row:
// the row as it is (a scalar when it holds one value; an object when the
// output's spec has Keys), or with transform argmax the class of its
// largest value. BYTES rows are JSON strings, and labels do not apply to
// them.
func encodePredict(dst []byte, m *backends.ModelVersion, out []*tensor.Tensor) ([]byte, error) {
	pc := m.Config.Predict
	idx := 0
	if pc.Output != "" {
		idx = outputIndex(m, pc.Output)
	}
	t := out[idx]
	sp := &m.Meta.Outputs[idx]
	if t.DType == tensor.Bytes && pc.Transform == "argmax" {
		return dst, fmt.Errorf("model %s: predict.transform argmax needs numbers but output %q is BYTES; want predict.transform none in its config.yaml", m.Name, sp.Name)
	}
	keys := mapKeys(sp, t)
	rows := t.BatchSize()
	var rowShape []int64
	if len(t.Shape) > 0 {
		rowShape = t.Shape[1:]
	}
	rowLen := int(tensor.NumElements(rowShape))
	boff := 0 // BYTES: the byte offset of row r in t.Data
	dst = append(dst, `{"prediction":[`...)
	for r := 0; r < rows; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		off := r * rowLen
		switch {
		case t.DType == tensor.Bytes:
			if rowLen == 1 {
				dst, boff = appendStringAt(dst, t.Data, boff)
			} else {
				dst, boff = appendNested(dst, t, rowShape, boff, nonFiniteNull)
			}
		case pc.Transform == "argmax":
			best := off
			for i := off + 1; i < off+rowLen; i++ {
				if t.Float64At(i) > t.Float64At(best) {
					best = i
				}
			}
			class := int64(best - off)
			if len(pc.Labels) == 0 && class < int64(len(keys)) {
				dst = appendString(dst, keys[class]) // the map's key names the class
			} else {
				dst = appendClass(dst, class, pc.Labels)
			}
		case keys != nil:
			dst, _ = appendMapRow(dst, t, keys, off, nonFiniteNull)
		case rowLen == 1 && !t.DType.IsFloat() && len(pc.Labels) > 0:
			dst = appendClass(dst, t.Int64At(off), pc.Labels)
		case rowLen == 1:
			dst = appendElem(dst, t, off, nonFiniteNull)
		default:
			dst, _ = appendNested(dst, t, rowShape, off, nonFiniteNull)
		}
	}
	return append(dst, "]}"...), nil
}

// appendClass appends a class index, or its name when labels has one.
func appendClass(dst []byte, class int64, labels []string) []byte {
	if class >= 0 && class < int64(len(labels)) {
		return appendString(dst, labels[class])
	}
	return strconv.AppendInt(dst, class, 10)
}
