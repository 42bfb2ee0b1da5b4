package cpu

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// FuzzLoadBytes feeds arbitrary bytes to LoadBytes: it must return a
// model or an error, never panic (a recovered panic shows as "BUG"). Models
// that load and are small are also run once on zero inputs.
func FuzzLoadBytes(f *testing.F) {
	r := newRand()
	f.Add(mlpModel(randTensor(r, tensor.FP32, 4, 3), randTensor(r, tensor.FP32, 4),
		randTensor(r, tensor.FP32, 4, 2), randTensor(r, tensor.FP32, 2)))
	f.Add(torchViewModel(11, randTensor(r, tensor.FP32, 2, 6), randTensor(r, tensor.FP32, 2)))
	f.Add(torchViewModel(13, randTensor(r, tensor.FP32, 2, 6), randTensor(r, tensor.FP32, 2)))
	x := iotaT(2, 3)
	f.Add(oneNode(13, "Transpose", []arg{in("x", x)}, 1, onnxtest.AttrInts("perm", 1, 0)))
	f.Add(oneNode(13, "Concat", []arg{in("x", x), cst("c", x)}, 1, onnxtest.AttrInt("axis", 0)))
	f.Add(oneNode(13, "Gather", []arg{in("x", x), cst("i", i64(sh(2), 1, -1))}, 1, onnxtest.AttrInt("axis", 1)))
	f.Add(oneNode(11, "Clip", []arg{in("x", x)}, 1, onnxtest.AttrFloat("min", 0)))
	f.Add(oneNode(13, "Cast", []arg{in("x", x)}, 1, onnxtest.AttrInt("to", onnx.TypeInt64)))
	f.Add(oneNode(13, "Unsqueeze", []arg{in("x", x), cst("a", i64(sh(1), 0))}, 1))
	f.Add(oneNode(15, "BatchNormalization", []arg{in("x", x), cst("s", f32(sh(3), 1, 2, 3)), cst("b", f32(sh(3), 1, 2, 3)),
		cst("m", f32(sh(3), 1, 2, 3)), cst("v", f32(sh(3), 1, 2, 3))}, 1))
	for _, m := range []string{"iris-logreg", "wine-linear", "wine-forest"} {
		if b, err := os.ReadFile("../../models/" + m + "/1/model.onnx"); err == nil {
			f.Add(b)
		}
	}
	for _, b := range mlFuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		be, err := LoadBytes(b, Options{Concurrency: 1})
		if err != nil {
			if strings.Contains(err.Error(), "BUG") {
				t.Fatal(err)
			}
			return
		}
		var inputs []*tensor.Tensor
		total := int64(0)
		for _, spec := range be.Metadata().Inputs {
			shape := clone(spec.Shape)
			for i, d := range shape {
				if d < 0 {
					shape[i] = 2
				}
			}
			n := tensor.NumElements(shape)
			if n < 0 || spec.DType.Size() == 0 && spec.DType != tensor.Bytes {
				return
			}
			if total += n; total > 1<<16 {
				return
			}
			if spec.DType == tensor.Bytes {
				inputs = append(inputs, tensor.FromStrings(spec.Name, shape, fuzzStrings(int(n))))
				continue
			}
			inputs = append(inputs, tensor.New(spec.Name, spec.DType, shape))
		}
		for _, p := range *be.plans.Load() {
			if p.arenaSize > 1<<24 {
				return
			}
		}
		if _, err := be.Infer(context.Background(), inputs); err != nil && strings.Contains(err.Error(), "BUG") {
			t.Fatal(err)
		}
	})
}

// fuzzStrings returns n strings, some of them class labels of the seeds.
func fuzzStrings(n int) []string {
	ss := make([]string, n)
	for i := range ss {
		ss[i] = []string{"a", "", "zz", "red"}[i%4]
	}
	return ss
}

// mlFuzzSeeds returns small ONNX-ML models for FuzzLoadBytes: every
// operator of ops_ml*.go, string inputs and outputs, and a ZipMap output.
func mlFuzzSeeds() [][]byte {
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	xs := strT(sh(2, 2), "a", "b", "zz", "red")
	return [][]byte{
		onnxtest.NewModel(0).Import(mlDomain, 1).Input("x", onnx.TypeFloat, "N", 3).Output("label").OutputSeqMap("probs", onnx.TypeString, onnx.TypeFloat).
			MLNode("sc", "Scaler", []string{"x"}, []string{"xs"}, onnxtest.AttrFloats("offset", 1, 2, 3), onnxtest.AttrFloats("scale", 1, 0.5, 2)).
			MLNode("lc", "LinearClassifier", []string{"xs"}, []string{"label", "p"}, onnxtest.AttrFloats("coefficients", 1, 2, 3, 4, 5, 6),
				onnxtest.AttrFloats("intercepts", 0, 1), onnxtest.AttrStrings("classlabels_strings", "a", "b"), onnxtest.AttrString("post_transform", "LOGISTIC")).
			MLNode("zm", "ZipMap", []string{"p"}, []string{"probs"}, onnxtest.AttrStrings("classlabels_strings", "a", "b")).Bytes(),
		mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", 1, 2, 3), onnxtest.AttrInts("classlabels_ints", 0, 1)),
		mlModel(1, "LinearRegressor", []arg{in("x", x)}, 1, onnxtest.AttrFloats("coefficients", 1, 2, 3, 4, 5, 6), onnxtest.AttrInt("targets", 2),
			onnxtest.AttrString("post_transform", "SOFTMAX")),
		mlModel(1, "Normalizer", []arg{in("x", x)}, 1, onnxtest.AttrString("norm", "L2")),
		mlModel(1, "Binarizer", []arg{in("x", x)}, 1, onnxtest.AttrFloat("threshold", 2)),
		mlModel(1, "Imputer", []arg{in("x", x)}, 1, onnxtest.AttrFloats("imputed_value_floats", 0), onnxtest.AttrFloat("replaced_value_float", float32(math.NaN()))),
		mlModel(1, "ArrayFeatureExtractor", []arg{in("x", xs), cst("i", i64(sh(1), 1))}, 1),
		mlModel(1, "FeatureVectorizer", []arg{in("x", x), in("y", i64(sh(2, 1), 1, 2))}, 1, onnxtest.AttrInts("inputdimensions", 3, 2)),
		mlModel(1, "OneHotEncoder", []arg{in("x", xs)}, 1, onnxtest.AttrStrings("cats_strings", "a", "red")),
		mlModel(2, "LabelEncoder", []arg{in("x", xs)}, 1, onnxtest.AttrStrings("keys_strings", "a", "red"), onnxtest.AttrStrings("values_strings", "A", "RED")),
		mlModel(1, "LabelEncoder", []arg{in("x", i64(sh(2), 0, 1))}, 1, onnxtest.AttrStrings("classes_strings", "a", "b")),
	}
}
