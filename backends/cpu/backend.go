package cpu

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/internal/idlethread"
	"github.com/coalesce-ml/coalesce/tensor"
)

// maxPlans bounds the plan cache (one plan per distinct set of dynamic
// dimensions, usually per batch size); past it the cache starts over.
const maxPlans = 256

// Options configures a Backend. The zero value is usable.
type Options struct {
	// MaxBatchSize is the largest batch (dimension 0) one Infer call
	// accepts; 0 means no limit.
	MaxBatchSize int
	// Concurrency is how many Infer calls run at once, each on its own
	// arena; 0 means one per P that runs Go code at normal priority
	// (idlethread.Procs: GOMAXPROCS without the Ps added for a shadow's
	// lowered worker, which are not for this work).
	Concurrency int
	// Kernels selects the matrix-multiply kernels: "avx512", "avx2" or
	// "generic" (portable Go); "" or "auto" means the fastest this CPU
	// supports. Asking for kernels the CPU or build (the purego tag)
	// lacks is an error. Metadata().Info["kernels"] reports the choice.
	Kernels string
	// SplitRows is the number of rows (the batch size, for a Gemm or
	// MatMul on a batch of vectors) from which a matrix product with
	// constant weights is split into row chunks computed in parallel by
	// the calling worker and idle helper goroutines (GOMAXPROCS-1 per
	// Backend, stopped by Close). Helpers are used only while fewer than
	// GOMAXPROCS goroutines of the Backend compute, so splitting adds no
	// work when every core already serves a call. 0 means the measured
	// default (16); a negative value never splits. Results are identical
	// either way.
	SplitRows int
}

// Backend runs one ONNX model on the CPU. It implements backends.Backend
// and is safe for concurrent use; at most Concurrency calls run at once.
type Backend struct {
	g    *graph
	meta backends.Metadata
	// workers holds the idle workers; its capacity is Concurrency. Taking
	// one is the concurrency semaphore.
	workers chan *worker
	split   *sgemm.Splitter                  // helpers for large products; nil when not splitting
	plans   atomic.Pointer[map[string]*plan] // copy on write
	mu      sync.Mutex                       // serializes writers of plans
	closed  atomic.Bool
}

// worker is one concurrency slot: an arena and the frames bound to it.
type worker struct {
	arena  []byte
	frames map[*plan]*frame
	key    []byte // scratch for the plan cache key
	// last is the frame of the previous call and lastKey its plan key:
	// consecutive calls with the same shapes skip both map lookups.
	last    *frame
	lastKey []byte
	// BYTES inputs as ids (see internInputs): per input its id buffer and
	// header, the inputs as the plan sees them, and the call's elements
	// outside the vocabulary.
	strIDs  [][]byte
	strHdrs []tensor.Tensor
	strIns  []*tensor.Tensor
	unknown [][]byte
}

// Load reads and compiles the ONNX model at path; see LoadBytes.
func Load(path string, opts Options) (*Backend, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	be, err := LoadBytes(b, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return be, nil
}

// LoadBytes decodes and compiles a serialized ONNX ModelProto. Every
// shape and datatype is checked here: an unsupported operator or a
// mismatch is an error (wrapping ErrMalformed, ErrInvalidModel or
// ErrUnsupported) that names the node. b is not retained.
func LoadBytes(b []byte, opts Options) (be *Backend, err error) {
	defer func() {
		// Every malformed input is meant to be an error; a panic here is a
		// bug in this package, reported rather than crashing the server.
		if r := recover(); r != nil {
			be, err = nil, fmt.Errorf("cpu: BUG: panic while loading: %v", r)
		}
	}()
	m, err := onnx.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("cpu: decode: %w", err)
	}
	g, err := buildGraph(m)
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	return newBackend(g, opts, "onnx_onnxv1")
}

// newBackend compiles a built graph into a Backend: constants folded,
// nodes fused, plans probed, workers made.
func newBackend(g *graph, opts Options, platform string) (be *Backend, err error) {
	if opts.MaxBatchSize < 0 || opts.Concurrency < 0 {
		return nil, fmt.Errorf("cpu: options: negative MaxBatchSize or Concurrency")
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = idlethread.Procs()
	}
	ks, err := sgemm.Lookup(opts.Kernels)
	if err != nil {
		return nil, fmt.Errorf("cpu: options: %w", err)
	}
	g.kernels = ks
	g.split = sgemm.NewSplitter(opts.SplitRows, opts.Concurrency)
	if g.vocab == nil {
		g.vocab = &vocab{} // a graph not built by buildGraph (NewNative)
	}
	if err := foldConstants(g); err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	fuse(g)
	be = &Backend{g: g, workers: make(chan *worker, opts.Concurrency), split: g.split}
	for range opts.Concurrency {
		be.workers <- &worker{frames: map[*plan]*frame{}}
	}
	plans := map[string]*plan{}
	var probed []*plan
	for _, v := range probeSizes(g, opts.MaxBatchSize) {
		shapes := make([][]int64, len(g.inputs))
		for i, in := range g.inputs {
			shapes[i] = clone(in.spec.Shape)
			for d := range shapes[i] {
				if shapes[i][d] < 0 {
					shapes[i][d] = v
				}
			}
		}
		p, err := newPlan(g, shapes)
		if err != nil {
			if hasDynamic(g) {
				return nil, fmt.Errorf("cpu: with dynamic dims = %d: %w", v, err)
			}
			return nil, fmt.Errorf("cpu: %w", err)
		}
		plans[string(be.planKey(nil, shapes))] = p
		probed = append(probed, p)
	}
	be.plans.Store(&plans)
	// Every string constant is interned by now (see vocab.intern).
	g.vocab.frozen = true
	outs, err := outputSpecs(g, probed)
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	be.meta = backends.Metadata{
		Platform:     platform,
		Outputs:      outs,
		MaxBatchSize: opts.MaxBatchSize,
		Concurrency:  opts.Concurrency,
		Parallel:     splitsColumns(g),
		Info:         map[string]string{"engine": "pure-go", "kernels": ks.Name()},
	}
	for _, in := range g.inputs {
		be.meta.Inputs = append(be.meta.Inputs, backends.TensorSpec{Name: in.spec.Name, DType: in.spec.DType, Shape: clone(in.spec.Shape),
			Missing: in.spec.Missing || acceptsMissing(g)})
	}
	if be.split != nil {
		be.split.Start()
		// A Backend dropped without Close stops its helpers when collected
		// (they reference the splitter, not the Backend).
		runtime.AddCleanup(be, func(sp *sgemm.Splitter) { sp.Stop(false) }, be.split)
	}
	return be, nil
}

// splitsColumns reports whether a product of the compiled plans has
// constant weights large enough that g's splitter spreads it over every
// core at any batch size (see sgemm.Splitter.SplitsColumns).
func splitsColumns(g *graph) bool {
	g.packs.mu.Lock()
	defer g.packs.mu.Unlock()
	for _, p := range g.packs.m {
		if g.split.SplitsColumns(p) {
			return true
		}
	}
	return false
}

// hasDynamic reports whether any graph input has a dynamic dimension.
func hasDynamic(g *graph) bool {
	for _, in := range g.inputs {
		for _, d := range in.spec.Shape {
			if d < 0 {
				return true
			}
		}
	}
	return false
}

// probeSizes returns the values given to dynamic dimensions when checking
// the graph at load: two distinct sizes, so that output dimensions that
// follow the batch can be told from fixed ones, within MaxBatchSize.
func probeSizes(g *graph, maxBatch int) []int64 {
	if !hasDynamic(g) {
		return []int64{0} // unused: no dimension to fill
	}
	var out []int64
	for _, v := range []int64{2, 3, 1} {
		if len(out) < 2 && (maxBatch == 0 || v <= int64(maxBatch)) {
			out = append(out, v)
		}
	}
	return out
}

// outputSpecs describes the graph outputs from the probe plans: a
// dimension is -1 when it differs between probes, or when only one probe
// ran and the model declares it without a value.
func outputSpecs(g *graph, probed []*plan) ([]backends.TensorSpec, error) {
	specs := make([]backends.TensorSpec, len(g.outputs))
	for i, o := range g.outputs {
		s := probed[0].slots[o.id]
		spec := backends.TensorSpec{Name: g.names[o.id], DType: s.dtype, Shape: clone(s.shape)}
		if o.keys != nil {
			spec.Keys = append([]string(nil), o.keys...)
		}
		decl := o.declared
		if decl.TensorType && decl.ElemType != 0 {
			if dt, _ := onnx.DataType(decl.ElemType); dt != s.dtype {
				return nil, fmt.Errorf("%w: graph output %q is declared as element type %d but computes %s", ErrInvalidModel, spec.Name, decl.ElemType, s.dtype)
			}
		}
		if decl.HasShape && len(decl.Dims) != len(s.shape) {
			return nil, fmt.Errorf("%w: graph output %q is declared with rank %d but computes shape %v", ErrInvalidModel, spec.Name, len(decl.Dims), s.shape)
		}
		for d := range spec.Shape {
			dynamic := false
			for _, p := range probed[1:] {
				dynamic = dynamic || p.slots[o.id].shape[d] != s.shape[d]
			}
			if len(probed) == 1 && hasDynamic(g) && (!decl.HasShape || !decl.Dims[d].HasValue) {
				dynamic = true
			}
			if dynamic {
				spec.Shape[d] = -1
			} else if decl.HasShape && decl.Dims[d].HasValue && decl.Dims[d].Value != s.shape[d] {
				return nil, fmt.Errorf("%w: graph output %q is declared with shape dimension %d = %d but computes %d", ErrInvalidModel, spec.Name, d, decl.Dims[d].Value, s.shape[d])
			}
		}
		specs[i] = spec
	}
	return specs, nil
}

// Metadata returns the model's description. The caller must not modify
// it.
func (b *Backend) Metadata() *backends.Metadata { return &b.meta }

// Close marks the backend closed: later Infer calls fail with ErrClosed,
// in-flight calls finish (without helpers). It stops the helper
// goroutines and waits until they have exited. It never fails and may be
// called more than once.
func (b *Backend) Close() error {
	b.closed.Store(true)
	b.split.Stop(true)
	return nil
}

// planKey appends the input shapes' dynamic dimensions to dst: the plan
// cache key.
func (b *Backend) planKey(dst []byte, shapes [][]int64) []byte {
	for i, in := range b.g.inputs {
		for d, want := range in.spec.Shape {
			if want < 0 {
				dst = binary.AppendUvarint(dst, uint64(shapes[i][d]))
			}
		}
	}
	return dst
}

// plan returns the cached plan for key, compiling and caching it for
// shapes when absent.
func (b *Backend) plan(key []byte, shapes [][]int64) (*plan, error) {
	if p := (*b.plans.Load())[string(key)]; p != nil {
		return p, nil
	}
	p, err := newPlan(b.g, shapes)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.plans.Load()
	if q := old[string(key)]; q != nil {
		return q, nil
	}
	next := make(map[string]*plan, len(old)+1)
	if len(old) < maxPlans {
		for k, v := range old {
			next[k] = v
		}
	}
	next[string(key)] = p
	b.plans.Store(&next)
	return p, nil
}

// frame returns w's frame for p, growing the arena when p needs more.
func (w *worker) frame(p *plan) *frame {
	if f := w.frames[p]; f != nil {
		return f
	}
	if p.arenaSize > len(w.arena) {
		w.arena = tensor.Alloc(p.arenaSize)
		clear(w.frames) // they point into the old arena
		w.last = nil
	}
	if len(w.frames) >= maxPlans {
		clear(w.frames)
		w.last = nil
	}
	f := newFrame(p, w.arena)
	w.frames[p] = f
	return f
}
