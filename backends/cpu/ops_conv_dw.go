package cpu

import (
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// depthwise is a 1-D or 2-D convolution whose groups have one input
// channel each, computed plane by plane with whole-plane vector
// operations. The input plane, zero-padded, is split into its s×s stride
// phases (phase (a, b) holds padded rows a, a+s, ... and columns b, b+s,
// ...), each R rows of Cw columns. Then the input under kernel tap
// (kh, kw) of output (oh, ow) is element (oh + kh·dh/s)·Cw + ow + kw·dw/s
// of phase (kh·dh mod s, kw·dw mod s): for all outputs computed Cw wide
// (the columns past OW are garbage), one tap is one Axpy over the whole
// plane. The valid columns are then copied out with the bias and the
// fused activation.
type depthwise struct {
	ks          *sgemm.Kernels
	n, ci, m    int
	mg          int // output channels per input channel
	h, w        int
	oh, ow      int
	pt, pl      int
	s           int // stride (the same along H and W)
	r, cw       int // phase rows and columns
	taps        []dwTap
	act         activation
	bufs        freeList[dwBuf]
	plane, outV int // floats of all phases, of the virtual output
}

// dwTap is one kernel tap: its phase and offset into that phase.
type dwTap struct{ phase, off int }

type dwBuf struct{ p, y []float32 }

// newDepthwise returns the kernel for cv when it is depthwise over 1 or 2
// spatial dims with equal strides, else nil.
func newDepthwise(c *opCtx, cv *conv) kernel {
	w := cv.w
	if w.in[0] != 1 || w.s[1] != w.s[2] && w.rank == 2 {
		return nil
	}
	s := w.s[2]
	dw := &depthwise{ks: c.ks, n: cv.n, ci: cv.ci, m: cv.m, mg: cv.mg, h: w.in[1], w: w.in[2],
		oh: w.out[1], ow: w.out[2], pt: w.pb[1], pl: w.pb[2], s: s, act: cv.act}
	dw.r = dw.oh + (w.k[1]-1)*w.d[1]/s + 2 // +1: the garbage columns of the last row read on
	dw.cw = dw.ow + (w.k[2]-1)*w.d[2]/s + 1
	for kh := range w.k[1] {
		for kw := range w.k[2] {
			a, b := kh*w.d[1]%s, kw*w.d[2]%s
			dw.taps = append(dw.taps, dwTap{phase: a*s + b, off: (kh*w.d[1]/s)*dw.cw + kw*w.d[2]/s})
		}
	}
	dw.plane = s * s * dw.r * dw.cw
	dw.outV = dw.oh * dw.cw
	return kernelFunc(dw.run)
}

func (dw *depthwise) run(in, out []*tensor.Tensor) error {
	x, wt, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](out[0].Data)
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = viewAs[float32](in[2].Data)
	}
	buf := dw.bufs.get()
	if buf == nil {
		buf = &dwBuf{p: make([]float32, dw.plane), y: make([]float32, dw.outV)}
	}
	defer dw.bufs.put(buf)
	inLen, outLen, kl := dw.h*dw.w, dw.oh*dw.ow, len(dw.taps)
	pl := dw.r * dw.cw
	for n := range dw.n {
		for ch := range dw.ci {
			dw.fillPhases(buf.p, x[(n*dw.ci+ch)*inLen:(n*dw.ci+ch+1)*inLen])
			for k := range dw.mg {
				o := ch*dw.mg + k
				bv := float32(0)
				if bias != nil {
					bv = bias[o]
				}
				yv := buf.y
				clear(yv)
				for t, wv := range wt[o*kl : (o+1)*kl] {
					tp := dw.taps[t]
					src := buf.p[tp.phase*pl+tp.off:]
					dw.ks.Axpy(yv, src, wv)
				}
				yo := y[(n*dw.m+o)*outLen : (n*dw.m+o+1)*outLen]
				for oh := range dw.oh {
					row := yo[oh*dw.ow : (oh+1)*dw.ow]
					copy(row, yv[oh*dw.cw:oh*dw.cw+dw.ow])
				}
				if dw.act.on || bv != 0 {
					dw.act.apply(dw.ks, yo, bv)
				}
			}
		}
	}
	return nil
}

// fillPhases writes the s×s stride phases of the zero-padded plane x.
func (dw *depthwise) fillPhases(p, x []float32) {
	s, pl := dw.s, dw.r*dw.cw
	for a := range s {
		for b := range s {
			ph := p[(a*s+b)*pl : (a*s+b+1)*pl]
			// Columns c of this phase read input column c·s + b − pl,
			// inside [0, W) for c in [c0, c1).
			c0 := max(0, (dw.pl-b+s-1)/s)
			c1 := min(dw.cw, (dw.w-1+dw.pl-b)/s+1)
			for r := range dw.r {
				row := ph[r*dw.cw : (r+1)*dw.cw]
				i := r*s + a - dw.pt
				if i < 0 || i >= dw.h || c0 >= c1 {
					clear(row)
					continue
				}
				src := x[i*dw.w : (i+1)*dw.w]
				clear(row[:c0])
				if s == 1 {
					copy(row[c0:c1], src[c0-dw.pl:c1-dw.pl])
				} else {
					j := c0*s + b - dw.pl
					for c := c0; c < c1; c++ {
						row[c] = src[j]
						j += s
					}
				}
				clear(row[c1:])
			}
		}
	}
}
