package cpu

import (
	"context"
	"encoding/binary"
	"fmt"

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
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cpu: infer: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("cpu: %w", ErrClosed)
	}
	if err := b.checkInputs(inputs); err != nil {
		return nil, err
	}
	var w *worker
	select {
	case w = <-b.workers:
	case <-ctx.Done():
		return nil, fmt.Errorf("cpu: waiting for a worker: %w", ctx.Err())
	}
	defer func() { b.workers <- w }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cpu: infer: %w", err)
	}
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
	f := w.frame(p)
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
	outs = make([]*tensor.Tensor, len(b.g.outputs))
	for i, o := range b.g.outputs {
		v := f.value(o.id)
		t := tensor.New(b.meta.Outputs[i].Name, v.DType, v.Shape)
		copy(t.Data, v.Data)
		outs[i] = t
	}
	return outs, nil
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
