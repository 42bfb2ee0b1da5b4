package cpu

import (
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// convRows is the implicit-GEMM form of a 1-D or 2-D convolution with
// constant weights: no im2col matrix is built. The input is copied once
// into a zero-padded channels-last buffer (row ih, column iw, channel c at
// ((ih·Wp)+iw)·C+c), where the KW·C inputs of one kernel row under one
// output position are contiguous and the positions of one output row are
// sW·C apart. So for each kernel row kh (and each kw when dilated along
// W) the products of all output positions are one GEMM whose A rows
// overlap inside that buffer (lda = sW·C, K = KW·C), by the weights of
// that kernel row packed once at load (K × M), accumulating into a
// channels-last output; bias and ReLU are the epilogue of the first and
// last GEMM. With stride 1 along H the output rows are contiguous too if
// each is computed Wv = Wp/sW positions wide (the last KW−1 garbage), so
// a block of many output rows is one GEMM; with a larger H stride each
// output row is its own GEMM. Blocks are sized so that the output block
// stays in cache across the kernel rows. A final pass transposes the
// valid outputs to NCHW, applying a fused Clip.
type convRows struct {
	ks        *sgemm.Kernels
	sp        *sgemm.Splitter
	n, group  int
	cg, mg    int // channels per group in and out
	h, w      int // input
	oh, ow    int // output
	pt, pl    int // padding top and left
	sh, sw    int // strides
	dh, dw    int // dilations
	kh, kw    int
	wp, hp    int               // padded input width (a multiple of sw) and height
	wv        int               // virtual output row width: wp / sw
	packs     [][]*sgemm.Packed // per group, per tap (kh, or kh·KW + kw when dilated along W)
	tapOff    []int             // per tap, its offset into the padded input
	bias      bool
	act       activation
	relu      bool
	mb        int // positions per GEMM block (whole output rows) when sh = 1
	bufs      freeList[convRowsBuf]
	xLen, yLn int
}

type convRowsBuf struct{ x, y []float32 }

// convRowsWeights are a Conv node's weights reordered per group and tap
// to K × M matrices (k = kw·C + c, or c alone when dilated along W), made
// once per node and packed per plan from the cache.
type convRowsWeights struct {
	taps [][]*tensor.Tensor
}

// newConvRows returns the implicit-GEMM kernel for cv when it applies: a
// 1-D or 2-D convolution with more than one input channel per group and
// constant weights. Otherwise nil.
func newConvRows(c *opCtx, cv *conv) (kernel, error) {
	w := cv.w
	wt := c.input(1)
	if w.rank > 2 || cv.cg == 1 || wt.konst == nil || w.in[0] != 1 {
		return nil, nil
	}
	cr := &convRows{ks: c.ks, sp: c.sp, n: cv.n, group: cv.group, cg: cv.cg, mg: cv.mg,
		h: w.in[1], w: w.in[2], oh: w.out[1], ow: w.out[2], pt: w.pb[1], pl: w.pb[2],
		sh: w.s[1], sw: w.s[2], dh: w.d[1], dw: w.d[2], kh: w.k[1], kw: w.k[2],
		bias: c.input(2) != nil, act: cv.act, relu: cv.relu}
	cr.wp = w.in[2] + w.pb[2] + w.pe[2]
	cr.wp = (cr.wp + cr.sw - 1) / cr.sw * cr.sw
	cr.wv = cr.wp / cr.sw
	cr.hp = max(w.in[1]+w.pb[1]+w.pe[1], (cr.oh-1)*cr.sh+(cr.kh-1)*cr.dh+1) + 1 // +1: the garbage columns of the last row read on
	C := cr.cg
	cr.xLen = cr.hp*cr.wp*C + cr.kw*cr.dw*C
	cr.yLn = cr.oh * cr.wv * cr.mg
	taps := cr.kh
	if cr.dw != 1 {
		taps = cr.kh * cr.kw
	}
	for t := range taps {
		kh, kw := t, 0
		if cr.dw != 1 {
			kh, kw = t/cr.kw, t%cr.kw
		}
		cr.tapOff = append(cr.tapOff, (kh*cr.dh*cr.wp+kw*cr.dw)*C)
	}
	v, err := c.n.prepare(func() (any, error) { return cr.reorder(wt.konst, taps), nil })
	if err != nil {
		return nil, err
	}
	rw := v.(*convRowsWeights)
	k := C * cr.kw
	if cr.dw != 1 {
		k = C
	}
	var bias *tensor.Tensor
	for g := range cr.group {
		if cr.bias {
			if b := c.input(2); b.konst != nil {
				bias = &tensor.Tensor{DType: tensor.FP32, Shape: []int64{int64(cr.mg)},
					Data: b.konst.Data[g*cr.mg*4 : (g+1)*cr.mg*4]}
			} else {
				return nil, nil // a bias computed at run time: the im2col path adds it
			}
		}
		var ps []*sgemm.Packed
		for t := range taps {
			var tb *tensor.Tensor
			if t == 0 {
				tb = bias
			}
			ps = append(ps, c.packB(rw.taps[g][t], false, k, cr.mg, cr.mg, 1, tb, 1))
		}
		cr.packs = append(cr.packs, ps)
	}
	cr.mb = max(12, min(480, (128<<10)/(4*cr.mg)/12*12))
	return kernelFunc(cr.run), nil
}

// reorder builds the K × M weight matrix of each group and tap.
func (cr *convRows) reorder(wt *tensor.Tensor, taps int) *convRowsWeights {
	src := viewAs[float32](wt.Data)
	C, M := cr.cg, cr.mg
	kl := cr.kh * cr.kw
	rw := &convRowsWeights{}
	for g := range cr.group {
		var ts []*tensor.Tensor
		for t := range taps {
			khs, kws := []int{t}, make([]int, cr.kw)
			for i := range kws {
				kws[i] = i
			}
			if cr.dw != 1 {
				khs, kws = []int{t / cr.kw}, []int{t % cr.kw}
			}
			k := len(kws) * C
			m := tensor.New("", tensor.FP32, []int64{int64(k), int64(M)})
			dst := viewAs[float32](m.Data)
			for _, kh := range khs {
				for i, kw := range kws {
					for ch := range C {
						row := dst[(i*C+ch)*M : (i*C+ch+1)*M]
						for o := range M {
							row[o] = src[((g*M+o)*C+ch)*kl+kh*cr.kw+kw]
						}
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
		// Zeroed once: only the interior of x is ever written, so the
		// padding stays zero.
		buf = &convRowsBuf{x: make([]float32, cr.xLen), y: make([]float32, cr.yLn)}
	}
	defer cr.bufs.put(buf)
	C, M := cr.cg, cr.mg
	ci, m := cr.cg*cr.group, cr.mg*cr.group
	inLen, outLen := cr.h*cr.w, cr.oh*cr.ow
	last := len(cr.tapOff) - 1
	for n := range cr.n {
		for g := range cr.group {
			cr.fillInput(buf.x, x[(n*ci+g*C)*inLen:(n*ci+(g+1)*C)*inLen])
			packs := cr.packs[g]
			gemm := func(rows, aOff, yOff int) {
				for t, pb := range packs {
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
					cr.sp.Gemm(cr.ks, rows, buf.x[aOff+cr.tapOff[t]:], cr.sw*C, pb, buf.y[yOff*M:], M, flags)
				}
			}
			yg := y[(n*m+g*M)*outLen : (n*m+(g+1)*M)*outLen]
			// Blocks of whole output rows, each stored to NCHW while it
			// is still in cache.
			step := 1
			if cr.sh == 1 {
				step = max(1, cr.mb/cr.wv)
			}
			for oh0 := 0; oh0 < cr.oh; oh0 += step {
				oh1 := min(oh0+step, cr.oh)
				if cr.sh == 1 {
					gemm((oh1-oh0)*cr.wv, oh0*cr.wv*cr.sw*C, oh0*cr.wv)
				} else {
					gemm(cr.wv, oh0*cr.sh*cr.wp*C, oh0*cr.wv)
				}
				cr.storeOutput(yg, buf.y, oh0, oh1)
			}
		}
	}
	return nil
}

// fillInput copies one group's NCHW planes into the padded channels-last
// buffer. Per input row, the row's slice of the buffer (W·C floats) stays
// in L1 while every channel's row is scattered into it.
func (cr *convRows) fillInput(dst, src []float32) {
	C, hw, W := cr.cg, cr.h*cr.w, cr.w
	for ih := range cr.h {
		row := dst[((ih+cr.pt)*cr.wp+cr.pl)*C : ((ih+cr.pt)*cr.wp+cr.pl+W)*C]
		for c := range C {
			s := src[c*hw+ih*W : c*hw+ih*W+W]
			d := row[c:]
			for iw, v := range s {
				d[iw*C] = v
			}
		}
	}
}

// storeOutput transposes output rows oh0 to oh1-1 of the channels-last
// output (Wv positions per row, the first OW valid) to M planes of OH×OW, applying a Clip the
// GEMM epilogue could not. Per output row, its slice of src stays in L1
// while each channel's row is gathered from it.
func (cr *convRows) storeOutput(dst, src []float32, oh0, oh1 int) {
	M, outLen, OW := cr.mg, cr.oh*cr.ow, cr.ow
	clip := cr.act.on && !cr.relu
	lo, hi := cr.act.lo, cr.act.hi
	for oh := oh0; oh < oh1; oh++ {
		s := src[oh*cr.wv*M : (oh*cr.wv+OW)*M]
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
