package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// fusePatterns replaces the decompositions exporters emit for layer
// normalisation and GELU with one node each, so that each becomes one
// pass over memory instead of seven or five:
//
//   - torch.onnx (opset < 17) writes nn.LayerNorm as
//     m = ReduceMean(x), d = x − m, v = ReduceMean(d²), y = d / √(v + ε),
//     then y·γ + β. With axes [−k, …, −1] (known without the rank) this
//     is LayerNormalization(x, γ, β, axis=−k, epsilon=ε), computed with
//     the statistics in float64 (closer to the exact value than the
//     float32 steps, so the results differ by a few ulps).
//   - nn.GELU (opset < 20) becomes (x · (erf(x / √2) + 1)) · 0.5, which is
//     Gelu(x) evaluated in float64.
//
// Every intermediate value must be read only inside the pattern and not
// be a graph output.
func fusePatterns(g *graph) {
	readers := make([]int, len(g.names))
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
	consumers := make([][]*node, len(g.names))
	for _, n := range g.nodes {
		for _, v := range n.in {
			if v >= 0 {
				consumers[v] = append(consumers[v], n)
			}
		}
	}
	// only returns v's producer when it is op, has one output and v is
	// read once.
	only := func(v int, op string) *node {
		if v < 0 || readers[v] != 1 || producer[v] == nil || producer[v].op != op || len(producer[v].out) != 1 {
			return nil
		}
		return producer[v]
	}
	// next returns the single consumer of v when it is op.
	next := func(v int, op string) *node {
		if readers[v] != 1 || len(consumers[v]) != 1 || consumers[v][0].op != op {
			return nil
		}
		return consumers[v][0]
	}
	drop := map[*node]bool{}
	replace := map[*node]*node{}
	for _, div := range g.nodes {
		if div.op != "Div" || len(div.in) != 2 || drop[div] {
			continue
		}
		sqrt := only(div.in[1], "Sqrt")
		if sqrt == nil {
			continue
		}
		add := only(sqrt.in[0], "Add")
		if add == nil {
			continue
		}
		eps, ok := g.scalarConst(add.in[1])
		if !ok {
			continue
		}
		mean2 := only(add.in[0], "ReduceMean")
		if mean2 == nil {
			continue
		}
		pow := only(mean2.in[0], "Pow")
		if pow == nil {
			continue
		}
		if e, ok := g.scalarConst(pow.in[1]); !ok || e != 2 {
			continue
		}
		d := div.in[0]
		sub := producer[d]
		if sub == nil || sub.op != "Sub" || pow.in[0] != d || readers[d] != 2 {
			continue
		}
		mean1 := only(sub.in[1], "ReduceMean")
		if mean1 == nil || mean1.in[0] != sub.in[0] {
			continue
		}
		k1, ok1 := g.trailingAxes(mean1)
		k2, ok2 := g.trailingAxes(mean2)
		if !ok1 || !ok2 || k1 != k2 {
			continue
		}
		ln := &node{index: div.index, name: div.name + "/LayerNormalization", op: "LayerNormalization",
			def: lookupOp("LayerNormalization"), in: []int{sub.in[0]}, out: div.out,
			attrs: onnx.Attrs{{Name: "axis", Type: onnx.AttrInt, I: int64(-k1)}, {Name: "epsilon", Type: onnx.AttrFloat, F: float32(eps)}}}
		dead := []*node{mean1, sub, pow, mean2, add, sqrt}
		// Absorb y·γ and + β with constants no larger than the row.
		if mul := next(div.out[0], "Mul"); mul != nil {
			if gm := g.paramConst(mul, div.out[0], k1); gm >= 0 {
				ln.in, ln.out = append(ln.in, gm), mul.out
				dead = append(dead, mul)
				if plus := next(mul.out[0], "Add"); plus != nil {
					if bt := g.paramConst(plus, mul.out[0], k1); bt >= 0 {
						ln.in, ln.out = append(ln.in, bt), plus.out
						dead = append(dead, plus)
					}
				}
			}
		}
		for _, n := range dead {
			drop[n] = true
		}
		replace[div] = ln
	}
	for _, erf := range g.nodes {
		if erf.op != "Erf" || drop[erf] {
			continue
		}
		div := only(erf.in[0], "Div")
		scaled := false
		if div != nil {
			c, ok := g.scalarConst(div.in[1])
			scaled = ok && math.Abs(c-math.Sqrt2) < 1e-6
		} else if div = only(erf.in[0], "Mul"); div != nil {
			c, ok := g.scalarConst(div.in[1])
			scaled = ok && math.Abs(c-1/math.Sqrt2) < 1e-6
		}
		if !scaled {
			continue
		}
		x := div.in[0]
		plus := next(erf.out[0], "Add")
		if plus == nil {
			continue
		}
		if one, ok := g.scalarConst(other(plus, erf.out[0])); !ok || one != 1 {
			continue
		}
		mul := next(plus.out[0], "Mul")
		if mul == nil || !(mul.in[0] == x && mul.in[1] == plus.out[0] || mul.in[1] == x && mul.in[0] == plus.out[0]) {
			continue
		}
		half := next(mul.out[0], "Mul")
		if half == nil {
			continue
		}
		if h, ok := g.scalarConst(other(half, mul.out[0])); !ok || h != 0.5 {
			continue
		}
		gl := &node{index: half.index, name: half.name + "/Gelu", op: "Gelu", def: lookupOp("Gelu"),
			in: []int{x}, out: half.out}
		for _, n := range []*node{div, erf, plus, mul} {
			drop[n] = true
		}
		replace[half] = gl
	}
	if len(replace) == 0 {
		return
	}
	kept := g.nodes[:0:0]
	for _, n := range g.nodes {
		if r := replace[n]; r != nil {
			kept = append(kept, r)
		} else if !drop[n] {
			kept = append(kept, n)
		}
	}
	g.nodes = kept
}

// scalarConst returns the value of the constant v when it is one FP32
// element.
func (g *graph) scalarConst(v int) (float64, bool) {
	if v < 0 {
		return 0, false
	}
	c := g.consts[v]
	if c == nil || c.DType != tensor.FP32 || c.Len() != 1 {
		return 0, false
	}
	return float64(viewAs[float32](c.Data)[0]), true
}

// trailingAxes reports whether the ReduceMean n keeps dims and reduces
// the last k dims, given as −k, …, −1 (as attribute or constant input),
// and returns k.
func (g *graph) trailingAxes(n *node) (int, bool) {
	if keep, err := n.attrs.Bool("keepdims", true); err != nil || !keep {
		return 0, false
	}
	axes, _, err := n.attrs.Ints("axes")
	if err != nil {
		return 0, false
	}
	if len(n.in) > 1 && n.in[1] >= 0 {
		c := g.consts[n.in[1]]
		if c == nil || c.DType != tensor.Int64 || axes != nil {
			return 0, false
		}
		axes = viewAs[int64](c.Data)
	}
	if len(axes) == 0 {
		return 0, false
	}
	seen := map[int64]bool{}
	for _, a := range axes {
		if a >= 0 || a < -int64(len(axes)) || seen[a] {
			return 0, false
		}
		seen[a] = true
	}
	return len(axes), true
}

// paramConst returns the constant operand of the binary node n whose
// other operand is v, when it is FP32 of rank ≤ k (so that broadcasting
// it against the normalised row equals broadcasting it against the
// whole tensor), or -1.
func (g *graph) paramConst(n *node, v, k int) int {
	if len(n.in) != 2 || len(n.out) != 1 {
		return -1
	}
	p := n.in[1]
	if n.in[1] == v {
		p = n.in[0]
	} else if n.in[0] != v {
		return -1
	}
	c := g.consts[p]
	if c == nil || c.DType != tensor.FP32 || len(c.Shape) > k {
		return -1
	}
	return p
}

// other returns the operand of the binary node n that is not v, or -1
// when v is not an operand.
func other(n *node, v int) int {
	switch {
	case len(n.in) != 2:
		return -1
	case n.in[0] == v:
		return n.in[1]
	case n.in[1] == v:
		return n.in[0]
	}
	return -1
}
