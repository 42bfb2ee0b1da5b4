package cpu

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/tensor"
)

// frame binds a plan to one worker's arena: a tensor header per value with
// its data already pointing into the arena or at a constant, and each
// step's input and output lists, so that running a plan allocates nothing.
// A frame belongs to one worker and is not safe for concurrent use.
type frame struct {
	p         *plan
	vals      []tensor.Tensor    // per value id
	ins, outs [][]*tensor.Tensor // per step
}

func newFrame(p *plan, arena []byte) *frame {
	f := &frame{p: p, vals: make([]tensor.Tensor, len(p.slots))}
	ptrs := make([]*tensor.Tensor, len(p.slots))
	for id, s := range p.slots {
		t := &f.vals[id]
		t.DType, t.Shape = s.dtype, s.shape
		switch s.kind {
		case slotNone:
			continue
		case slotConst:
			t.Data = s.konst.Data
		case slotArena:
			t.Data = arena[s.off : s.off+s.size : s.off+s.size]
		}
		ptrs[id] = t
	}
	lists := func(ids []int) []*tensor.Tensor {
		l := make([]*tensor.Tensor, len(ids))
		for i, v := range ids {
			if v >= 0 {
				l[i] = ptrs[v]
			}
		}
		return l
	}
	f.ins = make([][]*tensor.Tensor, len(p.steps))
	f.outs = make([][]*tensor.Tensor, len(p.steps))
	for i, st := range p.steps {
		f.ins[i], f.outs[i] = lists(st.in), lists(st.out)
	}
	return f
}

// bind points the input values (and views of them) at the caller's data.
func (f *frame) bind(inputs []*tensor.Tensor) {
	for i, ids := range f.p.inputs {
		for _, id := range ids {
			f.vals[id].Data = inputs[i].Data
		}
	}
}

// unbind drops the references to the caller's data, which Infer must not
// retain.
func (f *frame) unbind() {
	for _, ids := range f.p.inputs {
		for _, id := range ids {
			f.vals[id].Data = nil
		}
	}
}

// exec runs the plan's steps in order. A panicking kernel becomes an error
// naming its node.
func (f *frame) exec() (err error) {
	i := 0
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cpu: %s: panic: %v", f.p.steps[i].n, r)
		}
	}()
	for i = range f.p.steps {
		st := &f.p.steps[i]
		if err := st.k.run(f.ins[i], f.outs[i]); err != nil {
			return fmt.Errorf("cpu: %s: %w", st.n, err)
		}
	}
	return nil
}

// value returns the tensor of value id after exec.
func (f *frame) value(id int) *tensor.Tensor { return &f.vals[id] }
