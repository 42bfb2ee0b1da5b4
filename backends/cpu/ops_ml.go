package cpu

import (
	"fmt"
	"slices"
	"strconv"
	"unsafe"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The ONNX-ML operators (domain ai.onnx.ml, opsets 1 to 3) that classic
// scikit-learn pipelines exported by skl2onnx and onnxmltools use. The
// spec (onnx/defs/traditionalml/defs.cc) leaves corner cases open; there
// the engine does what onnxruntime's CPU kernels
// (onnxruntime/core/providers/cpu/ml/) do, and rejects at load what
// onnxruntime computes inconsistently, so that a model never runs with an
// answer the reference runtime would not give. Float results are FP32;
// string inputs and outputs are vocabulary ids (strings.go).

// lookupMLOp returns the definition of an ai.onnx.ml operator, or nil when
// the engine does not implement it.
func lookupMLOp(op string) *opDef {
	switch op {
	case "LinearClassifier":
		return &opDef{1, 1, 2, []string{"coefficients", "intercepts", "classlabels_ints", "classlabels_strings",
			"multi_class", "post_transform"}, compileLinearClassifier}
	case "LinearRegressor":
		return &opDef{1, 1, 1, []string{"coefficients", "intercepts", "targets", "post_transform"}, compileLinearRegressor}
	case "Scaler":
		return &opDef{1, 1, 1, []string{"offset", "scale"}, compileScaler}
	case "Normalizer":
		return &opDef{1, 1, 1, []string{"norm"}, compileNormalizer}
	case "Binarizer":
		return &opDef{1, 1, 1, []string{"threshold"}, compileBinarizer}
	case "Imputer":
		return &opDef{1, 1, 1, []string{"imputed_value_floats", "imputed_value_int64s", "replaced_value_float",
			"replaced_value_int64"}, compileImputer}
	case "OneHotEncoder":
		return &opDef{1, 1, 1, []string{"cats_int64s", "cats_strings", "zeros"}, compileOneHotEncoder}
	case "LabelEncoder":
		return &opDef{1, 1, 1, []string{"classes_strings", "default_int64", "default_string", "default_float",
			"keys_floats", "keys_int64s", "keys_strings", "values_floats", "values_int64s", "values_strings"}, compileLabelEncoder}
	case "ArrayFeatureExtractor":
		return &opDef{2, 2, 1, nil, compileArrayFeatureExtractor}
	case "FeatureVectorizer":
		return &opDef{1, 1 << 16, 1, []string{"inputdimensions"}, compileFeatureVectorizer}
	case "ZipMap":
		return &opDef{1, 1, 1, []string{"classlabels_int64s", "classlabels_strings"}, compileZipMap}
	}
	return lookupTreeOp(op)
}

// mlNumeric is the numeric input type constraint shared by most ONNX-ML
// operators: tensor(float), tensor(double), tensor(int64), tensor(int32).
var mlNumeric = []tensor.DataType{tensor.FP32, tensor.FP64, tensor.Int64, tensor.Int32}

// float32s returns x's elements as float32: x's data itself when it is
// FP32, else converted (as C++'s static_cast<float> rounds) into a buffer
// taken from sc, which the caller returns with sc.put when it is not nil.
func float32s(x *tensor.Tensor, sc *sgemm.Scratch) ([]float32, *[]float32) {
	if x.DType == tensor.FP32 {
		return viewAs[float32](x.Data), nil
	}
	buf := sc.Get(x.Len())
	castTo(*buf, x)
	return *buf, buf
}

// floatsView returns an FP32 tensor of shape sharing the memory of v (an
// attribute's values), so that constants derived from it, such as packed
// weights, are keyed by that memory and shared by every plan.
func floatsView(v []float32, shape ...int64) *tensor.Tensor {
	return &tensor.Tensor{DType: tensor.FP32, Shape: shape,
		Data: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))}
}

// mlRows returns the rows and columns of an ONNX-ML operator's 2-D input
// X: [N, F], or [F] as one row, as onnxruntime reads them.
func mlRows(x *valueInfo) (n, f int, err error) {
	switch len(x.shape) {
	case 1:
		return 1, int(x.shape[0]), nil
	case 2:
		return int(x.shape[0]), int(x.shape[1]), nil
	}
	return 0, 0, invalidf("input X has shape %v, want [N, F] or [F]", x.shape)
}

// oneOrPerFeature checks that attribute name has one value or one per
// feature (f) and returns the number of values.
func oneOrPerFeature(name string, n, f int) error {
	if n != 1 && n != f {
		return invalidf("attribute %s has %d values, want 1 or one per feature (%d)", name, n, f)
	}
	return nil
}

// zipMapKeys returns ZipMap's keys: classlabels_strings, or
// classlabels_int64s as decimal strings (ints is then true). Exactly one
// must be set; duplicates, which would collapse in a map, are rejected.
func zipMapKeys(as onnx.Attrs) (keys []string, ints bool, err error) {
	strs, hasStrs, err := as.Strings("classlabels_strings")
	if err != nil {
		return nil, false, err
	}
	is, hasInts, err := as.Ints("classlabels_int64s")
	if err != nil {
		return nil, false, err
	}
	switch {
	case hasStrs == hasInts:
		return nil, false, invalidf("exactly one of the attributes classlabels_strings and classlabels_int64s must be set")
	case hasInts:
		keys = make([]string, len(is))
		for i, v := range is {
			keys[i] = strconv.FormatInt(v, 10)
		}
	default:
		keys = strs
	}
	if len(keys) == 0 {
		name := "classlabels_strings"
		if hasInts {
			name = "classlabels_int64s"
		}
		return nil, false, invalidf("attribute %s is empty", name)
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, false, invalidf("class label %q appears twice in ZipMap's keys", sorted[i])
		}
	}
	return keys, hasInts, nil
}

// zipMapOutput checks the declared type of a graph output computed by the
// ZipMap node zm, seq(map(string or int64, float)) or none, and returns
// the keys its TensorSpec carries.
func zipMapOutput(zm *node, vi *onnx.ValueInfo) ([]string, error) {
	keys, ints, err := zipMapKeys(zm.attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", zm, err)
	}
	keyType, keyName := int32(onnx.TypeString), "string"
	if ints {
		keyType, keyName = onnx.TypeInt64, "int64"
	}
	switch {
	case vi.TensorType:
		return nil, invalidf("declared as a tensor, but %s produces a sequence of maps", zm)
	case vi.OtherType:
		m := vi.SeqElem
		if m == nil || m.MapValue == nil || m.MapKey != keyType || !m.MapValue.TensorType || m.MapValue.ElemType != onnx.TypeFloat {
			return nil, invalidf("declared type is not seq(map(%s, float)), which %s produces", keyName, zm)
		}
	}
	return keys, nil
}

// compileZipMap compiles ZipMap as a view of its FP32 input [N, C] (or
// [C], one row): a graph output computed by ZipMap is served as that
// tensor, its TensorSpec carrying the keys (see zipMapOutput); buildGraph
// rejects any other use of its output.
func compileZipMap(c *opCtx) (kernel, error) {
	keys, ints, err := zipMapKeys(c.n.attrs)
	if err != nil {
		return nil, err
	}
	if !ints {
		c.stringIDs(keys)
	}
	if err := c.wantDType(0, "X", tensor.FP32); err != nil {
		return nil, err
	}
	x := c.input(0)
	n, f, err := mlRows(x)
	if err != nil {
		return nil, err
	}
	if f != len(keys) {
		return nil, invalidf("input X has %d columns (shape %v), ZipMap has %d keys", f, x.shape, len(keys))
	}
	c.setOut(0, tensor.FP32, []int64{int64(n), int64(f)})
	return aliasKernel{}, nil
}
