package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// resizeTaps are, for one output index along one dim, the input indices
// and weights it reads; outside marks a position past the input in
// tf_crop_and_resize, which takes extrapolation_value.
type resizeTaps struct {
	idx     []int
	w       []float64
	outside bool
}

// compileResize compiles Resize (opset 10 to 19; Upsample's successor)
// in the modes nearest (nearest_mode round_prefer_floor,
// round_prefer_ceil, floor, ceil), linear and cubic (cubic_coeff_a,
// exclude_outside), every coordinate_transformation_mode (half_pixel,
// half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
// tf_half_pixel_for_nn, tf_crop_and_resize with roi and
// extrapolation_value), output size from scales or sizes (with axes and
// keep_aspect_ratio_policy). roi, scales and sizes must be known at
// compile time. antialias=1 is unsupported. Interpolation is separable:
// each dim has per output index a list of taps, and an output element is
// the weighted sum over the product of its dims' taps, in float64.
func compileResize(c *opCtx) (kernel, error) {
	x := c.input(0)
	r := len(x.shape)
	as := c.n.attrs
	mode, err := as.Str("mode", "nearest")
	if err != nil {
		return nil, err
	}
	ctm, err := as.Str("coordinate_transformation_mode", "half_pixel")
	if err != nil {
		return nil, err
	}
	nearest, err := as.Str("nearest_mode", "round_prefer_floor")
	if err != nil {
		return nil, err
	}
	cubicA, err := as.Float("cubic_coeff_a", -0.75)
	if err != nil {
		return nil, err
	}
	exclude, err := as.Bool("exclude_outside", false)
	if err != nil {
		return nil, err
	}
	extrap, err := as.Float("extrapolation_value", 0)
	if err != nil {
		return nil, err
	}
	if aa, err := as.Bool("antialias", false); err != nil || aa {
		if err != nil {
			return nil, err
		}
		return nil, unsupportedf("antialias=1")
	}
	policy, err := as.Str("keep_aspect_ratio_policy", "stretch")
	if err != nil {
		return nil, err
	}
	switch mode {
	case "nearest", "linear", "cubic":
	default:
		return nil, unsupportedf("mode %q", mode)
	}
	switch ctm {
	case "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
		"tf_half_pixel_for_nn", "tf_crop_and_resize":
	default:
		return nil, unsupportedf("coordinate_transformation_mode %q", ctm)
	}
	switch nearest {
	case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil":
	default:
		return nil, unsupportedf("nearest_mode %q", nearest)
	}
	switch policy {
	case "stretch", "not_larger", "not_smaller":
	default:
		return nil, unsupportedf("keep_aspect_ratio_policy %q", policy)
	}
	axesAttr, hasAxes, err := as.Ints("axes")
	if err != nil {
		return nil, err
	}
	axes := make([]int, 0, r)
	if hasAxes {
		for _, a := range axesAttr {
			ax, err := normAxis(a, r)
			if err != nil {
				return nil, err
			}
			axes = append(axes, ax)
		}
	} else {
		for i := range r {
			axes = append(axes, i)
		}
	}
	floatsOf := func(i int, what string) ([]float64, error) {
		t, err := c.constInput(i, what)
		if err != nil || t == nil || t.Len() == 0 {
			return nil, err
		}
		v := make([]float64, t.Len())
		for j := range v {
			v[j] = t.Float64At(j)
		}
		return v, nil
	}
	var roi, scales []float64
	var sizes []int64
	if c.opset < 11 {
		if scales, err = floatsOf(1, "scales"); err != nil {
			return nil, err
		}
	} else {
		if roi, err = floatsOf(1, "roi"); err != nil {
			return nil, err
		}
		if scales, err = floatsOf(2, "scales"); err != nil {
			return nil, err
		}
		if s, err := int64Values(c, 3, "sizes"); err != nil {
			return nil, err
		} else if len(s) > 0 {
			sizes = s
		}
	}
	if (scales == nil) == (sizes == nil) {
		return nil, invalidf("exactly one of scales and sizes must be given")
	}
	scale := make([]float64, r)
	out := clone(x.shape)
	for i := range scale {
		scale[i] = 1
	}
	if scales != nil {
		if len(scales) != len(axes) {
			return nil, invalidf("scales has %d values for %d axes", len(scales), len(axes))
		}
		for i, ax := range axes {
			if scales[i] <= 0 {
				return nil, invalidf("scale %v must be positive", scales[i])
			}
			scale[ax] = scales[i]
			out[ax] = int64(math.Floor(float64(x.shape[ax]) * scales[i]))
		}
	} else {
		if len(sizes) != len(axes) {
			return nil, invalidf("sizes has %d values for %d axes", len(sizes), len(axes))
		}
		if policy == "stretch" {
			for i, ax := range axes {
				out[ax] = sizes[i]
				scale[ax] = float64(sizes[i]) / float64(x.shape[ax])
			}
		} else {
			s := math.Inf(1)
			if policy == "not_smaller" {
				s = math.Inf(-1)
			}
			for i, ax := range axes {
				v := float64(sizes[i]) / float64(x.shape[ax])
				if policy == "not_larger" {
					s = min(s, v)
				} else {
					s = max(s, v)
				}
			}
			for _, ax := range axes {
				scale[ax] = s
				out[ax] = int64(math.Floor(float64(x.shape[ax])*s + 0.5))
			}
		}
	}
	for d := range r {
		if out[d] < 0 || (out[d] > 0 && x.shape[d] == 0) {
			return nil, invalidf("output shape %v from input shape %v", out, x.shape)
		}
	}
	if ctm == "tf_crop_and_resize" && len(roi) != 2*len(axes) {
		return nil, invalidf("tf_crop_and_resize needs roi with %d values, got %d", 2*len(axes), len(roi))
	}
	taps := make([][]resizeTaps, r)
	for d := range r {
		in, o := int(x.shape[d]), int(out[d])
		start, end := 0.0, 1.0
		if ctm == "tf_crop_and_resize" {
			for i, ax := range axes {
				if ax == d {
					start, end = roi[i], roi[i+len(axes)]
				}
			}
		}
		taps[d] = make([]resizeTaps, o)
		for j := range o {
			var xo float64
			xr, s, lr, lo := float64(j), scale[d], float64(o), float64(in)
			if scales != nil {
				// With scales the transforms use the unrounded output
				// length, as the spec's reference does.
				lr = lo * s
			}
			switch ctm {
			case "half_pixel":
				xo = (xr+0.5)/s - 0.5
			case "half_pixel_symmetric":
				adj := lr / (s * lo)
				center := lo / 2
				xo = center*(1-adj) + (xr+0.5)/s - 0.5
			case "pytorch_half_pixel":
				if lr > 1 {
					xo = (xr+0.5)/s - 0.5
				}
			case "align_corners":
				if lr > 1 {
					xo = xr * (lo - 1) / (lr - 1)
				}
			case "asymmetric":
				xo = xr / s
			case "tf_half_pixel_for_nn":
				xo = (xr + 0.5) / s
			case "tf_crop_and_resize":
				if lr > 1 {
					xo = start*(lo-1) + xr*(end-start)*(lo-1)/(lr-1)
				} else {
					xo = 0.5 * (start + end) * (lo - 1)
				}
				if xo < 0 || xo > lo-1 {
					taps[d][j].outside = true
					continue
				}
			}
			taps[d][j] = resizeTapsAt(xo, in, mode, nearest, float64(cubicA), exclude)
		}
	}
	c.setOut(0, x.dtype, out)
	switch x.dtype {
	case tensor.FP32:
		return resizeKernel[float32](x.shape, out, taps, float64(extrap)), nil
	case tensor.FP64:
		return resizeKernel[float64](x.shape, out, taps, float64(extrap)), nil
	case tensor.Int32:
		return resizeKernel[int32](x.shape, out, taps, float64(extrap)), nil
	case tensor.Int64:
		return resizeKernel[int64](x.shape, out, taps, float64(extrap)), nil
	case tensor.Uint8:
		return resizeKernel[uint8](x.shape, out, taps, float64(extrap)), nil
	case tensor.Int8:
		return resizeKernel[int8](x.shape, out, taps, float64(extrap)), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

// resizeTapsAt returns the taps of input coordinate xo in a dim of n.
func resizeTapsAt(xo float64, n int, mode, nearest string, a float64, exclude bool) resizeTaps {
	clampI := func(i int) int { return min(max(i, 0), n-1) }
	switch mode {
	case "nearest":
		var i float64
		switch nearest {
		case "round_prefer_floor":
			if xo == math.Floor(xo)+0.5 {
				i = math.Floor(xo)
			} else {
				i = math.Round(xo)
			}
		case "round_prefer_ceil":
			i = math.Round(xo)
			if xo == math.Floor(xo)+0.5 {
				i = math.Ceil(xo)
			}
		case "floor":
			i = math.Floor(xo)
		default:
			i = math.Ceil(xo)
		}
		return resizeTaps{idx: []int{clampI(int(i))}, w: []float64{1}}
	case "linear":
		xc := min(max(xo, 0), float64(n-1))
		i0 := int(math.Floor(xc))
		i1 := min(i0+1, n-1)
		t := xc - float64(i0)
		return resizeTaps{idx: []int{i0, i1}, w: []float64{1 - t, t}}
	}
	i0 := int(math.Floor(xo))
	t := xo - float64(i0)
	coef := func(s float64) float64 {
		s = math.Abs(s)
		switch {
		case s <= 1:
			return ((a+2)*s-(a+3))*s*s + 1
		case s < 2:
			return ((a*s-5*a)*s+8*a)*s - 4*a
		}
		return 0
	}
	ts := resizeTaps{}
	sum := 0.0
	for k, s := range []float64{1 + t, t, 1 - t, 2 - t} {
		i := i0 - 1 + k
		w := coef(s)
		if exclude && (i < 0 || i >= n) {
			w = 0
		}
		ts.idx = append(ts.idx, clampI(i))
		ts.w = append(ts.w, w)
		sum += w
	}
	if exclude && sum != 0 {
		for k := range ts.w {
			ts.w[k] /= sum
		}
	}
	return ts
}

func resizeKernel[T number](in, out []int64, taps [][]resizeTaps, extrap float64) kernel {
	r := len(in)
	inStr := contiguousStrides(in)
	isFloat := false
	switch any(T(0)).(type) {
	case float32, float64:
		isFloat = true
	}
	return kernelFunc(func(ins, outs []*tensor.Tensor) error {
		x, y := viewAs[T](ins[0].Data), viewAs[T](outs[0].Data)
		var idx [maxRank]int
		var tap [maxRank]int
		for o := range y {
			outside := false
			for d := range r {
				if taps[d][idx[d]].outside {
					outside = true
				}
			}
			if outside {
				y[o] = T(extrap)
			} else {
				// Sum over the product of the dims' taps.
				sum := 0.0
				for d := range r {
					tap[d] = 0
				}
				for {
					w, off := 1.0, 0
					for d := range r {
						t := &taps[d][idx[d]]
						w *= t.w[tap[d]]
						off += t.idx[tap[d]] * inStr[d]
					}
					sum += w * float64(x[off])
					d := r - 1
					for ; d >= 0; d-- {
						if tap[d]++; tap[d] < len(taps[d][idx[d]].idx) {
							break
						}
						tap[d] = 0
					}
					if d < 0 {
						break
					}
				}
				if !isFloat {
					sum = math.Round(sum)
				}
				y[o] = T(sum)
			}
			for d := r - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < int(out[d]) {
					break
				}
				idx[d] = 0
			}
		}
		return nil
	})
}
