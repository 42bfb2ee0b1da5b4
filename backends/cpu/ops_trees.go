package cpu

import (
	"sync"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The ONNX-ML tree-ensemble operators. The trees are read from the node's
// attributes once (the first plan that compiles the node builds the
// forest; later plans for other batch sizes reuse it) into a
// forest.Forest, which evaluates a batch one tree at a time.
//
// Semantics follow the ai.onnx.ml specification (opsets 1 and 3: the
// *_as_tensor double attributes of opset 3 are read where present) and,
// where it is silent, onnxruntime:
//   - every tree's root is its one node that no other node of the tree
//     names as a child;
//   - a NaN feature takes the true branch when
//     nodes_missing_value_tracks_true says so, otherwise it follows the
//     comparison (false for every mode but BRANCH_NEQ);
//   - scores are aggregated (TreeEnsembleRegressor: aggregate_function;
//     the classifier sums), then base_values are added;
//   - classifier labels are the argmax of the scores before
//     post_transform; with two class labels and leaf weights for only one
//     class id ("binary single-weight", as converted gradient-boosting
//     classifiers are), that score s is the positive class's: the label is
//     classlabels[1] when s > 0.5 (all weights non-negative) or s > 0
//     (otherwise), and the scores are [1-s, s] (non-negative weights) or,
//     with mixed signs, [-s, s] (LOGISTIC: [logistic(-s), logistic(s)]);
//     PROBIT applies to s alone.

// lookupTreeOp returns the definition of an ai.onnx.ml tree-ensemble
// operator (TreeEnsembleClassifier, TreeEnsembleRegressor), or nil.
func lookupTreeOp(op string) *opDef {
	nodeAttrs := []string{"nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
		"nodes_values", "nodes_values_as_tensor", "nodes_truenodeids", "nodes_falsenodeids",
		"nodes_missing_value_tracks_true", "nodes_hitrates", "nodes_hitrates_as_tensor",
		"post_transform", "base_values", "base_values_as_tensor"}
	switch op {
	case "TreeEnsembleClassifier":
		return &opDef{1, 1, 2, append(nodeAttrs, "class_treeids", "class_nodeids", "class_ids",
			"class_weights", "class_weights_as_tensor", "classlabels_int64s", "classlabels_strings"), compileTreeClassifier}
	case "TreeEnsembleRegressor":
		return &opDef{1, 1, 1, append(nodeAttrs, "target_treeids", "target_nodeids", "target_ids",
			"target_weights", "target_weights_as_tensor", "n_targets", "aggregate_function"), compileTreeRegressor}
	}
	return nil
}

// acceptsMissing reports whether NaN is a meaningful input value for g: it
// has a tree ensemble (which routes NaN by nodes_missing_value_tracks_true)
// or an Imputer.
func acceptsMissing(g *graph) bool {
	for _, n := range g.nodes {
		switch n.op {
		case "TreeEnsembleClassifier", "TreeEnsembleRegressor", "Imputer":
			return true
		}
	}
	return false
}

// treeEnsemble is what a tree node's attributes build, once per node.
type treeEnsemble struct {
	f    *forest.Forest
	post postTransform
	// Classifier only.
	classes     int
	binary      bool // two labels, weights for one class id
	allPositive bool // every weight >= 0
}

// treeEnsemble builds the node's ensemble once; the plans of every batch
// size share it.
func (c *opCtx) treeEnsemble(build func() (*treeEnsemble, error)) (*treeEnsemble, error) {
	v, err := c.n.prepare(func() (any, error) { return build() })
	if err != nil {
		return nil, err
	}
	return v.(*treeEnsemble), nil
}

// attrReader reads attributes, keeping the first error, so that a run of
// reads is checked once.
type attrReader struct {
	as  onnx.Attrs
	err error
}

func (r *attrReader) ints(name string) []int64 {
	v, _, err := r.as.Ints(name)
	r.keep(err)
	return v
}

func (r *attrReader) floats(name string) []float64 {
	v, _, err := floatsAttr(r.as, name)
	r.keep(err)
	return v
}

func (r *attrReader) strs(name string) []string {
	v, _, err := r.as.Strings(name)
	r.keep(err)
	return v
}

func (r *attrReader) keep(err error) {
	if r.err == nil {
		r.err = err
	}
}

// floatsAttr returns the FLOATS attribute name, or its name_as_tensor
// double form (opset 3), as float64s.
func floatsAttr(as onnx.Attrs, name string) ([]float64, bool, error) {
	if a := as.Find(name + "_as_tensor"); a != nil {
		if as.Has(name) {
			return nil, false, invalidf("both %s and %s_as_tensor are set", name, name)
		}
		if a.Type != onnx.AttrTensor || a.T == nil {
			return nil, false, invalidf("attribute %s_as_tensor: want a tensor", name)
		}
		t, err := a.T.ToTensor()
		if err != nil {
			return nil, false, invalidf("attribute %s_as_tensor: %v", name, err)
		}
		out := make([]float64, t.Len())
		switch t.DType {
		case tensor.FP64, tensor.FP32:
			for i := range out {
				out[i] = t.Float64At(i)
			}
		default:
			return nil, false, invalidf("attribute %s_as_tensor is %s; want DOUBLE or FLOAT", name, t.DType)
		}
		return out, true, nil
	}
	fs, ok, err := as.Floats(name)
	if err != nil || !ok {
		return nil, ok, err
	}
	out := make([]float64, len(fs))
	for i, v := range fs {
		out[i] = float64(v)
	}
	return out, true, nil
}

// leafWeights are the (tree, node, target, weight) lists of class_* or
// target_* attributes.
type leafWeights struct {
	trees, nodes, ids []int64
	weights           []float64
}

func readLeafWeights(as onnx.Attrs, prefix, idName string) (leafWeights, error) {
	r := attrReader{as: as}
	lw := leafWeights{trees: r.ints(prefix + "_treeids"), nodes: r.ints(prefix + "_nodeids"),
		ids: r.ints(idName), weights: r.floats(prefix + "_weights")}
	if r.err != nil {
		return lw, r.err
	}
	n := len(lw.trees)
	if len(lw.nodes) != n || len(lw.ids) != n || len(lw.weights) != n {
		return lw, invalidf("%s_treeids, %s_nodeids, %s and %s_weights have %d, %d, %d and %d entries; want equal lengths",
			prefix, prefix, idName, prefix, n, len(lw.nodes), len(lw.ids), len(lw.weights))
	}
	return lw, nil
}

var nodeModes = map[string]forest.Mode{
	"LEAF": forest.Leaf, "BRANCH_LEQ": forest.LEQ, "BRANCH_LT": forest.LT, "BRANCH_GTE": forest.GTE,
	"BRANCH_GT": forest.GT, "BRANCH_EQ": forest.EQ, "BRANCH_NEQ": forest.NEQ,
}

// buildTrees reads the nodes_* attributes and the leaf weights into a
// forest over features inputs and targets outputs.
func buildTrees(as onnx.Attrs, features, targets int, lw leafWeights, o forest.Options) (*forest.Forest, error) {
	r := attrReader{as: as}
	treeIDs, nodeIDs, featIDs := r.ints("nodes_treeids"), r.ints("nodes_nodeids"), r.ints("nodes_featureids")
	modes, values := r.strs("nodes_modes"), r.floats("nodes_values")
	trueIDs, falseIDs := r.ints("nodes_truenodeids"), r.ints("nodes_falsenodeids")
	missing, hasMissing, err := as.Ints("nodes_missing_value_tracks_true")
	if r.err != nil {
		return nil, r.err
	}
	if err != nil {
		return nil, err
	}
	n := len(nodeIDs)
	if n == 0 {
		return nil, invalidf("nodes_nodeids is empty; want at least one node")
	}
	for _, l := range []struct {
		name string
		len  int
	}{{"nodes_treeids", len(treeIDs)}, {"nodes_featureids", len(featIDs)}, {"nodes_modes", len(modes)},
		{"nodes_values", len(values)}, {"nodes_truenodeids", len(trueIDs)}, {"nodes_falsenodeids", len(falseIDs)}} {
		if l.len != n {
			return nil, invalidf("%s has %d entries, nodes_nodeids %d; want equal lengths", l.name, l.len, n)
		}
	}
	if hasMissing && len(missing) != n {
		return nil, invalidf("nodes_missing_value_tracks_true has %d entries, nodes_nodeids %d; want equal lengths", len(missing), n)
	}
	type key struct{ tree, node int64 }
	type treeNodes struct {
		nodes []forest.Node
		child []bool
	}
	index := make(map[key]int, n) // (tree, node id) → position in its tree
	var order []int64             // tree ids in first-seen order
	trees := map[int64]*treeNodes{}
	for i := range n {
		t := trees[treeIDs[i]]
		if t == nil {
			t = &treeNodes{}
			trees[treeIDs[i]] = t
			order = append(order, treeIDs[i])
		}
		k := key{treeIDs[i], nodeIDs[i]}
		if _, dup := index[k]; dup {
			return nil, invalidf("tree %d node %d is defined twice", k.tree, k.node)
		}
		index[k] = len(t.nodes)
		mode, ok := nodeModes[modes[i]]
		if !ok {
			return nil, invalidf("nodes_modes[%d] = %q; want LEAF or BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ", i, modes[i])
		}
		nd := forest.Node{Mode: mode, Threshold: values[i], MissingYes: mode == forest.NEQ}
		if mode != forest.Leaf {
			if featIDs[i] < 0 || featIDs[i] >= int64(features) {
				return nil, invalidf("nodes_featureids[%d] = %d; the input has %d features", i, featIDs[i], features)
			}
			nd.Feature = int(featIDs[i])
			if hasMissing && missing[i] != 0 {
				nd.MissingYes = true
			}
		}
		t.nodes = append(t.nodes, nd)
	}
	child := func(i int, id int64, what string) (int, error) {
		p, ok := index[key{treeIDs[i], id}]
		if !ok {
			return 0, invalidf("tree %d node %d: %s %d is not a node of the tree", treeIDs[i], nodeIDs[i], what, id)
		}
		return p, nil
	}
	for i := range n {
		t := trees[treeIDs[i]]
		p := index[key{treeIDs[i], nodeIDs[i]}]
		nd := &t.nodes[p]
		if nd.Mode == forest.Leaf {
			continue
		}
		if nd.Yes, err = child(i, trueIDs[i], "nodes_truenodeids"); err != nil {
			return nil, err
		}
		if nd.No, err = child(i, falseIDs[i], "nodes_falsenodeids"); err != nil {
			return nil, err
		}
		if t.child == nil {
			t.child = make([]bool, len(t.nodes))
		}
		t.child[nd.Yes], t.child[nd.No] = true, true
	}
	for i := range lw.trees {
		p, ok := index[key{lw.trees[i], lw.nodes[i]}]
		if !ok {
			return nil, invalidf("leaf weight %d names tree %d node %d, which does not exist", i, lw.trees[i], lw.nodes[i])
		}
		nd := &trees[lw.trees[i]].nodes[p]
		if nd.Mode != forest.Leaf {
			return nil, invalidf("leaf weight %d names tree %d node %d, which is not a LEAF", i, lw.trees[i], lw.nodes[i])
		}
		if lw.ids[i] < 0 || lw.ids[i] >= int64(targets) {
			return nil, invalidf("leaf weight %d is for class/target %d; want 0 to %d", i, lw.ids[i], targets-1)
		}
		nd.Weights = append(nd.Weights, forest.Weight{Target: int(lw.ids[i]), Value: lw.weights[i]})
	}
	b, err := forest.NewBuilder(features, targets)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	for _, id := range order {
		t := trees[id]
		root := -1
		for p := range t.nodes {
			if t.child == nil || !t.child[p] {
				if root >= 0 {
					return nil, invalidf("tree %d has more than one root (nodes no other node points to)", id)
				}
				root = p
			}
		}
		if root < 0 {
			return nil, invalidf("tree %d has no root: every node is some node's child", id)
		}
		if n := reachable(t.nodes, root); n != len(t.nodes) {
			return nil, invalidf("tree %d: %d of its %d nodes are not reachable from its root (node %d): a cycle or a detached part", id, len(t.nodes)-n, len(t.nodes), nodeIDs[0])
		}
		if err := b.AddTree(t.nodes, root); err != nil {
			return nil, invalidf("tree %d: %v", id, err)
		}
	}
	f, err := b.Build(o)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	return f, nil
}

// reachable counts the nodes reachable from root (each at most once).
func reachable(nodes []forest.Node, root int) int {
	seen := make([]bool, len(nodes))
	stack := []int{root}
	n := 0
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[i] {
			continue
		}
		seen[i] = true
		n++
		if nodes[i].Mode != forest.Leaf {
			stack = append(stack, nodes[i].Yes, nodes[i].No)
		}
	}
	return n
}

// treeInput checks X ([N, F], a float or integer type) and returns F.
func treeInput(c *opCtx) (int, error) {
	x := c.input(0)
	if err := c.wantDType(0, "X", tensor.FP32, tensor.FP64, tensor.Int64, tensor.Int32); err != nil {
		return 0, err
	}
	if len(x.shape) != 2 || x.shape[1] <= 0 {
		return 0, invalidf("input X has shape %v; want [N, features]", x.shape)
	}
	return int(x.shape[1]), nil
}

func compileTreeRegressor(c *opCtx) (kernel, error) {
	features, err := treeInput(c)
	if err != nil {
		return nil, err
	}
	as := c.n.attrs
	te, err := c.treeEnsemble(func() (*treeEnsemble, error) {
		nt, err := as.Int("n_targets", 1)
		if err != nil {
			return nil, err
		}
		if nt <= 0 || nt > forest.MaxTargets {
			return nil, invalidf("n_targets = %d; want 1 to %d", nt, forest.MaxTargets)
		}
		agg, err := as.Str("aggregate_function", "SUM")
		if err != nil {
			return nil, err
		}
		aggs := map[string]forest.Aggregate{"SUM": forest.Sum, "AVERAGE": forest.Average, "MIN": forest.Min, "MAX": forest.Max}
		a, ok := aggs[agg]
		if !ok {
			return nil, invalidf("aggregate_function %q; want SUM, AVERAGE, MIN or MAX", agg)
		}
		post, err := parsePostTransform(as)
		if err != nil {
			return nil, err
		}
		base, _, err := floatsAttr(as, "base_values")
		if err != nil {
			return nil, err
		}
		if len(base) != 0 && len(base) != int(nt) {
			return nil, invalidf("base_values has %d entries; want n_targets = %d", len(base), nt)
		}
		lw, err := readLeafWeights(as, "target", "target_ids")
		if err != nil {
			return nil, err
		}
		f, err := buildTrees(as, features, int(nt), lw, forest.Options{Aggregate: a, Base: base})
		if err != nil {
			return nil, err
		}
		return &treeEnsemble{f: f, post: post}, nil
	})
	if err != nil {
		return nil, err
	}
	if te.f.NumFeatures() != features {
		return nil, invalidf("input X has %d features; the trees were built for %d", features, te.f.NumFeatures())
	}
	n := c.input(0).shape[0]
	c.setOut(0, tensor.FP32, []int64{n, int64(te.f.NumTargets())})
	dt := c.input(0).dtype
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[float32](out[0].Data)
		te.predict(in[0], dt, int(n), y)
		nt := te.f.NumTargets()
		if te.post != postNone {
			for r := 0; r < int(n); r++ {
				te.post.apply(y[r*nt : r*nt+nt])
			}
		}
		return nil
	}), nil
}

// convPool holds float64 copies of integer inputs.
var convPool sync.Pool

// predict scores the rows of x into y (rows × targets).
func (te *treeEnsemble) predict(x *tensor.Tensor, dt tensor.DataType, rows int, y []float32) {
	switch dt {
	case tensor.FP32:
		te.f.Predict(viewAs[float32](x.Data), rows, y)
	case tensor.FP64:
		te.f.Predict64(viewAs[float64](x.Data), rows, y)
	default:
		n := x.Len()
		p, _ := convPool.Get().(*[]float64)
		if p == nil || cap(*p) < n {
			s := make([]float64, n)
			p = &s
		}
		buf := (*p)[:n]
		for i := range buf {
			buf[i] = x.Float64At(i)
		}
		te.f.Predict64(buf, rows, y)
		convPool.Put(p)
	}
}

func compileTreeClassifier(c *opCtx) (kernel, error) {
	features, err := treeInput(c)
	if err != nil {
		return nil, err
	}
	as := c.n.attrs
	ints, hasInts, err := as.Ints("classlabels_int64s")
	if err != nil {
		return nil, err
	}
	strs, hasStrs, err := as.Strings("classlabels_strings")
	if err != nil {
		return nil, err
	}
	if hasInts == hasStrs {
		return nil, invalidf("exactly one of classlabels_int64s and classlabels_strings must be set")
	}
	classes := len(ints) + len(strs)
	if classes == 0 {
		return nil, invalidf("no class labels")
	}
	te, err := c.treeEnsemble(func() (*treeEnsemble, error) {
		post, err := parsePostTransform(as)
		if err != nil {
			return nil, err
		}
		base, _, err := floatsAttr(as, "base_values")
		if err != nil {
			return nil, err
		}
		if len(base) != 0 && len(base) != classes {
			return nil, invalidf("base_values has %d entries; want one per class (%d)", len(base), classes)
		}
		lw, err := readLeafWeights(as, "class", "class_ids")
		if err != nil {
			return nil, err
		}
		te := &treeEnsemble{post: post, classes: classes, allPositive: true}
		ids := map[int64]bool{}
		for i, w := range lw.weights {
			ids[lw.ids[i]] = true
			if w < 0 {
				te.allPositive = false
			}
		}
		te.binary = classes == 2 && len(ids) == 1
		if te.f, err = buildTrees(as, features, classes, lw, forest.Options{Aggregate: forest.Sum, Base: base}); err != nil {
			return nil, err
		}
		return te, nil
	})
	if err != nil {
		return nil, err
	}
	if te.f.NumFeatures() != features {
		return nil, invalidf("input X has %d features; the trees were built for %d", features, te.f.NumFeatures())
	}
	n := c.input(0).shape[0]
	labelDT := tensor.Int64
	labels := ints
	if hasStrs {
		labelDT = tensor.Bytes
		labels = c.stringIDs(strs)
	}
	c.setOut(0, labelDT, []int64{n})
	c.setOut(1, tensor.FP32, []int64{n, int64(classes)})
	dt := c.input(0).dtype
	pos := 0 // the scored class of a binary single-weight ensemble
	if te.binary && te.f.Scored(1) {
		pos = 1
	}
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		rows := int(n)
		var z []float32
		if len(out) > 1 && out[1] != nil {
			z = viewAs[float32](out[1].Data)
		} else {
			p := scorePool(rows * classes)
			defer scorePut(p)
			z = *p
		}
		te.predict(in[0], dt, rows, z)
		var y []int64
		if out[0] != nil {
			y = viewAs[int64](out[0].Data)
		}
		for r := range rows {
			row := z[r*classes : r*classes+classes]
			if te.binary {
				s := row[pos]
				positive := s > 0
				if te.allPositive {
					positive = s > 0.5
				}
				if y != nil {
					y[r] = labels[boolIndex(positive)]
				}
				switch {
				case te.post == postProbit:
					row[0], row[1] = 0, probit(s)
				case te.allPositive:
					row[0], row[1] = 1-s, s
				case te.post == postLogistic:
					row[0], row[1] = logistic(-s), logistic(s)
				default:
					row[0], row[1] = -s, s
				}
				continue
			}
			if y != nil {
				best := 0
				for k, v := range row {
					if v > row[best] {
						best = k
					}
				}
				y[r] = labels[best]
			}
			te.post.apply(row)
		}
		return nil
	}), nil
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

var scores sync.Pool

func scorePool(n int) *[]float32 {
	p, _ := scores.Get().(*[]float32)
	if p == nil || cap(*p) < n {
		s := make([]float32, n)
		return &s
	}
	*p = (*p)[:n]
	return p
}

func scorePut(p *[]float32) { scores.Put(p) }
