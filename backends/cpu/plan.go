package cpu

import (
	"fmt"
	"slices"

	"github.com/coalesce-ml/coalesce/tensor"
)

// maxArenaBytes bounds the intermediate memory of one plan (per worker),
// so that a model or an input shape that would need more fails cleanly
// instead of exhausting memory.
const maxArenaBytes = 4 << 30

// arenaAlign is the alignment of every tensor in the arena (a cache line,
// which also suits future SIMD kernels).
const arenaAlign = 64

// plan is the graph compiled for one set of concrete input shapes: the
// steps to run, where each value lives and how big the arena is. A plan is
// immutable and shared by all workers.
type plan struct {
	steps     []step
	slots     []slot  // per value id
	inputs    [][]int // per graph input: value ids whose data is that input
	arenaSize int     // bytes
	// outs places the graph outputs, in order, in the one block of
	// outWords words that each call allocates for them.
	outs     []outPlace
	outWords int
}

// outPlace is where one graph output's shape and data go in the output
// block (offsets in 8-byte words).
type outPlace struct {
	id                int // value id
	shapeOff, dataOff int
	size              int  // bytes
	strings           bool // a BYTES output: data is built from string ids, not copied (size is 0)
}

// step is one kernel invocation.
type step struct {
	n       *node
	k       kernel
	in, out []int // value ids, -1 when absent
}

// slotKind says where a value's data lives.
type slotKind uint8

const (
	slotNone  slotKind = iota // not used by this plan
	slotConst                 // a constant tensor shared by all calls
	slotInput                 // the caller's input tensor (or a reshaped view of it)
	slotArena                 // off..off+size in the worker's arena
)

// slot is the storage of one value.
type slot struct {
	kind      slotKind
	dtype     tensor.DataType
	shape     []int64
	konst     *tensor.Tensor // slotConst
	input     int            // slotInput: graph input index
	off, size int            // slotArena, bytes
}

// newPlan compiles g for concrete input shapes.
func newPlan(g *graph, inShapes [][]int64) (*plan, error) {
	infos := make([]valueInfo, len(g.names))
	for id, c := range g.consts {
		if c != nil {
			infos[id] = valueInfo{dtype: c.DType, shape: c.Shape, konst: c}
		}
	}
	for i, in := range g.inputs {
		infos[in.id] = valueInfo{dtype: in.spec.DType, shape: inShapes[i]}
	}
	p := &plan{slots: make([]slot, len(g.names)), inputs: make([][]int, len(g.inputs))}
	root := make([]int, len(g.names)) // value id → id whose storage it shares
	for i := range root {
		root[i] = i
	}
	for _, n := range g.nodes {
		k, outs, err := compileNode(g, n, infos)
		if err != nil {
			return nil, err
		}
		if k != nil && foldable(n, infos, outs) {
			if err := fold(n, k, infos, outs); err != nil {
				return nil, err
			}
			continue
		}
		for i, v := range n.out {
			if v >= 0 {
				infos[v] = outs[i]
			}
		}
		if k == nil {
			continue // outputs known from shapes alone (Shape)
		}
		if _, ok := k.(aliasKernel); ok {
			root[n.out[0]] = root[n.in[0]]
			continue
		}
		p.steps = append(p.steps, step{n: n, k: k, in: n.in, out: n.out})
	}
	for i, in := range g.inputs {
		p.slots[in.id] = slot{kind: slotInput, input: i}
	}
	for id := range infos {
		if infos[id].konst != nil {
			p.slots[id] = slot{kind: slotConst, konst: infos[id].konst}
		}
	}
	p.assignArena(g, root, infos)
	if p.arenaSize > maxArenaBytes {
		return nil, fmt.Errorf("%w: the graph needs %d bytes of intermediate memory at input shapes %v (limit %d)",
			ErrUnsupported, p.arenaSize, inShapes, maxArenaBytes)
	}
	for id := range p.slots {
		s := &p.slots[id]
		if r := root[id]; r != id && s.kind == slotNone {
			*s = p.slots[r]
		}
		if s.kind == slotInput {
			p.inputs[s.input] = append(p.inputs[s.input], id)
		}
		s.dtype, s.shape = infos[id].dtype, infos[id].shape
	}
	for _, o := range g.outputs {
		s := p.slots[o.id]
		if s.kind == slotNone {
			return nil, fmt.Errorf("BUG: graph output %q has no storage", g.names[o.id])
		}
		size, str := prod(s.shape)*elemSize(s.dtype), s.dtype == tensor.Bytes
		if str {
			size = 0
		}
		op := outPlace{id: o.id, shapeOff: p.outWords, dataOff: p.outWords + len(s.shape), size: size, strings: str}
		p.outWords = op.dataOff + (size+7)/8
		p.outs = append(p.outs, op)
	}
	return p, nil
}

// assignArena gives every value computed by a step an arena range, reusing
// the ranges of values no later step reads (greedy first fit in step
// order). A step's outputs never overlap its inputs: ranges are freed only
// after the last step that reads them.
func (p *plan) assignArena(g *graph, root []int, infos []valueInfo) {
	end := len(p.steps)
	lastUse := make([]int, len(root))
	for i := range lastUse {
		lastUse[i] = -1
	}
	for s, st := range p.steps {
		for _, v := range st.in {
			if v >= 0 {
				lastUse[root[v]] = s
			}
		}
		for _, v := range st.out {
			if v >= 0 && lastUse[v] < s {
				lastUse[v] = s // outputs nobody reads are freed after their step
			}
		}
	}
	for _, o := range g.outputs {
		lastUse[root[o.id]] = end
	}
	var free []span // sorted by offset, coalesced
	for s, st := range p.steps {
		for _, v := range st.out {
			if v < 0 {
				continue
			}
			size := prod(infos[v].shape) * elemSize(infos[v].dtype)
			off := takeSpan(&free, alignUp(size), &p.arenaSize)
			p.slots[v] = slot{kind: slotArena, off: off, size: size}
		}
		for _, v := range st.out {
			if v >= 0 && lastUse[v] == s {
				giveSpan(&free, span{p.slots[v].off, alignUp(p.slots[v].size)})
				lastUse[v] = -2
			}
		}
		for _, v := range st.in {
			if v < 0 {
				continue
			}
			if r := root[v]; lastUse[r] == s && p.slots[r].kind == slotArena {
				giveSpan(&free, span{p.slots[r].off, alignUp(p.slots[r].size)})
				lastUse[r] = -2 // freed (an input listed twice is freed once)
			}
		}
	}
}

// span is a free range of the arena.
type span struct{ off, size int }

func alignUp(n int) int { return (n + arenaAlign - 1) &^ (arenaAlign - 1) }

// takeSpan takes size bytes from the first free span that fits, or from
// the end of the arena (growing *top).
func takeSpan(free *[]span, size int, top *int) int {
	if size == 0 {
		return 0
	}
	for i, f := range *free {
		if f.size >= size {
			if f.size == size {
				*free = slices.Delete(*free, i, i+1)
			} else {
				(*free)[i] = span{f.off + size, f.size - size}
			}
			return f.off
		}
	}
	fl := *free
	if n := len(fl); n > 0 && fl[n-1].off+fl[n-1].size == *top { // extend the last free span
		off := fl[n-1].off
		*free = fl[:n-1]
		*top = off + size
		return off
	}
	off := *top
	*top += size
	return off
}

// giveSpan returns s to the free list, merging neighbours.
func giveSpan(free *[]span, s span) {
	if s.size == 0 {
		return
	}
	fl := *free
	i, _ := slices.BinarySearchFunc(fl, s.off, func(f span, off int) int { return f.off - off })
	fl = slices.Insert(fl, i, s)
	if i+1 < len(fl) && fl[i].off+fl[i].size == fl[i+1].off {
		fl[i].size += fl[i+1].size
		fl = slices.Delete(fl, i+1, i+2)
	}
	if i > 0 && fl[i-1].off+fl[i-1].size == fl[i].off {
		fl[i-1].size += fl[i].size
		fl = slices.Delete(fl, i, i+1)
	}
	*free = fl
}
