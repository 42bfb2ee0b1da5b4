package lightgbm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// This file describes models as LightGBM holds them (the arrays of
// include/LightGBM/tree.h), writes them as GBDT::SaveModelToString does,
// and evaluates them directly from LightGBM's rules: the reference the
// reader is tested against, independent of forest and of the reader.

type tTree struct {
	numLeaves     int
	splitFeature  []int
	threshold     []float64
	decisionType  []int
	left, right   []int
	leafValue     []float64
	catBoundaries []int // numCat+1 entries, from 0
	catThreshold  []uint32
	shrinkage     float64
}

func (t *tTree) numCat() int { return len(t.catBoundaries) - 1 }

type tModel struct {
	numClass, perIter int
	features          int
	objective         string // the objective line's value; "" writes none
	average           bool
	catFeature        []bool // for feature_infos
	trees             []tTree
}

// num formats a double as LightGBM does (%.17g, "inf").
func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	return strconv.FormatFloat(v, 'g', 17, 64)
}

func join[T any](xs []T, f func(T) string) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f(x))
	}
	return b.String()
}

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint32) string { return strconv.FormatUint(uint64(u), 10) }

// repeat is n copies of s, space-separated.
func repeat(s string, n int) string { return strings.TrimSuffix(strings.Repeat(s+" ", n), " ") }

// text writes t as Tree::ToString does, statistics included.
func (t *tTree) text() string {
	var b strings.Builder
	ni := t.numLeaves - 1
	fmt.Fprintf(&b, "num_leaves=%d\nnum_cat=%d\n", t.numLeaves, t.numCat())
	fmt.Fprintf(&b, "split_feature=%s\n", join(t.splitFeature, itoa))
	fmt.Fprintf(&b, "split_gain=%s\n", repeat("12.5", ni))
	fmt.Fprintf(&b, "threshold=%s\n", join(t.threshold, num))
	fmt.Fprintf(&b, "decision_type=%s\n", join(t.decisionType, itoa))
	fmt.Fprintf(&b, "left_child=%s\nright_child=%s\n", join(t.left, itoa), join(t.right, itoa))
	fmt.Fprintf(&b, "leaf_value=%s\n", join(t.leafValue, num))
	fmt.Fprintf(&b, "leaf_weight=%s\n", repeat("3.5", t.numLeaves))
	fmt.Fprintf(&b, "leaf_count=%s\n", repeat("7", t.numLeaves))
	fmt.Fprintf(&b, "internal_value=%s\n", repeat("0.25", ni))
	fmt.Fprintf(&b, "internal_weight=%s\n", repeat("7", ni))
	fmt.Fprintf(&b, "internal_count=%s\n", repeat("14", ni))
	if t.numCat() > 0 {
		fmt.Fprintf(&b, "cat_boundaries=%s\n", join(t.catBoundaries, itoa))
		fmt.Fprintf(&b, "cat_threshold=%s\n", join(t.catThreshold, utoa))
	}
	fmt.Fprintf(&b, "is_linear=0\nshrinkage=%s\n\n", strconv.FormatFloat(t.shrinkage, 'g', 6, 64))
	return b.String()
}

// text writes m as GBDT::SaveModelToString does (format v4), with the
// sections that follow the trees.
func (m *tModel) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tree\nversion=v4\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=%d\n",
		m.numClass, m.perIter, m.features-1)
	if m.objective != "" {
		fmt.Fprintf(&b, "objective=%s\n", m.objective)
	}
	if m.average {
		b.WriteString("average_output\n")
	}
	names := make([]string, m.features)
	infos := make([]string, m.features)
	for i := range names {
		names[i] = fmt.Sprintf("Column_%d", i)
		infos[i] = "[-3.5:1e+10]"
		if i < len(m.catFeature) && m.catFeature[i] {
			infos[i] = "0:1:2:3:33:69"
		}
	}
	fmt.Fprintf(&b, "feature_names=%s\nfeature_infos=%s\n", strings.Join(names, " "), strings.Join(infos, " "))
	trees := make([]string, len(m.trees))
	sizes := make([]int, len(m.trees))
	for i := range m.trees {
		trees[i] = fmt.Sprintf("Tree=%d\n", i) + m.trees[i].text() + "\n"
		sizes[i] = len(trees[i])
	}
	fmt.Fprintf(&b, "tree_sizes=%s\n\n", join(sizes, itoa))
	for _, t := range trees {
		b.WriteString(t)
	}
	b.WriteString("end of trees\n\nfeature_importances:\nColumn_0=3\n\nparameters:\n[boosting: gbdt]\n[objective: x]\nend of parameters\n\npandas_categorical:null\n")
	return b.String()
}

// genConfig says what random trees to grow.
type genConfig struct {
	leaves     int       // per tree, at most
	fixed      bool      // exactly leaves per tree
	thresholds []float64 // numerical thresholds to draw from
	missing    []int     // numerical missing types to draw from
	catFeature []bool
	scale      float64 // leaf values ~ N(0, scale)
}

// genTree grows a tree as LightGBM does (Tree::Split): the split leaf's
// parent now points to a new internal node num_leaves-1, whose left child
// is the split leaf and right child the new leaf num_leaves.
func genTree(r *rand.Rand, c *genConfig, features int) tTree {
	t := tTree{numLeaves: 1, leafValue: []float64{c.scale * r.NormFloat64()}, catBoundaries: []int{0}, shrinkage: 0.1}
	parent := []int{-1}
	leaves := 1 + r.IntN(c.leaves)
	if c.fixed {
		leaves = c.leaves
	}
	for t.numLeaves < leaves {
		leaf, node := r.IntN(t.numLeaves), t.numLeaves-1
		if p := parent[leaf]; p >= 0 {
			if t.left[p] == ^leaf {
				t.left[p] = node
			} else {
				t.right[p] = node
			}
		}
		f := r.IntN(features)
		if f < len(c.catFeature) && c.catFeature[f] {
			// Missing type None or NaN, as LightGBM writes for categorical
			// splits; default_left is meaningless there.
			t.decisionType = append(t.decisionType, 1|r.IntN(2)<<1|2*r.IntN(2)<<2)
			t.threshold = append(t.threshold, float64(t.numCat()))
			words := 1 + r.IntN(3)
			for w := 0; w < words; w++ {
				var word uint32
				for k := r.IntN(5); k > 0; k-- {
					word |= 1 << r.IntN(32)
				}
				if w == 0 && r.IntN(2) == 0 {
					word |= 1 // category 0
				}
				t.catThreshold = append(t.catThreshold, word)
			}
			t.catBoundaries = append(t.catBoundaries, len(t.catThreshold))
		} else {
			mt := c.missing[r.IntN(len(c.missing))]
			dl := r.IntN(2)
			thr := c.thresholds[r.IntN(len(c.thresholds))]
			if mt == missingZero && dl == 0 && math.IsInf(thr, 1) {
				dl = 1 // see TestKnownDivergences
			}
			t.decisionType = append(t.decisionType, dl<<1|mt<<2)
			t.threshold = append(t.threshold, thr)
		}
		t.splitFeature = append(t.splitFeature, f)
		t.left = append(t.left, ^leaf)
		t.right = append(t.right, ^t.numLeaves)
		parent[leaf] = node
		parent = append(parent, node)
		t.leafValue = append(t.leafValue, c.scale*r.NormFloat64())
		t.numLeaves++
	}
	return t
}

func genModel(r *rand.Rand, c *genConfig, features, numClass, perIter, iterations int, objective string, average bool) *tModel {
	m := &tModel{numClass: numClass, perIter: perIter, features: features, objective: objective, average: average, catFeature: c.catFeature}
	for i := 0; i < iterations*perIter; i++ {
		m.trees = append(m.trees, genTree(r, c, features))
	}
	return m
}

// refInput is what LightGBM's dense-row predictor hands the trees: values
// with |x| <= kZeroThreshold are dropped from the sparse row and read 0.
func refInput(x float64) float64 {
	if !math.IsNaN(x) && math.Abs(x) <= zeroThreshold {
		return 0
	}
	return x
}

// refLeaf is Tree::GetLeaf with Tree::Decision, on refInput values.
func refLeaf(t *tTree, x []float64) int {
	if t.numLeaves == 1 {
		return 0
	}
	node := 0
	for node >= 0 {
		v := refInput(x[t.splitFeature[node]])
		dt := t.decisionType[node]
		var left bool
		if dt&1 != 0 {
			switch {
			case math.IsNaN(v):
				left = false
			case v <= -1 || v >= 1<<31:
				// static_cast<int> is negative (or out of range: INT_MIN on x86).
				left = false
			default:
				c := int(v) // truncates towards zero: -0.5 is category 0
				i := int(t.threshold[node])
				words := t.catThreshold[t.catBoundaries[i]:t.catBoundaries[i+1]]
				left = c/32 < len(words) && words[c/32]>>(c%32)&1 == 1
			}
		} else {
			mt := dt >> 2 & 3
			if math.IsNaN(v) && mt != missingNaN {
				v = 0
			}
			if (mt == missingZero && math.Abs(v) <= zeroThreshold) || (mt == missingNaN && math.IsNaN(v)) {
				left = dt&2 != 0
			} else {
				left = v <= t.threshold[node]
			}
		}
		if left {
			node = t.left[node]
		} else {
			node = t.right[node]
		}
	}
	return ^node
}

// refPredict is GBDT::Predict: raw scores per class in tree order,
// divided by the iterations in random-forest mode, then ConvertOutput.
func refPredict(m *tModel, x []float64) (raw, out []float64) {
	k := m.perIter
	raw = make([]float64, k)
	for i := range m.trees {
		t := &m.trees[i]
		raw[i%k] += t.leafValue[refLeaf(t, x)]
	}
	if m.average {
		for i := range raw {
			raw[i] /= float64(len(m.trees) / k)
		}
	}
	out = append([]float64(nil), raw...)
	toks := strings.Fields(m.objective)
	sigmoid := 1.0
	for _, t := range toks {
		if v, ok := strings.CutPrefix(t, "sigmoid:"); ok {
			sigmoid, _ = strconv.ParseFloat(v, 64)
		}
	}
	name := ""
	if len(toks) > 0 {
		name = toks[0]
	}
	switch name {
	case "binary", "multiclassova", "cross_entropy":
		for i, v := range out {
			out[i] = 1 / (1 + math.Exp(-sigmoid*v))
		}
	case "multiclass":
		mx := math.Inf(-1)
		for _, v := range out {
			mx = math.Max(mx, v)
		}
		sum := 0.0
		for i, v := range out {
			out[i] = math.Exp(v - mx)
			sum += out[i]
		}
		for i := range out {
			out[i] /= sum
		}
	case "poisson", "gamma", "tweedie":
		for i, v := range out {
			out[i] = math.Exp(v)
		}
	}
	return raw, out
}
