package cpu

import (
	"math"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// tnode is one node of a test tree: a branch (mode, feature, threshold,
// true and false node ids, missing tracking) or a leaf with weights.
type tnode struct {
	tree, id  int64
	mode      string
	feature   int64
	value     float64
	yes, no   int64
	missing   int64
	weights   []float64 // per target/class, index = id; NaN = no weight
	weightIDs []int64   // explicit ids when set (weights[i] is for weightIDs[i])
}

// treeAttrs encodes nodes as the nodes_* attributes and the leaf weights
// with prefix (class or target); asTensor uses the opset-3 double forms.
func treeAttrs(nodes []tnode, prefix string, asTensor bool) [][]byte {
	var trees, ids, feats, yes, no, miss, wTrees, wNodes, wIDs []int64
	var modes []string
	var values, weights []float64
	for _, n := range nodes {
		trees, ids, feats = append(trees, n.tree), append(ids, n.id), append(feats, n.feature)
		modes, values = append(modes, n.mode), append(values, n.value)
		yes, no, miss = append(yes, n.yes), append(no, n.no), append(miss, n.missing)
		for i, w := range n.weights {
			if math.IsNaN(w) {
				continue
			}
			id := int64(i)
			if n.weightIDs != nil {
				id = n.weightIDs[i]
			}
			wTrees, wNodes, wIDs, weights = append(wTrees, n.tree), append(wNodes, n.id), append(wIDs, id), append(weights, w)
		}
	}
	idName := prefix + "_ids"
	as := [][]byte{
		onnxtest.AttrInts("nodes_treeids", trees...), onnxtest.AttrInts("nodes_nodeids", ids...), onnxtest.AttrInts("nodes_featureids", feats...),
		onnxtest.AttrStrings("nodes_modes", modes...), onnxtest.AttrInts("nodes_truenodeids", yes...), onnxtest.AttrInts("nodes_falsenodeids", no...),
		onnxtest.AttrInts("nodes_missing_value_tracks_true", miss...),
		onnxtest.AttrInts(prefix+"_treeids", wTrees...), onnxtest.AttrInts(prefix+"_nodeids", wNodes...), onnxtest.AttrInts(idName, wIDs...),
	}
	if asTensor {
		as = append(as, onnxtest.AttrTensor("nodes_values_as_tensor", onnxtest.TensorProto("", f64(sh(int64(len(values))), values...), false)),
			onnxtest.AttrTensor(prefix+"_weights_as_tensor", onnxtest.TensorProto("", f64(sh(int64(len(weights))), weights...), false)))
	} else {
		as = append(as, onnxtest.AttrFloats("nodes_values", f32s(values)...), onnxtest.AttrFloats(prefix+"_weights", f32s(weights)...))
	}
	return as
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

var nan = math.NaN()

// twoTrees: tree 0 splits x0 <= 0.5 (missing tracked to true when
// track) to a leaf (1, 5) or to x1 < 2 → leaves (10, 6) / (20, 7); tree 1
// is one leaf (0.25, 0.5). Two targets.
func twoTrees(track int64) []tnode {
	return []tnode{
		{tree: 0, id: 0, mode: "BRANCH_LEQ", feature: 0, value: 0.5, yes: 1, no: 2, missing: track},
		{tree: 0, id: 1, mode: "LEAF", weights: []float64{1, 5}},
		{tree: 0, id: 2, mode: "BRANCH_LT", feature: 1, value: 2, yes: 3, no: 4},
		{tree: 0, id: 3, mode: "LEAF", weights: []float64{10, 6}},
		{tree: 0, id: 4, mode: "LEAF", weights: []float64{20, 7}},
		{tree: 1, id: 7, mode: "LEAF", weights: []float64{0.25, 0.5}},
	}
}

// The rows every regressor case scores: at, above and below both
// thresholds, and missing values.
var treeRows = []float32{
	0.5, 0, // tree 0: leaf 1
	0.6, 1.9, // leaf 3
	0.6, 2, // leaf 4
	float32(nan), 0, // NaN: leaf 1 when tracked, else x1 < 2: leaf 3
	0.6, float32(nan), // NaN in x1 (not tracked): leaf 4
}

func TestTreeEnsembleRegressor(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(5, 2), treeRows)
	leaves := func(track bool) [][2][2]float64 { // per row: tree 0 leaf weights, tree 1's
		nanLeaf := [2]float64{10, 6}
		if track {
			nanLeaf = [2]float64{1, 5}
		}
		t1 := [2]float64{0.25, 0.5}
		return [][2][2]float64{{{1, 5}, t1}, {{10, 6}, t1}, {{20, 7}, t1}, {nanLeaf, t1}, {{20, 7}, t1}}
	}
	for _, tc := range []struct {
		name     string
		agg      string
		track    bool
		base     []float64
		asTensor bool
		post     string
	}{
		{"sum", "SUM", false, nil, false, ""},
		{"sum tracked missing", "SUM", true, nil, false, ""},
		{"average base", "AVERAGE", false, []float64{100, -1}, false, ""},
		{"min", "MIN", true, nil, false, ""},
		{"max base as tensor", "MAX", false, []float64{0.5, 0.25}, true, ""},
		{"sum probit", "SUM", false, []float64{-20.5, -7.25}, false, "PROBIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var track int64
			if tc.track {
				track = 1
			}
			attrs := treeAttrs(twoTrees(track), "target", tc.asTensor)
			attrs = append(attrs, onnxtest.AttrInt("n_targets", 2), onnxtest.AttrString("aggregate_function", tc.agg))
			if tc.base != nil {
				if tc.asTensor {
					attrs = append(attrs, onnxtest.AttrTensor("base_values_as_tensor", onnxtest.TensorProto("", f64(sh(2), tc.base...), false)))
				} else {
					attrs = append(attrs, onnxtest.AttrFloats("base_values", f32s(tc.base)...))
				}
			}
			if tc.post != "" {
				attrs = append(attrs, onnxtest.AttrString("post_transform", tc.post))
			}
			model := mlModel(1, "TreeEnsembleRegressor", []arg{in("x", x)}, 1, attrs...)
			want := newRef(5, 2)
			for r, l := range leaves(tc.track) {
				for k := range 2 {
					a, b := l[0][k], l[1][k]
					var v float64
					switch tc.agg {
					case "SUM":
						v = a + b
					case "AVERAGE":
						v = (a + b) / 2
					case "MIN":
						v = math.Min(a, b)
					case "MAX":
						v = math.Max(a, b)
					}
					if tc.base != nil {
						v += tc.base[k]
					}
					if tc.post == "PROBIT" {
						v = refProbit(v)
					}
					want.data[r*2+k] = v
				}
			}
			expectClose(t, runModel(t, model, x)[0], want)
		})
	}
}

// TestTreeModes runs a one-split tree in every branch mode on values
// below, at and above the threshold and NaN, with and without missing
// tracking; BRANCH_NEQ holds for NaN.
func TestTreeModes(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(4, 1), []float32{0, 1, 2, float32(nan)})
	for _, tc := range []struct {
		mode string
		want [4]bool // the true branch for 0, 1, 2, NaN (untracked)
	}{
		{"BRANCH_LEQ", [4]bool{true, true, false, false}},
		{"BRANCH_LT", [4]bool{true, false, false, false}},
		{"BRANCH_GTE", [4]bool{false, true, true, false}},
		{"BRANCH_GT", [4]bool{false, false, true, false}},
		{"BRANCH_EQ", [4]bool{false, true, false, false}},
		{"BRANCH_NEQ", [4]bool{true, false, true, true}},
	} {
		for _, track := range []int64{0, 1} {
			nodes := []tnode{
				{mode: tc.mode, value: 1, yes: 1, no: 2, missing: track},
				{id: 1, mode: "LEAF", weights: []float64{1}},
				{id: 2, mode: "LEAF", weights: []float64{2}},
			}
			model := mlModel(3, "TreeEnsembleRegressor", []arg{in("x", x)}, 1, treeAttrs(nodes, "target", false)...)
			want := newRef(4, 1)
			for i, yes := range tc.want {
				if i == 3 && track == 1 {
					yes = true
				}
				want.data[i] = 2
				if yes {
					want.data[i] = 1
				}
			}
			t.Run(tc.mode, func(t *testing.T) { expectClose(t, runModel(t, model, x)[0], want) })
		}
	}
}

// TestTreeThresholdPrecision: a float32 feature equal to float32(0.1) is
// above the double threshold 0.1 (nodes_values_as_tensor) but equal to
// the float threshold 0.1f (nodes_values), as onnxruntime compares.
func TestTreeThresholdPrecision(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(1, 1), []float32{0.1})
	for _, asTensor := range []bool{false, true} {
		nodes := []tnode{
			{mode: "BRANCH_LEQ", value: 0.1, yes: 1, no: 2},
			{id: 1, mode: "LEAF", weights: []float64{1}},
			{id: 2, mode: "LEAF", weights: []float64{2}},
		}
		want := 1.0
		if asTensor {
			want = 2
		}
		model := mlModel(3, "TreeEnsembleRegressor", []arg{in("x", x)}, 1, treeAttrs(nodes, "target", asTensor)...)
		expectClose(t, runModel(t, model, x)[0], rf(sh(1, 1), want))
	}
}

// TestTreeInputTypes scores the same rows given as FP64, INT64 and INT32.
func TestTreeInputTypes(t *testing.T) {
	nodes := []tnode{
		{mode: "BRANCH_LEQ", feature: 1, value: 2, yes: 1, no: 2},
		{id: 1, mode: "LEAF", weights: []float64{1}},
		{id: 2, mode: "LEAF", weights: []float64{2}},
	}
	want := rf(sh(3, 1), 1, 1, 2)
	for _, x := range []*tensor.Tensor{
		f64(sh(3, 2), 0, 1, 0, 2, 0, 2.0000000001),
		tensor.FromInt64s("x", sh(3, 2), []int64{0, 1, 0, 2, 0, 3}),
		func() *tensor.Tensor {
			x := tensor.New("x", tensor.Int32, sh(3, 2))
			copy(x.Int32s(), []int32{0, 1, 0, 2, 0, 3})
			return x
		}(),
	} {
		model := mlModel(1, "TreeEnsembleRegressor", []arg{in("x", x)}, 1, treeAttrs(nodes, "target", false)...)
		t.Run(x.DType.String(), func(t *testing.T) { expectClose(t, runModel(t, model, x)[0], want) })
	}
}

// classTree is a one-split tree on x0 <= 0 whose leaves carry the given
// class weights (NaN: none).
func classTree(tree int64, left, right []float64) []tnode {
	return []tnode{
		{tree: tree, id: 0, mode: "BRANCH_LEQ", value: 0, yes: 1, no: 2},
		{tree: tree, id: 1, mode: "LEAF", weights: left},
		{tree: tree, id: 2, mode: "LEAF", weights: right},
	}
}

func TestTreeEnsembleClassifier(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(3, 1), []float32{-1, 1, float32(nan)})
	// Two trees, three classes: left (x <= 0) favours class 2, right class 0.
	nodes := append(classTree(0, []float64{0.1, 0.2, 0.7}, []float64{0.6, 0.3, 0.1}),
		classTree(1, []float64{0.2, 0.2, 0.6}, []float64{0.5, 0.4, 0.1})...)
	sums := [][]float64{{0.3, 0.4, 1.3}, {1.1, 0.7, 0.2}, {1.1, 0.7, 0.2}} // NaN goes right
	t.Run("int labels softmax base", func(t *testing.T) {
		base := []float64{0.5, 0, -0.5}
		attrs := append(treeAttrs(nodes, "class", false), onnxtest.AttrInts("classlabels_int64s", 10, 20, 30),
			onnxtest.AttrFloats("base_values", f32s(base)...), onnxtest.AttrString("post_transform", "SOFTMAX"))
		outs := runModel(t, mlModel(1, "TreeEnsembleClassifier", []arg{in("x", x)}, 2, attrs...), x)
		want := newRef(3, 3)
		labels := []float64{}
		for r, s := range sums {
			row := []float64{s[0] + base[0], s[1] + base[1], s[2] + base[2]}
			best := 0
			for k := range row {
				if row[k] > row[best] {
					best = k
				}
			}
			labels = append(labels, float64([]int{10, 20, 30}[best]))
			copy(want.data[r*3:], refSoftmaxRow(row, false))
		}
		expectClose(t, outs[0], rf(sh(3), labels...))
		expectClose(t, outs[1], want)
	})
	t.Run("string labels as tensor", func(t *testing.T) {
		attrs := append(treeAttrs(nodes, "class", true), onnxtest.AttrStrings("classlabels_strings", "setosa", "versicolor", "virginica"))
		outs := runModel(t, mlModel(3, "TreeEnsembleClassifier", []arg{in("x", x)}, 2, attrs...), x)
		expectStrings(t, outs[0], sh(3), "virginica", "setosa", "setosa")
		want := newRef(3, 3)
		for r, s := range sums {
			copy(want.data[r*3:], s)
		}
		expectClose(t, outs[1], want)
	})
}

// TestTreeClassifierBinary covers two class labels with weights for one
// class id only (converted gradient boosting): the score s is the
// positive class's.
func TestTreeClassifierBinary(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(2, 1), []float32{-1, 1})
	for _, tc := range []struct {
		name        string
		left, right float64 // the single class-1 weight of each leaf
		post        string
		labels      []float64
		scores      []float64
	}{
		// Mixed signs: label when s > 0; NONE gives [-s, s].
		{"mixed none", -0.8, 1.5, "NONE", []float64{0, 1}, []float64{0.8, -0.8, -1.5, 1.5}},
		// Mixed signs, LOGISTIC: [logistic(-s), logistic(s)].
		{"mixed logistic", -0.8, 1.5, "LOGISTIC", []float64{0, 1},
			[]float64{refLogistic(0.8), refLogistic(-0.8), refLogistic(-1.5), refLogistic(1.5)}},
		// Non-negative weights (probabilities): label when s > 0.5, [1-s, s].
		{"positive none", 0.3, 0.6, "NONE", []float64{0, 1}, []float64{0.7, 0.3, 0.4, 0.6}},
		{"positive 0.4", 0.4, 0.45, "NONE", []float64{0, 0}, []float64{0.6, 0.4, 0.55, 0.45}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := classTree(0, []float64{nan, tc.left}, []float64{nan, tc.right})
			attrs := append(treeAttrs(nodes, "class", false), onnxtest.AttrInts("classlabels_int64s", 0, 1), onnxtest.AttrString("post_transform", tc.post))
			outs := runModel(t, mlModel(1, "TreeEnsembleClassifier", []arg{in("x", x)}, 2, attrs...), x)
			expectClose(t, outs[0], rf(sh(2), tc.labels...))
			expectClose(t, outs[1], rf(sh(2, 2), tc.scores...))
		})
	}
	// Both classes weighted: an ordinary two-class argmax.
	nodes := classTree(0, []float64{0.9, 0.1}, []float64{0.2, 0.8})
	attrs := append(treeAttrs(nodes, "class", false), onnxtest.AttrStrings("classlabels_strings", "no", "yes"))
	outs := runModel(t, mlModel(1, "TreeEnsembleClassifier", []arg{in("x", x)}, 2, attrs...), x)
	expectStrings(t, outs[0], sh(2), "no", "yes")
	expectClose(t, outs[1], rf(sh(2, 2), 0.9, 0.1, 0.2, 0.8))
}

func TestTreeLoadErrors(t *testing.T) {
	x := tensor.FromFloat32s("x", sh(1, 2), []float32{0, 0})
	good := func() []tnode { return twoTrees(0) }
	for _, tc := range []struct {
		name  string
		op    string
		nodes []tnode
		extra [][]byte
		drop  string // attribute to leave out
		want  string
	}{
		{"unknown mode", "TreeEnsembleRegressor", func() []tnode { n := good(); n[0].mode = "BRANCH_MAYBE"; return n }(), nil, "", "nodes_modes[0]"},
		{"feature out of range", "TreeEnsembleRegressor", func() []tnode { n := good(); n[2].feature = 5; return n }(), nil, "", "nodes_featureids[2] = 5"},
		{"child not in the tree", "TreeEnsembleRegressor", func() []tnode { n := good(); n[2].yes = 9; return n }(), nil, "", "is not a node of the tree"},
		{"cycle", "TreeEnsembleRegressor", func() []tnode { n := good(); n[2].yes = 0; return n }(), nil, "", "not reachable from its root"},
		{"every node a child", "TreeEnsembleRegressor", func() []tnode {
			n := good()
			n[2].yes = 0
			n[1] = tnode{id: 1, mode: "BRANCH_LEQ", yes: 3, no: 2}
			n[3].weights, n[4].weights = nil, nil
			return n[:5]
		}(), nil, "", "no root"},
		{"duplicate node", "TreeEnsembleRegressor", func() []tnode { n := good(); n[1].id = 0; return n }(), nil, "", "defined twice"},
		{"weight on a branch", "TreeEnsembleRegressor", func() []tnode { n := good(); n[0].weights = []float64{1}; return n }(), nil, "", "which is not a LEAF"},
		{"target out of range", "TreeEnsembleRegressor", good(), [][]byte{onnxtest.AttrInt("n_targets", 1)}, "", "class/target 1"},
		{"unknown aggregate", "TreeEnsembleRegressor", good(), [][]byte{onnxtest.AttrInt("n_targets", 2), onnxtest.AttrString("aggregate_function", "MEDIAN")}, "", "aggregate_function"},
		{"base values size", "TreeEnsembleRegressor", good(), [][]byte{onnxtest.AttrInt("n_targets", 2), onnxtest.AttrFloats("base_values", 1, 2, 3)}, "", "base_values has 3"},
		{"unknown post transform", "TreeEnsembleRegressor", good(), [][]byte{onnxtest.AttrInt("n_targets", 2), onnxtest.AttrString("post_transform", "EXP")}, "", "post_transform"},
		{"lengths disagree", "TreeEnsembleRegressor", good(), [][]byte{onnxtest.AttrInt("n_targets", 2)}, "nodes_falsenodeids", "nodes_falsenodeids has 0"},
		{"no labels", "TreeEnsembleClassifier", good(), nil, "", "classlabels"},
		{"both labels", "TreeEnsembleClassifier", good(), [][]byte{onnxtest.AttrInts("classlabels_int64s", 0, 1), onnxtest.AttrStrings("classlabels_strings", "a", "b")}, "", "exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "target"
			if tc.op == "TreeEnsembleClassifier" {
				prefix = "class"
			}
			var attrs [][]byte
			for _, a := range treeAttrs(tc.nodes, prefix, false) {
				if tc.drop != "" && strings.Contains(string(a), tc.drop) {
					continue
				}
				attrs = append(attrs, a)
			}
			if tc.op == "TreeEnsembleRegressor" && len(tc.extra) == 0 {
				attrs = append(attrs, onnxtest.AttrInt("n_targets", 2))
			}
			attrs = append(attrs, tc.extra...)
			_, err := LoadBytes(mlModel(1, tc.op, []arg{in("x", x)}, 1, attrs...), Options{Concurrency: 1})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadBytes error = %v; want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), `node "n"`) {
				t.Errorf("error %q does not name the node", err)
			}
		})
	}
}
