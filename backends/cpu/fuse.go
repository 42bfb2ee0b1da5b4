package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// fuse merges into the matrix multiplies (Gemm, and MatMul with constant
// 2-D weights) the element-wise nodes around them that the SGEMM kernels
// can apply for free, so that each layer is one pass over memory. Every
// rewrite keeps results bit-identical:
//
//   - a Div or Mul of the input A by a constant power of two (digits-mlp
//     divides its input by 16) becomes a factor folded into the packed
//     weights: scaling by 2**e is exact, so (x/16)·w and x·(w/16) are the
//     same products (unless x/16 would be subnormal);
//   - an Add of a constant bias (one value per column, or one value) to a
//     MatMul's output becomes the kernel's bias epilogue, which performs
//     the same float32 addition (Gemm has its own bias input, C);
//   - a Relu of the output is applied by the kernel as it stores C.
//
// A fused node's intermediate value disappears from the graph, so it must
// be read by that node only and not be a graph output. fuse runs after
// foldConstants, on the final node list.
func fuse(g *graph) {
	readers := make([]int, len(g.names)) // value id → node inputs reading it, +1 for a graph output
	producer := make([]*node, len(g.names))
	for _, n := range g.nodes {
		for _, v := range n.in {
			if v >= 0 {
				readers[v]++
			}
		}
		for _, v := range n.out {
			if v >= 0 {
				producer[v] = n
			}
		}
	}
	for _, o := range g.outputs {
		readers[o.id]++
	}
	// only returns the node producing v when v is read once.
	only := func(v int) *node {
		if v < 0 || readers[v] != 1 {
			return nil
		}
		return producer[v]
	}
	drop := map[*node]bool{}
	for _, n := range g.nodes {
		if !g.fusable(n) {
			continue
		}
		if p := only(n.in[0]); p != nil {
			if x, s, ok := g.powerOfTwoScale(p); ok {
				n.in = append([]int{x}, n.in[1:]...)
				n.scale = s
				drop[p] = true
			}
		}
	}
	// Output-side rewrites, in node order, so that a MatMul takes its Add
	// before the Relu that follows the Add.
	for _, n := range g.nodes {
		if len(n.out) != 1 || n.out[0] < 0 {
			continue
		}
		switch {
		case n.op == "Add" && len(n.in) == 2 && n.in[0] >= 0 && n.in[1] >= 0:
			for i := range 2 {
				p, b := only(n.in[i]), g.consts[n.in[1-i]]
				if p != nil && p.op == "MatMul" && g.fusable(p) && p.bias == nil && !p.relu && isBias(b, g.consts[p.in[1]]) {
					p.bias, p.out = b, n.out
					producer[n.out[0]], drop[n] = p, true
					break
				}
			}
		case n.op == "Relu" && len(n.in) == 1:
			if p := only(n.in[0]); p != nil && g.fusable(p) && !p.relu {
				p.relu, p.out = true, n.out
				producer[n.out[0]], drop[n] = p, true
			}
		}
	}
	kept := g.nodes[:0:0]
	for _, n := range g.nodes {
		if !drop[n] {
			kept = append(kept, n)
		}
	}
	g.nodes = kept
}

// fusable reports whether n is a matrix multiply that fuse may extend:
// a Gemm, or a MatMul with constant 2-D FP32 weights, with one output.
func (g *graph) fusable(n *node) bool {
	if len(n.out) != 1 || len(n.in) < 2 || n.in[0] < 0 || n.in[1] < 0 {
		return false
	}
	switch n.op {
	case "Gemm":
		return true
	case "MatMul":
		b := g.consts[n.in[1]]
		return b != nil && b.DType == tensor.FP32 && len(b.Shape) == 2
	}
	return false
}

// isBias reports whether b is a constant FP32 vector that a MatMul by
// the 2-D weights w can add as a per-column bias without changing the
// output's shape: shape [N] (N = w's columns) or [1].
func isBias(b, w *tensor.Tensor) bool {
	return b != nil && b.DType == tensor.FP32 && len(b.Shape) == 1 && (b.Shape[0] == w.Shape[1] || b.Shape[0] == 1)
}

// powerOfTwoScale reports whether n computes x·s for a computed value x
// and a constant power of two s (a Div by 1/s or a Mul by s, the constant
// a scalar so that the output has x's shape), returning x and s.
func (g *graph) powerOfTwoScale(n *node) (x int, s float32, ok bool) {
	if (n.op != "Div" && n.op != "Mul") || len(n.in) != 2 || n.in[0] < 0 || n.in[1] < 0 {
		return 0, 0, false
	}
	x, c := n.in[0], g.consts[n.in[1]]
	if c == nil && n.op == "Mul" {
		x, c = n.in[1], g.consts[n.in[0]]
	}
	if c == nil || g.consts[x] != nil || c.DType != tensor.FP32 || c.Len() != 1 ||
		len(c.Shape) > 1 || len(c.Shape) == 1 && c.Shape[0] != 1 {
		return 0, 0, false
	}
	v := float64(viewAs[float32](c.Data)[0])
	if n.op == "Div" {
		v = 1 / v
	}
	if frac, exp := math.Frexp(v); math.Abs(frac) != 0.5 || exp < -60 || exp > 60 {
		return 0, 0, false // not a power of two, or far from 1 (alpha·s must stay normal)
	}
	return x, float32(v), true
}
