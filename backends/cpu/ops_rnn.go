package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// rnn is a compiled LSTM, GRU or RNN node. Per direction, the input
// projection of every time step is one GEMM (X·Wᵀ plus the biases, rows
// in X's order); then each step adds H·Rᵀ for the whole batch with one
// more GEMM onto the step's gate rows and applies the cell.
type rnn struct {
	op                string // LSTM, GRU or RNN
	gates             int    // 4, 3 or 1
	hidden, input     int
	seq, batch, dirs  int
	batchMajor        bool // layout=1: X is [batch, seq, input], Y [batch, seq, dirs, hidden]
	reverse           [2]bool
	acts              [2][3]func(float64) float64 // f, g, h per direction
	clip              float64                     // 0: none
	inputForget       bool                        // LSTM: f = 1 − i
	linearBeforeReset bool                        // GRU
	w, r, rh          [2]*sgemm.Packed            // X·Wᵀ (+ biases), H·Rᵀ (GRU: z and r gates), GRU: H·Rhᵀ
	peep              [2][]float32                // LSTM peepholes i, o, f
	fast              [2]bool                     // default activations, no clip, no peepholes: row loops
	ks                *sgemm.Kernels
	sp                *sgemm.Splitter
	bufs              freeList[rnnBuf]
}

// rnnBuf is one call's scratch memory.
type rnnBuf struct {
	xw, gates, h, c, tmp, rh []float32
	lens                     []int
}

// rnnConsts are what a node derives once from its constant weights and
// shares between the plans of every batch size: per direction the
// weight views and the combined biases folded into the packed weights.
type rnnConsts struct {
	w, r, rh     [2]*tensor.Tensor
	bias, rhBias [2]*tensor.Tensor
}

// compileRNN compiles LSTM, GRU and RNN (FP32) with every attribute of
// opset 22: direction (forward, reverse, bidirectional), hidden_size,
// activations with activation_alpha/beta (Relu, Tanh, Sigmoid, Affine,
// LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign,
// Softplus), clip, input_forget (LSTM), linear_before_reset (GRU),
// layout, and the optional inputs B, sequence_lens, initial_h,
// initial_c and P (peepholes). W, R, B and P must be constants.
func compileRNN(c *opCtx) (kernel, error) {
	x := c.input(0)
	op := c.n.op
	rn := &rnn{op: op, ks: c.ks, sp: c.sp}
	nActs := 0
	switch op {
	case "LSTM":
		rn.gates, nActs = 4, 3
	case "GRU":
		rn.gates, nActs = 3, 2
	default:
		rn.gates, nActs = 1, 1
	}
	for i := range c.in {
		if i == 4 {
			if err := c.wantDType(4, "sequence_lens", tensor.Int32); err != nil {
				return nil, err
			}
			continue
		}
		if err := c.wantDType(i, "input", tensor.FP32); err != nil {
			return nil, err
		}
	}
	hid, err := c.n.attrs.Int("hidden_size", 0)
	if err != nil {
		return nil, err
	}
	dir, err := c.n.attrs.Str("direction", "forward")
	if err != nil {
		return nil, err
	}
	switch dir {
	case "forward":
		rn.dirs = 1
	case "reverse":
		rn.dirs, rn.reverse[0] = 1, true
	case "bidirectional":
		rn.dirs, rn.reverse[1] = 2, true
	default:
		return nil, invalidf("direction %q", dir)
	}
	layout, err := c.n.attrs.Int("layout", 0)
	if err != nil {
		return nil, err
	}
	if layout != 0 && layout != 1 {
		return nil, invalidf("layout %d, want 0 or 1", layout)
	}
	rn.batchMajor = layout == 1
	clip, err := c.n.attrs.Float("clip", 0)
	if err != nil {
		return nil, err
	}
	if c.n.attrs.Has("clip") && clip <= 0 {
		return nil, invalidf("clip %v, want > 0", clip)
	}
	rn.clip = float64(clip)
	if rn.inputForget, err = c.n.attrs.Bool("input_forget", false); err != nil {
		return nil, err
	}
	if lbr, err := c.n.attrs.Int("linear_before_reset", 0); err != nil {
		return nil, err
	} else {
		rn.linearBeforeReset = lbr != 0
	}
	if len(x.shape) != 3 {
		return nil, invalidf("input X has shape %v, want rank 3", x.shape)
	}
	rn.seq, rn.batch, rn.input = int(x.shape[0]), int(x.shape[1]), int(x.shape[2])
	if rn.batchMajor {
		rn.seq, rn.batch = rn.batch, rn.seq
	}
	W, R := c.input(1), c.input(2)
	g := rn.gates
	if len(W.shape) != 3 || int(W.shape[0]) != rn.dirs || int(W.shape[2]) != rn.input || W.shape[1]%int64(g) != 0 {
		return nil, invalidf("input W has shape %v, want [%d, %d·hidden, %d]", W.shape, rn.dirs, g, rn.input)
	}
	rn.hidden = int(W.shape[1]) / g
	if hid != 0 && int(hid) != rn.hidden {
		return nil, invalidf("hidden_size %d, W has shape %v", hid, W.shape)
	}
	h := rn.hidden
	if !sameShape(R.shape, []int64{int64(rn.dirs), int64(g * h), int64(h)}) {
		return nil, invalidf("input R has shape %v, want [%d, %d, %d]", R.shape, rn.dirs, g*h, h)
	}
	if b := c.input(3); b != nil && !sameShape(b.shape, []int64{int64(rn.dirs), int64(2 * g * h)}) {
		return nil, invalidf("input B has shape %v, want [%d, %d]", b.shape, rn.dirs, 2*g*h)
	}
	if l := c.input(4); l != nil && !sameShape(l.shape, []int64{int64(rn.batch)}) {
		return nil, invalidf("input sequence_lens has shape %v, want [%d]", l.shape, rn.batch)
	}
	state := []int64{int64(rn.dirs), int64(rn.batch), int64(h)}
	if rn.batchMajor {
		state = []int64{int64(rn.batch), int64(rn.dirs), int64(h)}
	}
	for i := 5; i <= 6; i++ {
		if s := c.input(i); s != nil && !sameShape(s.shape, state) {
			return nil, invalidf("input %d (initial state) has shape %v, want %v", i, s.shape, state)
		}
	}
	if op != "LSTM" && len(c.in) > 6 {
		return nil, invalidf("%s takes 6 inputs at most", op)
	}
	if p := c.input(7); p != nil && !sameShape(p.shape, []int64{int64(rn.dirs), int64(3 * h)}) {
		return nil, invalidf("input P has shape %v, want [%d, %d]", p.shape, rn.dirs, 3*h)
	}
	if err := rn.parseActivations(c, nActs); err != nil {
		return nil, err
	}
	for _, i := range []int{1, 2, 3, 7} {
		if _, err := c.constInput(i, []string{1: "W", 2: "R", 3: "B", 7: "P"}[i]); err != nil {
			return nil, err
		}
	}
	v, err := c.n.prepare(func() (any, error) { return rn.consts(c), nil })
	if err != nil {
		return nil, err
	}
	k := v.(*rnnConsts)
	for d := range rn.dirs {
		rn.w[d] = c.packB(k.w[d], true, rn.input, g*h, rn.input, 1, k.bias[d], 1)
		if op == "GRU" {
			rn.r[d] = c.packB(k.r[d], true, h, 2*h, h, 1, nil, 0)
			rn.rh[d] = c.packB(k.rh[d], true, h, h, h, 1, k.rhBias[d], 1)
		} else {
			rn.r[d] = c.packB(k.r[d], true, h, g*h, h, 1, nil, 0)
		}
		if p := c.input(7); p != nil {
			rn.peep[d] = viewAs[float32](p.konst.Data)[d*3*h : (d+1)*3*h]
		}
	}
	y := []int64{int64(rn.seq), int64(rn.dirs), int64(rn.batch), int64(h)}
	if rn.batchMajor {
		y = []int64{int64(rn.batch), int64(rn.seq), int64(rn.dirs), int64(h)}
	}
	c.setOut(0, tensor.FP32, y)
	c.setOut(1, tensor.FP32, state)
	if op == "LSTM" {
		c.setOut(2, tensor.FP32, clone(state))
	} else if c.hasOut(2) {
		return nil, invalidf("%s has 2 outputs", op)
	}
	return rn, nil
}

// consts splits the constant weights per direction and combines the
// biases: Wb + Rb for every gate, except GRU's h gate with
// linear_before_reset, whose Rb is applied inside the reset product.
func (rn *rnn) consts(c *opCtx) *rnnConsts {
	g, h := rn.gates, rn.hidden
	W, R := c.input(1).konst, c.input(2).konst
	var B []float32
	if b := c.input(3); b != nil {
		B = viewAs[float32](b.konst.Data)
	}
	k := &rnnConsts{}
	view := func(t *tensor.Tensor, from, to int) *tensor.Tensor {
		return &tensor.Tensor{DType: tensor.FP32, Shape: []int64{int64(to - from)}, Data: t.Data[from*4 : to*4]}
	}
	for d := range rn.dirs {
		k.w[d] = view(W, d*g*h*rn.input, (d+1)*g*h*rn.input)
		k.r[d] = view(R, d*g*h*h, (d+1)*g*h*h)
		if rn.op == "GRU" {
			k.r[d] = view(R, d*g*h*h, d*g*h*h+2*h*h)
			k.rh[d] = view(R, d*g*h*h+2*h*h, (d+1)*g*h*h)
		}
		bias := tensor.New("", tensor.FP32, []int64{int64(g * h)})
		rhBias := tensor.New("", tensor.FP32, []int64{int64(h)})
		if B != nil {
			bv, rb := viewAs[float32](bias.Data), viewAs[float32](rhBias.Data)
			wb, rbs := B[d*2*g*h:d*2*g*h+g*h], B[d*2*g*h+g*h:(d+1)*2*g*h]
			for j := range bv {
				bv[j] = wb[j]
				if rn.op == "GRU" && rn.linearBeforeReset && j >= 2*h {
					rb[j-2*h] = rbs[j]
					continue
				}
				bv[j] += rbs[j]
			}
		}
		k.bias[d], k.rhBias[d] = bias, rhBias
	}
	return k
}

// parseActivations reads activations, activation_alpha and
// activation_beta: n functions per direction (the defaults when absent),
// the alphas and betas consumed in order by the functions that take
// them.
func (rn *rnn) parseActivations(c *opCtx, n int) error {
	names, has, err := c.n.attrs.Strings("activations")
	if err != nil {
		return err
	}
	if !has {
		names = []string{"Sigmoid", "Tanh", "Tanh"}[:n]
		if rn.op == "RNN" {
			names = []string{"Tanh"}
		}
		if rn.dirs == 2 {
			names = append(names, names...)
		}
	}
	if len(names) != n*rn.dirs {
		return invalidf("activations %v: want %d (%d per direction)", names, n*rn.dirs, n)
	}
	alphas, _, err := c.n.attrs.Floats("activation_alpha")
	if err != nil {
		return err
	}
	betas, _, err := c.n.attrs.Floats("activation_beta")
	if err != nil {
		return err
	}
	param := func(list *[]float32, def float64) float64 {
		if len(*list) == 0 {
			return def
		}
		v := float64((*list)[0])
		*list = (*list)[1:]
		return v
	}
	for i, name := range names {
		var f func(float64) float64
		switch name {
		case "Relu":
			f = func(v float64) float64 { return max(v, 0) }
		case "Tanh":
			f = tanh64
		case "Sigmoid":
			f = sigmoid64
		case "Affine":
			a, b := param(&alphas, 1), param(&betas, 0)
			f = func(v float64) float64 { return a*v + b }
		case "LeakyRelu":
			a := param(&alphas, 0.01)
			f = func(v float64) float64 {
				if v < 0 {
					return a * v
				}
				return v
			}
		case "ThresholdedRelu":
			a := param(&alphas, 1)
			f = func(v float64) float64 {
				if v > a {
					return v
				}
				return 0
			}
		case "ScaledTanh":
			a, b := param(&alphas, 1), param(&betas, 1)
			f = func(v float64) float64 { return a * math.Tanh(b*v) }
		case "HardSigmoid":
			a, b := param(&alphas, 0.2), param(&betas, 0.5)
			f = func(v float64) float64 { return max(0, min(1, a*v+b)) }
		case "Elu":
			a := param(&alphas, 1)
			f = func(v float64) float64 {
				if v < 0 {
					return a * (math.Exp(v) - 1)
				}
				return v
			}
		case "Softsign":
			f = func(v float64) float64 { return v / (1 + math.Abs(v)) }
		case "Softplus":
			f = func(v float64) float64 { return math.Log1p(math.Exp(v)) }
		default:
			return unsupportedf("activation %q", name)
		}
		rn.acts[i/n][i%n] = f
	}
	// The default activations without clip or peepholes take the row
	// loops (sigmoidRow32, tanhRow32) instead of a call per element.
	for d := range rn.dirs {
		def := names[d*n : (d+1)*n]
		rn.fast[d] = rn.clip == 0 && !rn.inputForget && c.input(7) == nil &&
			def[0] == "Sigmoid" && (n < 2 || def[1] == "Tanh") && (n < 3 || def[2] == "Tanh") && rn.op != "RNN"
	}
	return nil
}

// row returns the row of X (and of the projection) for time t, batch b.
func (rn *rnn) row(t, b int) int {
	if rn.batchMajor {
		return b*rn.seq + t
	}
	return t*rn.batch + b
}

// yOff returns the offset of Y's hidden vector for time t, direction d,
// batch b.
func (rn *rnn) yOff(t, d, b int) int {
	if rn.batchMajor {
		return ((b*rn.seq+t)*rn.dirs + d) * rn.hidden
	}
	return ((t*rn.dirs+d)*rn.batch + b) * rn.hidden
}

// stateOff returns the offset of a state's vector for direction d, batch b.
func (rn *rnn) stateOff(d, b int) int {
	if rn.batchMajor {
		return (b*rn.dirs + d) * rn.hidden
	}
	return (d*rn.batch + b) * rn.hidden
}

func (rn *rnn) run(in, out []*tensor.Tensor) error {
	g, h, B := rn.gates, rn.hidden, rn.batch
	buf := rn.bufs.get()
	if buf == nil {
		buf = &rnnBuf{
			xw: make([]float32, rn.seq*B*g*h), gates: make([]float32, B*g*h),
			h: make([]float32, B*h), c: make([]float32, B*h), tmp: make([]float32, B*h),
			rh: make([]float32, B*h), lens: make([]int, B),
		}
	}
	defer rn.bufs.put(buf)
	x := viewAs[float32](in[0].Data)
	for b := range B {
		buf.lens[b] = rn.seq
		if len(in) > 4 && in[4] != nil {
			l := int(viewAs[int32](in[4].Data)[b])
			if l < 0 || l > rn.seq {
				return invalidf("sequence_lens[%d] = %d, want 0 to %d", b, l, rn.seq)
			}
			buf.lens[b] = l
		}
	}
	var y, yh, yc []float32
	if out[0] != nil {
		y = viewAs[float32](out[0].Data)
		clear(y)
	}
	if len(out) > 1 && out[1] != nil {
		yh = viewAs[float32](out[1].Data)
	}
	if len(out) > 2 && out[2] != nil {
		yc = viewAs[float32](out[2].Data)
	}
	initial := func(i, d int, dst []float32) {
		if len(in) > i && in[i] != nil {
			s := viewAs[float32](in[i].Data)
			for b := range B {
				copy(dst[b*h:(b+1)*h], s[rn.stateOff(d, b):rn.stateOff(d, b)+h])
			}
		} else {
			clear(dst)
		}
	}
	for d := range rn.dirs {
		rn.sp.Gemm(rn.ks, rn.seq*B, x, rn.input, rn.w[d], buf.xw, g*h, sgemm.AddBias)
		initial(5, d, buf.h)
		initial(6, d, buf.c)
		for s := range rn.seq {
			for b := range B {
				if s >= buf.lens[b] {
					continue
				}
				t := s
				if rn.reverse[d] {
					t = buf.lens[b] - 1 - s
				}
				r := rn.row(t, b)
				copy(buf.gates[b*g*h:(b+1)*g*h], buf.xw[r*g*h:(r+1)*g*h])
			}
			rn.ks.Gemm(B, buf.h, h, rn.r[d], buf.gates, g*h, sgemm.Accumulate)
			if rn.op == "GRU" {
				rn.gruReset(d, buf, s)
			}
			for b := range B {
				if s >= buf.lens[b] {
					continue
				}
				t := s
				if rn.reverse[d] {
					t = buf.lens[b] - 1 - s
				}
				rn.cell(d, buf, b)
				if y != nil {
					copy(y[rn.yOff(t, d, b):rn.yOff(t, d, b)+h], buf.h[b*h:(b+1)*h])
				}
			}
		}
		for b := range B {
			o := rn.stateOff(d, b)
			if yh != nil {
				copy(yh[o:o+h], buf.h[b*h:(b+1)*h])
			}
			if yc != nil {
				copy(yc[o:o+h], buf.c[b*h:(b+1)*h])
			}
		}
	}
	return nil
}

// gruReset computes the recurrent term of GRU's h gate into buf.tmp:
// (r ⊙ H)·Rhᵀ, or H·Rhᵀ + Rbh with linear_before_reset (multiplied by r
// in cell).
func (rn *rnn) gruReset(d int, buf *rnnBuf, s int) {
	h, g := rn.hidden, rn.gates
	if rn.linearBeforeReset {
		rn.ks.Gemm(rn.batch, buf.h, h, rn.rh[d], buf.tmp, h, sgemm.AddBias)
		return
	}
	f := rn.acts[d][0]
	for b := range rn.batch {
		if s >= buf.lens[b] {
			continue
		}
		gr := buf.gates[b*g*h+h : b*g*h+2*h]
		rh := buf.rh[b*h : (b+1)*h]
		if rn.fast[d] {
			sigmoidRow32(rh, gr)
			for j, hv := range buf.h[b*h : (b+1)*h] {
				rh[j] *= hv
			}
			continue
		}
		for j := range h {
			rh[j] = float32(f(rn.clipped(float64(gr[j])))) * buf.h[b*h+j]
		}
	}
	rn.ks.Gemm(rn.batch, buf.rh, h, rn.rh[d], buf.tmp, h, 0)
}

func (rn *rnn) clipped(v float64) float64 {
	if rn.clip > 0 {
		return min(max(v, -rn.clip), rn.clip)
	}
	return v
}

// cell applies one step's cell to batch row b: buf.gates holds the gate
// pre-activations (projection, biases and H·Rᵀ), buf.h and buf.c the
// previous state, updated in place.
func (rn *rnn) cell(d int, buf *rnnBuf, b int) {
	h, g := rn.hidden, rn.gates
	gt := buf.gates[b*g*h : (b+1)*g*h]
	hs, cs := buf.h[b*h:(b+1)*h], buf.c[b*h:(b+1)*h]
	act := rn.acts[d]
	if rn.fast[d] {
		rn.fastCell(buf, b)
		return
	}
	switch rn.op {
	case "RNN":
		for j := range h {
			hs[j] = float32(act[0](rn.clipped(float64(gt[j]))))
		}
	case "GRU":
		tmp := buf.tmp[b*h : (b+1)*h]
		for j := range h {
			z := act[0](rn.clipped(float64(gt[j])))
			var pre float64
			if rn.linearBeforeReset {
				r := act[0](rn.clipped(float64(gt[h+j])))
				pre = float64(gt[2*h+j]) + r*float64(tmp[j])
			} else {
				pre = float64(gt[2*h+j]) + float64(tmp[j])
			}
			ht := act[1](rn.clipped(pre))
			hs[j] = float32((1-z)*ht + z*float64(hs[j]))
		}
	default: // LSTM: gates i, o, f, c; peepholes i, o, f
		p := rn.peep[d]
		for j := range h {
			cPrev := float64(cs[j])
			pi, po, pf := 0.0, 0.0, 0.0
			if p != nil {
				pi, po, pf = float64(p[j]), float64(p[h+j]), float64(p[2*h+j])
			}
			i := act[0](rn.clipped(float64(gt[j]) + pi*cPrev))
			var f float64
			if rn.inputForget {
				f = 1 - i
			} else {
				f = act[0](rn.clipped(float64(gt[2*h+j]) + pf*cPrev))
			}
			cc := act[1](rn.clipped(float64(gt[3*h+j])))
			cNew := float64(float32(f*cPrev + i*cc))
			o := act[0](rn.clipped(float64(gt[h+j]) + po*cNew))
			cs[j] = float32(cNew)
			hs[j] = float32(o * act[2](cNew))
		}
	}
}

// fastCell is cell for the default activations without clip, peepholes
// or input_forget: the gates activated a row at a time.
func (rn *rnn) fastCell(buf *rnnBuf, b int) {
	h, g := rn.hidden, rn.gates
	gt := buf.gates[b*g*h : (b+1)*g*h]
	hs, cs := buf.h[b*h:(b+1)*h], buf.c[b*h:(b+1)*h]
	tmp := buf.tmp[b*h : (b+1)*h]
	if rn.op == "GRU" {
		sigmoidRow32(gt[:h], gt[:h]) // z
		pre := gt[2*h : 3*h]
		if rn.linearBeforeReset {
			sigmoidRow32(gt[h:2*h], gt[h:2*h]) // r
			for j, r := range gt[h : 2*h] {
				pre[j] += r * tmp[j]
			}
		} else {
			for j, v := range tmp {
				pre[j] += v
			}
		}
		tanhRow32(pre, pre)
		for j, z := range gt[:h] {
			hs[j] = (1-z)*pre[j] + z*hs[j]
		}
		return
	}
	// LSTM: gates i, o, f, c.
	sigmoidRow32(gt[:3*h], gt[:3*h])
	tanhRow32(gt[3*h:], gt[3*h:])
	i, o, f, cc := gt[:h], gt[h:2*h], gt[2*h:3*h], gt[3*h:]
	for j := range cs {
		cs[j] = f[j]*cs[j] + i[j]*cc[j]
	}
	tanhRow32(tmp, cs)
	for j := range hs {
		hs[j] = o[j] * tmp[j]
	}
}
