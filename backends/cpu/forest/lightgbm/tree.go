package lightgbm

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// zeroThreshold is LightGBM's kZeroThreshold (include/LightGBM/meta.h):
// declared double but initialised from the float literal 1e-35f, so it is
// float32(1e-35) = 1.0000000180025095e-35, a little above 1e-35.
const zeroThreshold = float64(float32(1e-35))

// decision_type bits (Tree::GetDecisionType, Tree::GetMissingType).
const (
	categoricalBit = 1
	defaultLeftBit = 2
	missingNone    = 0 // bits 2-3
	missingZero    = 1
	missingNaN     = 2
)

// treeFields are the keys of a tree block that predictions depend on.
// The others are statistics (split_gain, leaf_weight, leaf_count,
// internal_*) or shrinkage: LightGBM multiplies leaf values by the
// learning rate when it grows the tree (Tree::Shrinkage) and writes them
// so; shrinkage= only records the factor and Tree::Predict returns the
// leaf value as written.
type treeFields struct {
	numLeaves, numCat, splitFeature, threshold, decisionType field
	leftChild, rightChild, leafValue, catBoundaries          field
	catThreshold, isLinear                                   field
}

func (t *treeFields) field(key string) *field {
	switch key {
	case "num_leaves":
		return &t.numLeaves
	case "num_cat":
		return &t.numCat
	case "split_feature":
		return &t.splitFeature
	case "threshold":
		return &t.threshold
	case "decision_type":
		return &t.decisionType
	case "left_child":
		return &t.leftChild
	case "right_child":
		return &t.rightChild
	case "leaf_value":
		return &t.leafValue
	case "cat_boundaries":
		return &t.catBoundaries
	case "cat_threshold":
		return &t.catThreshold
	case "is_linear":
		return &t.isLinear
	}
	return nil
}

// scratch holds buffers reused from tree to tree (forest.Builder.AddTree
// copies what it keeps), so that reading allocates little per tree.
type scratch struct {
	feat, left, right, dt, bounds, cats, stack []int
	thr, val                                   []float64
	words                                      []uint32
	seen, catUsed                              []bool
	nodes                                      []forest.Node
	weights                                    []forest.Weight
}

// tree reads the block of tree idx, whose "Tree=idx" line was just read,
// up to the blank line that ends it, and returns its nodes for
// forest.Builder.AddTree (root 0): internal node i of LightGBM is node i,
// leaf j is node num_leaves-1+j. Its leaves score target, their values
// multiplied by scale.
func (r *reader) tree(idx, features, target int, scale float64) ([]forest.Node, error) {
	var t treeFields
	start := r.l.n
	for {
		line, ok := r.l.peek()
		if !ok || line == "" || strings.HasPrefix(line, "Tree=") || line == "end of trees" {
			break
		}
		r.l.next()
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, invalidf(r.l.n, "tree %d: %.40q is not key=value", idx, line)
		}
		if f := t.field(key); f != nil {
			if err := f.set(key, val, r.l.n); err != nil {
				return nil, err
			}
		}
	}
	need := func(f *field, key string) error {
		if f.line == 0 {
			return invalidf(start, "tree %d has no %s", idx, key)
		}
		return nil
	}
	// Required as by Tree::Tree(const char*, size_t*).
	for _, err := range []error{need(&t.numLeaves, "num_leaves"), need(&t.numCat, "num_cat"), need(&t.leafValue, "leaf_value")} {
		if err != nil {
			return nil, err
		}
	}
	nl, err := t.numLeaves.int(1, MaxLeaves, true)
	if err != nil {
		return nil, err
	}
	nc, err := t.numCat.int(0, nl-1, false)
	if err != nil {
		return nil, err
	}
	if t.isLinear.line != 0 {
		if lin, err := t.isLinear.int(0, 1, false); err != nil {
			return nil, err
		} else if lin == 1 {
			return nil, fmt.Errorf("%w: line %d: tree %d is linear (linear_tree=true): its leaves hold linear models, which forest does not evaluate", ErrUnsupported, t.isLinear.line, idx)
		}
	}
	s := &r.scratch
	why := fmt.Sprintf("tree %d, num_leaves=%d", idx, nl)
	if s.val, err = t.leafValue.floats(s.val, nl, false, why); err != nil {
		return nil, err
	}
	s.weights = grow(s.weights, nl)
	s.nodes = grow(s.nodes, 2*nl-1)
	ni := nl - 1 // internal nodes
	for j, v := range s.val {
		s.weights[j] = forest.Weight{Target: target, Value: v * scale}
		s.nodes[ni+j] = forest.Node{Mode: forest.Leaf, Weights: s.weights[j : j+1 : j+1]}
	}
	if nl == 1 {
		// A constant tree: Tree::Predict returns leaf_value[0] and
		// LightGBM reads none of the split arrays.
		return s.nodes, nil
	}
	for _, err := range []error{need(&t.splitFeature, "split_feature"), need(&t.threshold, "threshold"),
		need(&t.leftChild, "left_child"), need(&t.rightChild, "right_child")} {
		if err != nil {
			return nil, err
		}
	}
	if s.feat, err = t.splitFeature.ints(s.feat, ni, 0, features-1, why); err != nil {
		return nil, err
	}
	// A child c >= 0 is internal node c, c < 0 is leaf ^c (= -(c+1)).
	if s.left, err = t.leftChild.ints(s.left, ni, -nl, ni-1, why); err != nil {
		return nil, err
	}
	if s.right, err = t.rightChild.ints(s.right, ni, -nl, ni-1, why); err != nil {
		return nil, err
	}
	if s.thr, err = t.threshold.floats(s.thr, ni, true, why); err != nil {
		return nil, err
	}
	if t.decisionType.line != 0 {
		if s.dt, err = t.decisionType.ints(s.dt, ni, 0, 15, why); err != nil {
			return nil, err
		}
	} else {
		// LightGBM's default: numerical, missing type None.
		s.dt = grow(s.dt, ni)
		clear(s.dt)
	}
	if nc > 0 {
		if err := need(&t.catBoundaries, "cat_boundaries"); err != nil {
			return nil, err
		}
		if err := need(&t.catThreshold, "cat_threshold"); err != nil {
			return nil, err
		}
		if s.bounds, err = t.catBoundaries.ints(s.bounds, nc+1, 0, math.MaxInt32, fmt.Sprintf("tree %d, num_cat=%d", idx, nc)); err != nil {
			return nil, err
		}
		for i, b := range s.bounds {
			if (i == 0 && b != 0) || (i > 0 && b < s.bounds[i-1]) {
				return nil, invalidf(t.catBoundaries.line, "tree %d: cat_boundaries[%d] = %d; want 0 first, then non-decreasing", idx, i, b)
			}
		}
		if s.words, err = t.catThreshold.words(s.words, s.bounds[nc], "cat_boundaries[num_cat]"); err != nil {
			return nil, err
		}
		s.catUsed = grow(s.catUsed, nc)
		clear(s.catUsed)
	}
	if err := s.checkShape(idx, nl, t.leftChild.line); err != nil {
		return nil, err
	}
	// Categories are listed once (every set serves one node), so their
	// number is the bits set in cat_threshold; growing s.cats to that at
	// once keeps the expansion to one allocation.
	ncats := 0
	if nc > 0 {
		for _, w := range s.words {
			ncats += bits.OnesCount32(w)
		}
	}
	s.cats = grow(s.cats, ncats)[:0]
	for i := 0; i < ni; i++ {
		dt := s.dt[i]
		if (dt>>2)&3 > missingNaN {
			return nil, invalidf(t.decisionType.line, "tree %d: decision_type[%d] = %d has missing type 3; want 0 (None), 1 (Zero) or 2 (NaN)", idx, i, dt)
		}
		n := forest.Node{Feature: s.feat[i], Yes: s.child(s.left[i], ni), No: s.child(s.right[i], ni)}
		if dt&categoricalBit == 0 {
			numerical(&n, s.thr[i], dt)
		} else if err := s.categorical(&n, s.thr[i], nc, idx, i, &t); err != nil {
			return nil, err
		}
		s.nodes[i] = n
	}
	return s.nodes, nil
}

func (s *scratch) child(c, ni int) int {
	if c >= 0 {
		return c
	}
	return ni + ^c
}

// checkShape verifies that the children (already in range) form one
// binary tree rooted at internal node 0 that reaches every node once.
func (s *scratch) checkShape(idx, nl, line int) error {
	ni := nl - 1
	s.seen = grow(s.seen, ni+nl)
	clear(s.seen)
	s.seen[0] = true
	stack := append(s.stack[:0], 0)
	reached := 1
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range [2]int{s.left[i], s.right[i]} {
			k := s.child(c, ni)
			if s.seen[k] {
				what := fmt.Sprintf("internal node %d", c)
				if c < 0 {
					what = fmt.Sprintf("leaf %d", ^c)
				}
				return invalidf(line, "tree %d: %s is reached twice (a cycle or a shared subtree)", idx, what)
			}
			s.seen[k] = true
			reached++
			if c >= 0 {
				stack = append(stack, c)
			}
		}
	}
	s.stack = stack
	if reached != ni+nl {
		return invalidf(line, "tree %d: %d of its %d nodes are not reached from the root", idx, ni+nl-reached, ni+nl)
	}
	return nil
}

// numerical maps a numerical split. LightGBM (Tree::NumericalDecision)
// goes left when fval <= threshold, compared in double, except:
//   - missing type None: a NaN is replaced by 0.0 first, so it goes where
//     0 <= threshold sends it;
//   - Zero: NaN and |fval| <= kZeroThreshold take the default direction
//     (default_left), the rest compare;
//   - NaN: NaN takes the default direction, the rest (zero too) compare.
//
// Before the tree, LightGBM's dense-row predictors keep only values with
// |x| > kZeroThreshold or NaN (RowPairFunctionFromDenseMatric in
// src/c_api.cpp) and the dropped ones read as 0.0, so that a tiny value
// goes where 0 does. That only matters for a threshold t in
// [-kZeroThreshold, kZeroThreshold) with missing type None or NaN, and it
// is emulated by moving t out of that band to the side that gives 0 the
// same direction.
func numerical(n *forest.Node, t float64, dt int) {
	defaultLeft := dt&defaultLeftBit != 0
	n.Mode = forest.LEQ
	switch (dt >> 2) & 3 {
	case missingNone:
		t = outOfZeroBand(t)
		n.MissingYes = 0 <= t
	case missingZero:
		n.ZeroMissing, n.MissingYes = true, defaultLeft
	case missingNaN:
		t = outOfZeroBand(t)
		n.MissingYes = defaultLeft
	}
	n.Threshold = t
}

// outOfZeroBand returns a threshold that sends every non-tiny value where
// t does and every value with |x| <= kZeroThreshold where t sends 0.
func outOfZeroBand(t float64) float64 {
	switch {
	case t >= 0 && t < zeroThreshold:
		return zeroThreshold
	case t < 0 && t >= -zeroThreshold:
		return math.Nextafter(-zeroThreshold, math.Inf(-1))
	}
	return t
}

// categorical maps a categorical split. Its threshold is an index into
// cat_boundaries, whose entries delimit the node's bitset of 32-bit words
// in cat_threshold. LightGBM (Tree::CategoricalDecision) sends NaN right
// whatever the missing type, truncates any other value to an int (C++
// static_cast, towards zero), sends a negative int right and goes left
// when the int's bit is set (Common::FindInBitset; categories beyond the
// bitset are not in it). The forest.InSet node lists the set bits.
func (s *scratch) categorical(n *forest.Node, t float64, nc, idx, i int, tf *treeFields) error {
	if nc == 0 {
		// LightGBM would then evaluate every node as numerical
		// (Tree::GetLeaf); it never writes such a tree.
		return invalidf(tf.decisionType.line, "tree %d: decision_type[%d] is categorical but num_cat=0", idx, i)
	}
	if t != math.Trunc(t) || t < 0 || t >= float64(nc) {
		return invalidf(tf.threshold.line, "tree %d: threshold[%d] = %v; want a category set index in [0, num_cat=%d)", idx, i, t, nc)
	}
	c := int(t)
	if s.catUsed[c] {
		// LightGBM gives every categorical split its own set; sharing one
		// would let a small file describe huge category lists.
		return invalidf(tf.threshold.line, "tree %d: category set %d is used by two nodes", idx, c)
	}
	s.catUsed[c] = true
	start := len(s.cats)
	for w, word := range s.words[s.bounds[c]:s.bounds[c+1]] {
		for ; word != 0; word &= word - 1 {
			cat := 32*w + bits.TrailingZeros32(word)
			if cat > forest.MaxCategory {
				return fmt.Errorf("%w: line %d: tree %d: node %d: category %d exceeds forest's limit of %d", ErrTooLarge, tf.catThreshold.line, idx, i, cat, forest.MaxCategory)
			}
			s.cats = append(s.cats, cat)
		}
	}
	n.Mode, n.TruncateNegative = forest.InSet, true
	n.Categories = s.cats[start:len(s.cats):len(s.cats)]
	n.MissingYes = false
	return nil
}
