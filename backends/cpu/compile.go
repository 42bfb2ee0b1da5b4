package cpu

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// maxFoldBytes bounds the output of one constant-folded node; bigger
// results are computed at run time instead of being stored in the model.
const maxFoldBytes = 64 << 20

// kernel computes a node's outputs from its inputs. in and out follow the
// node's input and output lists; an absent optional tensor is nil. Every
// output tensor has its final shape and must be fully written: its data
// is reused arena memory. A kernel must not modify its inputs and must be
// safe for concurrent use (all per-call state lives in the tensors).
type kernel interface {
	run(in, out []*tensor.Tensor) error
}

// kernelFunc adapts a function to kernel.
type kernelFunc func(in, out []*tensor.Tensor) error

func (f kernelFunc) run(in, out []*tensor.Tensor) error { return f(in, out) }

// aliasKernel marks operators whose output 0 is input 0's data under a new
// shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout): the
// planner gives the output the input's storage instead of running a step.
type aliasKernel struct{}

func (aliasKernel) run(in, out []*tensor.Tensor) error {
	copy(out[0].Data, in[0].Data)
	return nil
}

// valueInfo is what compilation knows about a value: its datatype, its
// concrete shape and, for constants, its data.
type valueInfo struct {
	dtype tensor.DataType
	shape []int64
	konst *tensor.Tensor
}

// opCtx is the state an operator's compile function works on: the node,
// the opsets, the kernel set, the string vocabulary, what is known about
// the inputs, and the outputs it must describe.
type opCtx struct {
	n       *node
	opset   int64 // ai.onnx
	mlOpset int64 // ai.onnx.ml (0 when the model uses no ONNX-ML operator)
	vocab   *vocab
	ks      *sgemm.Kernels
	packs   *packCache
	sp      *sgemm.Splitter // splits large products with constant B over helpers
	in      []*valueInfo    // nil for an absent optional input
	out     []valueInfo
}

// packCache keeps the packed form of constant weights, so that the plans
// compiled for each batch size share one copy. It is safe for concurrent
// use.
type packCache struct {
	mu sync.Mutex
	m  map[packKey]*sgemm.Packed // guarded by mu
}

// packKey identifies packed weights by the constant's memory (views of
// one constant, e.g. through Reshape, share it), the packing and the
// folded scale and bias.
type packKey struct {
	data        *byte
	transB      bool
	k, n, ldb   int
	alpha, beta float32
	bias        *byte
}

// packB returns c.ks.Pack of alpha·op(B) for the constant t (see
// sgemm.Kernels.Pack) with the bias beta·C folded in when C is not nil (C
// holds one value or one per column), computed once per constant and
// packing.
func (c *opCtx) packB(t *tensor.Tensor, transB bool, k, n, ldb int, alpha float32, C *tensor.Tensor, beta float32) *sgemm.Packed {
	c.packs.mu.Lock()
	defer c.packs.mu.Unlock()
	key := packKey{data: unsafe.SliceData(t.Data), transB: transB, k: k, n: n, ldb: ldb, alpha: alpha}
	if C != nil {
		key.bias, key.beta = unsafe.SliceData(C.Data), beta
	}
	if p, ok := c.packs.m[key]; ok {
		return p
	}
	if c.packs.m == nil {
		c.packs.m = map[packKey]*sgemm.Packed{}
	}
	p := c.ks.Pack(make([]float32, c.ks.PackedLen(k, n)), transB, k, n, viewAs[float32](t.Data), ldb, alpha)
	if C != nil {
		p.Bias = c.ks.PackBias(viewAs[float32](C.Data), n, beta)
	}
	c.packs.m[key] = &p
	return &p
}

// input returns input i, or nil when it is absent.
func (c *opCtx) input(i int) *valueInfo {
	if i < len(c.in) {
		return c.in[i]
	}
	return nil
}

// hasOut reports whether output i is requested.
func (c *opCtx) hasOut(i int) bool { return i < len(c.n.out) && c.n.out[i] >= 0 }

// setOut describes output i.
func (c *opCtx) setOut(i int, dt tensor.DataType, shape []int64) {
	if i < len(c.out) {
		c.out[i] = valueInfo{dtype: dt, shape: shape}
	}
}

// setConst makes output i a constant known at compile time.
func (c *opCtx) setConst(i int, t *tensor.Tensor) {
	if i < len(c.out) {
		c.out[i] = valueInfo{dtype: t.DType, shape: t.Shape, konst: t}
	}
}

// constInput returns input i's data, which must be known at compile time.
func (c *opCtx) constInput(i int, what string) (*tensor.Tensor, error) {
	in := c.input(i)
	if in == nil {
		return nil, nil
	}
	if in.konst == nil {
		return nil, fmt.Errorf("%w: input %s must be a constant (or computable from shapes)", ErrUnsupported, what)
	}
	return in.konst, nil
}

// wantDType checks that input i (named what) has one of the datatypes.
func (c *opCtx) wantDType(i int, what string, dts ...tensor.DataType) error {
	in := c.input(i)
	if in == nil {
		return nil
	}
	for _, dt := range dts {
		if in.dtype == dt {
			return nil
		}
	}
	return fmt.Errorf("%w: input %s is %s, want one of %v", ErrUnsupported, what, in.dtype, dts)
}

// invalidf returns an ErrInvalidModel error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidModel, fmt.Sprintf(format, args...))
}

// unsupportedf returns an ErrUnsupported error.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// compileNode runs n's compile function on what is known about its inputs
// and returns its kernel (nil when every output is a compile-time
// constant) and output descriptions.
func compileNode(g *graph, n *node, infos []valueInfo) (kernel, []valueInfo, error) {
	c := opCtx{n: n, opset: g.opset, mlOpset: g.mlOpset, vocab: g.vocab, ks: g.kernels, packs: &g.packs, sp: g.split,
		in: make([]*valueInfo, len(n.in)), out: make([]valueInfo, len(n.out))}
	for i, v := range n.in {
		if v >= 0 {
			c.in[i] = &infos[v]
			if infos[v].dtype == tensor.Bytes && !acceptsBytes(n) {
				return nil, nil, fmt.Errorf("%s: %w: input %d is BYTES (strings)", n, ErrUnsupported, i)
			}
		}
	}
	for i := range n.def.minIn {
		if c.in[i] == nil {
			return nil, nil, fmt.Errorf("%s: %w: input %d is required", n, ErrInvalidModel, i)
		}
	}
	k, err := n.def.compile(&c)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", n, err)
	}
	for i, v := range n.out {
		if v < 0 {
			continue
		}
		o := c.out[i]
		if o.dtype == tensor.Invalid || elemSize(o.dtype) == 0 {
			return nil, nil, fmt.Errorf("%s: %w: output %d is not supported", n, ErrUnsupported, i)
		}
		if err := checkShape(o.shape); err != nil {
			return nil, nil, fmt.Errorf("%s: output %d: %w", n, i, err)
		}
		if k == nil && o.konst == nil {
			return nil, nil, fmt.Errorf("%s: BUG: output %d has neither kernel nor value", n, i)
		}
	}
	return k, c.out, nil
}

// acceptsBytes reports whether n's operator takes BYTES (string id)
// inputs: the ONNX-ML operators that read strings, and the ai.onnx
// operators that only move elements, which handle ids like any 8-byte
// type. Every other operator computes on numbers and would misread ids.
func acceptsBytes(n *node) bool {
	if n.domain == mlDomain {
		switch n.op {
		case "LabelEncoder", "OneHotEncoder", "ArrayFeatureExtractor":
			return true
		}
		return false
	}
	switch n.op {
	case "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Gather", "Transpose", "Slice", "Shape":
		return true
	}
	return false
}

// foldable reports whether a node with these inputs and outputs can be
// evaluated now: every present input is a constant and the outputs are
// not too large to keep.
func foldable(n *node, infos []valueInfo, outs []valueInfo) bool {
	for _, v := range n.in {
		if v >= 0 && infos[v].konst == nil {
			return false
		}
	}
	size := 0
	for i, v := range n.out {
		if v >= 0 {
			size += prod(outs[i].shape) * elemSize(outs[i].dtype)
		}
	}
	return size <= maxFoldBytes
}

// fold evaluates n at compile time and stores its outputs as constants in
// infos. A panicking kernel (e.g. integer division by zero in the model's
// constants) becomes an error.
func fold(n *node, k kernel, infos []valueInfo, outs []valueInfo) (err error) {
	in := make([]*tensor.Tensor, len(n.in))
	for i, v := range n.in {
		if v >= 0 {
			in[i] = infos[v].konst
		}
	}
	out := make([]*tensor.Tensor, len(n.out))
	for i, v := range n.out {
		if v < 0 {
			continue
		}
		if _, ok := k.(aliasKernel); ok && i == 0 {
			out[i] = &tensor.Tensor{DType: outs[i].dtype, Shape: outs[i].shape, Data: in[0].Data}
			continue
		}
		out[i] = newValue(outs[i].dtype, outs[i].shape)
	}
	if _, ok := k.(aliasKernel); !ok {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%s: %w: constant folding failed: %v", n, ErrInvalidModel, r)
			}
		}()
		if err := k.run(in, out); err != nil {
			return fmt.Errorf("%s: constant folding: %w", n, err)
		}
	}
	for i, v := range n.out {
		if v >= 0 {
			infos[v] = valueInfo{dtype: out[i].DType, shape: out[i].Shape, konst: out[i]}
		}
	}
	return nil
}

// foldConstants evaluates, once at load, every node whose inputs are all
// constants, records the results in g.consts and drops those nodes.
func foldConstants(g *graph) error {
	infos := make([]valueInfo, len(g.names))
	for id, c := range g.consts {
		if c != nil {
			infos[id] = valueInfo{dtype: c.DType, shape: c.Shape, konst: c}
		}
	}
	rest := g.nodes[:0:0]
	for _, n := range g.nodes {
		allConst := true
		for _, v := range n.in {
			if v >= 0 && infos[v].konst == nil {
				allConst = false
			}
		}
		if !allConst {
			rest = append(rest, n)
			continue
		}
		k, outs, err := compileNode(g, n, infos)
		if err != nil {
			return err
		}
		if k == nil {
			for i, v := range n.out {
				if v >= 0 {
					infos[v] = outs[i]
				}
			}
			continue
		}
		if !foldable(n, infos, outs) {
			rest = append(rest, n)
			continue
		}
		if err := fold(n, k, infos, outs); err != nil {
			return err
		}
	}
	for id := range g.consts {
		if g.consts[id] == nil && infos[id].konst != nil {
			t := infos[id].konst
			g.consts[id] = &tensor.Tensor{Name: g.names[id], DType: t.DType, Shape: t.Shape, Data: t.Data}
		}
	}
	g.nodes = rest
	return nil
}
