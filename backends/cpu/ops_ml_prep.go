package cpu

import (
	"fmt"
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The ONNX-ML preprocessing operators: element-wise and row-wise maps
// from numbers to numbers, and the feature selection and concatenation
// operators.

// compileScaler compiles Scaler: Y = (X - offset) * scale, FP32, with one
// offset and scale for every element or one per feature (the last
// dimension of [N, F], or of [F]). As in onnxruntime, scale is required
// and offset must have as many values. The arithmetic is float32 (FP64
// input: float64, then rounded), like onnxruntime's.
func compileScaler(c *opCtx) (kernel, error) {
	scale, _, err := c.n.attrs.Floats("scale")
	if err != nil {
		return nil, err
	}
	offset, _, err := c.n.attrs.Floats("offset")
	if err != nil {
		return nil, err
	}
	if len(scale) == 0 {
		return nil, invalidf("attribute scale is required (one value, or one per feature)")
	}
	if len(offset) != len(scale) {
		return nil, invalidf("attribute offset has %d values, attribute scale %d: they must have as many", len(offset), len(scale))
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	x := c.input(0)
	stride := 1
	if len(scale) > 1 {
		_, f, err := mlRows(x)
		if err != nil {
			return nil, err
		}
		if err := oneOrPerFeature("scale", len(scale), f); err != nil {
			return nil, err
		}
		stride = f
	} else if len(x.shape) == 0 {
		return nil, invalidf("input X is a scalar")
	}
	c.setOut(0, tensor.FP32, clone(x.shape))
	sc := new(sgemm.Scratch)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[float32](out[0].Data)
		if in[0].DType == tensor.FP64 {
			for i, v := range viewAs[float64](in[0].Data) {
				j := i % stride
				y[i] = float32((v - float64(offset[j])) * float64(scale[j]))
			}
			return nil
		}
		x, buf := float32s(in[0], sc)
		if stride == 1 {
			o, s := offset[0], scale[0]
			for i, v := range x {
				y[i] = (v - o) * s
			}
		} else {
			for r := 0; r < len(x); r += stride {
				yr, xr := y[r:r+stride], x[r:r+stride]
				for j, v := range xr {
					yr[j] = (v - offset[j]) * scale[j]
				}
			}
		}
		if buf != nil {
			sc.Put(buf)
		}
		return nil
	}), nil
}

// The norms of Normalizer.
const (
	normMax = iota
	normL1
	normL2
)

// compileNormalizer compiles Normalizer: each row of X ([N, F] or [F]) is
// divided by its MAX (largest value, not magnitude), L1 or L2 norm, in
// float32 as onnxruntime computes it (normalizer.cc); a row whose norm is
// 0 is copied unchanged. Output FP32.
func compileNormalizer(c *opCtx) (kernel, error) {
	name, err := c.n.attrs.Str("norm", "MAX")
	if err != nil {
		return nil, err
	}
	norm := 0
	switch name {
	case "MAX":
		norm = normMax
	case "L1":
		norm = normL1
	case "L2":
		norm = normL2
	default:
		return nil, invalidf("attribute norm = %q, want MAX, L1 or L2", name)
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	x := c.input(0)
	_, f, err := mlRows(x)
	if err != nil {
		return nil, err
	}
	c.setOut(0, tensor.FP32, clone(x.shape))
	sc := new(sgemm.Scratch)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, buf := float32s(in[0], sc)
		y := viewAs[float32](out[0].Data)
		for r := 0; r+f <= len(x) && f > 0; r += f {
			normalizeRow(norm, y[r:r+f], x[r:r+f])
		}
		if buf != nil {
			sc.Put(buf)
		}
		return nil
	}), nil
}

// normalizeRow stores row x normalised by norm into y.
func normalizeRow(norm int, y, x []float32) {
	var d float32
	switch norm {
	case normMax:
		d = -math.MaxFloat32
		for _, v := range x {
			if v > d { // NaN never wins, as with std::max(max, v)
				d = v
			}
		}
	case normL1:
		for _, v := range x {
			d += float32(math.Abs(float64(v)))
		}
	case normL2:
		for _, v := range x {
			d += v * v
		}
		if d != 0 {
			for i, v := range x {
				q := float32(math.Sqrt(float64(v * v / d)))
				if v < 0 {
					q = -q
				}
				y[i] = q
			}
			return
		}
	}
	if d == 0 {
		copy(y, x)
		return
	}
	for i, v := range x {
		y[i] = v / d
	}
}

// compileBinarizer compiles Binarizer: 1 where X > threshold (default 0),
// else 0, in X's type (FP32, FP64, INT64, INT32). A NaN input fails the
// call, as in onnxruntime.
func compileBinarizer(c *opCtx) (kernel, error) {
	th, err := c.n.attrs.Float("threshold", 0)
	if err != nil {
		return nil, err
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	x := c.input(0)
	c.setOut(0, x.dtype, clone(x.shape))
	switch x.dtype {
	case tensor.FP32:
		return binarizer[float32](th), nil
	case tensor.FP64:
		return binarizer[float64](float64(th)), nil
	case tensor.Int64:
		return binarizer[int64](float64(th)), nil
	default:
		return binarizer[int32](float64(th)), nil
	}
}

// binarizer returns Binarizer's kernel for elements of type T compared
// with th in F (float64 for integers).
func binarizer[T number, F float](th F) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[T](out[0].Data)
		for i, v := range viewAs[T](in[0].Data) {
			fv := F(v)
			if fv != fv {
				return fmt.Errorf("input X[%d] is NaN", i)
			}
			y[i] = 0
			if fv > th {
				y[i] = 1
			}
		}
		return nil
	})
}

// compileImputer compiles Imputer: elements equal to the replaced value
// (replaced_value_float, default 0, where NaN matches NaN; or
// replaced_value_int64, default 0) become the imputed value (one, or one
// per feature of [N, F] / [F]). imputed_value_floats goes with FP32 and
// FP64 inputs, imputed_value_int64s with INT64 and INT32; exactly one is
// set. The output has X's type.
func compileImputer(c *opCtx) (kernel, error) {
	as := c.n.attrs
	fv, hasF, err := as.Floats("imputed_value_floats")
	if err != nil {
		return nil, err
	}
	iv, hasI, err := as.Ints("imputed_value_int64s")
	if err != nil {
		return nil, err
	}
	rf, err := as.Float("replaced_value_float", 0)
	if err != nil {
		return nil, err
	}
	ri, err := as.Int("replaced_value_int64", 0)
	if err != nil {
		return nil, err
	}
	if hasF == hasI || len(fv)+len(iv) == 0 {
		return nil, invalidf("exactly one of the attributes imputed_value_floats and imputed_value_int64s must be set, non-empty")
	}
	if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, err
	}
	x := c.input(0)
	isFloat := x.dtype == tensor.FP32 || x.dtype == tensor.FP64
	if isFloat != hasF {
		if hasF {
			return nil, invalidf("input X is %s but the imputed values are imputed_value_floats (for FP32 and FP64 inputs)", x.dtype)
		}
		return nil, invalidf("input X is %s but the imputed values are imputed_value_int64s (for INT64 and INT32 inputs)", x.dtype)
	}
	name, nv := "imputed_value_int64s", len(iv)
	if hasF {
		name, nv = "imputed_value_floats", len(fv)
	}
	_, f, err := mlRows(x)
	if err != nil {
		return nil, err
	}
	if err := oneOrPerFeature(name, nv, f); err != nil {
		return nil, err
	}
	c.setOut(0, x.dtype, clone(x.shape))
	switch x.dtype {
	case tensor.FP32:
		return imputer(fv, rf, f, true), nil
	case tensor.FP64:
		v := make([]float64, len(fv))
		convert(v, fv)
		return imputer(v, float64(rf), f, true), nil
	case tensor.Int64:
		return imputer(iv, ri, f, false), nil
	default:
		v := make([]int32, len(iv))
		convert(v, iv) // an imputed value outside int32 wraps, as C++'s conversion does
		if int64(int32(ri)) != ri {
			// No INT32 element can equal it: nothing is replaced.
			return aliasCopy(), nil
		}
		return imputer(v, int32(ri), f, false), nil
	}
}

// imputer returns Imputer's kernel for elements of type T: values holds
// one imputed value or one per feature (f per row); with nanMatch, a NaN
// replaced value matches NaN elements.
func imputer[T number](values []T, replaced T, f int, nanMatch bool) kernel {
	nanRep := nanMatch && replaced != replaced
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[T](out[0].Data)
		for i, v := range viewAs[T](in[0].Data) {
			if v == replaced || nanRep && v != v {
				if len(values) == 1 {
					v = values[0]
				} else {
					v = values[i%f]
				}
			}
			y[i] = v
		}
		return nil
	})
}

// aliasCopy returns a kernel that copies input 0 to output 0 (a node that
// leaves its input unchanged but is not a view).
func aliasCopy() kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		copy(out[0].Data, in[0].Data)
		return nil
	})
}

// compileArrayFeatureExtractor compiles ArrayFeatureExtractor: the
// elements of X (FP32, FP64, INT64, INT32 or BYTES) at the INT64 indices
// Y along the last axis; the output is X's shape with the last dimension
// replaced by the number of indices ([1, k] for a 1-D X, as onnxruntime
// does). An index out of [0, F) fails at load when Y is a constant, else
// at run time.
func compileArrayFeatureExtractor(c *opCtx) (kernel, error) {
	if err := c.wantDType(0, "X", tensor.FP32, tensor.FP64, tensor.Int64, tensor.Int32, tensor.Bytes); err != nil {
		return nil, err
	}
	if err := c.wantDType(1, "Y", tensor.Int64); err != nil {
		return nil, err
	}
	x, idx := c.input(0), c.input(1)
	r := len(x.shape)
	if r == 0 {
		return nil, invalidf("input X is a scalar")
	}
	k := prod(idx.shape)
	if k == 0 {
		return nil, invalidf("input Y has no indices (shape %v)", idx.shape)
	}
	f := int(x.shape[r-1])
	if idx.konst != nil {
		for i, v := range idx.konst.Int64s() {
			if v < 0 || v >= int64(f) {
				return nil, invalidf("index Y[%d] = %d out of range [0, %d)", i, v, f)
			}
		}
	}
	out := clone(x.shape)
	if r == 1 {
		out = []int64{1, 0}
	}
	out[len(out)-1] = int64(k)
	c.setOut(0, x.dtype, out)
	rows := prod(x.shape[:r-1])
	if elemSize(x.dtype) == 4 {
		return featureExtractor[uint32](rows, f, k), nil
	}
	return featureExtractor[uint64](rows, f, k), nil
}

// featureExtractor returns ArrayFeatureExtractor's kernel for elements of
// T's size: rows rows of f elements, k indices.
func featureExtractor[T uint32 | uint64](rows, f, k int) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		idx := viewAs[int64](in[1].Data)
		for i, v := range idx {
			if v < 0 || v >= int64(f) {
				return fmt.Errorf("index Y[%d] = %d out of range [0, %d)", i, v, f)
			}
		}
		for r := range rows {
			xr, yr := x[r*f:r*f+f], y[r*k:r*k+k]
			for j, v := range idx {
				yr[j] = xr[v]
			}
		}
		return nil
	})
}

// compileFeatureVectorizer compiles FeatureVectorizer: the inputs (FP32,
// FP64, INT64, INT32; [N, ...] or [F] as one row) concatenated per row
// into FP32 [N, Σ inputdimensions]. Input i contributes
// inputdimensions[i] columns: its first ones when it has more per row,
// zero-padded when it has fewer (onnxruntime's feature_vectorizer.cc).
// All inputs must have the same number of rows.
func compileFeatureVectorizer(c *opCtx) (kernel, error) {
	dims, ok, err := c.n.attrs.Ints("inputdimensions")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, invalidf("attribute inputdimensions is required (one size per input)")
	}
	if len(dims) != len(c.in) {
		return nil, invalidf("attribute inputdimensions has %d values for %d inputs", len(dims), len(c.in))
	}
	type part struct{ off, take, size, dim int }
	parts := make([]part, len(c.in))
	rows, total := -1, int64(0)
	for i, in := range c.in {
		if in == nil {
			return nil, invalidf("input %d is empty", i)
		}
		if err := c.wantDType(i, fmt.Sprint(i), mlNumeric...); err != nil {
			return nil, err
		}
		if dims[i] < 0 || dims[i] > math.MaxInt32 {
			return nil, invalidf("attribute inputdimensions[%d] = %d", i, dims[i])
		}
		if len(in.shape) == 0 {
			return nil, invalidf("input %d is a scalar", i)
		}
		n, size := 1, int(in.shape[0])
		if len(in.shape) > 1 {
			n, size = int(in.shape[0]), prod(in.shape[1:])
		}
		if rows >= 0 && n != rows {
			return nil, invalidf("input %d has %d rows (shape %v), input 0 has %d", i, n, in.shape, rows)
		}
		rows = n
		parts[i] = part{off: int(total), take: min(size, int(dims[i])), size: size, dim: int(dims[i])}
		total += dims[i]
	}
	if total > math.MaxInt32 {
		return nil, invalidf("attribute inputdimensions sums to %d", total)
	}
	width := int(total)
	c.setOut(0, tensor.FP32, []int64{int64(rows), total})
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[float32](out[0].Data)
		for i, p := range parts {
			t := in[i]
			for r := range rows {
				dst := y[r*width+p.off : r*width+p.off+p.dim]
				switch t.DType {
				case tensor.FP32:
					copy(dst, viewAs[float32](t.Data)[r*p.size:r*p.size+p.take])
				case tensor.FP64:
					convert(dst, viewAs[float64](t.Data)[r*p.size:r*p.size+p.take])
				case tensor.Int64:
					convert(dst, viewAs[int64](t.Data)[r*p.size:r*p.size+p.take])
				default:
					convert(dst, viewAs[int32](t.Data)[r*p.size:r*p.size+p.take])
				}
				clear(dst[p.take:])
			}
		}
		return nil
	}), nil
}
