package cpu

import (
	"math"
	"slices"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
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
// One rewrite is not bit-identical: a BatchNormalization (inference form)
// of a Gemm's output, with constant weights and statistics, is folded
// into the Gemm's weights and bias (see foldBatchNorm). That rounds
// differently from normalising after the product (a few ulps), which is
// what every exporter's constant folding does too.
//
// A fused node's intermediate value disappears from the graph, so it must
// be read by that node only and not be a graph output. fuse runs after
// foldConstants, on the final node list.
func fuse(g *graph) {
	fusePatterns(g)
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
		case n.op == "BatchNormalization" && producer[n.in[0]] != nil && producer[n.in[0]].op == "Gemm":
			if p := only(n.in[0]); p != nil && p.op == "Gemm" && g.fusable(p) && p.bias == nil && !p.relu && g.foldBatchNorm(p, n) {
				p.out = n.out[:1]
				producer[n.out[0]], drop[n] = p, true
			}
		case n.op == "Add" && len(n.in) == 2 && n.in[0] >= 0 && n.in[1] >= 0:
			for i := range 2 {
				p, b := only(n.in[i]), g.consts[n.in[1-i]]
				if p != nil && p.op == "MatMul" && g.fusable(p) && p.bias == nil && !p.relu && isBias(b, g.consts[p.in[1]]) {
					p.bias, p.out = b, n.out
					producer[n.out[0]], drop[n] = p, true
					break
				}
			}
		case n.op == "Relu" && len(n.in) == 1 && g.fusable(producer[n.in[0]]):
			if p := only(n.in[0]); p != nil && !p.relu {
				p.relu, p.out = true, n.out
				producer[n.out[0]], drop[n] = p, true
			}
		case n.op == "BatchNormalization" || n.op == "Relu" || n.op == "Clip":
			p := only(n.in[0])
			if p == nil || p.op != "Conv" || len(p.out) != 1 || p.act.on {
				break
			}
			switch n.op {
			case "BatchNormalization":
				if !g.foldBatchNormConv(p, n) {
					continue
				}
				p.out = n.out[:1]
			case "Relu":
				p.act, p.out = activation{on: true, lo: 0, hi: float32(math.Inf(1))}, n.out
			default:
				lo, hi, ok := g.clipBounds(n)
				if !ok {
					continue
				}
				p.act, p.out = activation{on: true, lo: lo, hi: hi}, n.out
			}
			producer[n.out[0]], drop[n] = p, true
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
	if n == nil || len(n.out) != 1 || len(n.in) < 2 || n.in[0] < 0 || n.in[1] < 0 {
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

// foldBatchNorm rewrites the Gemm p so that it computes bn(p) when bn is
// a BatchNormalization in inference form whose only output is Y and
// whose scale γ, bias β, mean μ and variance σ² are constant FP32
// vectors over p's columns, p's B is a constant FP32 matrix and its C is
// absent or a constant with one value per column (or one value). With
// s = γ/√(σ²+ε) per column n, Y = α·A·op(B)·s + s·(βc·C − μ) + β, so
// op(B)'s column n is scaled by s_n (in float64, rounded once) and C
// becomes s·(βc·C − μ) + β with beta 1. It reports whether it did.
func (g *graph) foldBatchNorm(p, bn *node) bool {
	if len(bn.in) != 5 || slices.ContainsFunc(bn.out[1:], func(v int) bool { return v >= 0 }) {
		return false
	}
	eps, err := bn.attrs.Float("epsilon", 1e-5)
	if err != nil {
		return false
	}
	if on, err := bn.attrs.Bool("spatial", true); err != nil || !on {
		return false
	}
	if tm, err := bn.attrs.Bool("training_mode", false); err != nil || tm {
		return false
	}
	transB, err1 := p.attrs.Bool("transB", false)
	betaC, err2 := p.attrs.Float("beta", 1)
	if err1 != nil || err2 != nil || len(p.in) < 2 {
		return false
	}
	b := g.consts[p.in[1]]
	if b == nil || b.DType != tensor.FP32 || len(b.Shape) != 2 {
		return false
	}
	n := int(b.Shape[1])
	if transB {
		n = int(b.Shape[0])
	}
	var params [4][]float32 // γ, β, μ, σ²
	for i := range params {
		c := g.consts[bn.in[i+1]]
		if c == nil || c.DType != tensor.FP32 || len(c.Shape) != 1 || int(c.Shape[0]) != n {
			return false
		}
		params[i] = viewAs[float32](c.Data)
	}
	var cv []float32 // C per column, nil when absent
	if len(p.in) > 2 && p.in[2] >= 0 {
		c := g.consts[p.in[2]]
		if c == nil || c.DType != tensor.FP32 || len(c.Shape) > 2 {
			return false
		}
		perColumn := sameShape(c.Shape, []int64{int64(n)}) || sameShape(c.Shape, []int64{1, int64(n)})
		if !perColumn && c.Len() != 1 {
			return false
		}
		src := viewAs[float32](c.Data)
		cv = make([]float32, n)
		for j := range cv {
			cv[j] = src[min(j, len(src)-1)]
		}
	}
	gamma, beta, mean, vr := params[0], params[1], params[2], params[3]
	scale := make([]float64, n)
	for j := range scale {
		scale[j] = float64(gamma[j]) / math.Sqrt(float64(vr[j])+float64(eps))
	}
	nb := tensor.New(g.names[p.in[1]]+"/bn_folded", tensor.FP32, clone(b.Shape))
	src, dst := viewAs[float32](b.Data), viewAs[float32](nb.Data)
	for i, v := range src {
		j := i % n // column of op(B) that element i belongs to
		if transB {
			j = i / int(b.Shape[1])
		}
		dst[i] = float32(float64(v) * scale[j])
	}
	nc := tensor.New(g.names[bn.out[0]]+"/bn_bias", tensor.FP32, []int64{int64(n)})
	bias := viewAs[float32](nc.Data)
	for j := range bias {
		c := 0.0
		if cv != nil {
			c = float64(betaC) * float64(cv[j])
		}
		bias[j] = float32(scale[j]*(c-float64(mean[j])) + float64(beta[j]))
	}
	add := func(t *tensor.Tensor) int {
		g.names = append(g.names, t.Name)
		g.consts = append(g.consts, t)
		return len(g.names) - 1
	}
	in := []int{p.in[0], add(nb), add(nc)}
	p.in = in
	p.attrs = slices.DeleteFunc(slices.Clone(p.attrs), func(a *onnx.Attr) bool { return a.Name == "beta" })
	return true
}

// clipBounds returns the constant bounds of the Clip n (attributes before
// opset 11, optional constant inputs after), and whether they are
// known FP32 values.
func (g *graph) clipBounds(n *node) (lo, hi float32, ok bool) {
	lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	if g.opset < 11 {
		l, err1 := n.attrs.Float("min", -math.MaxFloat32)
		h, err2 := n.attrs.Float("max", math.MaxFloat32)
		return l, h, err1 == nil && err2 == nil && l <= h
	}
	for i := 1; i < len(n.in); i++ {
		if n.in[i] < 0 {
			continue
		}
		c := g.consts[n.in[i]]
		if c == nil || c.DType != tensor.FP32 || c.Len() != 1 {
			return 0, 0, false
		}
		if v := viewAs[float32](c.Data)[0]; i == 1 {
			lo = v
		} else {
			hi = v
		}
	}
	return lo, hi, lo <= hi
}

// foldBatchNormConv rewrites the Conv p so that it computes bn(p), as
// foldBatchNorm does for a Gemm: with s = γ/√(σ²+ε) per output channel,
// W's filters are scaled by s (in float64, rounded once) and the bias
// becomes s·(B − μ) + β. W, B and the statistics must be constant FP32.
func (g *graph) foldBatchNormConv(p, bn *node) bool {
	if len(bn.in) != 5 || slices.ContainsFunc(bn.out[1:], func(v int) bool { return v >= 0 }) {
		return false
	}
	eps, err := bn.attrs.Float("epsilon", 1e-5)
	if err != nil {
		return false
	}
	if on, err := bn.attrs.Bool("spatial", true); err != nil || !on {
		return false
	}
	if tm, err := bn.attrs.Bool("training_mode", false); err != nil || tm {
		return false
	}
	w := g.consts[p.in[1]]
	if w == nil || w.DType != tensor.FP32 || len(w.Shape) < 3 {
		return false
	}
	m := int(w.Shape[0])
	var params [4][]float32 // γ, β, μ, σ²
	for i := range params {
		c := g.consts[bn.in[i+1]]
		if c == nil || c.DType != tensor.FP32 || len(c.Shape) != 1 || int(c.Shape[0]) != m {
			return false
		}
		params[i] = viewAs[float32](c.Data)
	}
	var bv []float32
	if len(p.in) > 2 && p.in[2] >= 0 {
		c := g.consts[p.in[2]]
		if c == nil || c.DType != tensor.FP32 || c.Len() != m {
			return false
		}
		bv = viewAs[float32](c.Data)
	}
	gamma, beta, mean, vr := params[0], params[1], params[2], params[3]
	nw := tensor.New(g.names[p.in[1]]+"/bn_folded", tensor.FP32, clone(w.Shape))
	src, dst := viewAs[float32](w.Data), viewAs[float32](nw.Data)
	per := len(src) / max(m, 1)
	nb := tensor.New(g.names[bn.out[0]]+"/bn_bias", tensor.FP32, []int64{int64(m)})
	bias := viewAs[float32](nb.Data)
	for o := range m {
		s := float64(gamma[o]) / math.Sqrt(float64(vr[o])+float64(eps))
		for i := o * per; i < (o+1)*per; i++ {
			dst[i] = float32(float64(src[i]) * s)
		}
		b := 0.0
		if bv != nil {
			b = float64(bv[o])
		}
		bias[o] = float32(s*(b-float64(mean[o])) + float64(beta[o]))
	}
	add := func(t *tensor.Tensor) int {
		g.names = append(g.names, t.Name)
		g.consts = append(g.consts, t)
		return len(g.names) - 1
	}
	p.in = []int{p.in[0], add(nw), add(nb)}
	return true
}
