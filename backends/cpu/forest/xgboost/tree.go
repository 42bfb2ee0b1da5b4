package xgboost

import (
	"fmt"
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
)

// converter turns raw trees into forest.Node slices. Its buffers are
// reused from tree to tree: a forest.Builder keeps no reference to them.
type converter struct {
	nodes    []forest.Node
	weights  []forest.Weight
	cats     []int
	setBytes int // what the category bitsets may still cost
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// tree describes tree t, the i-th of the model, whose leaves score
// target group, scaled by w when dart.
func (c *converter) tree(i int, t *tree, group int, w float32, dart bool) ([]forest.Node, error) {
	n := len(t.left)
	left, right, feat := t.left, t.right, t.feature
	cond, dleft, cat := t.cond, t.defaultLeft, t.categorical
	nodes := grow(&c.nodes, n)
	weights := grow(&c.weights, n)
	for j := range nodes {
		v := cond[j]
		if left[j] == -1 { // RegTree::Node::IsLeaf
			if dart {
				v = float32(v * w) // Dart::PredictBatchImpl: out += predt * w
			}
			if !finite(v) {
				return nil, fmt.Errorf("%w: tree %d node %d: leaf value %v", ErrInvalid, i, j, v)
			}
			weights[j] = forest.Weight{Target: group, Value: float64(v)}
			nodes[j] = forest.Node{Mode: forest.Leaf, Weights: weights[j : j+1 : j+1]}
			continue
		}
		if cat[j] {
			// Listed categories go right; NaN follows default_left. The
			// categories are attached below.
			nodes[j] = forest.Node{Mode: forest.InSet, Feature: int(feat[j]),
				Yes: int(right[j]), No: int(left[j]), MissingYes: !dleft[j]}
			continue
		}
		if !finite(v) {
			return nil, fmt.Errorf("%w: tree %d node %d: split condition %v", ErrInvalid, i, j, v)
		}
		nodes[j] = forest.Node{Mode: forest.LT, Feature: int(feat[j]), Threshold: float64(v),
			Yes: int(left[j]), No: int(right[j]), MissingYes: dleft[j]}
	}
	if err := c.categories(i, t, nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// categories attaches each categorical split's set. A categorical split
// without an entry keeps an empty set, sending every category left, as
// XGBoost's RegTree::LoadCategoricalSplit gives it an empty segment.
func (c *converter) categories(i int, t *tree, nodes []forest.Node) error {
	if len(t.catNodes) == 0 {
		return nil
	}
	all := t.cats
	ints := grow(&c.cats, len(all))
	prev := int32(-1)
	for k, node := range t.catNodes {
		seg, size := t.catSegs[k], t.catSizes[k]
		switch {
		case node <= prev || int(node) >= len(nodes):
			return fmt.Errorf("%w: tree %d: categories_nodes[%d] = %d; want increasing node indices below %d", ErrInvalid, i, k, node, len(nodes))
		case nodes[node].Mode != forest.InSet:
			return fmt.Errorf("%w: tree %d: categories for node %d, which is not a categorical split", ErrInvalid, i, node)
		case seg < 0 || size < 1 || int64(seg)+int64(size) > int64(len(all)):
			return fmt.Errorf("%w: tree %d node %d: categories segment [%d, %d+%d) outside the %d categories", ErrInvalid, i, node, seg, seg, size, len(all))
		}
		prev = node
		top := 0
		for j, v := range all[seg : seg+size] {
			switch {
			case v < 0:
				return fmt.Errorf("%w: tree %d node %d: category %d", ErrInvalid, i, node, v)
			case v > maxCategory:
				return fmt.Errorf("%w: tree %d node %d: category %d exceeds the limit of %d", ErrUnsupported, i, node, v, maxCategory)
			}
			ints[int(seg)+j] = int(v)
			top = max(top, int(v))
		}
		// forest sizes each set's bitset by its largest category.
		c.setBytes -= setGrowth * 8 * (top/64 + 1)
		if c.setBytes < 0 {
			return fmt.Errorf("%w: tree %d: category sets would allocate more than %d bytes per byte of the file (largest category %d)", ErrUnsupported, i, setBudget, top)
		}
		nodes[node].Categories = ints[seg : seg+size : seg+size]
	}
	return nil
}

// grow returns (*buf)[:n], reallocating when the capacity is short.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	*buf = (*buf)[:n]
	return *buf
}
