// Package xgboost reads XGBoost's JSON model format (what
// Booster.save_model writes for a ".json" name, XGBoost 1.0 and later)
// into a forest.Ensemble whose margins are bit-exact with XGBoost's
// predict(output_margin=True), as checked against xgboost 1.7.4.
//
// The semantics it reproduces, from XGBoost's predictor:
//
//   - A numerical split goes left iff x < split_condition (float32
//     compare); a missing value (NaN) goes to the default_left side.
//   - A categorical split (split_type 1) sends a value right iff it is a
//     category listed for the node (a fraction truncates: 2.5 is category
//     2), every other value left, negative and huge ones included,
//     whatever default_left says; only NaN follows default_left
//     (common::Decision: "go to left if it's NOT the matching category");
//     a value in (-1, 0) is an invalid category too (forest.InSet without
//     TruncateNegative).
//   - Margins start from the objective's ProbToMargin(base_score), in
//     float32: -logf(1/b - 1) for binary:logistic and reg:logistic (not
//     binary:logitraw, whose base_score is a margin), logf(b) for
//     count:poisson, reg:gamma, reg:tweedie and survival:cox, b itself
//     otherwise. Leaf values are added in float32, tree after tree, to
//     the output group named by tree_info.
//   - A dart booster adds float32(leaf·weight_drop[tree]) instead.
//
// Read keeps every allocation a small multiple of the file's size: it
// scans the JSON without building a tree of values, sizes each array by
// its content, never by a count the file declares, and checks lengths
// against each other. It caps what a model may declare: num_feature at
// 2^24, num_class and num_target at 2^16, 2^20 trees, 2^26 nodes,
// categories at 2^20 and their sets' bitsets at 32 bytes per byte of the
// file (plus 1 MiB). A malformed file is an error wrapping ErrInvalid; a
// well-formed one this package cannot evaluate, or one beyond the caps,
// an error wrapping ErrUnsupported.
package xgboost

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// ErrInvalid marks a malformed model file.
var ErrInvalid = errors.New("xgboost: invalid model")

// ErrUnsupported marks a well-formed model that Read does not evaluate: a
// linear booster, an objective without a forest.Transform, or a model
// beyond this package's limits.
var ErrUnsupported = errors.New("xgboost: unsupported model")

// Limits on what a model may declare. Trees and nodes are bounded by the
// file's size anyway; these make a hostile file fail early with a clear
// error.
const (
	maxFileSize = math.MaxInt32      // arrays are indexed by int32
	maxTrees    = 1 << 20            // trees over all classes
	maxNodes    = forest.MaxNodes    // nodes over all trees
	maxFeatures = forest.MaxFeatures // num_feature
	maxTargets  = forest.MaxTargets  // num_class, num_target
	maxCategory = forest.MaxCategory // largest category in a split
	setBudget   = 32                 // bytes of category bitsets per file byte
	setSlack    = 1 << 20            // plus this many
	// setGrowth is what forest allocates per byte of a bitset: it grows
	// each set by append, one word at a time, through ~5 reallocations'
	// worth of capacity.
	setGrowth = 6
)

// Read parses an XGBoost JSON model. It does not retain data, and is
// safe for concurrent use; the Ensemble's Forest is immutable.
//
// Supported: the gbtree and dart boosters with the objectives
// binary:logistic, binary:logitraw, reg:logistic, multi:softprob,
// multi:softmax, reg:squarederror (and its old name reg:linear),
// reg:squaredlogerror, reg:pseudohubererror, reg:absoluteerror,
// count:poisson, reg:gamma, reg:tweedie, survival:cox, rank:pairwise,
// rank:ndcg and rank:map; numerical and categorical splits; several
// regression targets (num_target > 1). Rejected: gblinear, binary:hinge
// (its 0/1 step is no forest.Transform), other objectives, vector-leaf
// trees, and non-finite split conditions or leaf values.
func Read(data []byte) (*forest.Ensemble, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d", ErrUnsupported, len(data), maxFileSize)
	}
	r, err := parse(data)
	if err != nil {
		return nil, err
	}
	return r.build(len(data))
}

// objective is what an objective's margins mean and how its base_score
// maps to the base margin (ProbToMargin).
type objective struct {
	transform forest.Transform
	classes   int  // 2 for binary classifiers, -1 for multi-class, 0 for regression
	logit     bool // base margin -logf(1/b - 1)
	log       bool // base margin logf(b)
}

func lookupObjective(name string) (objective, error) {
	switch name {
	case "binary:logistic":
		return objective{transform: forest.Sigmoid, classes: 2, logit: true}, nil
	case "binary:logitraw":
		// In 1.7 LogisticRaw's ProbToMargin is the identity: base_score
		// is a margin (checked against xgboost 1.7.4).
		return objective{transform: forest.Identity, classes: 2}, nil
	case "reg:logistic":
		return objective{transform: forest.Sigmoid, logit: true}, nil
	case "multi:softprob", "multi:softmax":
		// softmax predicts argmax, which Softmax leaves unchanged.
		return objective{transform: forest.Softmax, classes: -1}, nil
	case "reg:squarederror", "reg:linear", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror",
		"rank:pairwise", "rank:ndcg", "rank:map":
		return objective{transform: forest.Identity}, nil
	case "count:poisson", "reg:gamma", "reg:tweedie", "survival:cox":
		return objective{transform: forest.Exp, log: true}, nil
	case "binary:hinge":
		return objective{}, fmt.Errorf("%w: objective binary:hinge predicts a 0/1 step of the margin, which no forest.Transform expresses", ErrUnsupported)
	case "":
		return objective{}, fmt.Errorf("%w: no objective name", ErrInvalid)
	}
	return objective{}, fmt.Errorf("%w: objective %.64q", ErrUnsupported, name)
}

// atoi parses a non-negative decimal integer up to max.
func atoi(b []byte, max int) (int, error) {
	n, err := strconv.ParseUint(string(b), 10, 63)
	if err != nil || n > uint64(max) {
		return 0, fmt.Errorf("%.64q is not an integer in [0, %d]", b, max)
	}
	return int(n), nil
}

// param parses a learner_model_param integer; absent is def.
func param(name, v string, def, max int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %.64q is not a non-negative integer", ErrInvalid, name, v)
	}
	if n > uint64(max) {
		return 0, fmt.Errorf("%w: %s %d exceeds the limit of %d", ErrUnsupported, name, n, max)
	}
	return int(n), nil
}

// build checks the parsed file and builds the forest.
func (r *raw) build(size int) (*forest.Ensemble, error) {
	if len(r.version) == 0 {
		return nil, fmt.Errorf("%w: no version (XGBoost writes [major, minor, patch])", ErrInvalid)
	}
	if r.version[0] < 1 {
		return nil, fmt.Errorf("%w: version %v; the JSON format of XGBoost < 1.0 is not read", ErrUnsupported, r.version)
	}
	switch r.booster {
	case "gbtree", "dart":
	case "gblinear":
		return nil, fmt.Errorf("%w: booster gblinear (a linear model, not trees)", ErrUnsupported)
	case "":
		return nil, fmt.Errorf("%w: no gradient_booster name", ErrInvalid)
	default:
		return nil, fmt.Errorf("%w: booster %.64q", ErrUnsupported, r.booster)
	}
	if r.models == 0 {
		return nil, fmt.Errorf("%w: %s booster without a model", ErrInvalid, r.booster)
	}
	dart := r.booster == "dart"
	if dart && r.inner != "gbtree" {
		return nil, fmt.Errorf("%w: dart booster wraps %.64q; want gbtree", ErrInvalid, r.inner)
	}
	if dart && !r.hasDrop {
		return nil, fmt.Errorf("%w: dart booster without weight_drop", ErrInvalid)
	}
	if !dart && r.hasDrop {
		return nil, fmt.Errorf("%w: weight_drop in a %s booster; it belongs to dart", ErrInvalid, r.booster)
	}
	obj, err := lookupObjective(r.objective)
	if err != nil {
		return nil, err
	}
	features, err := param("num_feature", r.numFeature, 0, maxFeatures)
	if err != nil {
		return nil, err
	}
	if features == 0 {
		return nil, fmt.Errorf("%w: num_feature missing or 0", ErrInvalid)
	}
	classes, err := param("num_class", r.numClass, 0, maxTargets)
	if err != nil {
		return nil, err
	}
	numTarget, err := param("num_target", r.numTarget, 1, maxTargets)
	if err != nil {
		return nil, err
	}
	targets := max(numTarget, 1)
	switch {
	case obj.classes == -1:
		if classes < 2 || numTarget > 1 {
			return nil, fmt.Errorf("%w: objective %s with num_class %d, num_target %d; want num_class >= 2, one target", ErrInvalid, r.objective, classes, numTarget)
		}
		targets, obj.classes = classes, classes
	case classes > 1:
		return nil, fmt.Errorf("%w: num_class %d with objective %s", ErrInvalid, classes, r.objective)
	case obj.classes == 2 && numTarget > 1:
		return nil, fmt.Errorf("%w: %d targets with objective %s (multi-label classification)", ErrUnsupported, numTarget, r.objective)
	}
	base, err := baseMargin(r.baseScore, obj)
	if err != nil {
		return nil, err
	}
	if len(r.names) != 0 && len(r.names) != features {
		return nil, fmt.Errorf("%w: %d feature_names for num_feature %d", ErrInvalid, len(r.names), features)
	}

	order, err := r.treeOrder()
	if err != nil {
		return nil, err
	}
	if !r.hasInfo || len(r.treeInfo) != len(order) {
		return nil, fmt.Errorf("%w: %d trees but %d tree_info entries", ErrInvalid, len(order), len(r.treeInfo))
	}
	if dart && len(r.weightDrop) != len(order) {
		return nil, fmt.Errorf("%w: %d trees but %d weight_drop entries", ErrInvalid, len(order), len(r.weightDrop))
	}
	b, err := forest.NewBuilder(features, targets)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c := converter{setBytes: setBudget*size + setSlack}
	for i, t := range order {
		group := r.treeInfo[i]
		if group < 0 || int(group) >= targets {
			return nil, fmt.Errorf("%w: tree %d: tree_info %d; want 0 to %d", ErrInvalid, i, group, targets-1)
		}
		w := float32(1)
		if dart {
			w = r.weightDrop[i]
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				return nil, fmt.Errorf("%w: tree %d: weight_drop %v", ErrInvalid, i, w)
			}
		}
		nodes, err := c.tree(i, r.trees[t], int(group), w, dart)
		if err != nil {
			return nil, err
		}
		if err := b.AddTree(nodes, 0); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	bases := make([]float64, targets)
	for k := range bases {
		bases[k] = float64(base)
	}
	f, err := b.Build(forest.Options{Aggregate: forest.Sum, Base: bases, Float32: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m := &forest.Ensemble{
		Forest:       f,
		Framework:    "xgboost " + versionString(r.version),
		Objective:    r.objective,
		Classes:      max(obj.classes, 0),
		Transform:    obj.transform,
		Scale:        1,
		FeatureNames: r.names,
	}
	return m, nil
}

// baseMargin is ProbToMargin(base_score) of XGBoost's objectives (1.7:
// src/objective/regression_obj.cu), in float32 arithmetic as there; the
// float64 logarithm rounded to float32 matches glibc's logf on every
// base_score of the test models.
func baseMargin(s string, obj objective) (float32, error) {
	if s == "" {
		s = "0.5" // XGBoost's default
	}
	v, err := strconv.ParseFloat(s, 32)
	b := float32(v)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: base_score %.64q is not a finite float32", ErrInvalid, s)
	}
	switch {
	case obj.logit:
		if !(b > 0 && b < 1) {
			return 0, fmt.Errorf("%w: base_score %v; a logistic objective needs it in (0, 1)", ErrInvalid, b)
		}
		return float32(-math.Log(float64(1/b - 1))), nil
	case obj.log:
		if !(b > 0) {
			return 0, fmt.Errorf("%w: base_score %v; a log-link objective needs it > 0", ErrInvalid, b)
		}
		return float32(math.Log(float64(b))), nil
	}
	return b, nil
}

func versionString(v []int32) string {
	s := ""
	for i, n := range v {
		if i > 0 {
			s += "."
		}
		s += strconv.Itoa(int(n))
	}
	return s
}

// treeOrder returns the trees in model order: XGBoost places each tree at
// its "id" (gbtree_model.cc), which it writes equal to the position.
func (r *raw) treeOrder() ([]int, error) {
	n := len(r.trees)
	if n == 0 {
		return nil, fmt.Errorf("%w: no trees", ErrInvalid)
	}
	if r.numTrees != "" {
		want, err := param("num_trees", r.numTrees, 0, maxTrees)
		if err != nil {
			return nil, err
		}
		if want != n {
			return nil, fmt.Errorf("%w: num_trees %d but %d trees", ErrInvalid, want, n)
		}
	}
	order := make([]int, n)
	total := 0
	for i := range order {
		order[i] = -1
	}
	for i, t := range r.trees {
		total += len(t.left)
		switch id := int(t.id); {
		case id == -1 && r.trees[0].id == -1:
			order[i] = i
		case id < 0 || id >= n:
			return nil, fmt.Errorf("%w: tree %d: id %d; want 0 to %d", ErrInvalid, i, id, n-1)
		case order[id] != -1:
			return nil, fmt.Errorf("%w: tree %d: id %d used twice", ErrInvalid, i, id)
		default:
			order[id] = i
		}
	}
	if total > maxNodes {
		return nil, fmt.Errorf("%w: %d nodes exceed the limit of %d", ErrUnsupported, total, maxNodes)
	}
	return order, nil
}
