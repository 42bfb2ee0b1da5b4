package cpu

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// compileGemm compiles Gemm: Y = alpha·A'·B' + beta·C with A' = transA ?
// Aᵀ : A, B' likewise, and C unidirectionally broadcast to [M, N], then
// max(Y, 0) when a Relu was fused into the node (see fuse).
//
// A constant B (the weights: PyTorch's Linear exports transB=1) is packed
// once with alpha folded in; a constant C that is one value per column
// (the bias, shape [N] or [1, N], or a scalar) becomes beta·C in the
// kernel's epilogue. Any other C is copied into Y as beta·C first and the
// product accumulated onto it; a B computed at run time is packed per
// call.
func compileGemm(c *opCtx) (kernel, error) {
	A, B, C := c.input(0), c.input(1), c.input(2)
	alpha, err := c.n.attrs.Float("alpha", 1)
	if err != nil {
		return nil, err
	}
	beta, err := c.n.attrs.Float("beta", 1)
	if err != nil {
		return nil, err
	}
	transA, err := c.n.attrs.Bool("transA", false)
	if err != nil {
		return nil, err
	}
	transB, err := c.n.attrs.Bool("transB", false)
	if err != nil {
		return nil, err
	}
	if A == nil || B == nil {
		return nil, invalidf("inputs A and B are required")
	}
	// Before opset 7, C broadcasts only with broadcast=1; the
	// unidirectional broadcasting of later opsets accepts every such C.
	if _, err := c.n.attrs.Bool("broadcast", false); err != nil {
		return nil, err
	} else if c.opset >= 7 && c.n.attrs.Has("broadcast") {
		return nil, invalidf("attribute broadcast exists before opset 7 only")
	}
	if c.n.scale != 0 {
		alpha *= c.n.scale // a power of two: exact
	}
	for i, name := range []string{"A", "B", "C"} {
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	if len(A.shape) != 2 {
		return nil, invalidf("input A has shape %v, want rank 2", A.shape)
	}
	if len(B.shape) != 2 {
		return nil, invalidf("input B has shape %v, want rank 2", B.shape)
	}
	m, k := int(A.shape[0]), int(A.shape[1])
	if transA {
		m, k = k, m
	}
	kb, n := int(B.shape[0]), int(B.shape[1])
	if transB {
		kb, n = n, kb
	}
	if kb != k {
		return nil, invalidf("input B has shape %v, want K=%d (transB=%v, input A has shape %v, transA=%v)",
			B.shape, k, transB, A.shape, transA)
	}
	out := []int64{int64(m), int64(n)}
	if C != nil {
		if len(C.shape) > 2 {
			return nil, invalidf("input C has shape %v, want rank <= 2 broadcastable to %v", C.shape, out)
		}
		for i := range C.shape {
			if d := dimFromEnd(C.shape, i); d != 1 && d != out[1-i] {
				return nil, invalidf("input C has shape %v, not broadcastable to %v", C.shape, out)
			}
		}
	}
	c.setOut(0, tensor.FP32, out)
	ks, sp, lda, ldb := c.ks, c.sp, int(A.shape[1]), int(B.shape[1])
	flags := 0
	if c.n.relu {
		flags |= sgemm.ReLU
	}
	useC := C != nil && beta != 0
	var pb *sgemm.Packed
	if B.konst != nil {
		var bias *tensor.Tensor
		if useC && C.konst != nil && (len(C.shape) < 2 || C.shape[0] == 1) {
			bias, useC = C.konst, false
			flags |= sgemm.AddBias
		}
		if alpha == 0 {
			// alpha·A·B is zero, even where A or B holds Inf or NaN.
			pb = c.packB(B.konst, transB, 0, n, ldb, 0, bias, beta)
		} else {
			pb = c.packB(B.konst, transB, k, n, ldb, alpha, bias, beta)
		}
	}
	var cStrides []int
	if useC {
		cStrides = broadcastStrides(C.shape, out)
		flags |= sgemm.Accumulate
	}
	sc := new(sgemm.Scratch)
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		a, y := viewAs[float32](in[0].Data), viewAs[float32](outs[0].Data)
		if useC {
			fillBroadcast(y, viewAs[float32](in[2].Data), m, n, cStrides, beta)
		}
		switch {
		case pb != nil && alpha == 0: // packed with K = 0
			ks.Gemm(m, nil, 0, pb, y, n, flags)
		case pb != nil && !transA:
			sp.Gemm(ks, m, a, lda, pb, y, n, flags)
		case pb != nil:
			buf := sc.Get(m * k)
			transpose(*buf, a, k, m, lda)
			sp.Gemm(ks, m, *buf, k, pb, y, n, flags)
			sc.Put(buf)
		default:
			bet := float32(0)
			if flags&sgemm.Accumulate != 0 {
				bet = 1
			}
			ks.Sgemm(sc, transA, transB, m, n, k, alpha, a, lda, viewAs[float32](in[1].Data), ldb, bet, y, n, flags&sgemm.ReLU)
		}
		return nil
	}), nil
}

// transpose stores the transpose of the rows×cols matrix src (row stride
// lds) into dst (cols×rows, dense).
func transpose(dst, src []float32, rows, cols, lds int) {
	dst = dst[:rows*cols]
	for r := range rows {
		for j, v := range src[r*lds : r*lds+cols] {
			dst[j*rows+r] = v
		}
	}
}

// fillBroadcast sets the m×n matrix y to beta·C, C broadcast with the
// given strides (row, column).
func fillBroadcast(y, cv []float32, m, n int, strides []int, beta float32) {
	sr, sc := strides[0], strides[1]
	for i := range m {
		row := y[i*n : i*n+n]
		if sc == 1 {
			src := cv[i*sr : i*sr+n]
			for j, v := range src {
				row[j] = beta * v
			}
			continue
		}
		v := beta * cv[i*sr]
		for j := range row {
			row[j] = v
		}
	}
}

// compileMatMul compiles MatMul with numpy semantics: 1-D operands are
// promoted (and the added dim removed from the result), leading dims
// broadcast. When B has no batch dims, A's batch dims fold into M and the
// product is one sgemm call.
func compileMatMul(c *opCtx) (kernel, error) {
	A, B := c.input(0), c.input(1)
	for i, name := range []string{"A", "B"} {
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	if len(A.shape) == 0 || len(B.shape) == 0 {
		return nil, invalidf("MatMul of a scalar (shapes %v and %v)", A.shape, B.shape)
	}
	as, bs := clone(A.shape), clone(B.shape)
	if len(as) == 1 {
		as = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int64{bs[0], 1}
	}
	m, k := int(as[len(as)-2]), int(as[len(as)-1])
	kb, n := int(bs[len(bs)-2]), int(bs[len(bs)-1])
	if kb != k {
		return nil, invalidf("input B has shape %v, want K=%d (input A has shape %v)", B.shape, k, A.shape)
	}
	aBatch, bBatch := as[:len(as)-2], bs[:len(bs)-2]
	batch, err := broadcast(aBatch, bBatch)
	if err != nil {
		return nil, invalidf("batch dims of input A %v and input B %v do not broadcast", A.shape, B.shape)
	}
	out := append(clone(batch), int64(m), int64(n))
	if len(A.shape) == 1 {
		out = append(out[:len(out)-2], out[len(out)-1])
	}
	if len(B.shape) == 1 {
		out = out[:len(out)-1]
	}
	c.setOut(0, tensor.FP32, out)
	ks, sp, sc := c.ks, c.sp, new(sgemm.Scratch)
	if len(bBatch) == 0 && B.konst != nil {
		// Constant weights, with what fuse merged into the node: a
		// power-of-two scale of A, a per-column bias (a following Add) and
		// a Relu.
		alpha, flags := float32(1), 0
		if c.n.scale != 0 {
			alpha = c.n.scale
		}
		if c.n.bias != nil {
			flags |= sgemm.AddBias
		}
		if c.n.relu {
			flags |= sgemm.ReLU
		}
		rows := prod(aBatch) * m
		pb := c.packB(B.konst, false, k, n, n, alpha, c.n.bias, 1)
		return kernelFunc(func(in, outs []*tensor.Tensor) error {
			sp.Gemm(ks, rows, viewAs[float32](in[0].Data), k, pb, viewAs[float32](outs[0].Data), n, flags)
			return nil
		}), nil
	}
	if c.n.scale != 0 || c.n.bias != nil || c.n.relu {
		return nil, fmt.Errorf("BUG: fused MatMul without constant 2-D weights (B has shape %v)", B.shape)
	}
	if len(bBatch) == 0 {
		rows := prod(aBatch) * m
		return kernelFunc(func(in, outs []*tensor.Tensor) error {
			a, b, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](outs[0].Data)
			ks.Sgemm(sc, false, false, rows, n, k, 1, a, k, b, n, 0, y, n, 0)
			return nil
		}), nil
	}
	// One (A offset, B offset) pair per output matrix, in output order.
	sa, sb := broadcastStrides(aBatch, batch), broadcastStrides(bBatch, batch)
	nb := prod(batch)
	offs := make([][2]int, nb)
	var idx [maxRank]int
	for t := range nb {
		oa, ob := 0, 0
		for d := range batch {
			oa += idx[d] * sa[d]
			ob += idx[d] * sb[d]
		}
		offs[t] = [2]int{oa * m * k, ob * k * n}
		for d := len(batch) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < int(batch[d]) {
				break
			}
			idx[d] = 0
		}
	}
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		a, b, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](outs[0].Data)
		for t, o := range offs {
			ks.Sgemm(sc, false, false, m, n, k, 1, a[o[0]:], k, b[o[1]:], n, 0, y[t*m*n:], n, 0)
		}
		return nil
	}), nil
}
