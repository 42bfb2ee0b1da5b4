package codec

import (
	"bytes"

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
	// The tensor is allocated once, at its final size: a body the fast
	// path takes has no strings but its key, so its rows are its '['
	// bytes but the outer one. A row of f values takes at least 2f bytes
	// ("0," each), so a count beyond that cannot be taken, and what is
	// allocated for a body that fails below is at most 2 bytes per byte.
	rows := 1
	if nested {
		rows = bytes.Count(body[i:], []byte{'['})
	}
	if rows*f > lim.MaxTensorElements || rows*2*f > len(body) {
		return nil, false
	}
	t := tensor.New(sp.Name, tensor.FP32, []int64{int64(rows), int64(f)})
	data := t.Float32s()
	n, row := 0, 0
	for {
		if nested && !eat('[') {
			return nil, false
		}
		if row == rows {
			return nil, false
		}
		for k := 0; k < f; k++ {
			y, j := shortFloat32(body, i)
			if j < 0 {
				if y, j = scanFloat32(body, i); j < 0 || refused(float64(y), sp.Missing, lim) {
					return nil, false
				}
			}
			data[n] = y
			n++
			i = skipSpace(body, j)
			if k < f-1 && !eat(',') {
				return nil, false
			}
		}
		if !eat(']') {
			return nil, false
		}
		row++
		if !nested || !eat(',') {
			break
		}
	}
	if row != rows || (nested && !eat(']')) || !eat('}') || i != len(body) {
		return nil, false
	}
	return t, true
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}
