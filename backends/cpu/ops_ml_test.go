package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// mlModel builds a model holding one ai.onnx.ml node named "n" (ai.onnx.ml
// opset ml), as oneNode does for ai.onnx.
func mlModel(ml int64, op string, args []arg, nOut int, attrs ...[]byte) []byte {
	return oneNodeIn(onnxtest.NewMLModel(ml), (*onnxtest.Model).MLNode, op, args, nOut, attrs...)
}

func strT(shape []int64, ss ...string) *tensor.Tensor { return tensor.FromStrings("", shape, ss) }
func f64(shape []int64, v ...float64) *tensor.Tensor {
	t := tensor.New("", tensor.FP64, shape)
	copy(t.Float64s(), v)
	return t
}
func rf(shape []int64, v ...float64) ref { return ref{shape: shape, data: v} }

// expectStrings checks that got is a BYTES tensor of shape holding want.
func expectStrings(t *testing.T, got *tensor.Tensor, shape []int64, want ...string) {
	t.Helper()
	if got.DType != tensor.Bytes || !sameShape(got.Shape, shape) {
		t.Fatalf("output is %s%v, want BYTES%v", got.DType, got.Shape, shape)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := got.Strings(); !slices.Equal(s, want) && !(len(s) == 0 && len(want) == 0) {
		t.Fatalf("output = %q, want %q", s, want)
	}
}

// expectInferError loads model and checks that Infer on inputs fails with
// an error containing want.
func expectInferError(t *testing.T, model []byte, want string, inputs ...*tensor.Tensor) {
	t.Helper()
	be, err := LoadBytes(model, Options{Concurrency: 1})
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	_, err = be.Infer(context.Background(), inputs)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Infer error = %v, want one containing %q", err, want)
	}
}

// The float64 references of the post transforms.
func refLogistic(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
func refProbit(v float64) float64   { return math.Sqrt2 * math.Erfinv(2*v-1) }
func refSoftmaxRow(row []float64, skipZero bool) []float64 {
	out := make([]float64, len(row))
	sum := 0.0
	for i, v := range row {
		if skipZero && v == 0 {
			continue
		}
		out[i] = math.Exp(v)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// refTransform applies post_transform pt to each row of r (cols wide).
func refTransform(r ref, cols int, pt string) ref {
	out := ref{shape: r.shape, data: slices.Clone(r.data)}
	for i := 0; i < len(out.data); i += cols {
		row := out.data[i : i+cols]
		switch pt {
		case "LOGISTIC":
			for j, v := range row {
				row[j] = refLogistic(v)
			}
		case "PROBIT":
			for j, v := range row {
				row[j] = refProbit(v)
			}
		case "SOFTMAX":
			copy(row, refSoftmaxRow(row, false))
		case "SOFTMAX_ZERO":
			copy(row, refSoftmaxRow(row, true))
		}
	}
	return out
}

// refAffine returns X·Wᵀ + b for X [n, f] (flat), W rows×f, b per row or
// nil.
func refAffine(x []float64, n, f int, w, b []float32) ref {
	rows := len(w) / f
	out := newRef(int64(n), int64(rows))
	for i := range n {
		for j := range rows {
			s := 0.0
			if b != nil {
				s = float64(b[j])
			}
			for k := range f {
				s += x[i*f+k] * float64(w[j*f+k])
			}
			out.data[i*rows+j] = s
		}
	}
	return out
}

func TestLinearClassifier(t *testing.T) {
	// Hand-checked: rows [1 2] and [3 -1] against W rows [1 0], [0 1],
	// [1 1] plus b [0 .5 -1] score [1 2.5 2] and [3 -.5 1]: classes 1, 0.
	x := f32(sh(2, 2), 1, 2, 3, -1)
	w := []float32{1, 0, 0, 1, 1, 1}
	b := []float32{0, 0.5, -1}
	raw := rf(sh(2, 3), 1, 2.5, 2, 3, -0.5, 1)
	for _, pt := range []string{"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"} {
		t.Run("multiclass/"+pt, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", w...),
				onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 7, 8, 9), onnxtest.AttrString("post_transform", pt)), x)
			expectClose(t, outs[0], rf(sh(2), 8, 7))
			expectClose(t, outs[1], refTransform(raw, 3, pt))
		})
	}
	t.Run("multiclass/SOFTMAX_ZERO with a zero score", func(t *testing.T) {
		// Row 0 of W and b[0] are zero: that score is exactly 0 and stays 0.
		outs := runModel(t, mlModel(3, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", 0, 0, 0, 1, 1, 1),
			onnxtest.AttrFloats("intercepts", 0, 0.5, -1), onnxtest.AttrStrings("classlabels_strings", "a", "b", "c"), onnxtest.AttrString("post_transform", "SOFTMAX_ZERO")), x)
		expectStrings(t, outs[0], sh(2), "b", "c")
		expectClose(t, outs[1], refTransform(rf(sh(2, 3), 0, 2.5, 2, 0, -0.5, 1), 3, "SOFTMAX_ZERO"))
		if outs[1].Float32s()[0] != 0 {
			t.Fatalf("zero score became %v", outs[1].Float32s()[0])
		}
	})
	t.Run("multiclass/PROBIT", func(t *testing.T) {
		// Scores in (0, 1), where probit is finite.
		w := []float32{0.1, 0, 0, 0.2, 0.05, 0.05}
		b := []float32{0.2, 0.3, 0.45}
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", w...),
			onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 0, 1, 2), onnxtest.AttrString("post_transform", "PROBIT")), x)
		r := refAffine([]float64{1, 2, 3, -1}, 2, 2, w, b) // [.3 .7 .6] and [.5 .1 .55]
		expectClose(t, outs[0], rf(sh(2), 1, 2))
		expectClose(t, outs[1], refTransform(r, 3, "PROBIT"))
	})
	t.Run("multiclass/string labels", func(t *testing.T) {
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", w...),
			onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrStrings("classlabels_strings", "setosa", "versicolor", "virginica")), x)
		expectStrings(t, outs[0], sh(2), "versicolor", "setosa")
		expectClose(t, outs[1], raw)
	})
	t.Run("multiclass/no intercepts", func(t *testing.T) {
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", w...),
			onnxtest.AttrInts("classlabels_ints", 7, 8, 9)), x)
		expectClose(t, outs[0], rf(sh(2), 9, 7))
		expectClose(t, outs[1], rf(sh(2, 3), 1, 2, 3, 3, -1, 2))
	})
	for _, dt := range []tensor.DataType{tensor.FP64, tensor.Int64, tensor.Int32} {
		t.Run("input "+dt.String(), func(t *testing.T) {
			xi := tensor.New("", dt, sh(2, 2))
			for i, v := range []float64{1, 2, 3, -1} {
				xi.SetFloat64(i, v)
			}
			outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", xi)}, 2, onnxtest.AttrFloats("coefficients", w...),
				onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 7, 8, 9)), xi)
			expectClose(t, outs[0], rf(sh(2), 8, 7))
			expectClose(t, outs[1], raw)
		})
	}
	t.Run("1-D input", func(t *testing.T) {
		x1 := f32(sh(2), 3, -1)
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x1)}, 2, onnxtest.AttrFloats("coefficients", w...),
			onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 7, 8, 9)), x1)
		expectClose(t, outs[0], rf(sh(1), 7))
		expectClose(t, outs[1], rf(sh(1, 3), 3, -0.5, 1))
	})
	t.Run("only the scores output", func(t *testing.T) {
		m := onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, 2, 2).Output("z").
			MLNode("n", "LinearClassifier", []string{"x"}, []string{"", "z"}, onnxtest.AttrFloats("coefficients", w...),
				onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 7, 8, 9))
		outs := runModel(t, m.Bytes(), x)
		expectClose(t, outs[0], raw)
	})

	// One coefficient row (s = x0 - x1 + 0.25: 1-2+.25 = -.75 and
	// 3+1+.25 = 4.25) and two labels: scores [1-s, s] whatever the
	// transform, as onnxruntime's batched_update_scores_inplace with
	// add_second_class=1.
	for _, pt := range []string{"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"} {
		t.Run("binary/"+pt, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", 1, -1),
				onnxtest.AttrFloats("intercepts", 0.25), onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrString("post_transform", pt)), x)
			expectClose(t, outs[0], rf(sh(2), 0, 1))
			expectClose(t, outs[1], rf(sh(2, 2), 1.75, -0.75, -3.25, 4.25))
		})
	}
	t.Run("binary/string labels", func(t *testing.T) {
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", 1, -1),
			onnxtest.AttrFloats("intercepts", 0.25), onnxtest.AttrStrings("classlabels_strings", "neg", "pos")), x)
		expectStrings(t, outs[0], sh(2), "neg", "pos")
		expectClose(t, outs[1], rf(sh(2, 2), 1.75, -0.75, -3.25, 4.25))
	})
	t.Run("binary/onnxruntime LinearClassifierBinaryWithLabels", func(t *testing.T) {
		xo := f32(sh(3, 2), 1, 0, 3, 44, 23, 11.3)
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", xo)}, 2, onnxtest.AttrFloats("coefficients", 0.00085401, -0.00314063),
			onnxtest.AttrFloats("intercepts", 0.03930598), onnxtest.AttrStrings("classlabels_strings", "not_so_good", "pretty_good")), xo)
		expectStrings(t, outs[0], sh(3), "pretty_good", "not_so_good", "pretty_good")
		expectCloseTol(t, outs[1], rf(sh(3, 2), 0.959840000, 0.0401599929, 1.09631968, -0.0963197052, 0.976540923, 0.0234590918), 1e-6)
	})
	t.Run("onnxruntime LinearClassifierMulticlassProbSigmoid", func(t *testing.T) {
		xo := f32(sh(3, 2), 1, 0, 3, 44, 23, 11.3)
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", xo)}, 2,
			onnxtest.AttrFloats("coefficients", -0.22562418, 0.34188559, 0.68346153, -0.68051993, -0.1975279, 0.03748541),
			onnxtest.AttrFloats("intercepts", -3.91601811, 0.42575697, 0.13731251), onnxtest.AttrInts("classlabels_ints", 1, 2, 3),
			onnxtest.AttrString("post_transform", "LOGISTIC")), xo)
		expectClose(t, outs[0], rf(sh(3), 2, 1, 2))
		expectCloseTol(t, outs[1], rf(sh(3, 3), 0.015647972, 0.751983387, 0.484950699, 0.999971055, 1.17855e-12, 0.767471158,
			0.005261482, 0.999787317, 0.018302525), 1e-4)
	})
	// One coefficient row and no labels, or one: a single score column,
	// labels 1 (s > 0) and 0; only PROBIT transforms it (onnxruntime).
	single := func(pt string, labels []byte, wantScores ref) {
		t.Helper()
		attrs := [][]byte{onnxtest.AttrFloats("coefficients", 0.1, 0.05), onnxtest.AttrFloats("intercepts", 0.2), onnxtest.AttrString("post_transform", pt)}
		if labels != nil {
			attrs = append(attrs, labels)
		}
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, attrs...), x)
		if labels != nil && strings.Contains(string(labels), "classlabels_strings") {
			expectStrings(t, outs[0], sh(2), "1", "1")
		} else {
			expectClose(t, outs[0], rf(sh(2), 1, 1))
		}
		expectClose(t, outs[1], wantScores)
	}
	s := rf(sh(2, 1), 0.4, 0.45) // .1+.1+.2 and .3-.05+.2
	t.Run("single column/NONE", func(t *testing.T) { single("NONE", nil, s) })
	t.Run("single column/LOGISTIC", func(t *testing.T) { single("LOGISTIC", onnxtest.AttrInts("classlabels_ints", 5), s) })
	t.Run("single column/PROBIT", func(t *testing.T) { single("PROBIT", nil, refTransform(s, 1, "PROBIT")) })
	t.Run("single column/one string label", func(t *testing.T) { single("NONE", onnxtest.AttrStrings("classlabels_strings", "yes"), s) })
	t.Run("single column/negative", func(t *testing.T) {
		outs := runModel(t, mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, onnxtest.AttrFloats("coefficients", -1, 0)), x)
		expectClose(t, outs[0], rf(sh(2), 0, 0))
		expectClose(t, outs[1], rf(sh(2, 1), -1, -3))
	})
}

// TestLinearClassifierBatches checks random models against the float64
// reference at batch sizes on both sides of the split threshold and with
// every kernel set.
func TestLinearClassifierBatches(t *testing.T) {
	r := newRand()
	const f, c = 13, 5
	w := randTensor(r, tensor.FP32, c, f).Float32s()
	b := randTensor(r, tensor.FP32, c).Float32s()
	model := onnxtest.NewMLModel(3).Input("x", onnx.TypeFloat, "N", f).Output("label").Output("probabilities").
		MLNode("lc", "LinearClassifier", []string{"x"}, []string{"label", "probabilities"}, onnxtest.AttrFloats("coefficients", w...),
			onnxtest.AttrFloats("intercepts", b...), onnxtest.AttrInts("classlabels_ints", 10, 11, 12, 13, 14), onnxtest.AttrString("post_transform", "SOFTMAX")).Bytes()
	for _, ks := range sgemm.Available() {
		for _, n := range []int{1, 7, 40} {
			t.Run(fmt.Sprintf("%s/N=%d", ks.Name(), n), func(t *testing.T) {
				x := randTensor(r, tensor.FP32, int64(n), f)
				outs := runModelWith(t, Options{Concurrency: 1, Kernels: ks.Name(), SplitRows: 8}, model, x)
				raw := refAffine(toRef(x).data, n, f, w, b)
				labels := newRef(int64(n))
				for i := range n {
					row := raw.data[i*c : i*c+c]
					labels.data[i] = float64(10 + slices.Index(row, slices.Max(row)))
				}
				expectClose(t, outs[0], labels)
				expectClose(t, outs[1], refTransform(raw, c, "SOFTMAX"))
			})
		}
	}
}

func TestLinearRegressor(t *testing.T) {
	x := f32(sh(2, 2), 1, 2, 3, -1)
	f := func(name string, attrs [][]byte, input *tensor.Tensor, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "LinearRegressor", []arg{in("x", input)}, 1, attrs...), input)
			expectClose(t, outs[0], want)
		})
	}
	f("one target", [][]byte{onnxtest.AttrFloats("coefficients", 0.5, -1), onnxtest.AttrFloats("intercepts", 2)}, x, rf(sh(2, 1), 0.5, 4.5))
	f("default targets, no intercepts", [][]byte{onnxtest.AttrFloats("coefficients", 0.5, -1)}, x, rf(sh(2, 1), -1.5, 2.5))
	f("PROBIT", [][]byte{onnxtest.AttrFloats("coefficients", 0.1, 0.05), onnxtest.AttrFloats("intercepts", 0.2), onnxtest.AttrString("post_transform", "PROBIT")}, x,
		rf(sh(2, 1), refProbit(0.4), refProbit(0.45)))
	two := [][]byte{onnxtest.AttrInt("targets", 2), onnxtest.AttrFloats("coefficients", 1, 0, 0.5, 0.5), onnxtest.AttrFloats("intercepts", 0, -1)}
	raw := rf(sh(2, 2), 1, 0.5, 3, 0)
	f("two targets", two, x, raw)
	for _, pt := range []string{"LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"} {
		f("two targets "+pt, append(slices.Clone(two), onnxtest.AttrString("post_transform", pt)), x, refTransform(raw, 2, pt))
	}
	xi := i64(sh(2, 2), 1, 2, 3, -1)
	f("INT64 input", two, xi, raw)
	f("1-D input", two, f32(sh(2), 3, -1), rf(sh(1, 2), 3, 0))
}

func TestScaler(t *testing.T) {
	f := func(name string, attrs [][]byte, x *tensor.Tensor, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "Scaler", []arg{in("x", x)}, 1, attrs...), x)
			if outs[0].DType != tensor.FP32 {
				t.Fatalf("output is %s, want FP32", outs[0].DType)
			}
			expectClose(t, outs[0], want)
		})
	}
	perFeature := [][]byte{onnxtest.AttrFloats("offset", 1, -2, 0.5), onnxtest.AttrFloats("scale", 2, 0.5, -1)}
	want := rf(sh(2, 3), -2, 2, 1.5, 4, 3.5, -2.5)
	f("per feature", perFeature, f32(sh(2, 3), 0, 2, -1, 3, 5, 3), want)
	f("per feature FP64", perFeature, f64(sh(2, 3), 0, 2, -1, 3, 5, 3), want)
	f("per feature INT64", perFeature, i64(sh(2, 3), 0, 2, -1, 3, 5, 3), want)
	f("per feature INT32", perFeature, i32s(sh(2, 3), 0, 2, -1, 3, 5, 3), want)
	f("per feature 1-D", perFeature, f32(sh(3), 0, 2, -1), rf(sh(3), -2, 2, 1.5))
	f("one value", [][]byte{onnxtest.AttrFloats("offset", 1), onnxtest.AttrFloats("scale", 3)}, f32(sh(2, 2, 2), 0, 1, 2, 3, 4, 5, 6, 7),
		rf(sh(2, 2, 2), -3, 0, 3, 6, 9, 12, 15, 18))
}

func TestNormalizer(t *testing.T) {
	x := f32(sh(3, 3), 1, -2, 2, 0, 0, 0, -1, -3, -2)
	f := func(norm string, x *tensor.Tensor, want ref) {
		t.Helper()
		t.Run(norm+"/"+x.DType.String(), func(t *testing.T) {
			outs := runModel(t, mlModel(1, "Normalizer", []arg{in("x", x)}, 1, onnxtest.AttrString("norm", norm)), x)
			expectClose(t, outs[0], want)
		})
	}
	// A zero norm copies the row; MAX divides by the largest value (-1 in
	// row 2), not the largest magnitude.
	f("MAX", x, rf(sh(3, 3), 0.5, -1, 1, 0, 0, 0, 1, 3, 2))
	f("MAX", f32(sh(1, 3), -1, 0, -2), rf(sh(1, 3), -1, 0, -2))
	f("L1", x, rf(sh(3, 3), 0.2, -0.4, 0.4, 0, 0, 0, -1.0/6, -0.5, -1.0/3))
	f("L2", x, rf(sh(3, 3), 1.0/3, -2.0/3, 2.0/3, 0, 0, 0, -1/math.Sqrt(14), -3/math.Sqrt(14), -2/math.Sqrt(14)))
	f("L2", i64(sh(1, 2), 3, -4), rf(sh(1, 2), 0.6, -0.8))
	f("L1", f32(sh(4), 1, 1, 1, -1), rf(sh(4), 0.25, 0.25, 0.25, -0.25))
	t.Run("default MAX", func(t *testing.T) {
		outs := runModel(t, mlModel(1, "Normalizer", []arg{in("x", x)}, 1), x)
		expectClose(t, outs[0], rf(sh(3, 3), 0.5, -1, 1, 0, 0, 0, 1, 3, 2))
	})
}

func TestBinarizer(t *testing.T) {
	f := func(x *tensor.Tensor, attrs [][]byte, want ref) {
		t.Helper()
		t.Run(x.DType.String(), func(t *testing.T) {
			outs := runModel(t, mlModel(1, "Binarizer", []arg{in("x", x)}, 1, attrs...), x)
			if outs[0].DType != x.DType {
				t.Fatalf("output is %s, want %s", outs[0].DType, x.DType)
			}
			expectClose(t, outs[0], want)
		})
	}
	f(f32(sh(2, 2), -1, 0, 0.5, 2), nil, rf(sh(2, 2), 0, 0, 1, 1))
	f(f64(sh(4), -1, 0.5, 0.75, 2), [][]byte{onnxtest.AttrFloat("threshold", 0.5)}, rf(sh(4), 0, 0, 1, 1))
	f(i64(sh(3), 1, 2, 3), [][]byte{onnxtest.AttrFloat("threshold", 1.5)}, rf(sh(3), 0, 1, 1))
	f(i32s(sh(3), -2, -1, 0), [][]byte{onnxtest.AttrFloat("threshold", -1)}, rf(sh(3), 0, 0, 1))
	t.Run("NaN", func(t *testing.T) {
		x := f32(sh(2), 1, float32(math.NaN()))
		expectInferError(t, mlModel(1, "Binarizer", []arg{in("x", x)}, 1), "input X[1] is NaN", x)
	})
}

func TestImputer(t *testing.T) {
	nan := math.NaN()
	f := func(name string, x *tensor.Tensor, attrs [][]byte, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "Imputer", []arg{in("x", x)}, 1, attrs...), x)
			if outs[0].DType != x.DType {
				t.Fatalf("output is %s, want %s", outs[0].DType, x.DType)
			}
			expectClose(t, outs[0], want)
		})
	}
	xf := f32(sh(2, 3), 1, float32(nan), 0, float32(nan), 5, float32(nan))
	f("NaN per feature", xf, [][]byte{onnxtest.AttrFloats("imputed_value_floats", 10, 20, 30), onnxtest.AttrFloat("replaced_value_float", float32(nan))},
		rf(sh(2, 3), 1, 20, 0, 10, 5, 30))
	f("NaN one value", xf, [][]byte{onnxtest.AttrFloats("imputed_value_floats", -1), onnxtest.AttrFloat("replaced_value_float", float32(nan))},
		rf(sh(2, 3), 1, -1, 0, -1, 5, -1))
	f("default replaced value 0", xf, [][]byte{onnxtest.AttrFloats("imputed_value_floats", 7)}, rf(sh(2, 3), 1, nan, 7, nan, 5, nan))
	f("FP64", f64(sh(3), 2, nan, 2.5), [][]byte{onnxtest.AttrFloats("imputed_value_floats", 9), onnxtest.AttrFloat("replaced_value_float", 2.5)},
		rf(sh(3), 2, nan, 9))
	f("INT64", i64(sh(2, 2), -1, 3, 4, -1), [][]byte{onnxtest.AttrInts("imputed_value_int64s", 100, 200), onnxtest.AttrInt("replaced_value_int64", -1)},
		rf(sh(2, 2), 100, 3, 4, 200))
	f("INT32", i32s(sh(3), 0, 1, 0), [][]byte{onnxtest.AttrInts("imputed_value_int64s", 5)}, rf(sh(3), 5, 1, 5))
	f("INT32 replaced value out of range", i32s(sh(2), 0, 1),
		[][]byte{onnxtest.AttrInts("imputed_value_int64s", 5), onnxtest.AttrInt("replaced_value_int64", 1<<40)}, rf(sh(2), 0, 1))
}

func TestArrayFeatureExtractor(t *testing.T) {
	x := f32(sh(2, 4), 0, 1, 2, 3, 10, 11, 12, 13)
	f := func(name string, x, idx *tensor.Tensor, konst bool, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			a := in("i", idx)
			inputs := []*tensor.Tensor{x, idx}
			if konst {
				a, inputs = cst("i", idx), inputs[:1]
			}
			outs := runModel(t, mlModel(1, "ArrayFeatureExtractor", []arg{in("x", x), a}, 1), inputs...)
			expectClose(t, outs[0], want)
		})
	}
	f("constant indices", x, i64(sh(2), 3, 1), true, rf(sh(2, 2), 3, 1, 13, 11))
	f("input indices", x, i64(sh(3), 0, 0, 2), false, rf(sh(2, 3), 0, 0, 2, 10, 10, 12))
	f("1-D", f32(sh(4), 5, 6, 7, 8), i64(sh(1), 2), true, rf(sh(1, 1), 7))
	f("rank 3", iotaT(2, 2, 3), i64(sh(1, 2), 2, 0), true, rf(sh(2, 2, 2), 2, 0, 5, 3, 8, 6, 11, 9))
	f("INT64", i64(sh(1, 3), 7, 8, 9), i64(sh(1), 1), true, rf(sh(1, 1), 8))
	f("FP64", f64(sh(1, 3), 7, 8, 9), i64(sh(2), 2, 2), false, rf(sh(1, 2), 9, 9))
	f("INT32", i32s(sh(1, 3), 7, 8, 9), i64(sh(1), 0), true, rf(sh(1, 1), 7))
	t.Run("BYTES", func(t *testing.T) {
		xs := strT(sh(2, 3), "a", "b", "c", "d", "e", "")
		outs := runModel(t, mlModel(1, "ArrayFeatureExtractor", []arg{in("x", xs), cst("i", i64(sh(2), 2, 0))}, 1), xs)
		expectStrings(t, outs[0], sh(2, 2), "c", "a", "", "d")
	})
	for _, bad := range []int64{4, -1} {
		t.Run(fmt.Sprint("index ", bad), func(t *testing.T) {
			idx := i64(sh(2), 0, bad)
			expectInferError(t, mlModel(1, "ArrayFeatureExtractor", []arg{in("x", x), in("i", idx)}, 1),
				fmt.Sprintf("index Y[1] = %d out of range [0, 4)", bad), x, idx)
		})
	}
}

func TestFeatureVectorizer(t *testing.T) {
	a := f32(sh(2, 2), 1, 2, 3, 4)
	b := i64(sh(2, 3), 5, 6, 7, 8, 9, 10)
	c := f64(sh(2, 1), 0.5, -0.5)
	f := func(name string, dims []int64, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "FeatureVectorizer", []arg{in("a", a), in("b", b), in("c", c)}, 1,
				onnxtest.AttrInts("inputdimensions", dims...)), a, b, c)
			expectClose(t, outs[0], want)
		})
	}
	f("exact", []int64{2, 3, 1}, rf(sh(2, 6), 1, 2, 5, 6, 7, 0.5, 3, 4, 8, 9, 10, -0.5))
	f("truncated", []int64{1, 2, 1}, rf(sh(2, 4), 1, 5, 6, 0.5, 3, 8, 9, -0.5))
	f("padded", []int64{3, 3, 2}, rf(sh(2, 8), 1, 2, 0, 5, 6, 7, 0.5, 0, 3, 4, 0, 8, 9, 10, -0.5, 0))
	t.Run("INT32 and 1-D", func(t *testing.T) {
		x, y := i32s(sh(2), 1, 2), f32(sh(1, 2), 3, 4)
		outs := runModel(t, mlModel(1, "FeatureVectorizer", []arg{in("x", x), in("y", y)}, 1, onnxtest.AttrInts("inputdimensions", 2, 2)), x, y)
		expectClose(t, outs[0], rf(sh(1, 4), 1, 2, 3, 4))
	})
}

func TestOneHotEncoder(t *testing.T) {
	cats := onnxtest.AttrInts("cats_int64s", 4, 1, 9)
	f := func(name string, x *tensor.Tensor, attrs [][]byte, want ref) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, mlModel(1, "OneHotEncoder", []arg{in("x", x)}, 1, attrs...), x)
			expectClose(t, outs[0], want)
		})
	}
	f("INT64", i64(sh(2, 2), 1, 9, 4, 5), [][]byte{cats}, rf(sh(2, 2, 3), 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0))
	f("INT32", i32s(sh(2), 9, 1), [][]byte{cats}, rf(sh(2, 3), 0, 0, 1, 0, 1, 0))
	f("FP32 truncated", f32(sh(3), 1.9, -0.5, float32(math.NaN())), [][]byte{onnxtest.AttrInts("cats_int64s", 1, 0)}, rf(sh(3, 2), 1, 0, 0, 1, 0, 0))
	f("FP64", f64(sh(1), 4), [][]byte{cats, onnxtest.AttrInt("zeros", 0)}, rf(sh(1, 3), 1, 0, 0))
	f("duplicate category: last position", i64(sh(1), 1), [][]byte{onnxtest.AttrInts("cats_int64s", 1, 2, 1)}, rf(sh(1, 3), 0, 0, 1))
	f("far-apart categories", i64(sh(3), -1<<40, 1<<50, 3), [][]byte{onnxtest.AttrInts("cats_int64s", 1<<50, 3, -1<<40)},
		rf(sh(3, 3), 0, 0, 1, 1, 0, 0, 0, 1, 0))
	xs := strT(sh(1, 3), "red", "blue", "mauve")
	strCats := onnxtest.AttrStrings("cats_strings", "blue", "green", "red")
	f("BYTES", xs, [][]byte{strCats}, rf(sh(1, 3, 3), 0, 0, 1, 1, 0, 0, 0, 0, 0))
	f("BYTES zeros=1", xs, [][]byte{strCats, onnxtest.AttrInt("zeros", 1)}, rf(sh(1, 3, 3), 0, 0, 1, 1, 0, 0, 0, 0, 0))
	t.Run("zeros=0 unknown string", func(t *testing.T) {
		expectInferError(t, mlModel(1, "OneHotEncoder", []arg{in("x", xs)}, 1, strCats, onnxtest.AttrInt("zeros", 0)),
			"input X[2] is in no category and attribute zeros is 0", xs)
	})
	t.Run("zeros=0 unknown int", func(t *testing.T) {
		x := i64(sh(2), 4, 3)
		expectInferError(t, mlModel(1, "OneHotEncoder", []arg{in("x", x)}, 1, cats, onnxtest.AttrInt("zeros", 0)),
			"input X[1] is in no category", x)
	})
}

func TestLabelEncoder(t *testing.T) {
	nan := float32(math.NaN())
	keysS := onnxtest.AttrStrings("keys_strings", "a", "b", "c", "a")
	keysI := onnxtest.AttrInts("keys_int64s", 7, -3, 1<<40, 7)
	keysF := onnxtest.AttrFloats("keys_floats", 0.5, nan, -2, 0.5)
	valsS := onnxtest.AttrStrings("values_strings", "x", "y", "z", "w")
	valsI := onnxtest.AttrInts("values_int64s", 10, 20, 30, 40)
	valsF := onnxtest.AttrFloats("values_floats", 1.5, 2.5, 3.5, 4.5)
	xs := strT(sh(2, 3), "b", "a", "zz", "c", "", "a") // "zz" and "" are in no key
	xi := i64(sh(2, 3), -3, 7, 0, 1<<40, 8, 7)
	xf := f32(sh(2, 3), nan, 0.5, 1, -2, float32(math.Copysign(0, -1)), 0.5)
	run := func(t *testing.T, x *tensor.Tensor, ml int64, attrs ...[]byte) *tensor.Tensor {
		t.Helper()
		return runModel(t, mlModel(ml, "LabelEncoder", []arg{in("x", x)}, 1, attrs...), x)[0]
	}
	// The same pattern for every key type: positions [1 0 - 2 - 0], a key
	// listed twice maps to its first value.
	inputs := []struct {
		name string
		keys []byte
		x    *tensor.Tensor
	}{{"strings", keysS, xs}, {"int64s", keysI, xi}, {"floats", keysF, xf}}
	for _, k := range inputs {
		t.Run(k.name+"->strings", func(t *testing.T) {
			expectStrings(t, run(t, k.x, 2, k.keys, valsS), sh(2, 3), "y", "x", "_Unused", "z", "_Unused", "x")
			expectStrings(t, run(t, k.x, 3, k.keys, valsS, onnxtest.AttrString("default_string", "?")), sh(2, 3), "y", "x", "?", "z", "?", "x")
		})
		t.Run(k.name+"->int64s", func(t *testing.T) {
			expectClose(t, run(t, k.x, 2, k.keys, valsI), rf(sh(2, 3), 20, 10, -1, 30, -1, 10))
			expectClose(t, run(t, k.x, 2, k.keys, valsI, onnxtest.AttrInt("default_int64", 99)), rf(sh(2, 3), 20, 10, 99, 30, 99, 10))
		})
		t.Run(k.name+"->floats", func(t *testing.T) {
			got := run(t, k.x, 2, k.keys, valsF)
			expectClose(t, got, rf(sh(2, 3), 2.5, 1.5, 0, 3.5, 0, 1.5))
			if d := got.Float32s()[2]; !math.Signbit(float64(d)) {
				t.Fatalf("default_float = %v, want -0", d)
			}
			expectClose(t, run(t, k.x, 2, k.keys, valsF, onnxtest.AttrFloat("default_float", 0.25)), rf(sh(2, 3), 2.5, 1.5, 0.25, 3.5, 0.25, 1.5))
		})
	}
	t.Run("float key -0 matches 0", func(t *testing.T) {
		x := f32(sh(1), float32(math.Copysign(0, -1)))
		expectClose(t, run(t, x, 2, onnxtest.AttrFloats("keys_floats", 0), onnxtest.AttrInts("values_int64s", 5)), rf(sh(1), 5))
	})
	t.Run("opset 1 strings->int64", func(t *testing.T) {
		classes := onnxtest.AttrStrings("classes_strings", "cat", "dog", "cat")
		expectClose(t, run(t, strT(sh(3), "dog", "cat", "cow"), 1, classes), rf(sh(3), 1, 2, -1))
		expectClose(t, run(t, strT(sh(1), "cow"), 1, classes, onnxtest.AttrInt("default_int64", 42)), rf(sh(1), 42))
	})
	t.Run("opset 1 int64->strings", func(t *testing.T) {
		classes := onnxtest.AttrStrings("classes_strings", "cat", "dog")
		expectStrings(t, run(t, i64(sh(4), 1, 0, 2, -1), 1, classes), sh(4), "dog", "cat", "_Unused", "_Unused")
		expectStrings(t, run(t, i64(sh(1), 5), 1, classes, onnxtest.AttrString("default_string", "none")), sh(1), "none")
	})
}

// TestStringsPassThrough checks that BYTES values survive the operators
// that move them, including strings outside the vocabulary.
func TestStringsPassThrough(t *testing.T) {
	x := strT(sh(2, 2), "dog", "unknown-1", "", "cat")
	m := onnxtest.NewMLModel(2).Input("x", onnx.TypeString, "N", 2).
		Output("same").Output("codes").Output("picked").Output("consts").
		Node("id", "Identity", []string{"x"}, []string{"same"}).
		MLNode("le", "LabelEncoder", []string{"x"}, []string{"codes"}, onnxtest.AttrStrings("keys_strings", "cat", "dog"), onnxtest.AttrInts("values_int64s", 1, 2)).
		Init("i", i64(sh(2), 1, 0)).
		Node("g", "Gather", []string{"x", "i"}, []string{"picked"}, onnxtest.AttrInt("axis", 1)).
		Node("c", "Constant", nil, []string{"consts"}, onnxtest.AttrStrings("value_strings", "dog", "fish"))
	be, err := LoadBytes(m.Bytes(), Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	md := be.Metadata()
	if md.Inputs[0].DType != tensor.Bytes || md.Outputs[0].DType != tensor.Bytes || md.Outputs[1].DType != tensor.Int64 {
		t.Fatalf("metadata: inputs %+v outputs %+v", md.Inputs, md.Outputs)
	}
	for range 2 { // the second call reuses the worker's buffers
		outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		expectStrings(t, outs[0], sh(2, 2), "dog", "unknown-1", "", "cat")
		expectClose(t, outs[1], rf(sh(2, 2), 2, -1, -1, 1))
		expectStrings(t, outs[2], sh(2, 2), "unknown-1", "dog", "cat", "")
		expectStrings(t, outs[3], sh(2), "dog", "fish")
	}
	// A wrong BYTES input is the caller's error.
	bad := &tensor.Tensor{Name: "x", DType: tensor.Bytes, Shape: sh(1, 2), Data: []byte{9, 0, 0, 0, 'a'}}
	if _, err := be.Infer(context.Background(), []*tensor.Tensor{bad}); !errors.Is(err, backends.ErrInvalidInput) {
		t.Fatalf("Infer(malformed BYTES) = %v, want ErrInvalidInput", err)
	}
}

func TestZipMap(t *testing.T) {
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	f := func(name string, labels []byte, key int32, want []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			m := onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 3).OutputSeqMap("probs", key, onnx.TypeFloat).
				MLNode("zm", "ZipMap", []string{"x"}, []string{"probs"}, labels)
			be, err := LoadBytes(m.Bytes(), Options{Concurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			spec := be.Metadata().Outputs[0]
			if spec.Name != "probs" || spec.DType != tensor.FP32 || !slices.Equal(spec.Shape, sh(-1, 3)) || !slices.Equal(spec.Keys, want) {
				t.Fatalf("output spec %+v, want FP32 [-1 3] with keys %q", spec, want)
			}
			outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
			if err != nil {
				t.Fatal(err)
			}
			expectClose(t, outs[0], toRef(x))
		})
	}
	f("string keys", onnxtest.AttrStrings("classlabels_strings", "a", "b", "c"), onnx.TypeString, []string{"a", "b", "c"})
	f("int keys", onnxtest.AttrInts("classlabels_int64s", 3, -1, 10), onnx.TypeInt64, []string{"3", "-1", "10"})

	t.Run("classifier pipeline", func(t *testing.T) {
		// skl2onnx's shape for a classifier: label, and probabilities as
		// a ZipMap, with no ai.onnx opset import at all.
		m := onnxtest.NewModel(0).Import(mlDomain, 1).Input("x", onnx.TypeFloat, "N", 2).
			OutputTyped("label", onnx.TypeInt64, "N").OutputSeqMap("output_probability", onnx.TypeInt64, onnx.TypeFloat).
			MLNode("lc", "LinearClassifier", []string{"x"}, []string{"label", "probs"}, onnxtest.AttrFloats("coefficients", 1, 0, 0, 1),
				onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrString("post_transform", "SOFTMAX")).
			MLNode("zm", "ZipMap", []string{"probs"}, []string{"output_probability"}, onnxtest.AttrInts("classlabels_int64s", 0, 1))
		be, err := LoadBytes(m.Bytes(), Options{Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		if k := be.Metadata().Outputs[1].Keys; !slices.Equal(k, []string{"0", "1"}) {
			t.Fatalf("keys %q", k)
		}
		xi := f32(sh(1, 2), 0, 1)
		outs, err := be.Infer(context.Background(), []*tensor.Tensor{xi})
		if err != nil {
			t.Fatal(err)
		}
		expectClose(t, outs[0], rf(sh(1), 1))
		expectClose(t, outs[1], rf(sh(1, 2), refSoftmaxRow([]float64{0, 1}, false)...))
	})
}

// TestMLInferAllocations checks that a numeric ONNX-ML pipeline keeps
// Infer's allocation budget (see TestInferAllocations), and that BYTES
// inputs add none.
func TestMLInferAllocations(t *testing.T) {
	m := onnxtest.NewMLModel(2).Input("x", onnx.TypeFloat, "N", 3).Input("s", onnx.TypeString, "N").
		Output("label").OutputSeqMap("probs", onnx.TypeInt64, onnx.TypeFloat).Output("code").
		MLNode("sc", "Scaler", []string{"x"}, []string{"xs"}, onnxtest.AttrFloats("offset", 1), onnxtest.AttrFloats("scale", 2)).
		MLNode("lc", "LinearClassifier", []string{"xs"}, []string{"label", "p"}, onnxtest.AttrFloats("coefficients", 1, 0, 0, 0, 1, 1),
			onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrString("post_transform", "LOGISTIC")).
		MLNode("zm", "ZipMap", []string{"p"}, []string{"probs"}, onnxtest.AttrInts("classlabels_int64s", 0, 1)).
		MLNode("le", "LabelEncoder", []string{"s"}, []string{"code"}, onnxtest.AttrStrings("keys_strings", "a"), onnxtest.AttrInts("values_int64s", 1))
	be, err := LoadBytes(m.Bytes(), Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := []*tensor.Tensor{randTensor(newRand(), tensor.FP32, 16, 3), tensor.FromStrings("s", sh(16), make([]string, 16))}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := be.Infer(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("Infer allocates %v times per call, want <= 2", allocs)
	}
}

// TestMLLoadErrors checks that bad ONNX-ML models fail at load with an
// error naming the node and the attribute or input.
func TestMLLoadErrors(t *testing.T) {
	x := f32(sh(2, 2), 1, 2, 3, 4)
	f := func(name string, model []byte, sentinel error, want string) {
		t.Helper()
		expectLoadError(t, name, model, sentinel, want)
	}
	one := func(op string, attrs ...[]byte) []byte { return mlModel(1, op, []arg{in("x", x)}, 1, attrs...) }
	lc := func(attrs ...[]byte) []byte { return mlModel(1, "LinearClassifier", []arg{in("x", x)}, 2, attrs...) }
	coef := onnxtest.AttrFloats("coefficients", 1, 2, 3, 4)

	f("unknown op", one("SVMClassifier"), ErrUnsupported, `node "n" (SVMClassifier): unsupported: operator "SVMClassifier" of domain ai.onnx.ml`)
	f("ml opset 4", func() []byte {
		return onnxtest.NewModel(15).Import(mlDomain, 4).Input("x", onnx.TypeFloat, 2).Output("y").
			MLNode("n", "Binarizer", []string{"x"}, []string{"y"}).Bytes()
	}(), ErrUnsupported, "ai.onnx.ml opset 4 (supported: 1 to 3)")
	f("unknown attribute", one("Binarizer", onnxtest.AttrFloat("treshold", 1)), ErrUnsupported, `node "n" (Binarizer): unsupported: attribute "treshold"`)

	f("LinearClassifier no coefficients", lc(onnxtest.AttrInts("classlabels_ints", 0, 1)), ErrInvalidModel, `node "n" (LinearClassifier): invalid model: attribute coefficients is required`)
	f("LinearClassifier coefficient count", lc(onnxtest.AttrFloats("coefficients", 1, 2, 3), onnxtest.AttrFloats("intercepts", 0, 0), onnxtest.AttrInts("classlabels_ints", 0, 1)),
		ErrInvalidModel, "attribute coefficients has 3 values, want 4")
	f("LinearClassifier ragged coefficients", lc(onnxtest.AttrFloats("coefficients", 1, 2, 3), onnxtest.AttrInts("classlabels_ints", 0, 1)),
		ErrInvalidModel, "attribute coefficients has 3 values, not a whole number of rows of 2 features")
	f("LinearClassifier label count", lc(coef, onnxtest.AttrInts("classlabels_ints", 0, 1, 2)), ErrInvalidModel,
		"attribute classlabels_ints has 3 labels, want 2 (one per coefficient row)")
	f("LinearClassifier no labels", lc(coef), ErrInvalidModel, "no class labels")
	f("LinearClassifier both labels", lc(coef, onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrStrings("classlabels_strings", "a", "b")),
		ErrInvalidModel, "attributes classlabels_ints and classlabels_strings are both set")
	f("LinearClassifier post_transform", lc(coef, onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrString("post_transform", "SIGMOID")),
		ErrInvalidModel, `node "n" (LinearClassifier): invalid model: post_transform "SIGMOID"`)
	f("LinearClassifier post_transform type", lc(coef, onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrInt("post_transform", 1)),
		ErrInvalidModel, "attribute post_transform has type INT, want STRING")
	f("LinearClassifier multi_class", lc(coef, onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrInt("multi_class", 2)),
		ErrInvalidModel, "attribute multi_class = 2")
	f("LinearClassifier binary PROBIT", lc(onnxtest.AttrFloats("coefficients", 1, 2), onnxtest.AttrInts("classlabels_ints", 0, 1), onnxtest.AttrString("post_transform", "PROBIT")),
		ErrUnsupported, "post_transform PROBIT with one coefficient row and two class labels")
	f("LinearClassifier three labels one row", lc(onnxtest.AttrFloats("coefficients", 1, 2), onnxtest.AttrInts("classlabels_ints", 0, 1, 2)),
		ErrInvalidModel, "attribute classlabels_ints has 3 labels for one coefficient row")
	f("LinearClassifier BYTES input", mlModel(1, "LinearClassifier", []arg{in("x", strT(sh(1, 2), "a", "b"))}, 2, coef,
		onnxtest.AttrInts("classlabels_ints", 0, 1)), ErrUnsupported, `node "n" (LinearClassifier): unsupported: input 0 is BYTES`)
	f("LinearClassifier rank 3", mlModel(1, "LinearClassifier", []arg{in("x", iotaT(1, 2, 2))}, 2, coef, onnxtest.AttrInts("classlabels_ints", 0, 1)),
		ErrInvalidModel, "input X has shape [1 2 2], want [N, F] or [F]")

	f("LinearRegressor targets", one("LinearRegressor", coef, onnxtest.AttrInt("targets", 3)), ErrInvalidModel,
		"attribute coefficients has 4 values, want 6 (3 targets × 2 features)")
	f("LinearRegressor intercepts", one("LinearRegressor", coef, onnxtest.AttrInt("targets", 2), onnxtest.AttrFloats("intercepts", 1)), ErrInvalidModel,
		"attribute intercepts has 1 values, want 2 (one per target)")
	f("LinearRegressor one target LOGISTIC", one("LinearRegressor", onnxtest.AttrFloats("coefficients", 1, 2), onnxtest.AttrString("post_transform", "LOGISTIC")),
		ErrUnsupported, "post_transform LOGISTIC with one target")
	f("LinearRegressor zero targets", one("LinearRegressor", coef, onnxtest.AttrInt("targets", 0)), ErrInvalidModel, "attribute targets = 0")

	f("Scaler no scale", one("Scaler", onnxtest.AttrFloats("offset", 1)), ErrInvalidModel, `node "n" (Scaler): invalid model: attribute scale is required`)
	f("Scaler sizes", one("Scaler", onnxtest.AttrFloats("offset", 1), onnxtest.AttrFloats("scale", 1, 2)), ErrInvalidModel, "attribute offset has 1 values, attribute scale 2")
	f("Scaler per feature", one("Scaler", onnxtest.AttrFloats("offset", 1, 2, 3), onnxtest.AttrFloats("scale", 1, 2, 3)), ErrInvalidModel,
		"attribute scale has 3 values, want 1 or one per feature (2)")
	f("Normalizer norm", one("Normalizer", onnxtest.AttrString("norm", "L3")), ErrInvalidModel, `attribute norm = "L3", want MAX, L1 or L2`)
	f("Binarizer threshold type", one("Binarizer", onnxtest.AttrInt("threshold", 1)), ErrInvalidModel, "attribute threshold has type INT, want FLOAT")
	f("Imputer none", one("Imputer"), ErrInvalidModel, "exactly one of the attributes imputed_value_floats and imputed_value_int64s")
	f("Imputer both", one("Imputer", onnxtest.AttrFloats("imputed_value_floats", 1), onnxtest.AttrInts("imputed_value_int64s", 1)), ErrInvalidModel, "exactly one of")
	f("Imputer type", one("Imputer", onnxtest.AttrInts("imputed_value_int64s", 1)), ErrInvalidModel,
		"input X is FP32 but the imputed values are imputed_value_int64s")
	f("Imputer count", one("Imputer", onnxtest.AttrFloats("imputed_value_floats", 1, 2, 3)), ErrInvalidModel,
		"attribute imputed_value_floats has 3 values, want 1 or one per feature (2)")
	f("OneHotEncoder no categories", one("OneHotEncoder"), ErrInvalidModel, "exactly one of the attributes cats_int64s and cats_strings")
	f("OneHotEncoder string categories, FP32 input", one("OneHotEncoder", onnxtest.AttrStrings("cats_strings", "a")), ErrUnsupported,
		"input X is FP32, want one of [BYTES] (the categories are cats_strings)")
	f("OneHotEncoder zeros", one("OneHotEncoder", onnxtest.AttrInts("cats_int64s", 1), onnxtest.AttrInt("zeros", 2)), ErrInvalidModel, "attribute zeros = 2")
	f("ArrayFeatureExtractor constant index", mlModel(1, "ArrayFeatureExtractor", []arg{in("x", x), cst("i", i64(sh(1), 2))}, 1),
		ErrInvalidModel, `node "n" (ArrayFeatureExtractor): invalid model: index Y[0] = 2 out of range [0, 2)`)
	f("ArrayFeatureExtractor INT32 indices", mlModel(1, "ArrayFeatureExtractor", []arg{in("x", x), cst("i", i32s(sh(1), 0))}, 1),
		ErrUnsupported, "input Y is INT32, want one of [INT64]")
	f("ArrayFeatureExtractor no indices", mlModel(1, "ArrayFeatureExtractor", []arg{in("x", x), cst("i", i64(sh(0)))}, 1),
		ErrInvalidModel, "input Y has no indices")
	f("FeatureVectorizer dims", mlModel(1, "FeatureVectorizer", []arg{in("x", x), in("y", x)}, 1, onnxtest.AttrInts("inputdimensions", 2)),
		ErrInvalidModel, "attribute inputdimensions has 1 values for 2 inputs")
	f("FeatureVectorizer rows", mlModel(1, "FeatureVectorizer", []arg{in("x", x), in("y", iotaT(3, 2))}, 1, onnxtest.AttrInts("inputdimensions", 2, 2)),
		ErrInvalidModel, "input 1 has 3 rows (shape [3 2]), input 0 has 2")

	le := func(ml int64, x *tensor.Tensor, attrs ...[]byte) []byte {
		return mlModel(ml, "LabelEncoder", []arg{in("x", x)}, 1, attrs...)
	}
	xs := strT(sh(2), "a", "b")
	f("LabelEncoder lengths", le(2, xs, onnxtest.AttrStrings("keys_strings", "a", "b"), onnxtest.AttrInts("values_int64s", 1)), ErrInvalidModel,
		"attribute values_int64s has 1 values, keys_strings 2: they must have as many")
	f("LabelEncoder two keys", le(2, xs, onnxtest.AttrStrings("keys_strings", "a"), onnxtest.AttrInts("keys_int64s", 1), onnxtest.AttrInts("values_int64s", 1)),
		ErrInvalidModel, "attributes keys_strings and keys_int64s are both set")
	f("LabelEncoder no values", le(2, xs, onnxtest.AttrStrings("keys_strings", "a")), ErrInvalidModel, "one of keys_strings")
	f("LabelEncoder key type", le(2, x, onnxtest.AttrStrings("keys_strings", "a"), onnxtest.AttrInts("values_int64s", 1)), ErrUnsupported,
		"input X is FP32, want one of [BYTES] (the keys are keys_strings)")
	f("LabelEncoder-1 attribute at opset 2", le(2, xs, onnxtest.AttrStrings("classes_strings", "a")), ErrInvalidModel,
		"attribute classes_strings is LabelEncoder-1's")
	f("LabelEncoder-2 attribute at opset 1", le(1, xs, onnxtest.AttrStrings("classes_strings", "a"), onnxtest.AttrStrings("keys_strings", "a")),
		ErrInvalidModel, `node "n" (LabelEncoder): invalid model: attribute keys_strings is LabelEncoder-2's`)
	f("LabelEncoder-1 FP32 input", le(1, x, onnxtest.AttrStrings("classes_strings", "a")), ErrUnsupported, "input X is FP32")

	zm := func(key int32, labels ...[]byte) []byte {
		return onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).OutputSeqMap("z", key, onnx.TypeFloat).
			MLNode("zm", "ZipMap", []string{"x"}, []string{"z"}, labels...).Bytes()
	}
	f("ZipMap key type", zm(onnx.TypeInt64, onnxtest.AttrStrings("classlabels_strings", "a", "b")), ErrInvalidModel,
		`graph output "z": invalid model: declared type is not seq(map(string, float)), which node "zm" (ZipMap) produces`)
	f("ZipMap duplicate keys", zm(onnx.TypeInt64, onnxtest.AttrInts("classlabels_int64s", 1, 1)), ErrInvalidModel, `class label "1" appears twice`)
	f("ZipMap both keys", zm(onnx.TypeInt64, onnxtest.AttrInts("classlabels_int64s", 1, 2), onnxtest.AttrStrings("classlabels_strings", "a", "b")), ErrInvalidModel,
		"exactly one of the attributes classlabels_strings and classlabels_int64s must be set")
	f("ZipMap value type", onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).OutputSeqMap("z", onnx.TypeInt64, onnx.TypeDouble).
		MLNode("zm", "ZipMap", []string{"x"}, []string{"z"}, onnxtest.AttrInts("classlabels_int64s", 1, 2)).Bytes(), ErrInvalidModel,
		"declared type is not seq(map(int64, float))")
	f("ZipMap declared as a tensor", onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).OutputTyped("z", onnx.TypeFloat, "N", 2).
		MLNode("zm", "ZipMap", []string{"x"}, []string{"z"}, onnxtest.AttrInts("classlabels_int64s", 1, 2)).Bytes(), ErrInvalidModel,
		`graph output "z": invalid model: declared as a tensor, but node "zm" (ZipMap) produces a sequence of maps`)
	f("ZipMap key count", zm(onnx.TypeInt64, onnxtest.AttrInts("classlabels_int64s", 1, 2, 3)), ErrInvalidModel,
		`node "zm" (ZipMap): invalid model: input X has 2 columns (shape [2 2]), ZipMap has 3 keys`)
	f("ZipMap output used", onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).Output("y").
		MLNode("zm", "ZipMap", []string{"x"}, []string{"z"}, onnxtest.AttrInts("classlabels_int64s", 1, 2)).
		Node("id", "Identity", []string{"z"}, []string{"y"}).Bytes(), ErrUnsupported,
		`node "id" (Identity): unsupported: input "z" is the output of node "zm" (ZipMap), a sequence of maps`)
	f("sequence output not from ZipMap", onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).OutputSeqMap("y", onnx.TypeInt64, onnx.TypeFloat).
		Node("id", "Identity", []string{"x"}, []string{"y"}).Bytes(), ErrUnsupported, `graph output "y": unsupported: non-tensor type`)
	f("BYTES into Add", onnxtest.NewModel(13).Input("x", onnx.TypeString, 2).Output("y").Node("a", "Add", []string{"x", "x"}, []string{"y"}).Bytes(),
		ErrUnsupported, `node "a" (Add): unsupported: input 0 is BYTES`)
	f("Cast to STRING", onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2).Output("y").Node("c", "Cast", []string{"x"}, []string{"y"}, onnxtest.AttrInt("to", onnx.TypeString)).Bytes(),
		ErrUnsupported, "cast to element type 8")
	f("declared label type", onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", 2).OutputTyped("label", onnx.TypeInt64, "N").Output("p").
		MLNode("lc", "LinearClassifier", []string{"x"}, []string{"label", "p"}, coef, onnxtest.AttrStrings("classlabels_strings", "a", "b")).Bytes(),
		ErrInvalidModel, `graph output "label" is declared as element type 7 but computes BYTES`)
}

// TestMLOpsetImports checks the opset_import handling of ONNX-ML models.
func TestMLOpsetImports(t *testing.T) {
	x := f32(sh(1, 2), 1, -1)
	model := func(m *onnxtest.Model) []byte {
		return m.Input("x", onnx.TypeFloat, "N", 2).Output("y").MLNode("b", "Binarizer", []string{"x"}, []string{"y"}).Bytes()
	}
	for name, m := range map[string]*onnxtest.Model{
		"ml only":          onnxtest.NewModel(0).Import(mlDomain, 3),
		"both":             onnxtest.NewModel(13).Import(mlDomain, 1),
		"ml not imported":  onnxtest.NewModel(13),
		"ai.onnx spelled":  onnxtest.NewModel(0).Import("ai.onnx", 17).Import(mlDomain, 2),
		"unrelated domain": onnxtest.NewModel(0).Import(mlDomain, 2).Import("com.microsoft", 1),
	} {
		t.Run(name, func(t *testing.T) {
			outs := runModel(t, model(m), x)
			expectClose(t, outs[0], rf(sh(1, 2), 1, 0))
		})
	}
	if _, err := LoadBytes(model(onnxtest.NewModel(0).Import("com.microsoft", 1)), Options{}); err == nil ||
		!strings.Contains(err.Error(), "no opset_import for the ai.onnx domain") {
		t.Fatalf("LoadBytes without ai.onnx or ai.onnx.ml import = %v", err)
	}
}

// BenchmarkLinearClassifier runs a LinearClassifier (SOFTMAX) through
// Infer; /dot computes the same scores with plain dot products in the
// kernel's place, the alternative to the SGEMM driver.
func BenchmarkLinearClassifier(b *testing.B) {
	for _, sz := range []struct{ f, c int }{{4, 3}, {13, 3}, {64, 10}} {
		r := newRand()
		w := randTensor(r, tensor.FP32, int64(sz.c), int64(sz.f)).Float32s()
		bias := randTensor(r, tensor.FP32, int64(sz.c)).Float32s()
		model := onnxtest.NewMLModel(1).Input("x", onnx.TypeFloat, "N", sz.f).Output("label").Output("p").
			MLNode("lc", "LinearClassifier", []string{"x"}, []string{"label", "p"}, onnxtest.AttrFloats("coefficients", w...),
				onnxtest.AttrFloats("intercepts", bias...), onnxtest.AttrInts("classlabels_ints", make([]int64, sz.c)...), onnxtest.AttrString("post_transform", "SOFTMAX")).Bytes()
		be, err := LoadBytes(model, Options{Concurrency: 1})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 64} {
			x := randTensor(r, tensor.FP32, int64(n), int64(sz.f))
			in := []*tensor.Tensor{x}
			b.Run(fmt.Sprintf("F=%d/C=%d/batch=%d/gemm", sz.f, sz.c, n), func(b *testing.B) {
				for b.Loop() {
					if _, err := be.Infer(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
			xs, y := x.Float32s(), make([]float32, n*sz.c)
			b.Run(fmt.Sprintf("F=%d/C=%d/batch=%d/dot", sz.f, sz.c, n), func(b *testing.B) {
				for b.Loop() {
					for i := range n {
						xr := xs[i*sz.f : i*sz.f+sz.f]
						for j := range sz.c {
							s := bias[j]
							for k, v := range w[j*sz.f : j*sz.f+sz.f] {
								s += v * xr[k]
							}
							y[i*sz.c+j] = s
						}
					}
				}
			})
			ks := bestKernels(b)
			pb := ks.Pack(make([]float32, ks.PackedLen(sz.f, sz.c)), true, sz.f, sz.c, w, sz.f, 1)
			pb.Bias = ks.PackBias(bias, sz.c, 1)
			b.Run(fmt.Sprintf("F=%d/C=%d/batch=%d/gemm-kernel", sz.f, sz.c, n), func(b *testing.B) {
				for b.Loop() {
					ks.Gemm(n, xs, sz.f, &pb, y, sz.c, sgemm.AddBias)
				}
			})
		}
	}
}

// bestKernels returns the best kernel set.
func bestKernels(b *testing.B) *sgemm.Kernels {
	ks, err := sgemm.Lookup("")
	if err != nil {
		b.Fatal(err)
	}
	return ks
}

// TestMLFuzzSeeds checks that FuzzLoadBytes's ONNX-ML seeds load and run,
// so that the fuzzer starts from models that exercise the operators.
func TestMLFuzzSeeds(t *testing.T) {
	for i, b := range mlFuzzSeeds() {
		be, err := LoadBytes(b, Options{Concurrency: 1})
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		var inputs []*tensor.Tensor
		for _, spec := range be.Metadata().Inputs {
			shape := clone(spec.Shape)
			for d := range shape {
				if shape[d] < 0 {
					shape[d] = 2
				}
			}
			if spec.DType == tensor.Bytes {
				inputs = append(inputs, tensor.FromStrings(spec.Name, shape, fuzzStrings(int(tensor.NumElements(shape)))))
			} else {
				inputs = append(inputs, tensor.New(spec.Name, spec.DType, shape))
			}
		}
		if _, err := be.Infer(context.Background(), inputs); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
}

// TestNestedTypes checks that deeply nested sequence and map types decode
// without unbounded recursion and are rejected as non-tensor outputs.
func TestNestedTypes(t *testing.T) {
	typ := onnxtest.AppendBytes(nil, 1, onnxtest.AppendVarint(nil, 1, onnx.TypeFloat)) // tensor(float)
	for i := range 10000 {
		if i%2 == 0 {
			typ = onnxtest.AppendBytes(nil, 4, onnxtest.AppendBytes(nil, 1, typ)) // sequence
		} else {
			typ = onnxtest.AppendBytes(nil, 5, onnxtest.AppendBytes(onnxtest.AppendVarint(nil, 1, onnx.TypeInt64), 2, typ)) // map(int64, ...)
		}
	}
	m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2).Node("id", "Identity", []string{"x"}, []string{"y"})
	m.Outputs = append(m.Outputs, onnxtest.AppendBytes(onnxtest.AppendString(nil, 1, "y"), 2, typ))
	if _, err := LoadBytes(m.Bytes(), Options{}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "non-tensor type") {
		t.Fatalf("LoadBytes = %v, want a non-tensor type error", err)
	}
}

// TestMLFolding checks that ONNX-ML nodes on constants are folded at
// load, strings included.
func TestMLFolding(t *testing.T) {
	m := onnxtest.NewMLModel(2).Input("x", onnx.TypeFloat, "N", 2).Output("codes").Output("y").
		Node("c", "Constant", nil, []string{"s"}, onnxtest.AttrStrings("value_strings", "b", "a", "q")).
		MLNode("le", "LabelEncoder", []string{"s"}, []string{"codes"}, onnxtest.AttrStrings("keys_strings", "a", "b"), onnxtest.AttrInts("values_int64s", 1, 2)).
		Init("w", f32(sh(2), 1, 2)).
		MLNode("sc", "Scaler", []string{"w"}, []string{"ws"}, onnxtest.AttrFloats("offset", 1), onnxtest.AttrFloats("scale", 10)).
		Node("add", "Add", []string{"x", "ws"}, []string{"y"})
	be, err := LoadBytes(m.Bytes(), Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(be.g.nodes) != 1 || be.g.nodes[0].op != "Add" {
		var ops []string
		for _, n := range be.g.nodes {
			ops = append(ops, n.op)
		}
		t.Fatalf("nodes after folding: %v, want [Add]", ops)
	}
	x := f32(sh(1, 2), 0.5, -0.5)
	outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	expectClose(t, outs[0], rf(sh(3), 2, 1, -1))
	expectClose(t, outs[1], rf(sh(1, 2), 0.5, 9.5))
}
