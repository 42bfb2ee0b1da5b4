package forest

import "math"

// Transform turns a native model's margins (the Forest's scores) into its
// prediction, as the source framework's objective does.
type Transform uint8

// The transforms of XGBoost's and LightGBM's common objectives.
const (
	Identity Transform = iota // regression, ranking, raw margins
	Sigmoid                   // 1 / (1 + exp(-Scale·m)) per score (binary, reg:logistic, multiclassova)
	Softmax                   // softmax over the row (multiclass)
	Exp                       // exp(m) (poisson, gamma, tweedie)
)

var transformNames = [...]string{"identity", "sigmoid", "softmax", "exp"}

func (t Transform) String() string {
	if int(t) < len(transformNames) {
		return transformNames[t]
	}
	return "unknown"
}

// Ensemble is a tree model read from a framework's own file format (XGBoost
// JSON, LightGBM text): the forest and what its scores mean.
type Ensemble struct {
	Forest *Forest
	// Framework names the source and its version, e.g. "xgboost 1.7.4".
	Framework string
	// Objective is the source's objective string ("binary:logistic",
	// "multiclass", "regression", ...).
	Objective string
	// Classes is the number of classes of a classifier (2 for binary,
	// whose forest scores one margin: the positive class's); 0 for a
	// regressor, whose forest scores one value per target.
	Classes int
	// Transform maps margins to probabilities (classifiers) or
	// predictions (regressors); Scale is Sigmoid's factor (1 unless the
	// source says otherwise, e.g. LightGBM's sigmoid:2).
	Transform Transform
	Scale     float64
	// FeatureNames are the source's names of the input columns, when it
	// records them.
	FeatureNames []string
}

// Apply transforms one row of margins in place.
func (t Transform) Apply(row []float32, scale float64) {
	switch t {
	case Sigmoid:
		for i, v := range row {
			row[i] = float32(1 / (1 + math.Exp(-scale*float64(v))))
		}
	case Exp:
		for i, v := range row {
			row[i] = float32(math.Exp(float64(v)))
		}
	case Softmax:
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - m)
		}
		for i, v := range row {
			row[i] = float32(math.Exp(float64(v)-m) / sum)
		}
	}
}
