package codec

import (
	"fmt"
	"strconv"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// predictInput returns the index of the model input that features fill.
func predictInput(m *backends.ModelVersion) (int, error) {
	if name := m.Config.Predict.Input; name != "" {
		if i := m.Meta.Input(name); i >= 0 {
			return i, nil
		}
	}
	if len(m.Meta.Inputs) != 1 {
		return 0, badRequest("model %s has %d inputs and /predict fills one; want the KServe V2 or TF Serving endpoint, or predict.input in the model's config.yaml", m.Name, len(m.Meta.Inputs))
	}
	return 0, nil
}

// The seed document's protocol: POST /predict {"features": [...]} returns
// {"prediction": [...]}, one element per row. A features array of one
// row's shape predicts one row; an array of rows predicts each. What
// "prediction" holds is set per model in config.yaml (predict.output,
// predict.transform, predict.labels).
type predictCodec struct{}

func (predictCodec) Protocol() string { return ProtoPredict }

// Decode decodes {"features": ...} into the model's input.
func (predictCodec) Decode(r *Request, body []byte, _ Header) error {
	if idx, err := predictInput(r.Model); err == nil {
		if t, ok := fastPredict(body, &r.Model.Meta.Inputs[idx], r.Limits); ok {
			return r.setOne(t, "features")
		}
	}
	return decodePredictJSON(r, body)
}

// predictKeys are the members of a /predict body that Decode reads.
var predictKeys = []string{"features"}

// decodePredictJSON is Decode's general path: any body, read in place
// (scan.go), with precise errors.
func decodePredictJSON(r *Request, body []byte) error {
	m, lim := r.Model, r.Limits
	obj, err := parseJSON(body, lim)
	if err != nil {
		return err
	}
	var at [1]span // predictKeys
	lookup(body, obj, predictKeys, at[:])
	fv := at[0]
	idx, err := predictInput(m)
	if err != nil {
		return err
	}
	sp := m.Meta.Inputs[idx]
	values := "numbers"
	if sp.DType == tensor.Bytes {
		values = "strings"
	}
	if fv.start < 0 {
		return badRequest("features: missing; want {\"features\": [%s]} for one row or [[%s], ...] for several", values, values)
	}
	if body[fv.start] != '[' {
		return badRequest("features: got %s; want an array of %s (one row) or of rows", typeAt(body, fv.start), values)
	}
	dataShape := inferShape(body, fv.start)
	shape := dataShape
	switch {
	case len(shape) == len(sp.Shape)-1: // one row
		shape = append([]int64{1}, shape...)
	case len(shape) == len(sp.Shape): // several rows
	default:
		return badRequest("features: has %d dimensions; want %d (one row of %v) or %d (a list of rows) for model %s input %q",
			len(shape), len(sp.Shape)-1, sp.Shape[1:], len(sp.Shape), m.Name, sp.Name)
	}
	if shape[0] == 0 {
		return badRequest("features: empty; want at least one row")
	}
	n, err := checkElements("features", shape, lim)
	if err != nil {
		return err
	}
	t := &tensor.Tensor{Name: sp.Name, DType: sp.DType, Shape: shape}
	f := jsonFiller{b: body, t: t, field: "features", lim: lim, missing: sp.Missing}
	f.allocData(n, fv.end-fv.start)
	fillShape := shape
	if len(dataShape) < len(shape) {
		fillShape = shape[1:]
	}
	if _, err := f.fillShaped(fv.start, fillShape, nil); err != nil {
		return err
	}
	if err := f.done(); err != nil {
		return err
	}
	return r.setOne(t, "features")
}

// Encode appends {"prediction": [...]} with one element per row:
// the row as it is (a scalar when it holds one value; an object when the
// output's spec has Keys), or with transform argmax the class of its
// largest value. BYTES rows are JSON strings, and labels do not apply to
// them.
func (predictCodec) Encode(dst []byte, r *Request, out []*tensor.Tensor, h ResponseHeader) ([]byte, error) {
	h.SetContentType("application/json")
	m := r.Model
	pc := m.Config.Predict
	idx := 0
	if pc.Output != "" {
		idx = m.Meta.Output(pc.Output) // checked at load
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
				dst = AppendString(dst, keys[class]) // the map's key names the class
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
		return AppendString(dst, labels[class])
	}
	return strconv.AppendInt(dst, class, 10)
}
