package forest

import (
	"fmt"
	"math"
	"slices"
)

// Builder collects trees and builds a Forest.
type Builder struct {
	numFeatures, numTargets int
	f                       *Forest
	depth                   []int32 // per tree
	err                     error
}

// NewBuilder starts a forest over rows of features values scoring targets
// outputs per row.
func NewBuilder(features, targets int) (*Builder, error) {
	if features <= 0 || features > MaxFeatures {
		return nil, invalid("%d features; want 1 to %d", features, MaxFeatures)
	}
	if targets <= 0 || targets > MaxTargets {
		return nil, invalid("%d targets; want 1 to %d", targets, MaxTargets)
	}
	return &Builder{numFeatures: features, numTargets: targets, f: &Forest{
		numFeatures: features, numTargets: targets, leafOff: []int32{0},
		scored: make([]bool, targets),
	}}, nil
}

// AddTree adds one tree: nodes in any order, root the index of its root.
// Nodes that root does not reach are ignored; a node reached twice (a
// cycle or a shared subtree), a child index out of range, a feature or
// target out of range or an unknown mode is an error.
func (b *Builder) AddTree(nodes []Node, root int) error {
	f := b.f
	if root < 0 || root >= len(nodes) {
		return invalid("tree %d: root %d out of range [0, %d)", len(f.roots), root, len(nodes))
	}
	if len(f.nodes)+len(nodes) > MaxNodes {
		return invalid("more than %d nodes", MaxNodes)
	}
	tree := len(f.roots)
	seen := make([]bool, len(nodes))
	seen[root] = true
	// Breadth-first: queue holds source indices; slot[i] is the position
	// node queue[i] takes in f.nodes.
	queue := []int{root}
	levelEnd, depth := 1, int32(0)
	start := int32(len(f.nodes))
	f.nodes = append(f.nodes, node{})
	f.thr64 = append(f.thr64, 0)
	for qi := 0; qi < len(queue); qi++ {
		if qi == levelEnd {
			depth++
			levelEnd = len(queue)
		}
		src := &nodes[queue[qi]]
		pos := int(start) + qi
		if src.Mode == Leaf {
			// A leaf without weights is valid: ONNX-ML trees may omit them.
			leaf := int32(len(f.leafOff) - 1)
			for _, w := range src.Weights {
				if w.Target < 0 || w.Target >= b.numTargets {
					return invalid("tree %d node %d: weight for target %d; want 0 to %d", tree, queue[qi], w.Target, b.numTargets-1)
				}
				if len(f.leafTarget) >= maxLeafWeight {
					return invalid("more than %d leaf weights", maxLeafWeight)
				}
				f.leafTarget = append(f.leafTarget, int32(w.Target))
				f.leafW64 = append(f.leafW64, w.Value)
				f.leafW32 = append(f.leafW32, float32(w.Value))
				f.scored[w.Target] = true
			}
			f.leafOff = append(f.leafOff, int32(len(f.leafTarget)))
			f.nodes[pos] = node{thr32: math.Float32frombits(uint32(leaf)), first: int32(pos), feat: 0}
			continue
		}
		if src.Mode > InSet {
			return invalid("tree %d node %d: unknown mode %d", tree, queue[qi], src.Mode)
		}
		if src.Feature < 0 || src.Feature >= b.numFeatures {
			return invalid("tree %d node %d: feature %d; want 0 to %d", tree, queue[qi], src.Feature, b.numFeatures-1)
		}
		for _, c := range []int{src.Yes, src.No} {
			if c < 0 || c >= len(nodes) {
				return invalid("tree %d node %d: child %d out of range [0, %d)", tree, queue[qi], c, len(nodes))
			}
			if seen[c] {
				return invalid("tree %d node %d: child %d is reached twice (not a tree)", tree, queue[qi], c)
			}
			seen[c] = true
		}
		n, t64, swap, err := b.branch(src)
		if err != nil {
			return invalid("tree %d node %d: %v", tree, queue[qi], err)
		}
		first, second := src.Yes, src.No
		if swap {
			first, second = second, first
		}
		n.first = int32(int(start) + len(queue))
		queue = append(queue, first, second)
		f.nodes = append(f.nodes, node{}, node{})
		f.thr64 = append(f.thr64, 0, 0)
		f.nodes[pos] = n
		f.thr64[pos] = t64
	}
	f.roots = append(f.roots, start)
	b.depth = append(b.depth, depth)
	return nil
}

// branch rewrites a branch node into the evaluated form: the kind, the
// float32 and float64 thresholds, and whether Yes is the second child.
func (b *Builder) branch(src *Node) (n node, t64 float64, swap bool, err error) {
	t := src.Threshold
	n.feat = int32(src.Feature)
	n.kind = kindLT
	n.step = 1
	switch src.Mode {
	case LT: // yes iff x < t
		n.thr32, t64 = up32(t), t
	case GTE: // yes iff !(x < t)
		n.thr32, t64, swap = up32(t), t, true
	case LEQ, GT: // LEQ: yes iff x < next(t); GT: yes iff !(x <= t)
		swap = src.Mode == GT
		switch {
		case src.ZeroMissing && src.Mode == LEQ:
			// Compared as x <= t in the general loop.
			n.kind, n.thr32, t64 = kindZero, down32(t), t
		case math.IsInf(t, 1):
			n.kind = kindTrue
		default:
			n.thr32, t64 = math.Nextafter32(down32(t), float32(math.Inf(1))), math.Nextafter(t, math.Inf(1))
		}
	case EQ, NEQ:
		n.kind = kindEQ
		if src.Mode == NEQ {
			n.kind = kindNEQ
		}
		n.thr32, t64 = float32(t), t
		if float64(n.thr32) != t {
			n.thr32 = float32(math.NaN()) // no float32 equals t
		}
	case InSet:
		n.kind = kindSet
		if src.TruncateNegative {
			n.kind = kindSetTrunc
		}
		top := -1
		for _, c := range src.Categories {
			if c < 0 || c > MaxCategory {
				return n, 0, false, fmt.Errorf("category %d; want 0 to %d", c, MaxCategory)
			}
			top = max(top, c)
		}
		s := make(bitset, (top+64)/64)
		for _, c := range src.Categories {
			s[c>>6] |= 1 << (uint(c) & 63)
		}
		t64 = float64(len(b.f.sets))
		b.f.sets = append(b.f.sets, s)
	}
	if src.ZeroMissing && n.kind != kindZero {
		return n, 0, false, fmt.Errorf("zero-as-missing needs mode BRANCH_LEQ, not %s", src.Mode)
	}
	// NaN takes the first child when it should go to Yes and Yes is first,
	// or to No and No is first.
	if src.MissingYes == swap {
		n.nan = 1
	}
	if n.kind != kindLT {
		b.f.general = true
	}
	return n, t64, swap, nil
}

// Options say how the trees' scores combine.
type Options struct {
	Aggregate Aggregate
	// Base holds one value per target added to the aggregated score (none
	// when empty).
	Base []float64
	// Float32 accumulates in float32, starting from Base and adding the
	// trees' weights in order, as XGBoost does; otherwise scores
	// accumulate in float64 and Base is added after aggregation (ONNX-ML,
	// LightGBM). Float32 needs Aggregate Sum.
	Float32 bool
}

// Build returns the forest. The Builder must not be used afterwards.
func (b *Builder) Build(o Options) (*Forest, error) {
	f := b.f
	if len(f.roots) == 0 {
		return nil, invalid("no trees")
	}
	if len(o.Base) != 0 && len(o.Base) != b.numTargets {
		return nil, invalid("%d base values for %d targets", len(o.Base), b.numTargets)
	}
	if o.Aggregate > Max {
		return nil, invalid("unknown aggregate %d", o.Aggregate)
	}
	if o.Float32 && o.Aggregate != Sum {
		return nil, invalid("float32 accumulation needs SUM aggregation")
	}
	f.agg, f.float32Sum = o.Aggregate, o.Float32
	f.leafShape = leafShape(f)
	f.base = make([]float64, b.numTargets)
	copy(f.base, o.Base)
	f.depth = b.depth
	for _, d := range f.depth {
		f.maxDepth = max(f.maxDepth, d)
	}
	f.byDepth = make([]int32, len(f.roots))
	for i := range f.byDepth {
		f.byDepth[i] = int32(i)
	}
	slices.SortStableFunc(f.byDepth, func(a, b int32) int { return int(f.depth[b] - f.depth[a]) })
	f.depthPos = make([]int32, len(f.roots))
	f.rootsByDepth = make([]int32, len(f.roots))
	for j, t := range f.byDepth {
		f.depthPos[t] = int32(j)
		f.rootsByDepth[j] = f.roots[t]
	}
	f.deeper = make([]int32, f.maxDepth)
	for _, d := range f.depth {
		for l := range d {
			f.deeper[l]++
		}
	}
	b.f = nil
	return f, nil
}

// leafShape recognises one weight per leaf, or one per target in target
// order.
func leafShape(f *Forest) uint8 {
	leaves := len(f.leafOff) - 1
	single, dense := true, true
	for l := range leaves {
		n := int(f.leafOff[l+1] - f.leafOff[l])
		single = single && n == 1
		if dense = dense && n == f.numTargets; dense {
			for k := range n {
				dense = dense && f.leafTarget[int(f.leafOff[l])+k] == int32(k)
			}
		}
	}
	switch {
	case single:
		return leavesSingle
	case dense:
		return leavesDense
	}
	return leavesGeneral
}

// down32 is the largest float32 <= t; up32 the smallest float32 >= t.
func down32(t float64) float32 {
	f := float32(t)
	if float64(f) > t {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return f
}

func up32(t float64) float32 {
	f := float32(t)
	if float64(f) < t {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}
