package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compilePool compiles MaxPool and AveragePool over 1 to 3 spatial dims
// on FP32 (and MaxPool on FP64, INT8 and UINT8 as well), with every
// attribute of opset 22: kernel_shape, strides, pads, auto_pad,
// dilations, ceil_mode, count_include_pad (AveragePool) and the Indices
// output of MaxPool (flat indices into X, the spatial part row-major, or
// column-major with storage_order=1).
func compilePool(c *opCtx) (kernel, error) {
	x := c.input(0)
	if len(x.shape) < 3 {
		return nil, invalidf("input X has shape %v, want [N, C, spatial...]", x.shape)
	}
	ceil, err := c.n.attrs.Bool("ceil_mode", false)
	if err != nil {
		return nil, err
	}
	w, err := parseWindow(c, x.shape[2:], nil, ceil)
	if err != nil {
		return nil, err
	}
	isMax := c.n.op == "MaxPool"
	incl, err := c.n.attrs.Bool("count_include_pad", false)
	if err != nil {
		return nil, err
	}
	order, err := c.n.attrs.Int("storage_order", 0)
	if err != nil {
		return nil, err
	}
	if order != 0 && order != 1 {
		return nil, invalidf("storage_order %d, want 0 or 1", order)
	}
	withIdx := c.hasOut(1)
	planes := int(x.shape[0] * x.shape[1])
	c.setOut(0, x.dtype, w.outShape(x.shape[0], x.shape[1]))
	if withIdx {
		c.setOut(1, tensor.Int64, w.outShape(x.shape[0], x.shape[1]))
	}
	if !isMax {
		if x.dtype != tensor.FP32 && x.dtype != tensor.FP64 {
			return nil, unsupportedf("datatype %s (supported: FP32, FP64)", x.dtype)
		}
		if x.dtype == tensor.FP64 {
			return avgPoolKernel[float64](w, planes, incl), nil
		}
		return avgPoolKernel[float32](w, planes, incl), nil
	}
	switch x.dtype {
	case tensor.FP32:
		if !withIdx && w.rank <= 2 {
			return maxPool2D(w, planes), nil
		}
		return maxPoolKernel[float32](w, planes, withIdx, order == 1), nil
	case tensor.FP64:
		return maxPoolKernel[float64](w, planes, withIdx, order == 1), nil
	case tensor.Int8:
		return maxPoolKernel[int8](w, planes, withIdx, order == 1), nil
	case tensor.Uint8:
		return maxPoolKernel[uint8](w, planes, withIdx, order == 1), nil
	}
	return nil, unsupportedf("datatype %s (supported: FP32, FP64, INT8, UINT8)", x.dtype)
}

// taps returns the input positions along spatial dim j that output o
// covers: first position, step, count of taps inside the input, and the
// count inside the padded extent [-pb, in+pe) (AveragePool's divisor
// with count_include_pad).
func (w *window) taps(j, o int) (first, step, inside, padded int) {
	start := o*w.s[j] - w.pb[j]
	step = w.d[j]
	for t := range w.k[j] {
		p := start + t*step
		if p >= -w.pb[j] && p < w.in[j]+w.pe[j] {
			padded++
		}
		if p >= 0 && p < w.in[j] {
			if inside == 0 {
				first = p
			}
			inside++
		}
	}
	return first, step, inside, padded
}

// poolPlan precomputes, per spatial dim and output position, the taps of
// taps(j, o).
type poolTaps struct{ first, step, inside, padded int }

func (w *window) poolPlan() [3][]poolTaps {
	var p [3][]poolTaps
	for j := range 3 {
		p[j] = make([]poolTaps, w.out[j])
		for o := range p[j] {
			f, s, i, pd := w.taps(j, o)
			p[j][o] = poolTaps{f, s, i, pd}
		}
	}
	return p
}

func maxPoolKernel[T number](w *window, planes int, withIdx, colMajor bool) kernel {
	pp := w.poolPlan()
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		var idx []int64
		if withIdx {
			idx = viewAs[int64](out[1].Data)
		}
		inLen, outLen := w.inLen(), w.outLen()
		for p := range planes {
			xp := x[p*inLen : (p+1)*inLen]
			o := p * outLen
			for _, td := range pp[0] {
				for _, th := range pp[1] {
					for _, tw := range pp[2] {
						best, bi := T(0), -1
						for a := range td.inside {
							id := td.first + a*td.step
							for b := range th.inside {
								ih := th.first + b*th.step
								row := (id*w.in[1] + ih) * w.in[2]
								for c := range tw.inside {
									k := row + tw.first + c*tw.step
									if v := xp[k]; bi < 0 || v > best || v != v && best == best {
										best, bi = v, k
									}
								}
							}
						}
						if bi < 0 {
							// Every tap in the padding: the padding counts as -Inf.
							best = lowest[T]()
							bi = 0
						}
						y[o] = best
						if idx != nil {
							if colMajor {
								iw, ih, id := bi%w.in[2], bi/w.in[2]%w.in[1], bi/(w.in[1]*w.in[2])
								bi = (iw*w.in[1]+ih)*w.in[0] + id
							}
							idx[o] = int64(p*inLen + bi)
						}
						o++
					}
				}
			}
		}
		return nil
	})
}

// lowest returns the smallest value of T (-Inf for floats).
func lowest[T number]() T {
	var z T
	switch any(z).(type) {
	case float32:
		return T(math.Inf(-1))
	case float64:
		return T(math.Inf(-1))
	case int8:
		var v int8 = math.MinInt8
		return T(v)
	}
	return 0
}

func avgPoolKernel[T float](w *window, planes int, incl bool) kernel {
	pp := w.poolPlan()
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		inLen, outLen := w.inLen(), w.outLen()
		for p := range planes {
			xp := x[p*inLen : (p+1)*inLen]
			o := p * outLen
			for _, td := range pp[0] {
				for _, th := range pp[1] {
					for _, tw := range pp[2] {
						sum := 0.0
						for a := range td.inside {
							id := td.first + a*td.step
							for b := range th.inside {
								row := (id*w.in[1] + th.first + b*th.step) * w.in[2]
								for c := range tw.inside {
									sum += float64(xp[row+tw.first+c*tw.step])
								}
							}
						}
						n := td.inside * th.inside * tw.inside
						if incl {
							n = td.padded * th.padded * tw.padded
						}
						if n == 0 {
							y[o] = T(math.NaN())
						} else {
							y[o] = T(sum / float64(n))
						}
						o++
					}
				}
			}
		}
		return nil
	})
}

// compileGlobalPool compiles GlobalAveragePool and GlobalMaxPool: one
// value per (image, channel) plane, spatial dims kept as 1.
func compileGlobalPool(c *opCtx) (kernel, error) {
	x := c.input(0)
	if err := c.wantDType(0, "X", tensor.FP32, tensor.FP64); err != nil {
		return nil, err
	}
	if len(x.shape) < 2 {
		return nil, invalidf("input X has shape %v, want [N, C, spatial...]", x.shape)
	}
	out := clone(x.shape)
	for i := 2; i < len(out); i++ {
		out[i] = 1
	}
	c.setOut(0, x.dtype, out)
	planes, n := int(x.shape[0]*x.shape[1]), prod(x.shape[2:])
	isMax := c.n.op == "GlobalMaxPool"
	if x.dtype == tensor.FP64 {
		return globalPoolKernel[float64](planes, n, isMax), nil
	}
	return globalPoolKernel[float32](planes, n, isMax), nil
}

func globalPoolKernel[T float](planes, n int, isMax bool) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		for p := range planes {
			row := x[p*n : (p+1)*n]
			if isMax {
				m := math.Inf(-1)
				for _, v := range row {
					if f := float64(v); f > m || f != f {
						m = f
					}
				}
				y[p] = T(m)
				continue
			}
			y[p] = T(sum8(row) / float64(n))
		}
		return nil
	})
}

// sum8 adds the values in float64 with eight independent accumulators
// (the additions then pipeline).
func sum8[T float](v []T) float64 {
	var s [8]float64
	i := 0
	for ; i+8 <= len(v); i += 8 {
		s[0] += float64(v[i])
		s[1] += float64(v[i+1])
		s[2] += float64(v[i+2])
		s[3] += float64(v[i+3])
		s[4] += float64(v[i+4])
		s[5] += float64(v[i+5])
		s[6] += float64(v[i+6])
		s[7] += float64(v[i+7])
	}
	for ; i < len(v); i++ {
		s[0] += float64(v[i])
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

// maxPool2D is MaxPool on FP32 over one or two spatial dims without the
// Indices output, written for speed: per output row, each kernel tap
// (kh, kw) inside the input is one pass of max over the output
// positions it reaches, so the inner loop is branch-free over a
// contiguous (or strided) input row. Windows entirely in the padding
// give -Inf; NaN propagates (Go's max).
func maxPool2D(w *window, planes int) kernel {
	type tap struct{ off, lo, hi int }
	var taps []tap // per kw: input offset and the output range it reaches
	for kw := range w.k[2] {
		off, lo, hi := w.span(2, kw)
		taps = append(taps, tap{off, lo, hi})
	}
	inLen, outLen := w.inLen(), w.outLen()
	s := w.s[2]
	ninf := float32(math.Inf(-1))
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[float32](in[0].Data), viewAs[float32](out[0].Data)
		for p := range planes {
			xp, yp := x[p*inLen:(p+1)*inLen], y[p*outLen:(p+1)*outLen]
			for oh := range w.out[1] {
				yr := yp[oh*w.out[2] : (oh+1)*w.out[2]]
				for i := range yr {
					yr[i] = ninf
				}
				for kh := range w.k[1] {
					ih := oh*w.s[1] - w.pb[1] + kh*w.d[1]
					if ih < 0 || ih >= w.in[1] {
						continue
					}
					xr := xp[ih*w.in[2] : (ih+1)*w.in[2]]
					for _, t := range taps {
						if t.lo >= t.hi {
							continue
						}
						seg := yr[t.lo:t.hi]
						if s == 1 {
							src := xr[t.lo+t.off : t.hi+t.off]
							for i, v := range src {
								seg[i] = max(seg[i], v)
							}
							continue
						}
						j := t.lo*s + t.off
						for i := range seg {
							seg[i] = max(seg[i], xr[j])
							j += s
						}
					}
				}
			}
		}
		return nil
	})
}
