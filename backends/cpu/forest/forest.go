// Package forest evaluates decision-tree ensembles (gradient-boosted
// trees, random forests) for every tree source Coalesce reads: the ONNX-ML
// TreeEnsemble operators, XGBoost's JSON model and LightGBM's text model.
//
// A source describes each tree as a slice of Node (any order, children by
// index) and hands it to a Builder; Build lays every tree out in one flat
// array of 16-byte nodes in breadth-first order, so that the two children
// of a branch are adjacent: a step down the tree is one comparison and an
// add, with no branch the CPU must predict. Every comparison mode is
// rewritten at build time into "x < t" with an exactly adjusted threshold
// (for float32 inputs, x <= t is x < nextafter(float32(t)↓, +∞), and so on),
// with the children swapped where the mode needs it, so that almost every
// ensemble runs one specialised loop; equality, category-set and
// LightGBM's zero-as-missing nodes take a general loop.
//
// Predict walks a block of up to 64 rows through one tree at a time (the
// tree stays in cache), one level at a time for all the rows, so that the
// rows' steps are independent and their loads overlap; a leaf points at
// itself, so every row takes the tree's depth in steps without a branch.
// With AVX-512 (walk_amd64.s) 16 rows step at once with gathers; a single
// row walks every tree at once instead, deepest trees first, 16 trees per
// gather step. Rows without NaN take a loop without the missing-value
// check. Leaf weights are added per row in tree order, in float64, or in
// float32 from the base when the source does so (XGBoost), which makes
// margins bit-exact with the source.
package forest

import (
	"errors"
	"fmt"
	"sync"
)

// Mode is how a branch node compares a feature value x with its threshold
// t; the node takes its Yes child when the comparison holds.
type Mode uint8

// The node modes of ONNX-ML (BRANCH_*), plus LightGBM's category sets.
const (
	Leaf  Mode = iota
	LEQ        // x <= t
	LT         // x < t
	GTE        // x >= t
	GT         // x > t
	EQ         // x == t
	NEQ        // x != t
	InSet      // x truncated to an integer is listed in Categories
)

var modeNames = [...]string{"LEAF", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "IN_SET"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// Aggregate is how the per-tree scores of one target combine.
type Aggregate uint8

// Aggregations of ONNX-ML's aggregate_function.
const (
	Sum     Aggregate = iota // base + Σ weights
	Average                  // base + Σ weights / number of trees
	Min                      // base + min over the trees that score the target
	Max                      // base + max over the trees that score the target
)

// Node is one node of a tree as a source describes it.
type Node struct {
	Mode      Mode
	Feature   int     // branch: index of the feature compared
	Threshold float64 // branch: t (unused by InSet)
	Yes, No   int     // branch: indices of the children in the tree's slice
	// MissingYes sends a NaN feature value to Yes; otherwise NaN goes to
	// No (for NEQ, whose comparison holds for NaN, too: missing values
	// follow this flag in every mode).
	MissingYes bool
	// ZeroMissing also treats values with |x| <= 1e-35 (as a float32) as missing
	// (LightGBM's missing_type "Zero").
	ZeroMissing bool
	// Categories (InSet) lists the categories that take Yes. A value is
	// truncated toward zero to its category; a negative value is in no
	// set, unless TruncateNegative (LightGBM: values in (-1, 0) are
	// category 0).
	Categories       []int
	TruncateNegative bool
	// Weights (Leaf) are added to their targets' scores.
	Weights []Weight
}

// Weight is one leaf's contribution to one target (class or output).
type Weight struct {
	Target int
	Value  float64
}

// Limits bound what a Builder accepts, so that a malformed model cannot
// make it allocate without bound.
const (
	MaxNodes      = 1 << 26 // nodes over all trees
	MaxCategory   = 1 << 20 // largest category value in an InSet node
	MaxTargets    = 1 << 16
	MaxFeatures   = 1 << 24
	maxLeafWeight = 1 << 26
)

// ErrInvalid marks a tree description that cannot be evaluated.
var ErrInvalid = errors.New("invalid tree ensemble")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// node is the evaluated form, 16 bytes. Branch: if x < thr go to first,
// else to first+1; a NaN goes to first+nan (with kind general: see
// walkGeneral). A leaf has step 0 and first pointing at itself, so that a
// walk of fixed depth stays on it; its thr32 bits hold the leaf's index.
type node struct {
	thr32 float32
	feat  int32
	first int32
	kind  uint8 // kindLT, or a general kind
	nan   uint8 // 0: NaN takes first; 1: first+1
	step  uint8 // 1 for a branch; 0 for a leaf, whose first is itself
	_     byte
}

const (
	kindLT       uint8 = iota // x < thr (rewritten from LEQ/LT/GTE/GT)
	kindEQ                    // x == thr → first
	kindNEQ                   // x != thr → first
	kindSet                   // category set: thr64 index → sets
	kindSetTrunc              // kindSet, values in (-1, 0) being category 0
	kindZero                  // x < thr, but |x| <= 1e-35 is missing (LightGBM)
	kindTrue                  // always first (x <= +Inf and the like)
)

// Forest is a built ensemble, immutable and safe for concurrent use.
type Forest struct {
	numFeatures, numTargets int
	agg                     Aggregate
	base                    []float64
	float32Sum              bool

	nodes        []node
	thr64        []float64 // per node: the threshold for float64 inputs
	roots        []int32   // per tree
	depth        []int32   // per tree: edges on its longest root-to-leaf path
	maxDepth     int32
	byDepth      []int32 // tree indices, deepest first
	depthPos     []int32 // tree index → its position in byDepth
	rootsByDepth []int32 // roots in byDepth order
	deeper       []int32 // deeper[d]: how many trees are deeper than d
	general      bool    // some node needs the general loop

	leafOff    []int32 // per leaf: start in leafTarget/leafW; len = leaves+1
	leafTarget []int32
	leafW64    []float64
	leafW32    []float32
	sets       []bitset
	leafShape  uint8  // leavesSingle, leavesDense or leavesGeneral
	scored     []bool // per target: does any leaf score it

	scratch sync.Pool // *[]float64 accumulators
	posPool sync.Pool // *[]int32, one node position per tree
}

// The layouts of leaf weights Build recognises, for faster accumulation.
const (
	leavesGeneral uint8 = iota // any lists
	leavesSingle               // one weight per leaf (leaf l's at index l)
	leavesDense                // NumTargets weights per leaf, targets in order
)

type bitset []uint64

func (s bitset) has(v int) bool { return v>>6 < len(s) && s[v>>6]&(1<<(uint(v)&63)) != 0 }

// NumFeatures is the number of input features a row must have.
func (f *Forest) NumFeatures() int { return f.numFeatures }

// NumTargets is the number of scores Predict writes per row.
func (f *Forest) NumTargets() int { return f.numTargets }

// NumTrees is the number of trees.
func (f *Forest) NumTrees() int { return len(f.roots) }

// NumNodes is the number of nodes over all trees.
func (f *Forest) NumNodes() int { return len(f.nodes) }

// Scored reports whether any leaf adds to target k (ONNX-ML's binary
// classifiers behave differently when only one class is scored).
func (f *Forest) Scored(k int) bool { return f.scored[k] }
