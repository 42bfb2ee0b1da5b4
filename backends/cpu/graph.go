package cpu

import (
	"fmt"
	"sync"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The ai.onnx opset versions whose semantics the operators implement.
// Opsets 22 and 23 only widened type constraints of the supported
// operators, so they are accepted too. Opset 6 differs from 7 in
// legacy broadcasting (the broadcast and axis attributes of the binary
// operators, PRelu's per-channel slope) and the is_test attributes,
// which the operators honour for it: old torch exports (libonnx-testdata's
// pytorch suites) use it.
const (
	minOpset = 6
	maxOpset = 23
)

// mlDomain is the ONNX-ML operator domain, whose opsets 1 to 3 the
// engine implements (ops_ml*.go; opset 4 changed LabelEncoder's
// attributes and 5 added TreeEnsemble).
const (
	mlDomain   = "ai.onnx.ml"
	minMLOpset = 1
	maxMLOpset = 3
)

// graph is a checked, topologically ordered ONNX graph. Values (tensors)
// are numbered; constants (initializers and folded nodes) are known
// tensors. A graph is immutable once built and shared by all plans.
type graph struct {
	opset   int64            // ai.onnx
	mlOpset int64            // ai.onnx.ml; 0 when the graph has no ONNX-ML node
	vocab   *vocab           // string constants (see strings.go)
	names   []string         // value id → name
	consts  []*tensor.Tensor // value id → constant value, nil when computed
	nodes   []*node          // topological order, folded nodes removed
	inputs  []graphInput
	outputs []graphOutput
	kernels *sgemm.Kernels  // the SGEMM kernels; packing depends on them
	packs   packCache       // packed constant weights, shared by all plans
	split   *sgemm.Splitter // helpers for large products (nil: never split)
	// stringInputs is set when a graph input is BYTES: Infer then maps its
	// elements to vocabulary ids.
	stringInputs bool
}

// graphInput is one runtime input of the graph.
type graphInput struct {
	id   int
	spec backends.TensorSpec // shape: -1 for dynamic dims
}

// graphOutput is one output of the graph.
type graphOutput struct {
	id       int
	declared *onnx.ValueInfo
	// keys is set for the output of a ZipMap (a sequence of maps, served
	// as its FP32 [N, C] input): the class labels, see zipMapOutput.
	keys []string
}

// node is one operator application.
type node struct {
	index   int // position in the model's node list
	name    string
	domain  string // "" for ai.onnx, or mlDomain
	op      string
	in, out []int // value ids; -1 for an absent optional input or output
	attrs   onnx.Attrs
	def     *opDef
	// Set by fuse on Gemm and MatMul nodes (see fuse): scale (a power of
	// two, 0 for none) multiplies A, bias (MatMul only: a constant with
	// one value per column, or one value) is added to each row, relu
	// applies max(0, y). The node's output is then the last fused node's.
	scale float32
	bias  *tensor.Tensor
	relu  bool
	// act is a Relu or Clip fused into a Conv (see fuse).
	act activation
	// prepared holds what an operator derives once from its attributes
	// and shares between the plans of every batch size (the tree
	// ensembles' forest).
	prepared struct {
		once sync.Once
		v    any
		err  error
	}
}

// prepare returns build's result, computed on the first call only.
func (n *node) prepare(build func() (any, error)) (any, error) {
	n.prepared.once.Do(func() { n.prepared.v, n.prepared.err = build() })
	return n.prepared.v, n.prepared.err
}

// String names the node for error messages: node "/fc1/Gemm" (Gemm).
func (n *node) String() string {
	if n.name == "" {
		return fmt.Sprintf("node #%d (%s)", n.index, n.op)
	}
	return fmt.Sprintf("node %q (%s)", n.name, n.op)
}

// buildGraph checks a decoded model and turns it into a graph.
func buildGraph(m *onnx.Model) (*graph, error) {
	g := &graph{vocab: &vocab{}}
	for _, o := range m.Opsets {
		switch o.Domain {
		case "", "ai.onnx":
			g.opset = o.Version
		case mlDomain:
			g.mlOpset = o.Version
		}
	}
	if g.mlOpset != 0 && (g.mlOpset < minMLOpset || g.mlOpset > maxMLOpset) {
		return nil, fmt.Errorf("%w: %s opset %d (supported: %d to %d)", ErrUnsupported, mlDomain, g.mlOpset, minMLOpset, maxMLOpset)
	}
	if g.opset == 0 {
		if g.mlOpset == 0 {
			return nil, fmt.Errorf("%w: no opset_import for the ai.onnx domain", ErrInvalidModel)
		}
		// An ONNX-ML-only graph (Scaler → LinearClassifier, say).
		// onnxruntime gives a domain the model does not import its latest
		// opset; so do we.
		g.opset = maxOpset
	}
	if g.opset < minOpset || g.opset > maxOpset {
		return nil, fmt.Errorf("%w: ai.onnx opset %d (supported: %d to %d)", ErrUnsupported, g.opset, minOpset, maxOpset)
	}
	og := m.Graph
	if og.SparseInits > 0 {
		return nil, fmt.Errorf("%w: sparse initializers", ErrUnsupported)
	}
	ids := map[string]int{}
	add := func(name string, c *tensor.Tensor) int {
		ids[name] = len(g.names)
		g.names = append(g.names, name)
		g.consts = append(g.consts, c)
		return len(g.names) - 1
	}
	for _, it := range og.Initializers {
		if it.Name == "" {
			return nil, fmt.Errorf("%w: initializer without a name", ErrInvalidModel)
		}
		if _, dup := ids[it.Name]; dup {
			return nil, fmt.Errorf("%w: initializer %q defined twice", ErrInvalidModel, it.Name)
		}
		t, err := it.ToTensor()
		if err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
		add(it.Name, t)
	}
	for _, vi := range og.Inputs {
		if _, isInit := ids[vi.Name]; isInit {
			continue // IR < 4 lists initializers as inputs; IR >= 4 allows overriding them, which we do not
		}
		spec, err := specFromValueInfo(vi)
		if err != nil {
			return nil, fmt.Errorf("graph input %q: %w", vi.Name, err)
		}
		g.inputs = append(g.inputs, graphInput{id: add(vi.Name, nil), spec: spec})
		g.stringInputs = g.stringInputs || spec.DType == tensor.Bytes
	}
	nodes := make([]*node, len(og.Nodes))
	for i, on := range og.Nodes {
		n := &node{index: i, name: on.Name, op: on.OpType, attrs: on.Attrs}
		if on.Domain == mlDomain {
			n.domain = mlDomain
			if g.mlOpset == 0 {
				g.mlOpset = maxMLOpset // not imported: the latest, as onnxruntime does
			}
		}
		nodes[i] = n
		if err := n.checkDef(on); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		for _, name := range on.Outputs {
			if name == "" {
				n.out = append(n.out, -1)
				continue
			}
			if _, dup := ids[name]; dup {
				return nil, fmt.Errorf("%s: %w: output %q is already defined", n, ErrInvalidModel, name)
			}
			n.out = append(n.out, add(name, nil))
		}
	}
	for i, on := range og.Nodes {
		for _, name := range on.Inputs {
			id := -1
			if name != "" {
				var ok bool
				if id, ok = ids[name]; !ok {
					return nil, fmt.Errorf("%s: %w: input %q is not a graph input, initializer or node output", nodes[i], ErrInvalidModel, name)
				}
			}
			nodes[i].in = append(nodes[i].in, id)
		}
	}
	// ZipMap outputs (sequences of maps) may only be graph outputs, which
	// are served as ZipMap's tensor input plus the keys.
	zipMaps := map[int]*node{}
	for _, n := range nodes {
		if n.domain == mlDomain && n.op == "ZipMap" && n.out[0] >= 0 {
			zipMaps[n.out[0]] = n
		}
	}
	for _, n := range nodes {
		for _, v := range n.in {
			if zm := zipMaps[v]; zm != nil {
				return nil, fmt.Errorf("%s: %w: input %q is the output of %s, a sequence of maps (only a graph output may be)",
					n, ErrUnsupported, g.names[v], zm)
			}
		}
	}
	for _, vi := range og.Outputs {
		id, ok := ids[vi.Name]
		if !ok {
			return nil, fmt.Errorf("%w: graph output %q is not produced by the graph", ErrInvalidModel, vi.Name)
		}
		out := graphOutput{id: id, declared: vi}
		if zm := zipMaps[id]; zm != nil {
			keys, err := zipMapOutput(zm, vi)
			if err != nil {
				return nil, fmt.Errorf("graph output %q: %w", vi.Name, err)
			}
			out.keys = keys
		} else if vi.OtherType {
			return nil, fmt.Errorf("graph output %q: %w: non-tensor type (only a ZipMap may produce a sequence of maps)", vi.Name, ErrUnsupported)
		}
		g.outputs = append(g.outputs, out)
	}
	if len(g.outputs) == 0 {
		return nil, fmt.Errorf("%w: graph has no outputs", ErrInvalidModel)
	}
	var err error
	if g.nodes, err = topoSort(nodes, len(g.names)); err != nil {
		return nil, err
	}
	g.nodes = g.live(g.nodes)
	return g, nil
}

// checkDef resolves the operator and checks the domain, the number of
// inputs and outputs and the attribute names.
func (n *node) checkDef(on *onnx.Node) error {
	switch on.Domain {
	case "", "ai.onnx":
		n.def = lookupOp(on.OpType)
	case mlDomain:
		n.def = lookupMLOp(on.OpType)
	default:
		return fmt.Errorf("%w: domain %q", ErrUnsupported, on.Domain)
	}
	if n.def == nil {
		if n.domain == mlDomain {
			return fmt.Errorf("%w: operator %q of domain %s", ErrUnsupported, on.OpType, mlDomain)
		}
		return fmt.Errorf("%w: operator %q", ErrUnsupported, on.OpType)
	}
	if k := len(on.Inputs); k < n.def.minIn || k > n.def.maxIn {
		return fmt.Errorf("%w: %d inputs, want %d to %d", ErrInvalidModel, k, n.def.minIn, n.def.maxIn)
	}
	if k := len(on.Outputs); k < 1 || k > n.def.maxOut {
		return fmt.Errorf("%w: %d outputs, want 1 to %d", ErrInvalidModel, k, n.def.maxOut)
	}
	for i, a := range on.Attrs {
		if a.RefName != "" {
			return fmt.Errorf("%w: attribute %s refers to function attribute %q", ErrUnsupported, a.Name, a.RefName)
		}
		for _, b := range on.Attrs[:i] {
			if b.Name == a.Name {
				return fmt.Errorf("%w: attribute %s given twice", ErrInvalidModel, a.Name)
			}
		}
		known := false
		for _, name := range n.def.attrs {
			known = known || name == a.Name
		}
		if !known {
			return fmt.Errorf("%w: attribute %q", ErrUnsupported, a.Name)
		}
	}
	return nil
}

// topoSort orders nodes so that each comes after the producers of its
// inputs, keeping the model's order where it is already valid (Kahn's
// algorithm with a FIFO over the original order).
func topoSort(nodes []*node, nvals int) ([]*node, error) {
	producer := make([]int, nvals)
	for i := range producer {
		producer[i] = -1
	}
	for i, n := range nodes {
		for _, v := range n.out {
			if v >= 0 {
				producer[v] = i
			}
		}
	}
	pending := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, v := range n.in {
			if v >= 0 && producer[v] >= 0 {
				pending[i]++
				users[producer[v]] = append(users[producer[v]], i)
			}
		}
	}
	var queue []int
	for i := range nodes {
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	order := make([]*node, 0, len(nodes))
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, nodes[i])
		for _, u := range users[i] {
			if pending[u]--; pending[u] == 0 {
				queue = append(queue, u)
			}
		}
	}
	if len(order) < len(nodes) {
		for i, n := range nodes {
			if pending[i] > 0 {
				return nil, fmt.Errorf("%s: %w: the graph has a cycle through this node", n, ErrInvalidModel)
			}
		}
	}
	return order, nil
}

// live returns the nodes (in order) that some graph output depends on.
func (g *graph) live(nodes []*node) []*node {
	need := make([]bool, len(g.names))
	for _, o := range g.outputs {
		need[o.id] = true
	}
	keep := make([]bool, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		for _, v := range nodes[i].out {
			if v >= 0 && need[v] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, v := range nodes[i].in {
				if v >= 0 {
					need[v] = true
				}
			}
		}
	}
	out := nodes[:0:0]
	for i, n := range nodes {
		if keep[i] {
			out = append(out, n)
		}
	}
	return out
}

// specFromValueInfo turns a declared graph input into a TensorSpec; dims
// without a value (dim_param or nothing) are -1.
func specFromValueInfo(vi *onnx.ValueInfo) (backends.TensorSpec, error) {
	spec := backends.TensorSpec{Name: vi.Name}
	if vi.Name == "" {
		return spec, fmt.Errorf("%w: graph input without a name", ErrInvalidModel)
	}
	if !vi.TensorType || vi.OtherType {
		return spec, fmt.Errorf("%w: not a tensor type", ErrUnsupported)
	}
	dt, ok := onnx.DataType(vi.ElemType)
	if !ok {
		return spec, fmt.Errorf("%w: element type %d", ErrUnsupported, vi.ElemType)
	}
	if !vi.HasShape {
		return spec, fmt.Errorf("%w: no shape declared (the engine needs at least the rank)", ErrUnsupported)
	}
	if len(vi.Dims) > maxRank {
		return spec, fmt.Errorf("%w: rank %d (at most %d)", ErrUnsupported, len(vi.Dims), maxRank)
	}
	spec.DType = dt
	spec.Shape = make([]int64, len(vi.Dims))
	for i, d := range vi.Dims {
		switch {
		case !d.HasValue:
			spec.Shape[i] = -1
		case d.Value < 0:
			return spec, fmt.Errorf("%w: dimension %d is %d", ErrInvalidModel, i, d.Value)
		default:
			spec.Shape[i] = d.Value
		}
	}
	if tensor.NumElements(positive(spec.Shape)) < 0 {
		return spec, fmt.Errorf("%w: shape %v too large", ErrInvalidModel, spec.Shape)
	}
	return spec, nil
}

// positive returns shape with -1 dims replaced by 1.
func positive(shape []int64) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = max(d, 1)
	}
	return out
}
