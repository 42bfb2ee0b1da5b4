package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
)

// postTransform is the post_transform attribute of the ONNX-ML
// classifiers and regressors (LinearClassifier, LinearRegressor,
// TreeEnsemble*), applied to each row of scores after aggregation.
type postTransform uint8

const (
	postNone        postTransform = iota // scores as they are
	postLogistic                         // 1 / (1 + exp(-x)) per score
	postSoftmax                          // softmax over the row
	postSoftmaxZero                      // softmax over the row's non-zero scores; zeros stay 0
	postProbit                           // sqrt(2) * erfinv(2x - 1) per score
)

var postTransformNames = [...]string{"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"}

func (p postTransform) String() string { return postTransformNames[p] }

// parsePostTransform reads a node's post_transform attribute (default
// NONE).
func parsePostTransform(as onnx.Attrs) (postTransform, error) {
	s, err := as.Str("post_transform", "NONE")
	if err != nil {
		return 0, err
	}
	for i, name := range postTransformNames {
		if s == name {
			return postTransform(i), nil
		}
	}
	return 0, invalidf("post_transform %q; want one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT", s)
}

// apply transforms one row of scores in place. The arithmetic is float64
// rounded to float32 per element.
func (p postTransform) apply(row []float32) {
	switch p {
	case postLogistic:
		for i, v := range row {
			row[i] = logistic(v)
		}
	case postSoftmax:
		softmaxRow(row, false)
	case postSoftmaxZero:
		softmaxRow(row, true)
	case postProbit:
		for i, v := range row {
			row[i] = probit(v)
		}
	}
}

func logistic(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }

func probit(v float32) float32 { return float32(math.Sqrt2 * math.Erfinv(2*float64(v)-1)) }

// softmaxRow is a numerically stable softmax; with skipZero, entries equal
// to 0 take no part and stay 0 (ONNX-ML's SOFTMAX_ZERO).
func softmaxRow(row []float32, skipZero bool) {
	m := math.Inf(-1)
	for _, v := range row {
		if (!skipZero || v != 0) && float64(v) > m {
			m = float64(v)
		}
	}
	var sum float64
	for i, v := range row {
		if skipZero && v == 0 {
			continue
		}
		e := math.Exp(float64(v) - m)
		row[i] = float32(e)
		sum += e
	}
	if sum == 0 {
		return
	}
	for i, v := range row {
		if skipZero && v == 0 {
			continue
		}
		row[i] = float32(float64(v) / sum)
	}
}
