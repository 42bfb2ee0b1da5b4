package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// rnnCase is one recurrent layer of TestRNNReference.
type rnnCase struct {
	op, direction   string
	seq, batch, in  int
	hidden          int
	lens            []int32 // nil: every sequence full
	initial, bias   bool
	clip            float32
	lbr             bool // GRU linear_before_reset
	layout          int64
	peephole        bool
	activationsNone bool
}

// refRNN computes Y and Y_h (and Y_c for LSTM) by the ONNX equations,
// in float64, one batch row and step at a time. x is [seq][batch][in]
// (layout 0); the outputs are in layout 0 too.
func refRNN(c rnnCase, x, w, r, b, h0, c0, p []float64) (y, yh, yc []float64) {
	g := map[string]int{"LSTM": 4, "GRU": 3, "RNN": 1}[c.op]
	dirs := 1
	if c.direction == "bidirectional" {
		dirs = 2
	}
	H := c.hidden
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	clip := func(v float64) float64 {
		if c.clip > 0 {
			return math.Max(-float64(c.clip), math.Min(float64(c.clip), v))
		}
		return v
	}
	y = make([]float64, c.seq*dirs*c.batch*H)
	yh = make([]float64, dirs*c.batch*H)
	yc = make([]float64, dirs*c.batch*H)
	for d := range dirs {
		rev := c.direction == "reverse" || d == 1
		for bi := range c.batch {
			L := c.seq
			if c.lens != nil {
				L = int(c.lens[bi])
			}
			hs, cs := make([]float64, H), make([]float64, H)
			if c.initial {
				copy(hs, h0[(d*c.batch+bi)*H:])
				copy(cs, c0[(d*c.batch+bi)*H:])
			}
			for s := range L {
				t := s
				if rev {
					t = L - 1 - s
				}
				xt := x[(t*c.batch+bi)*c.in : (t*c.batch+bi+1)*c.in]
				// gate j of output unit u: x·W + h·R + biases
				pre := func(j, u int, hv []float64, withR bool) (xw, hr float64) {
					row := (d*g*H + j*H + u)
					for k, v := range xt {
						xw += v * w[row*c.in+k]
					}
					if withR {
						for k, v := range hv {
							hr += v * r[row*H+k]
						}
					}
					if c.bias {
						xw += b[d*2*g*H+j*H+u]
						hr += b[d*2*g*H+g*H+j*H+u]
					}
					return xw, hr
				}
				nh, nc := make([]float64, H), make([]float64, H)
				for u := range H {
					switch c.op {
					case "RNN":
						a, hr := pre(0, u, hs, true)
						nh[u] = math.Tanh(clip(a + hr))
					case "GRU":
						zx, zr := pre(0, u, hs, true)
						rx, rr := pre(1, u, hs, true)
						z, rg := sig(clip(zx+zr)), sig(clip(rx+rr))
						var ht float64
						if c.lbr {
							hx, hr := pre(2, u, hs, true)
							ht = math.Tanh(clip(hx + rg*hr))
						} else {
							rh := make([]float64, H)
							for k := range rh {
								rx, rr := pre(1, k, hs, true)
								rh[k] = sig(clip(rx+rr)) * hs[k]
							}
							hx, hr := pre(2, u, rh, true)
							ht = math.Tanh(clip(hx + hr))
						}
						nh[u] = (1-z)*ht + z*hs[u]
					default:
						pv := func(j int) float64 {
							if p == nil {
								return 0
							}
							return p[d*3*H+j*H+u]
						}
						ix, ir := pre(0, u, hs, true)
						ox, or := pre(1, u, hs, true)
						fx, fr := pre(2, u, hs, true)
						cx, cr := pre(3, u, hs, true)
						i := sig(clip(ix + ir + pv(0)*cs[u]))
						f := sig(clip(fx + fr + pv(2)*cs[u]))
						cc := math.Tanh(clip(cx + cr))
						nc[u] = f*cs[u] + i*cc
						o := sig(clip(ox + or + pv(1)*nc[u]))
						nh[u] = o * math.Tanh(nc[u])
					}
				}
				hs, cs = nh, nc
				if c.op != "LSTM" {
					cs = make([]float64, H)
				}
				copy(y[((t*dirs+d)*c.batch+bi)*H:], hs)
			}
			copy(yh[(d*c.batch+bi)*H:], hs)
			copy(yc[(d*c.batch+bi)*H:], cs)
		}
	}
	return y, yh, yc
}

// TestRNNReference checks LSTM, GRU and RNN against refRNN across
// directions, sequence lengths, initial states, biases, clip,
// linear_before_reset, peepholes and layout, on every kernel set (the
// default activations take the row loops, clip and peepholes the
// per-element cell).
func TestRNNReference(t *testing.T) {
	cases := []rnnCase{
		{op: "LSTM", direction: "forward", seq: 5, batch: 3, in: 4, hidden: 6, bias: true},
		{op: "LSTM", direction: "reverse", seq: 5, batch: 3, in: 4, hidden: 6, lens: []int32{5, 2, 0}, initial: true, bias: true},
		{op: "LSTM", direction: "bidirectional", seq: 4, batch: 2, in: 3, hidden: 5, lens: []int32{3, 4}, initial: true, bias: true, peephole: true},
		{op: "LSTM", direction: "bidirectional", seq: 4, batch: 2, in: 3, hidden: 5, bias: true, clip: 0.7, layout: 1},
		{op: "GRU", direction: "forward", seq: 6, batch: 2, in: 3, hidden: 4, bias: true},
		{op: "GRU", direction: "bidirectional", seq: 6, batch: 3, in: 3, hidden: 4, lens: []int32{1, 6, 3}, initial: true, bias: true, lbr: true},
		{op: "GRU", direction: "reverse", seq: 3, batch: 2, in: 2, hidden: 3, bias: true, clip: 0.5, layout: 1},
		{op: "RNN", direction: "bidirectional", seq: 4, batch: 2, in: 3, hidden: 4, lens: []int32{2, 4}, initial: true, bias: true},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d/%s/%s", i, c.op, c.direction), func(t *testing.T) {
			r := newRand()
			g := map[string]int{"LSTM": 4, "GRU": 3, "RNN": 1}[c.op]
			dirs := 1
			if c.direction == "bidirectional" {
				dirs = 2
			}
			rnd := func(scale float64, shape ...int64) (*tensor.Tensor, []float64) {
				tt := randTensor(r, tensor.FP32, shape...)
				for k := range tt.Len() {
					tt.SetFloat64(k, tt.Float64At(k)*scale)
				}
				return tt, toRef(tt).data
			}
			x, xv := rnd(0.5, int64(c.seq), int64(c.batch), int64(c.in))
			w, wv := rnd(0.3, int64(dirs), int64(g*c.hidden), int64(c.in))
			rr, rv := rnd(0.3, int64(dirs), int64(g*c.hidden), int64(c.hidden))
			b, bv := rnd(0.2, int64(dirs), int64(2*g*c.hidden))
			h0, h0v := rnd(0.5, int64(dirs), int64(c.batch), int64(c.hidden))
			c0, c0v := rnd(0.5, int64(dirs), int64(c.batch), int64(c.hidden))
			p, pv := rnd(0.3, int64(dirs), int64(3*c.hidden))
			wantY, wantH, wantC := refRNN(c, xv, wv, rv, bv, h0v, c0v, map[bool][]float64{true: pv}[c.peephole])
			// The model's tensors in its layout.
			xin, h0in, c0in := x, h0, c0
			if c.layout == 1 {
				xin = permute3(x, 1, 0, 2)
				h0in, c0in = permute3(h0, 1, 0, 2), permute3(c0, 1, 0, 2)
			}
			m := onnxtest.NewModel(14)
			dims := []any{xin.Shape[0], xin.Shape[1], xin.Shape[2]}
			m.Input("x", onnxtest.ElemType(tensor.FP32), dims...).Init("w", w).Init("r", rr)
			ins := []string{"x", "w", "r", "", "", "", "", ""}
			if c.bias {
				m.Init("b", b)
				ins[3] = "b"
			}
			if c.lens != nil {
				lens := tensor.New("", tensor.Int32, []int64{int64(c.batch)})
				copy(viewAs[int32](lens.Data), c.lens)
				m.Init("lens", lens)
				ins[4] = "lens"
			}
			if c.initial {
				m.Init("h0", h0in)
				ins[5] = "h0"
				if c.op == "LSTM" {
					m.Init("c0", c0in)
					ins[6] = "c0"
				}
			}
			if c.peephole {
				m.Init("p", p)
				ins[7] = "p"
			}
			for len(ins) > 3 && ins[len(ins)-1] == "" {
				ins = ins[:len(ins)-1]
			}
			outs := []string{"y", "yh"}
			if c.op == "LSTM" {
				outs = append(outs, "yc")
			}
			for _, o := range outs {
				m.Output(o)
			}
			attrs := [][]byte{onnxtest.AttrString("direction", c.direction), onnxtest.AttrInt("hidden_size", int64(c.hidden)),
				onnxtest.AttrInt("layout", c.layout)}
			if c.clip > 0 {
				attrs = append(attrs, onnxtest.AttrFloat("clip", c.clip))
			}
			if c.lbr {
				attrs = append(attrs, onnxtest.AttrInt("linear_before_reset", 1))
			}
			m.Node("rnn", c.op, ins, outs, attrs...)
			for _, ks := range kernelNames() {
				got := runModelWith(t, Options{Concurrency: 1, Kernels: ks}, m.Bytes(), xin)
				gy, gh := got[0], got[1]
				if c.layout == 1 {
					gy = permute4batchMajor(gy)
					gh = permute3(gh, 1, 0, 2)
				}
				expectCloseTol(t, gy, ref{shape: []int64{int64(c.seq), int64(dirs), int64(c.batch), int64(c.hidden)}, data: wantY}, 1e-5)
				expectCloseTol(t, gh, ref{shape: []int64{int64(dirs), int64(c.batch), int64(c.hidden)}, data: wantH}, 1e-5)
				if c.op == "LSTM" {
					gc := got[2]
					if c.layout == 1 {
						gc = permute3(gc, 1, 0, 2)
					}
					expectCloseTol(t, gc, ref{shape: []int64{int64(dirs), int64(c.batch), int64(c.hidden)}, data: wantC}, 1e-5)
				}
			}
		})
	}
}

// kernelNames returns the names of the kernel sets this machine has.
func kernelNames() []string {
	var names []string
	for _, name := range []string{"avx512", "avx2", "generic"} {
		if _, err := LoadBytes(oneNode(13, "Relu", []arg{in("x", f32(sh(1), 1))}, 1), Options{Concurrency: 1, Kernels: name}); err == nil {
			names = append(names, name)
		}
	}
	return names
}

// permute3 returns the FP32 rank-3 tensor t with its dims permuted.
func permute3(t *tensor.Tensor, p0, p1, p2 int) *tensor.Tensor {
	s := t.Shape
	perm := []int{p0, p1, p2}
	out := tensor.New("", tensor.FP32, []int64{s[p0], s[p1], s[p2]})
	for i := range t.Len() {
		idx := unravel(i, s)
		o := (idx[perm[0]]*int(s[p1])+idx[perm[1]])*int(s[p2]) + idx[perm[2]]
		out.SetFloat64(o, t.Float64At(i))
	}
	return out
}

// permute4batchMajor turns Y of layout 1 ([batch, seq, dirs, hidden])
// into layout 0 ([seq, dirs, batch, hidden]).
func permute4batchMajor(t *tensor.Tensor) *tensor.Tensor {
	s := t.Shape
	out := tensor.New("", tensor.FP32, []int64{s[1], s[2], s[0], s[3]})
	for i := range t.Len() {
		idx := unravel(i, s)
		o := ((idx[1]*int(s[2])+idx[2])*int(s[0])+idx[0])*int(s[3]) + idx[3]
		out.SetFloat64(o, t.Float64At(i))
	}
	return out
}
