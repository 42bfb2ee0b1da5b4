package cpu

import (
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// convRows is the implicit-GEMM form of a 1-D or 2-D convolution with
// constant weights: no im2col matrix is built. The input is copied once
// into a zero-padded channels-last buffer split into its sH×sW stride
// phases: phase (a, b) holds padded rows a, a+sH, ... and columns b,
// b+sW, ..., R rows of Cw positions of C channels. The input under
// kernel tap (kh, kw) of output (oh, ow) is then position
// (oh + kh·dH/sH, ow + kw·dW/sW) of phase (kh·dH mod sH, kw·dW mod sW).
// Computing every output row Cw positions wide (the positions past OW
// are garbage), consecutive outputs read consecutive positions, C floats
// apart, across row ends too: for each kernel row and phase column, the
// taps (consecutive positions when dW = 1) are one GEMM over a block of
// output rows whose A rows overlap inside the buffer (lda = C, K =
// taps·C), by those taps' weights packed once at load (K × M),
// accumulating into a channels-last output block; bias and ReLU are the
// epilogue of the first and last GEMM. The block, sized to stay in
// cache, is then transposed to NCHW, applying a fused Clip.
type convRows struct {
	ks       *sgemm.Kernels
	sp       *sgemm.Splitter
	n, group int
	cg, mg   int   // channels per group in and out
	h, w     int   // input
	oh, ow   int   // output
	sh, sw   int   // strides
	r, cw    int   // rows and positions per row of each phase
	colOff   []int // per input column: its phase column's offset (floats) within a phase row
	rowPT    int   // padding top
	colPL    int   // padding left
	groups   []tapGroup
	packs    [][]*sgemm.Packed // per conv group, per tap group
	bias     bool
	act      activation
	relu     bool
	mb       int // positions per GEMM block (whole output rows)
	bufs     freeList[convRowsBuf]
	phaseLen int // floats per phase
	yLen     int
}

// tapGroup is the taps of one GEMM: kernel row kh and the kernel
// columns kws, read at offset off (in positions) of phase phase.
type tapGroup struct {
	kh    int
	kws   []int
	phase int
	off   int
}

type convRowsBuf struct{ x, y []float32 }

// convRowsWeights are a Conv node's weights reordered per conv group and
// tap group to K × M matrices (k = i·C + c for the group's i-th kernel
// column), made once per node and packed per plan from the cache.
type convRowsWeights struct {
	taps [][]*tensor.Tensor
}

// newConvRows returns the implicit-GEMM kernel for cv when it applies: a
// 1-D or 2-D convolution with more than one input channel per group and
// constant weights and bias. Otherwise nil.
func newConvRows(c *opCtx, cv *conv) (kernel, error) {
	w := cv.w
	wt, b := c.input(1), c.input(2)
	if w.rank > 2 || cv.cg == 1 || wt.konst == nil || w.in[0] != 1 || b != nil && b.konst == nil {
		return nil, nil
	}
	cr := &convRows{ks: c.ks, sp: c.sp, n: cv.n, group: cv.group, cg: cv.cg, mg: cv.mg,
		h: w.in[1], w: w.in[2], oh: w.out[1], ow: w.out[2], sh: w.s[1], sw: w.s[2],
		rowPT: w.pb[1], colPL: w.pb[2], bias: b != nil, act: cv.act, relu: cv.relu}
	C := cr.cg
	maxRow, maxCol := (w.k[1]-1)*w.d[1]/cr.sh, (w.k[2]-1)*w.d[2]/cr.sw
	cr.cw = cr.ow + maxCol
	cr.r = cr.oh + maxRow + 2 // +1: the garbage positions of the last row read on
	// Every input row and column must land in the buffer: R and Cw cover
	// the padded input too (only the outputs' span is read).
	cr.r = max(cr.r, (cr.h+cr.rowPT+cr.sh-1)/cr.sh+1)
	cr.cw = max(cr.cw, (cr.w+cr.colPL+cr.sw-1)/cr.sw)
	cr.phaseLen = cr.r * cr.cw * C
	cr.yLen = cr.oh * cr.cw * cr.mg
	for iw := range cr.w {
		p := iw + cr.colPL
		cr.colOff = append(cr.colOff, (p%cr.sw)*cr.phaseLen+(p/cr.sw)*C)
	}
	for kh := range w.k[1] {
		a, roff := kh*w.d[1]%cr.sh, kh*w.d[1]/cr.sh
		for bph := range cr.sw {
			var kws []int
			for kw := range w.k[2] {
				if kw*w.d[2]%cr.sw == bph {
					kws = append(kws, kw)
				}
			}
			if len(kws) == 0 {
				continue
			}
			// Consecutive positions when dW = 1; else one GEMM per tap.
			split := [][]int{kws}
			if w.d[2] != 1 {
				split = nil
				for _, kw := range kws {
					split = append(split, []int{kw})
				}
			}
			for _, ks := range split {
				cr.groups = append(cr.groups, tapGroup{kh: kh, kws: ks, phase: a*cr.sw + bph,
					off: roff*cr.cw + ks[0]*w.d[2]/cr.sw})
			}
		}
	}
	v, err := c.n.prepare(func() (any, error) { return cr.reorder(wt.konst, w.k[1]*w.k[2], w.k[2]), nil })
	if err != nil {
		return nil, err
	}
	rw := v.(*convRowsWeights)
	for g := range cr.group {
		var bias *tensor.Tensor
		if cr.bias {
			bias = &tensor.Tensor{DType: tensor.FP32, Shape: []int64{int64(cr.mg)},
				Data: b.konst.Data[g*cr.mg*4 : (g+1)*cr.mg*4]}
		}
		var ps []*sgemm.Packed
		for t, tg := range cr.groups {
			var tb *tensor.Tensor
			if t == 0 {
				tb = bias
			}
			ps = append(ps, c.packB(rw.taps[g][t], false, len(tg.kws)*C, cr.mg, cr.mg, 1, tb, 1))
		}
		cr.packs = append(cr.packs, ps)
	}
	cr.mb = max(12, min(480, (128<<10)/(4*cr.mg)/12*12))
	return kernelFunc(cr.run), nil
}

// reorder builds the K × M weight matrix of each conv group and tap
// group; kl is the kernel's taps, kw its width.
func (cr *convRows) reorder(wt *tensor.Tensor, kl, kw int) *convRowsWeights {
	src := viewAs[float32](wt.Data)
	C, M := cr.cg, cr.mg
	rw := &convRowsWeights{}
	for g := range cr.group {
		var ts []*tensor.Tensor
		for _, tg := range cr.groups {
			m := tensor.New("", tensor.FP32, []int64{int64(len(tg.kws) * C), int64(M)})
			dst := viewAs[float32](m.Data)
			for i, k := range tg.kws {
				for ch := range C {
					row := dst[(i*C+ch)*M : (i*C+ch+1)*M]
					for o := range M {
						row[o] = src[((g*M+o)*C+ch)*kl+tg.kh*kw+k]
					}
				}
			}
			ts = append(ts, m)
		}
		rw.taps = append(rw.taps, ts)
	}
	return rw
}

func (cr *convRows) run(in, out []*tensor.Tensor) error {
	x, y := viewAs[float32](in[0].Data), viewAs[float32](out[0].Data)
	buf := cr.bufs.get()
	if buf == nil {
		// Zeroed once: only the positions of input elements are ever
		// written, so the padding stays zero.
		buf = &convRowsBuf{x: make([]float32, cr.sh*cr.sw*cr.phaseLen), y: make([]float32, cr.yLen)}
	}
	defer cr.bufs.put(buf)
	C, M := cr.cg, cr.mg
	ci, m := cr.cg*cr.group, cr.mg*cr.group
	inLen, outLen := cr.h*cr.w, cr.oh*cr.ow
	last := len(cr.groups) - 1
	step := max(1, cr.mb/cr.cw) // output rows per block
	for n := range cr.n {
		for g := range cr.group {
			cr.fillInput(buf.x, x[(n*ci+g*C)*inLen:(n*ci+(g+1)*C)*inLen])
			yg := y[(n*m+g*M)*outLen : (n*m+(g+1)*M)*outLen]
			for oh0 := 0; oh0 < cr.oh; oh0 += step {
				oh1 := min(oh0+step, cr.oh)
				rows := (oh1 - oh0) * cr.cw
				for t, pb := range cr.packs[g] {
					tg := cr.groups[t]
					flags := sgemm.Accumulate
					if t == 0 {
						flags = 0
						if cr.bias {
							flags = sgemm.AddBias
						}
					}
					if t == last && cr.relu {
						flags |= sgemm.ReLU
					}
					a := buf.x[tg.phase*cr.phaseLen+(oh0*cr.cw+tg.off)*C:]
					cr.sp.Gemm(cr.ks, rows, a, C, pb, buf.y[oh0*cr.cw*M:], M, flags)
				}
				cr.storeOutput(yg, buf.y, oh0, oh1)
			}
		}
	}
	return nil
}

// fillInput copies one group's NCHW planes into the phase buffers. Per
// input row, the phase rows it lands in stay in L1 while every channel's
// row is scattered into them.
func (cr *convRows) fillInput(dst, src []float32) {
	C, hw, W := cr.cg, cr.h*cr.w, cr.w
	for ih := range cr.h {
		p := ih + cr.rowPT
		base := (p%cr.sh)*cr.sw*cr.phaseLen + (p/cr.sh)*cr.cw*C
		for c := range C {
			s := src[c*hw+ih*W : c*hw+ih*W+W]
			d := dst[base+c:]
			for iw, v := range s {
				d[cr.colOff[iw]] = v
			}
		}
	}
}

// storeOutput transposes output rows oh0 to oh1-1 of the channels-last
// output (Cw positions per row, the first OW valid) to M planes of
// OH×OW, applying a Clip the GEMM epilogue could not. Per output row,
// its slice of src stays in L1 while each channel's row is gathered.
func (cr *convRows) storeOutput(dst, src []float32, oh0, oh1 int) {
	M, outLen, OW := cr.mg, cr.oh*cr.ow, cr.ow
	clip := cr.act.on && !cr.relu
	lo, hi := cr.act.lo, cr.act.hi
	for oh := oh0; oh < oh1; oh++ {
		s := src[oh*cr.cw*M : (oh*cr.cw+OW)*M]
		for m := range M {
			d := dst[m*outLen+oh*OW : m*outLen+oh*OW+OW]
			sm := s[m:]
			if clip {
				for ow := range d {
					d[ow] = min(max(sm[ow*M], lo), hi)
				}
				continue
			}
			for ow := range d {
				d[ow] = sm[ow*M]
			}
		}
	}
}
