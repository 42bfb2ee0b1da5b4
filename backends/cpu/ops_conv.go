package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// window is the geometry of a convolution or pooling over 1 to 3 spatial
// dims. Every array is indexed by spatial dim padded at the front to 3
// (a 1-D input is 1×1×W, a 2-D one 1×H×W), the missing dims having size,
// kernel, stride and dilation 1 and no padding, so that one set of loops
// serves every rank.
type window struct {
	rank   int    // spatial dims of the model: 1, 2 or 3
	in     [3]int // input size
	out    [3]int // output size
	k      [3]int // kernel size
	s, d   [3]int // strides, dilations
	pb, pe [3]int // padding at the beginning and end
}

// inLen and outLen return the number of spatial positions.
func (w *window) inLen() int  { return w.in[0] * w.in[1] * w.in[2] }
func (w *window) outLen() int { return w.out[0] * w.out[1] * w.out[2] }
func (w *window) kLen() int   { return w.k[0] * w.k[1] * w.k[2] }

// parseWindow reads kernel_shape (kernel when the operator takes it from
// its weights), strides, dilations, pads and auto_pad for the spatial
// dims in and computes the output size (rounded up with ceilMode, as
// PyTorch and onnxruntime do: a last window that would start in the end
// padding is dropped).
func parseWindow(c *opCtx, in []int64, kernel []int64, ceilMode bool) (*window, error) {
	r := len(in)
	if r < 1 || r > 3 {
		return nil, unsupportedf("%d spatial dims (supported: 1 to 3)", r)
	}
	ks, has, err := c.n.attrs.Ints("kernel_shape")
	if err != nil {
		return nil, err
	}
	if !has {
		if kernel == nil {
			return nil, invalidf("attribute kernel_shape is required")
		}
		ks = kernel
	} else if kernel != nil && !sameShape(ks, kernel) {
		return nil, invalidf("kernel_shape %v does not match the weights' spatial dims %v", ks, kernel)
	}
	ints := func(name string, n int, def int64) ([]int64, error) {
		v, has, err := c.n.attrs.Ints(name)
		if err != nil {
			return nil, err
		}
		if !has {
			v = make([]int64, n)
			for i := range v {
				v[i] = def
			}
		}
		if len(v) != n {
			return nil, invalidf("attribute %s has %d values, want %d", name, len(v), n)
		}
		return v, nil
	}
	if len(ks) != r {
		return nil, invalidf("kernel_shape %v has %d dims, the input %d spatial dims", ks, len(ks), r)
	}
	strides, err := ints("strides", r, 1)
	if err != nil {
		return nil, err
	}
	dil, err := ints("dilations", r, 1)
	if err != nil {
		return nil, err
	}
	pads, err := ints("pads", 2*r, 0)
	if err != nil {
		return nil, err
	}
	autoPad, err := c.n.attrs.Str("auto_pad", "NOTSET")
	if err != nil {
		return nil, err
	}
	switch autoPad {
	case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
	default:
		return nil, unsupportedf("auto_pad %q", autoPad)
	}
	if autoPad != "NOTSET" && c.n.attrs.Has("pads") {
		return nil, invalidf("pads given with auto_pad %s", autoPad)
	}
	w := &window{rank: r}
	for i := range 3 {
		w.in[i], w.out[i], w.k[i], w.s[i], w.d[i] = 1, 1, 1, 1, 1
	}
	for i := range r {
		j := 3 - r + i
		w.in[j], w.k[j], w.s[j], w.d[j] = int(in[i]), int(ks[i]), int(strides[i]), int(dil[i])
		if w.k[j] < 1 || w.s[j] < 1 || w.d[j] < 1 || pads[i] < 0 || pads[i+r] < 0 {
			return nil, invalidf("kernel_shape %v, strides %v, dilations %v and pads %v must be positive", ks, strides, dil, pads)
		}
		eff := (w.k[j]-1)*w.d[j] + 1
		switch autoPad {
		case "NOTSET":
			w.pb[j], w.pe[j] = int(pads[i]), int(pads[i+r])
		case "SAME_UPPER", "SAME_LOWER":
			o := (w.in[j] + w.s[j] - 1) / w.s[j]
			total := max(0, (o-1)*w.s[j]+eff-w.in[j])
			small := total / 2
			if autoPad == "SAME_UPPER" {
				w.pb[j], w.pe[j] = small, total-small
			} else {
				w.pb[j], w.pe[j] = total-small, small
			}
		}
		span := w.in[j] + w.pb[j] + w.pe[j] - eff
		if span < 0 {
			return nil, invalidf("kernel %v (dilations %v) larger than the padded input %v", ks, dil, in)
		}
		o := span/w.s[j] + 1
		if ceilMode && span%w.s[j] != 0 {
			o++
			if (o-1)*w.s[j] >= w.in[j]+w.pb[j] {
				o--
			}
		}
		w.out[j] = o
	}
	return w, nil
}

// outShape returns [n, ch, spatial out...].
func (w *window) outShape(n, ch int64) []int64 {
	s := []int64{n, ch}
	for i := 3 - w.rank; i < 3; i++ {
		s = append(s, int64(w.out[i]))
	}
	return s
}

// span returns, for output positions along spatial dim j and kernel tap
// kk, the input offset off (input = o·s + off) and the range [lo, hi) of
// outputs o in [0, out) whose input lies inside [0, in).
func (w *window) span(j, kk int) (off, lo, hi int) {
	off = kk*w.d[j] - w.pb[j]
	s := w.s[j]
	lo = 0
	if off < 0 {
		lo = (-off + s - 1) / s
	}
	hi = 0
	if last := w.in[j] - 1 - off; last >= 0 {
		hi = min(w.out[j], last/s+1)
	}
	return off, min(lo, w.out[j]), hi
}

// conv is a compiled Conv: Y[n, m] = Σ W[m, c]·X[n, c] over the window,
// plus the bias, then the fused activation.
type conv struct {
	ks       *sgemm.Kernels
	sp       *sgemm.Splitter
	jobs     freeList[im2colJob]
	phases   freeList[[]float32] // runDirect's column phases of an input plane
	w        *window
	n, ci, m int // batch, input channels, output channels
	group    int
	cg, mg   int // input and output channels per group
	kk       int // rows of the im2col matrix per group: cg·k
	chunk    int // columns of the im2col matrix packed at once
	act      activation
	relu     bool // the activation is a plain ReLU the GEMM epilogue applies
	// pointwise: a 1×1 kernel, stride 1, no padding: the input planes
	// are the im2col matrix.
	pointwise bool
}

// activation is the element-wise function fused after a convolution:
// clamping to [lo, hi] (ReLU is [0, +Inf], ReLU6 [0, 6]; none is
// [-Inf, +Inf]).
type activation struct {
	on     bool
	lo, hi float32
}

// apply adds bias to the values v and clamps them (ks.Clamp,
// vectorised). NaN passes through, as Relu and Clip let it.
func (a activation) apply(ks *sgemm.Kernels, v []float32, bias float32) {
	if !a.on {
		if bias != 0 {
			ks.Clamp(v, bias, float32(math.Inf(-1)), float32(math.Inf(1)))
		}
		return
	}
	ks.Clamp(v, bias, a.lo, a.hi)
}

// compileConv compiles Conv on FP32. Groups with one input channel each
// (depthwise) run a direct loop; every other convolution is, per image
// and group, a product of the weights (M/group × C/group·k, read in
// place as the A operand) by the im2col matrix of the input, which is
// written straight into the GEMM's packed layout a block of columns (output
// positions) at a time, so that it stays in cache while the kernel reads
// it. The output comes out in NCHW order; the bias and a fused Relu or
// Clip are applied to each block as it leaves the kernel.
func compileConv(c *opCtx) (kernel, error) {
	x, wt, b := c.input(0), c.input(1), c.input(2)
	for i, name := range []string{"X", "W", "B"} {
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	if len(x.shape) < 3 || len(wt.shape) != len(x.shape) {
		return nil, invalidf("input X has shape %v and W %v: want [N, C, spatial...] and [M, C/group, kernel...]", x.shape, wt.shape)
	}
	group, err := c.n.attrs.Int("group", 1)
	if err != nil {
		return nil, err
	}
	ci, m := int(x.shape[1]), int(wt.shape[0])
	if group < 1 || ci%int(group) != 0 || m%int(group) != 0 || int(wt.shape[1])*int(group) != ci {
		return nil, invalidf("group %d does not divide input channels %d and output channels %d (W has shape %v)", group, ci, m, wt.shape)
	}
	if b != nil && (len(b.shape) != 1 || int(b.shape[0]) != m) {
		return nil, invalidf("input B has shape %v, want [%d]", b.shape, m)
	}
	w, err := parseWindow(c, x.shape[2:], wt.shape[2:], false)
	if err != nil {
		return nil, err
	}
	c.setOut(0, tensor.FP32, w.outShape(x.shape[0], int64(m)))
	cv := &conv{ks: c.ks, sp: c.sp, w: w, n: int(x.shape[0]), ci: ci, m: m, group: int(group),
		cg: ci / int(group), mg: m / int(group), act: c.n.act}
	cv.kk = cv.cg * w.kLen()
	cv.relu = c.n.act.on && c.n.act.lo == 0 && math.IsInf(float64(c.n.act.hi), 1)
	// Columns per packed block: about 256 KiB of im2col, whole panels.
	nr := c.ks.PanelWidth()
	cv.chunk = max(nr, (256<<10)/(4*max(cv.kk, 1))/nr*nr)
	if cv.chunk >= w.outLen() {
		cv.chunk = w.outLen()
	}
	cv.pointwise = w.kLen() == 1 && w.s == [3]int{1, 1, 1} && w.pb == [3]int{} && w.pe == [3]int{}
	if cv.cg == 1 {
		if k := newDepthwise(c, cv); k != nil {
			return k, nil
		}
		return kernelFunc(cv.runDirect), nil
	}
	// A pointwise convolution is a product of the weights by the input
	// planes as they are (packed per call) with the output in place;
	// the channels-last form would add two transposes around the same
	// product.
	if cv.pointwise {
		return kernelFunc(cv.run), nil
	}
	if k, err := newConvRows(c, cv); err != nil || k != nil {
		return k, err
	}
	return kernelFunc(cv.run), nil
}

func (cv *conv) run(in, out []*tensor.Tensor) error {
	x, wt, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](out[0].Data)
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = viewAs[float32](in[2].Data)
	}
	w := cv.w
	hw, inLen := w.outLen(), w.inLen()
	if hw == 0 || cv.mg == 0 {
		return nil
	}
	job := cv.jobs.get()
	if job == nil {
		job = newIm2colJob(w, cv.ks.PackedLen(cv.kk, cv.chunk))
	}
	defer cv.jobs.put(job)
	flags := 0
	epilogue := bias != nil || cv.act.on && !cv.relu
	if cv.relu && bias == nil {
		flags = sgemm.ReLU
	}
	for n := range cv.n {
		for g := range cv.group {
			xg := x[(n*cv.ci+g*cv.cg)*inLen : (n*cv.ci+(g+1)*cv.cg)*inLen]
			wg := wt[g*cv.mg*cv.kk : (g+1)*cv.mg*cv.kk]
			yg := y[(n*cv.m+g*cv.mg)*hw : (n*cv.m+(g+1)*cv.mg)*hw]
			for j0 := 0; j0 < hw; j0 += cv.chunk {
				nc := min(cv.chunk, hw-j0)
				if cv.pointwise {
					// The im2col matrix is the input itself.
					job.pb = cv.ks.Pack(job.buf, false, cv.kk, nc, xg[j0:], inLen, 1)
				} else {
					job.x, job.j0 = xg, j0
					job.pb = cv.ks.PackFill(job.buf, cv.kk, nc, job.fill)
				}
				cv.sp.Gemm(cv.ks, cv.mg, wg, cv.kk, &job.pb, yg[j0:], hw, flags)
				if epilogue {
					for o := range cv.mg {
						bv := float32(0)
						if bias != nil {
							bv = bias[g*cv.mg+o]
						}
						cv.act.apply(cv.ks, yg[o*hw+j0:o*hw+j0+nc], bv)
					}
				}
			}
		}
	}
	return nil
}

// im2colJob is the per-call state of a convolution's packing: the
// buffer and the function PackFill calls, built once so that a call does
// not allocate.
type im2colJob struct {
	buf  []float32
	pb   sgemm.Packed // the block packed in buf (kept here: a local escapes)
	x    []float32    // the group's input
	j0   int          // first column of the block
	fill func(r, j int, row []float32)
}

func newIm2colJob(w *window, n int) *im2colJob {
	j := &im2colJob{buf: make([]float32, n)}
	j.fill = func(r, col int, row []float32) { w.im2col(j.x, r, j.j0+col, row) }
	return j
}

// im2col writes row r of the im2col matrix of one group's input x
// (channel-major planes), columns j0 to j0+len(dst)-1: row r is input
// channel r/k at kernel tap r%k, column j an output position, the value
// the input under that tap (zero in the padding).
func (w *window) im2col(x []float32, r, j0 int, dst []float32) {
	kl := w.kLen()
	ch, t := r/kl, r%kl
	kw := t % w.k[2]
	kh := t / w.k[2] % w.k[1]
	kd := t / (w.k[1] * w.k[2])
	plane := x[ch*w.inLen() : (ch+1)*w.inLen()]
	ow := j0 % w.out[2]
	oh := j0 / w.out[2] % w.out[1]
	od := j0 / (w.out[1] * w.out[2])
	off, lo, hi := w.span(2, kw)
	s := w.s[2]
	for len(dst) > 0 {
		n := min(len(dst), w.out[2]-ow)
		seg := dst[:n]
		id := od*w.s[0] - w.pb[0] + kd*w.d[0]
		ih := oh*w.s[1] - w.pb[1] + kh*w.d[1]
		if id < 0 || id >= w.in[0] || ih < 0 || ih >= w.in[1] {
			clear(seg)
		} else {
			row := plane[(id*w.in[1]+ih)*w.in[2] : (id*w.in[1]+ih+1)*w.in[2]]
			a, b := max(lo, ow), min(hi, ow+n) // valid outputs in this segment
			if a >= b {
				clear(seg)
			} else {
				clear(seg[:a-ow])
				valid := seg[a-ow : b-ow]
				if s == 1 {
					copy(valid, row[a+off:b+off])
				} else {
					for i := range valid {
						valid[i] = row[(a+i)*s+off]
					}
				}
				clear(seg[b-ow:])
			}
		}
		dst = dst[n:]
		ow = 0
		if oh++; oh == w.out[1] {
			oh = 0
			od++
		}
	}
}

// runDirect computes a convolution whose groups have one input channel
// each (depthwise, possibly with a channel multiplier): per output
// channel, the bias, then for each kernel tap a scaled copy of the
// shifted input row added to each output row (Kernels.Axpy, vectorised),
// then the activation. With a stride s along W the input plane is first
// split into its s column phases, so that every tap reads a contiguous
// run of one phase.
func (cv *conv) runDirect(in, out []*tensor.Tensor) error {
	x, wt, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](out[0].Data)
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = viewAs[float32](in[2].Data)
	}
	w := cv.w
	hw, inLen, kl := w.outLen(), w.inLen(), w.kLen()
	s := w.s[2]
	pw := (w.in[2] + s - 1) / s // phase row width
	var phases []float32
	if s > 1 {
		buf := cv.phases.get()
		if buf == nil {
			buf = &[]float32{}
		}
		defer cv.phases.put(buf)
		if n := s * w.in[0] * w.in[1] * pw; len(*buf) < n {
			*buf = make([]float32, n)
		}
		phases = *buf
	}
	rows := w.in[0] * w.in[1]
	for n := range cv.n {
		prev := -1
		for o := range cv.m {
			ch := o / cv.mg
			xp := x[(n*cv.ci+ch)*inLen : (n*cv.ci+ch+1)*inLen]
			if s > 1 && ch != prev {
				for r := range rows {
					row := xp[r*w.in[2] : (r+1)*w.in[2]]
					for ph := range s {
						dst := phases[(ph*rows+r)*pw : (ph*rows+r+1)*pw]
						k := 0
						for j := ph; j < len(row); j += s {
							dst[k] = row[j]
							k++
						}
					}
				}
				prev = ch
			}
			yp := y[(n*cv.m+o)*hw : (n*cv.m+o+1)*hw]
			bv := float32(0)
			if bias != nil {
				bv = bias[o]
			}
			for i := range yp {
				yp[i] = bv
			}
			wo := wt[o*kl : (o+1)*kl]
			for t, wv := range wo {
				kw := t % w.k[2]
				kh := t / w.k[2] % w.k[1]
				kd := t / (w.k[1] * w.k[2])
				offD, loD, hiD := w.span(0, kd)
				offH, loH, hiH := w.span(1, kh)
				offW, loW, hiW := w.span(2, kw)
				if loW >= hiW {
					continue
				}
				// Input column ow·s + offW is column ow + shift of phase ph.
				ph := ((offW % s) + s) % s
				shift := (offW - ph) / s
				for od := loD; od < hiD; od++ {
					id := od*w.s[0] + offD
					for oh := loH; oh < hiH; oh++ {
						ih := oh*w.s[1] + offH
						yr := yp[(od*w.out[1]+oh)*w.out[2] : (od*w.out[1]+oh+1)*w.out[2]]
						var src []float32
						if s == 1 {
							row := xp[(id*w.in[1]+ih)*w.in[2] : (id*w.in[1]+ih+1)*w.in[2]]
							src = row[loW+offW : hiW+offW]
						} else {
							row := phases[(ph*rows+id*w.in[1]+ih)*pw : (ph*rows+id*w.in[1]+ih+1)*pw]
							src = row[loW+shift : hiW+shift]
						}
						cv.ks.Axpy(yr[loW:hiW], src, wv)
					}
				}
			}
			if cv.act.on {
				cv.act.apply(cv.ks, yp, 0)
			}
		}
	}
	return nil
}
