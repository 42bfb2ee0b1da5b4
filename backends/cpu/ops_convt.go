package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// convT is a compiled ConvTranspose: per image and group, the GEMM
// col = W_gᵀ·X_g (M/group·k rows, one column per input position), then
// col2im adds each column's taps into the output, which starts as the
// bias.
type convT struct {
	ks                *sgemm.Kernels
	sc                sgemm.Scratch
	w                 *window // in: the input's spatial dims, out: the output's, pb: padding at the beginning
	n, ci, m, group   int
	cg, mg            int
	inLen, outLen, kl int
}

// compileConvTranspose compiles ConvTranspose on FP32 with auto_pad,
// dilations, group, kernel_shape, output_padding, output_shape, pads
// and strides, over 1 to 3 spatial dims.
func compileConvTranspose(c *opCtx) (kernel, error) {
	x, wt, b := c.input(0), c.input(1), c.input(2)
	for i, name := range []string{"X", "W", "B"} {
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	r := len(x.shape) - 2
	if r < 1 || r > 3 || len(wt.shape) != len(x.shape) {
		return nil, invalidf("input X has shape %v and W %v: want [N, C, spatial...] (1 to 3 spatial dims) and [C, M/group, kernel...]", x.shape, wt.shape)
	}
	group, err := c.n.attrs.Int("group", 1)
	if err != nil {
		return nil, err
	}
	ci := int(x.shape[1])
	if group < 1 || int(wt.shape[0]) != ci || ci%int(group) != 0 {
		return nil, invalidf("W has shape %v, want [%d, M/group, ...] with group %d dividing %d", wt.shape, ci, group, ci)
	}
	m := int(wt.shape[1]) * int(group)
	if b != nil && (len(b.shape) != 1 || int(b.shape[0]) != m) {
		return nil, invalidf("input B has shape %v, want [%d]", b.shape, m)
	}
	ints := func(name string, def int64) ([]int64, bool, error) {
		v, has, err := c.n.attrs.Ints(name)
		if err != nil {
			return nil, false, err
		}
		if !has {
			v = make([]int64, r)
			for i := range v {
				v[i] = def
			}
		}
		return v, has, nil
	}
	ksh, hasK, err := c.n.attrs.Ints("kernel_shape")
	if err != nil {
		return nil, err
	}
	if hasK && !sameShape(ksh, wt.shape[2:]) {
		return nil, invalidf("kernel_shape %v does not match W's shape %v", ksh, wt.shape)
	}
	strides, _, err := ints("strides", 1)
	if err != nil {
		return nil, err
	}
	dil, _, err := ints("dilations", 1)
	if err != nil {
		return nil, err
	}
	opad, _, err := ints("output_padding", 0)
	if err != nil {
		return nil, err
	}
	oshape, hasOS, err := c.n.attrs.Ints("output_shape")
	if err != nil {
		return nil, err
	}
	pads, hasPads, err := c.n.attrs.Ints("pads")
	if err != nil {
		return nil, err
	}
	if !hasPads {
		pads = make([]int64, 2*r)
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
	if len(strides) != r || len(dil) != r || len(opad) != r || len(pads) != 2*r || hasOS && len(oshape) != r && len(oshape) != r+2 {
		return nil, invalidf("strides %v, dilations %v, output_padding %v, pads %v or output_shape %v do not match %d spatial dims",
			strides, dil, opad, pads, oshape, r)
	}
	if hasOS && len(oshape) == r+2 {
		oshape = oshape[2:]
	}
	w := &window{rank: r}
	for i := range 3 {
		w.in[i], w.out[i], w.k[i], w.s[i], w.d[i] = 1, 1, 1, 1, 1
	}
	for i := range r {
		j := 3 - r + i
		w.in[j], w.k[j], w.s[j], w.d[j] = int(x.shape[2+i]), int(wt.shape[2+i]), int(strides[i]), int(dil[i])
		if w.s[j] < 1 || w.d[j] < 1 || opad[i] < 0 || pads[i] < 0 || pads[i+r] < 0 {
			return nil, invalidf("strides %v, dilations %v, output_padding %v and pads %v must be positive", strides, dil, opad, pads)
		}
		full := w.s[j]*(w.in[j]-1) + int(opad[i]) + (w.k[j]-1)*w.d[j] + 1
		switch {
		case hasOS || autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER":
			o := w.in[j] * w.s[j]
			if hasOS {
				o = int(oshape[i])
			}
			total := full - o
			if total < 0 && !hasOS {
				total = 0
			}
			switch {
			case total < 0:
				// output_shape larger than the full output: the extra
				// positions (zeros plus the bias) go at the end.
				w.pb[j], w.pe[j] = 0, total
			case autoPad == "SAME_UPPER":
				w.pb[j], w.pe[j] = total/2, total-total/2
			default:
				w.pb[j], w.pe[j] = total-total/2, total/2
			}
			w.out[j] = o
		case autoPad == "VALID":
			w.out[j] = full
		default:
			w.pb[j], w.pe[j] = int(pads[i]), int(pads[i+r])
			w.out[j] = full - w.pb[j] - w.pe[j]
		}
		if w.out[j] < 1 {
			return nil, invalidf("output size %d along spatial dim %d", w.out[j], i)
		}
	}
	out := []int64{x.shape[0], int64(m)}
	for i := 3 - r; i < 3; i++ {
		out = append(out, int64(w.out[i]))
	}
	c.setOut(0, tensor.FP32, out)
	ct := &convT{ks: c.ks, w: w, n: int(x.shape[0]), ci: ci, m: m, group: int(group),
		cg: ci / int(group), mg: m / int(group), inLen: w.inLen(), outLen: w.outLen(), kl: w.kLen()}
	return kernelFunc(ct.run), nil
}

func (ct *convT) run(in, out []*tensor.Tensor) error {
	x, wt, y := viewAs[float32](in[0].Data), viewAs[float32](in[1].Data), viewAs[float32](out[0].Data)
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = viewAs[float32](in[2].Data)
	}
	rows := ct.mg * ct.kl
	buf := ct.sc.Get(rows * ct.inLen)
	defer ct.sc.Put(buf)
	col := (*buf)[:rows*ct.inLen]
	w := ct.w
	for n := range ct.n {
		for g := range ct.group {
			xg := x[(n*ct.ci+g*ct.cg)*ct.inLen:]
			wg := wt[g*ct.cg*rows:]
			ct.ks.Sgemm(&ct.sc, true, false, rows, ct.inLen, ct.cg, 1, wg, rows, xg, ct.inLen, 0, col, ct.inLen, 0)
			for o := range ct.mg {
				oc := g*ct.mg + o
				yp := y[(n*ct.m+oc)*ct.outLen : (n*ct.m+oc+1)*ct.outLen]
				bv := float32(0)
				if bias != nil {
					bv = bias[oc]
				}
				for i := range yp {
					yp[i] = bv
				}
				for t := range ct.kl {
					kw := t % w.k[2]
					kh := t / w.k[2] % w.k[1]
					kd := t / (w.k[1] * w.k[2])
					cr := col[(o*ct.kl+t)*ct.inLen : (o*ct.kl+t+1)*ct.inLen]
					for id := range w.in[0] {
						od := id*w.s[0] - w.pb[0] + kd*w.d[0]
						if od < 0 || od >= w.out[0] {
							continue
						}
						for ih := range w.in[1] {
							oh := ih*w.s[1] - w.pb[1] + kh*w.d[1]
							if oh < 0 || oh >= w.out[1] {
								continue
							}
							src := cr[(id*w.in[1]+ih)*w.in[2] : (id*w.in[1]+ih+1)*w.in[2]]
							dst := yp[(od*w.out[1]+oh)*w.out[2] : (od*w.out[1]+oh+1)*w.out[2]]
							for iw, v := range src {
								if ow := iw*w.s[2] - w.pb[2] + kw*w.d[2]; ow >= 0 && ow < w.out[2] {
									dst[ow] += v
								}
							}
						}
					}
				}
			}
		}
	}
	return nil
}

// compileInstanceNorm compiles InstanceNormalization: each (image,
// channel) plane normalised to mean 0 and variance 1 (statistics in
// float64), then scaled and shifted per channel.
func compileInstanceNorm(c *opCtx) (kernel, error) {
	x, sc, b := c.input(0), c.input(1), c.input(2)
	for i, name := range []string{"input", "scale", "B"} {
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	eps, err := c.n.attrs.Float("epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	if len(x.shape) < 3 {
		return nil, invalidf("input has shape %v, want [N, C, spatial...]", x.shape)
	}
	ch := x.shape[1]
	if !sameShape(sc.shape, []int64{ch}) || !sameShape(b.shape, []int64{ch}) {
		return nil, invalidf("scale %v and B %v, want [%d]", sc.shape, b.shape, ch)
	}
	c.setOut(0, tensor.FP32, clone(x.shape))
	planes, n, C := int(x.shape[0]*ch), prod(x.shape[2:]), int(ch)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		xs, y := viewAs[float32](in[0].Data), viewAs[float32](out[0].Data)
		s, bb := viewAs[float32](in[1].Data), viewAs[float32](in[2].Data)
		for p := range planes {
			xr, yr := xs[p*n:(p+1)*n], y[p*n:(p+1)*n]
			m := sumFloat(xr) / float64(n)
			v := 0.0
			for _, e := range xr {
				d := float64(e) - m
				v += d * d
			}
			a := float64(s[p%C]) / math.Sqrt(v/float64(n)+float64(eps))
			off := float64(bb[p%C]) - m*a
			for i, e := range xr {
				yr[i] = float32(float64(e)*a + off)
			}
		}
		return nil
	}), nil
}
