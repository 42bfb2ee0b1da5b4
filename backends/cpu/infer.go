package cpu

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Infer runs one batch. inputs follow Metadata().Inputs: the declared
// datatypes, the declared dimensions where they are fixed, and one batch
// size (dimension 0) for all. A mismatch is an error wrapping
// backends.ErrInvalidInput. Infer waits for a free worker (at most
// Concurrency calls run at once) unless ctx ends first, and returns
// ctx.Err() wrapped if ctx has ended before the batch starts. The outputs
// are new tensors owned by the caller, named and ordered as
// Metadata().Outputs. inputs are neither modified nor retained.
func (b *Backend) Infer(ctx context.Context, inputs []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if b.closed.Load() {
		return nil, fmt.Errorf("cpu: %w", ErrClosed)
	}
	if err := b.checkInputs(inputs); err != nil {
		return nil, err
	}
	// The deadline is checked once a worker is ours (one clock reading
	// when a worker is idle, the common case).
	var w *worker
	select {
	case w = <-b.workers: // an idle worker: no need to watch ctx
	default:
		select {
		case w = <-b.workers:
		case <-ctx.Done():
			return nil, fmt.Errorf("cpu: waiting for a worker: %w", ctx.Err())
		}
	}
	defer func() { b.workers <- w }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cpu: infer: %w", err)
	}
	b.split.Enter()
	defer b.split.Leave()
	return b.run(w, inputs)
}

// run executes the plan for the inputs' shapes on worker w. Kernel panics
// are turned into errors naming the node by frame.exec; any other panic
// (a bug in plan compilation) becomes an error here.
func (b *Backend) run(w *worker, inputs []*tensor.Tensor) (outs []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("cpu: BUG: panic: %v", r)
		}
	}()
	w.key = w.key[:0]
	for i, in := range inputs {
		for d, want := range b.g.inputs[i].spec.Shape {
			if want < 0 {
				w.key = binary.AppendUvarint(w.key, uint64(in.Shape[d]))
			}
		}
	}
	f := w.last
	if f == nil || !bytes.Equal(w.key, w.lastKey) {
		p := (*b.plans.Load())[string(w.key)]
		if p == nil { // first call with these shapes: compile and cache a plan
			shapes := make([][]int64, len(inputs))
			for i, in := range inputs {
				shapes[i] = clone(in.Shape)
			}
			if p, err = b.plan(w.key, shapes); err != nil {
				return nil, fmt.Errorf("%w: input shapes %v: %w", backends.ErrInvalidInput, shapes, err)
			}
		}
		f = w.frame(p)
		w.last, w.lastKey = f, append(w.lastKey[:0], w.key...)
	}
	if b.g.stringInputs {
		inputs = w.internInputs(b.g.vocab, inputs)
		defer w.releaseStrings()
	}
	for i, in := range inputs {
		if !aligned(in.Data, in.DType.Size()) {
			inputs = alignedCopy(inputs, i)
		}
	}
	f.bind(inputs)
	defer f.unbind()
	if err := f.exec(); err != nil {
		return nil, err
	}
	return b.outputs(f, w), nil
}

// outputs copies the graph outputs out of f into new tensors owned by the
// caller. It allocates twice whatever the number of outputs (up to
// maxPackedOutputs; three times beyond): one block of words holding every
// output's shape and data (no pointers, so the GC does not scan it), and
// one for the tensor headers and the result slice together. A BYTES
// output's data is built from its string ids in one more allocation.
func (b *Backend) outputs(f *frame, w *worker) []*tensor.Tensor {
	p := f.p
	block := make([]uint64, p.outWords)
	var ts []tensor.Tensor
	var outs []*tensor.Tensor
	if n := len(p.outs); n <= maxPackedOutputs {
		h := new(outHeaders)
		ts, outs = h.ts[:n:n], h.ptrs[:n:n]
	} else {
		ts, outs = make([]tensor.Tensor, n), make([]*tensor.Tensor, n)
	}
	for i, o := range p.outs {
		v := f.value(o.id)
		t := &ts[i]
		t.Name, t.DType = b.meta.Outputs[i].Name, v.DType
		if n := len(v.Shape); n > 0 {
			t.Shape = unsafe.Slice((*int64)(unsafe.Pointer(&block[o.shapeOff])), n)
			copy(t.Shape, v.Shape)
		}
		t.Data = []byte{}
		if o.strings {
			t.Data = b.g.vocab.appendStrings(nil, viewAs[int64](v.Data), w.unknown)
		} else if o.size > 0 {
			t.Data = unsafe.Slice((*byte)(unsafe.Pointer(&block[o.dataOff])), o.size)
			copy(t.Data, v.Data)
		}
		outs[i] = t
	}
	return outs
}

// maxPackedOutputs is the number of outputs whose headers and result slice
// come in one allocation (outHeaders); typical models have one to three.
const maxPackedOutputs = 4

// outHeaders holds the result of an Infer call with few outputs.
type outHeaders struct {
	ptrs [maxPackedOutputs]*tensor.Tensor
	ts   [maxPackedOutputs]tensor.Tensor
}

// alignedCopy returns inputs with input i replaced by an aligned copy (the
// typed kernels need element-aligned data; tensor.Alloc gives it, hand-made
// slices may not). The caller's slice is not modified.
func alignedCopy(inputs []*tensor.Tensor, i int) []*tensor.Tensor {
	c := append([]*tensor.Tensor(nil), inputs...)
	c[i] = inputs[i].Clone()
	return c
}

// checkInputs validates inputs against the declared inputs.
func (b *Backend) checkInputs(inputs []*tensor.Tensor) error {
	specs := b.meta.Inputs
	if len(inputs) != len(specs) {
		return fmt.Errorf("%w: got %d inputs, want %d", backends.ErrInvalidInput, len(inputs), len(specs))
	}
	batch, batchFrom := int64(-1), ""
	for i, in := range inputs {
		spec := specs[i]
		if in == nil {
			return fmt.Errorf("%w: input %q is missing", backends.ErrInvalidInput, spec.Name)
		}
		if in.DType != spec.DType {
			return fmt.Errorf("%w: input %q is %s, want %s", backends.ErrInvalidInput, spec.Name, in.DType, spec.DType)
		}
		ok := len(in.Shape) == len(spec.Shape)
		for d := 0; ok && d < len(spec.Shape); d++ {
			ok = spec.Shape[d] == in.Shape[d] || spec.Shape[d] < 0 && in.Shape[d] > 0
		}
		if !ok {
			return fmt.Errorf("%w: input %q has shape %v, want %v (-1: any size > 0)", backends.ErrInvalidInput, spec.Name, in.Shape, spec.Shape)
		}
		if err := in.Validate(); err != nil {
			return fmt.Errorf("%w: input %q: %w", backends.ErrInvalidInput, spec.Name, err)
		}
		if len(in.Shape) == 0 || spec.Shape[0] >= 0 {
			continue // only a dynamic dimension 0 is a batch dimension
		}
		if batch >= 0 && in.Shape[0] != batch {
			return fmt.Errorf("%w: input %q has batch size %d, input %q has %d", backends.ErrInvalidInput, spec.Name, in.Shape[0], batchFrom, batch)
		}
		batch, batchFrom = in.Shape[0], spec.Name
	}
	if max := b.meta.MaxBatchSize; max > 0 && batch > int64(max) {
		return fmt.Errorf("%w: batch size %d exceeds the maximum %d", backends.ErrInvalidInput, batch, max)
	}
	return nil
}
