// Package lightgbm reads LightGBM's text model format (model.txt, what
// Booster.save_model writes, format versions v3 and v4) into a
// forest.Ensemble whose predictions are LightGBM's for dense input rows.
//
// It follows LightGBM's own loader (GBDT::LoadModelFromString in
// src/boosting/gbdt_model_text.cpp, Tree::Tree(const char*, size_t*) in
// src/io/tree.cpp) and predictor (Tree::NumericalDecision and
// Tree::CategoricalDecision in include/LightGBM/tree.h, GBDT::Predict in
// src/boosting/gbdt_prediction.cpp, the objectives' ConvertOutput), but
// checks what LightGBM takes on trust: every count is checked against the
// values actually present before anything of that size is allocated, and
// every index against what it indexes, so that a malformed or hostile file
// is an error, never a panic or an allocation far larger than the file.
//
// In brief, with kZeroThreshold = 1e-35f: values with |x| <= kZeroThreshold
// reach the trees as 0 (LightGBM's dense predictors drop them). A
// numerical split goes left when x <= threshold, compared in double; a
// NaN reads 0 under missing type None, and takes the default direction
// under NaN, as do 0 and NaN under Zero. A categorical split goes left
// when x, truncated to an int, is a non-negative category set in its
// bitset; NaN goes right. Scores add up per class in tree order in
// float64, are averaged over iterations in random-forest mode, then
// transformed as the objective's ConvertOutput does.
//
// Where forest cannot follow LightGBM (see TestKnownDivergences): a
// categorical value in (-1, 0), which LightGBM reads as category 0, goes
// right; Forest.Predict64 takes values in (1e-35, 1e-35f] for nonzero
// under missing type Zero; and under missing type Zero with threshold
// +Inf and default right, x = +Inf goes right, not left.
package lightgbm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// Errors returned by Read wrap one of these.
var (
	// ErrInvalid marks text that is not a well-formed LightGBM model.
	ErrInvalid = errors.New("lightgbm: invalid model")
	// ErrUnsupported marks a well-formed model that forest cannot evaluate
	// exactly (linear trees, an output transform it lacks, another format
	// version).
	ErrUnsupported = errors.New("lightgbm: unsupported model")
	// ErrTooLarge marks a model beyond one of the limits below or forest's.
	ErrTooLarge = errors.New("lightgbm: model too large")
)

// Limits on what Read accepts; the number of features is bounded by
// forest.MaxFeatures and the number of nodes by forest.MaxNodes.
const (
	MaxClasses = forest.MaxTargets // num_class and num_tree_per_iteration
	MaxLeaves  = 1 << 17           // per tree: LightGBM's own bound on num_leaves (config.h)
	MaxTrees   = 1 << 20
)

func invalidf(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrInvalid, line, fmt.Sprintf(format, args...))
}

// header holds the keys of the model's first section that Read uses.
type header struct {
	version, numClass, perIteration, labelIndex, maxFeatureIdx field
	objective, averageOutput, featureNames, featureInfos       field
	treeSizes                                                  field
}

func (h *header) field(key string) *field {
	switch key {
	case "version":
		return &h.version
	case "num_class":
		return &h.numClass
	case "num_tree_per_iteration":
		return &h.perIteration
	case "label_index":
		return &h.labelIndex
	case "max_feature_idx":
		return &h.maxFeatureIdx
	case "objective":
		return &h.objective
	case "average_output":
		return &h.averageOutput
	case "feature_names":
		return &h.featureNames
	case "feature_infos":
		return &h.featureInfos
	case "tree_sizes":
		return &h.treeSizes
	}
	return nil // other keys (monotone_constraints, ...) do not change predictions
}

// Read parses a LightGBM text model. data is only read during the call;
// Read is safe for concurrent use.
//
// The forest scores num_tree_per_iteration targets (one per class for
// multiclass objectives): tree k adds its leaf value to target
// k mod num_tree_per_iteration. The model's Framework is "lightgbm" and
// the format version ("lightgbm v4"; the text does not record LightGBM's
// release), its Objective the objective's name ("binary"), its Scale the
// sigmoid parameter of binary and multiclassova. Errors wrap ErrInvalid,
// ErrUnsupported or ErrTooLarge and name the line at fault where there is
// one.
func Read(data []byte) (*forest.Ensemble, error) {
	r := reader{l: lines{s: string(data)}}
	return r.read()
}

type reader struct {
	l       lines
	h       header
	scratch scratch
}

func (r *reader) read() (*forest.Ensemble, error) {
	if err := r.header(); err != nil {
		return nil, err
	}
	h := &r.h
	for _, f := range []struct {
		f   *field
		key string
	}{{&h.version, "version"}, {&h.numClass, "num_class"}, {&h.labelIndex, "label_index"},
		{&h.maxFeatureIdx, "max_feature_idx"}, {&h.featureNames, "feature_names"}, {&h.featureInfos, "feature_infos"}} {
		if f.f.line == 0 {
			return nil, invalidf(r.l.n, "the header has no %s", f.key)
		}
	}
	if v := h.version.val; v != "v3" && v != "v4" {
		return nil, fmt.Errorf("%w: line %d: format version %q; want v3 or v4", ErrUnsupported, h.version.line, v)
	}
	numClass, err := h.numClass.int(1, MaxClasses, true)
	if err != nil {
		return nil, err
	}
	// Without the key LightGBM takes one tree per class and iteration.
	perIter := numClass
	if h.perIteration.line != 0 {
		if perIter, err = h.perIteration.int(1, MaxClasses, true); err != nil {
			return nil, err
		}
	}
	if _, err := h.labelIndex.int(math.MinInt32, math.MaxInt32, false); err != nil {
		return nil, err
	}
	maxIdx, err := h.maxFeatureIdx.int(0, forest.MaxFeatures-1, true)
	if err != nil {
		return nil, err
	}
	features := maxIdx + 1
	// LightGBM refuses a model whose names or infos do not number
	// max_feature_idx+1; counting them first also bounds features by the
	// size of the text.
	if err := h.featureNames.count(features, "max_feature_idx+1"); err != nil {
		return nil, err
	}
	if err := h.featureInfos.count(features, "max_feature_idx+1"); err != nil {
		return nil, err
	}
	obj, err := parseObjective(&h.objective, numClass, perIter)
	if err != nil {
		return nil, err
	}
	b, err := forest.NewBuilder(features, perIter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	average := h.averageOutput.line != 0
	ntrees, err := r.trees(b, features, perIter, average)
	if err != nil {
		return nil, err
	}
	if h.treeSizes.line != 0 {
		// LightGBM locates the trees by these byte sizes; they are read in
		// sequence here, so only their number is checked (a copy with
		// "\r\n" line ends still loads).
		if err := h.treeSizes.count(ntrees, "one per tree"); err != nil {
			return nil, err
		}
	}
	agg := forest.Sum
	if average {
		agg = forest.Average
	}
	f, err := b.Build(forest.Options{Aggregate: agg})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	names := tokens(h.featureNames.val)
	for i, n := range names {
		names[i] = strings.Clone(n) // not to keep the whole text alive
	}
	return &forest.Ensemble{
		Forest:       f,
		Framework:    "lightgbm " + h.version.val,
		Objective:    obj.name,
		Classes:      obj.classes,
		Transform:    obj.transform,
		Scale:        obj.scale,
		FeatureNames: names,
	}, nil
}

// header reads the lines before the first tree. The first is the model
// type, "tree" for every booster (GBDT::SubModelName); the others are
// key=value, or a bare key such as average_output.
func (r *reader) header() error {
	first := true
	for {
		line, ok := r.l.peek()
		if !ok {
			return invalidf(r.l.n, "truncated: no trees and no \"end of trees\"")
		}
		if strings.HasPrefix(line, "Tree=") || line == "end of trees" {
			return nil
		}
		r.l.next()
		if line == "" {
			continue
		}
		if first {
			if line != "tree" {
				return invalidf(r.l.n, "first line %.40q; want \"tree\" (not a LightGBM text model)", line)
			}
			first = false
			continue
		}
		key, val, _ := strings.Cut(line, "=")
		if strings.Contains(val, "=") && key != "feature_names" && key != "monotone_constraints" {
			// As LightGBM: only these two may hold '=' in their values.
			return invalidf(r.l.n, "%.40q has more than one '='", line)
		}
		if f := r.h.field(key); f != nil {
			if err := f.set(key, val, r.l.n); err != nil {
				return err
			}
		}
	}
}

// trees reads the "Tree=i" blocks up to "end of trees"; what follows
// (feature importances, parameters, pandas_categorical) is not read.
func (r *reader) trees(b *forest.Builder, features, perIter int, average bool) (int, error) {
	// LightGBM divides each score by the number of iterations in
	// random-forest mode; forest.Average divides by the number of trees,
	// num_tree_per_iteration times more, so leaf values are scaled up by
	// that factor (exact when it is a power of two).
	scale := 1.0
	if average {
		scale = float64(perIter)
	}
	n, total := 0, 0
	for {
		line, ok := r.l.next()
		switch {
		case !ok:
			return 0, invalidf(r.l.n, "truncated: no \"end of trees\" after %d trees", n)
		case line == "":
			continue
		case line == "end of trees":
			if n == 0 {
				return 0, invalidf(r.l.n, "no trees")
			}
			if n%perIter != 0 {
				// LightGBM would silently drop the incomplete iteration.
				return 0, invalidf(r.l.n, "%d trees is not a whole number of iterations of num_tree_per_iteration=%d", n, perIter)
			}
			return n, nil
		case !strings.HasPrefix(line, "Tree="):
			return 0, invalidf(r.l.n, "%.40q where a tree or \"end of trees\" should be", line)
		}
		if k, err := strconv.Atoi(line[len("Tree="):]); err != nil || k != n {
			return 0, invalidf(r.l.n, "%.40q; want Tree=%d", line, n)
		}
		if n == MaxTrees {
			return 0, fmt.Errorf("%w: line %d: more than %d trees", ErrTooLarge, r.l.n, MaxTrees)
		}
		nodes, err := r.tree(n, features, n%perIter, scale)
		if err != nil {
			return 0, err
		}
		if total += len(nodes); total > forest.MaxNodes {
			return 0, fmt.Errorf("%w: line %d: tree %d: more than %d nodes in all", ErrTooLarge, r.l.n, n, forest.MaxNodes)
		}
		if err := b.AddTree(nodes, 0); err != nil {
			return 0, fmt.Errorf("%w: tree %d: %w", ErrInvalid, n, err)
		}
		n++
	}
}

// objective is what a model's objective line means for its output.
type objective struct {
	name      string
	transform forest.Transform
	scale     float64
	classes   int
}

// parseObjective maps the objective line (ObjectiveFunction::ToString:
// the name, then parameters as key:value or flags) to the transform of
// its ConvertOutput, as ObjectiveFunction::CreateObjectiveFunction(const
// std::string&) in src/objective/objective_function.cpp names them.
func parseObjective(f *field, numClass, perIter int) (objective, error) {
	obj := objective{transform: forest.Identity, scale: 1}
	if f.line == 0 {
		// Trained with a custom objective: LightGBM writes no objective
		// line and predicts raw scores.
		return obj, nil
	}
	toks := tokens(f.val)
	if len(toks) == 0 {
		return obj, invalidf(f.line, "empty objective")
	}
	obj.name = toks[0]
	params := map[string]string{}
	sqrt := false
	for _, t := range toks[1:] {
		if k, v, ok := strings.Cut(t, ":"); ok {
			params[k] = v
		} else if t == "sqrt" {
			sqrt = true
		}
	}
	unsupported := func(format string, args ...any) (objective, error) {
		return obj, fmt.Errorf("%w: line %d: objective %s: %s", ErrUnsupported, f.line, obj.name, fmt.Sprintf(format, args...))
	}
	positive := func(key string) (float64, error) {
		v, err := strconv.ParseFloat(params[key], 64)
		if err != nil || !(v > 0) || math.IsInf(v, 1) {
			return 0, invalidf(f.line, "objective %s: %s:%q; want a positive number", obj.name, key, params[key])
		}
		return v, nil
	}
	multi := false
	var err error
	switch obj.name {
	case "regression", "regression_l1", "huber", "fair", "quantile", "mape", "mean_absolute_percentage_error":
		if sqrt {
			// reg_sqrt: RegressionL2loss::ConvertOutput returns sign(m)·m².
			return unsupported("reg_sqrt's output sign(m)·m² has no forest.Transform")
		}
	case "poisson", "gamma", "tweedie":
		// RegressionPoissonLoss::ConvertOutput, inherited by the others.
		obj.transform = forest.Exp
	case "binary":
		// BinaryLogloss: 1/(1+exp(-sigmoid·m)); it refuses sigmoid <= 0.
		obj.transform, obj.classes = forest.Sigmoid, 2
		if obj.scale, err = positive("sigmoid"); err != nil {
			return obj, err
		}
	case "cross_entropy", "xentropy":
		obj.transform = forest.Sigmoid
	case "cross_entropy_lambda", "xentlambda":
		// CrossEntropyLambda::ConvertOutput returns log(1+exp(m)).
		return unsupported("its output log(1+exp(m)) has no forest.Transform")
	case "multiclass", "multiclassova":
		multi = true
		obj.transform, obj.classes = forest.Softmax, numClass
		if obj.name == "multiclassova" {
			// MulticlassOVA applies each class's binary sigmoid; the
			// probabilities are not normalised to sum to 1.
			obj.transform = forest.Sigmoid
			if obj.scale, err = positive("sigmoid"); err != nil {
				return obj, err
			}
		}
		k, err := strconv.Atoi(params["num_class"])
		if err != nil || k != numClass || k < 2 {
			return obj, invalidf(f.line, "objective %s: num_class:%q; want num_class=%d of the header, at least 2", obj.name, params["num_class"], numClass)
		}
	case "lambdarank", "rank_xendcg":
	case "none", "null", "custom", "na":
		// LightGBM creates no objective function: raw scores.
		return obj, nil
	default:
		return unsupported("unknown objective")
	}
	if multi && perIter != numClass {
		return obj, invalidf(f.line, "num_tree_per_iteration=%d; objective %s needs one tree per class (%d)", perIter, obj.name, numClass)
	}
	if !multi && (numClass != 1 || perIter != 1) {
		return obj, invalidf(f.line, "num_class=%d, num_tree_per_iteration=%d; objective %s scores one value", numClass, perIter, obj.name)
	}
	return obj, nil
}
