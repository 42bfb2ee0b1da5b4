package codec

import (
	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// fastPredict decodes the common /predict body, {"features": [x, ...]} or
// {"features": [[x, ...], ...]} of plain JSON numbers for a model whose
// input is FP32 [-1, F], in one pass over the bytes without building a
// JSON tree. It returns nil, false for anything else (other keys, nulls,
// strings, NaN, a wrong row length, whitespace oddities are all fine to
// refuse): the caller then takes the general path, which also gives the
// precise error. Numbers are correctly rounded to float32 (scanFloat32),
// as the general path rounds them, so both paths give identical tensors
// (FuzzFastPredict checks it).
func fastPredict(body []byte, sp *backends.TensorSpec, lim *config.Limits) (*tensor.Tensor, bool) {
	if sp.DType != tensor.FP32 || len(sp.Shape) != 2 || sp.Shape[1] <= 0 || lim.MaxJSONDepth < 3 {
		return nil, false
	}
	f := int(sp.Shape[1])
	i := skipSpace(body, 0)
	const key = `{"features"`
	if len(body)-i < len(key) || string(body[i:i+len(key)]) != key {
		return nil, false
	}
	i = skipSpace(body, i+len(key))
	// eat consumes byte c and the whitespace after it, or reports false.
	eat := func(c byte) bool {
		if i >= len(body) || body[i] != c {
			return false
		}
		i = skipSpace(body, i+1)
		return true
	}
	if !eat(':') || !eat('[') {
		return nil, false
	}
	nested := i < len(body) && body[i] == '['
	var row [64]float32 // a row of up to 64 features parses without allocating
	data := row[:0]
	rows := 0
	for {
		if nested && !eat('[') {
			return nil, false
		}
		if (rows+1)*f > lim.MaxTensorElements {
			return nil, false
		}
		for k := 0; k < f; k++ {
			y, j := shortFloat32(body, i)
			if j < 0 {
				if y, j = scanFloat32(body, i); j < 0 || (!lim.AllowNonFinite && isInf32(y)) {
					return nil, false
				}
			}
			data = append(data, y)
			i = skipSpace(body, j)
			if k < f-1 && !eat(',') {
				return nil, false
			}
		}
		if !eat(']') {
			return nil, false
		}
		rows++
		if !nested || !eat(',') {
			break
		}
	}
	if (nested && !eat(']')) || !eat('}') || i != len(body) {
		return nil, false
	}
	t := tensor.New(sp.Name, tensor.FP32, []int64{int64(rows), int64(f)})
	copy(t.Float32s(), data)
	return t, true
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}
