package codec

import (
	"fmt"
	"math"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// prepareInputs checks named input tensors against model m and appends
// them to dst in the model's input order, converted to the declared
// datatypes. field names where the inputs came from, for error messages.
func prepareInputs(m *backends.ModelVersion, byName map[string]*tensor.Tensor, field string, dst []*tensor.Tensor) ([]*tensor.Tensor, error) {
	specs := m.Meta.Inputs
	for name := range byName {
		if m.Meta.Input(name) < 0 {
			return nil, badRequest("%s: model %s has no input %q; want %s", field, m.Name, Truncate(name), inputList(specs))
		}
	}
	batch := int64(-1)
	for _, sp := range specs {
		t := byName[sp.Name]
		if t == nil {
			return nil, badRequest("%s: input %q of model %s is missing; want %s", field, sp.Name, m.Name, inputList(specs))
		}
		ct, err := checkInput(sp, t, field, &batch)
		if err != nil {
			return nil, err
		}
		dst = append(dst, ct)
	}
	return dst, nil
}

// setOne is setInputs for one tensor, without a map: the common case of a
// single-input model.
func (r *Request) setOne(t *tensor.Tensor, field string) error {
	m := r.Model
	if len(m.Meta.Inputs) != 1 || m.Meta.Inputs[0].Name != t.Name {
		r.byName[t.Name] = t
		return r.setInputs(r.byName, field)
	}
	batch := int64(-1)
	ct, err := checkInput(m.Meta.Inputs[0], t, field, &batch)
	if err != nil {
		return err
	}
	r.Inputs = append(r.inputsArray[:0], ct)
	return nil
}

// checkInput checks t against its spec and the batch size of the inputs
// before it (*batch, -1 for none), and converts it to the declared type.
func checkInput(sp backends.TensorSpec, t *tensor.Tensor, field string, batch *int64) (*tensor.Tensor, error) {
	if len(t.Shape) != len(sp.Shape) {
		return nil, badRequest("%s: input %q has shape %v; want %d dimensions like %v (-1 = any size)", field, sp.Name, t.Shape, len(sp.Shape), sp.Shape)
	}
	for d, want := range sp.Shape {
		if want >= 0 && t.Shape[d] != want {
			return nil, badRequest("%s: input %q has shape %v; want %v (-1 = any size)", field, sp.Name, t.Shape, sp.Shape)
		}
	}
	if len(t.Shape) > 0 {
		if *batch >= 0 && t.Shape[0] != *batch {
			return nil, badRequest("%s: input %q has batch size %d but other inputs have %d; want the same first dimension for every input", field, sp.Name, t.Shape[0], *batch)
		}
		*batch = t.Shape[0]
	}
	ct, err := convertExact(t, sp.DType)
	if err != nil {
		return nil, badRequest("%s: input %q: %s; want datatype %s", field, sp.Name, err, sp.DType)
	}
	return ct, nil
}

// maxListed is the most tensors of a model an error message lists: the
// list comes from the model, but a model may have thousands of inputs.
const maxListed = 16

// inputList lists the inputs of a model (at most maxListed) for an error
// message.
func inputList(specs []backends.TensorSpec) string {
	var b []byte
	for i, sp := range specs {
		if i > 0 {
			b = append(b, ", "...)
		}
		if i == maxListed {
			b = fmt.Appendf(b, "… (%d inputs)", len(specs))
			break
		}
		b = fmt.Appendf(b, "%q %s %s", Truncate(sp.Name), sp.DType, fmtShape(sp.Shape))
	}
	return string(b)
}

// refused reports whether x, a value of an input, breaks the non-finite
// rule, the one place it is decided: NaN and ±Inf are refused unless
// limits.allow_non_finite is on, except that NaN (JSON null, or NaN in
// binary data) is a missing value for an input that takes them
// (backends.TensorSpec.Missing).
func refused(x float64, missing bool, lim *config.Limits) bool {
	switch {
	case lim.AllowNonFinite:
		return false
	case x != x:
		return !missing
	}
	return math.IsInf(x, 0)
}
