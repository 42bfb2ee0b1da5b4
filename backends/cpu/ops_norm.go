package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compileBatchNorm compiles BatchNormalization in inference form:
// y = (x - mean) / sqrt(var + epsilon) * scale + B per channel (dim 1).
// Training mode and the running-statistics outputs are unsupported.
func compileBatchNorm(c *opCtx) (kernel, error) {
	x := c.input(0)
	eps, err := c.n.attrs.Float("epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	if _, err := c.n.attrs.Float("momentum", 0.9); err != nil {
		return nil, err
	}
	if spatial, err := c.n.attrs.Bool("spatial", true); err != nil || !spatial {
		if err != nil {
			return nil, err
		}
		return nil, unsupportedf("spatial=0")
	}
	if err := isTest(c); err != nil {
		return nil, err
	}
	if tm, err := c.n.attrs.Bool("training_mode", false); err != nil || tm {
		if err != nil {
			return nil, err
		}
		return nil, unsupportedf("training_mode=1")
	}
	for i := 1; i < 5; i++ {
		if c.hasOut(i) {
			return nil, unsupportedf("output %d (training statistics)", i)
		}
	}
	names := []string{"X", "scale", "B", "input_mean", "input_var"}
	for i, name := range names {
		if c.input(i) == nil {
			return nil, invalidf("input %s is required", name)
		}
		if err := c.wantDType(i, name, tensor.FP32); err != nil {
			return nil, err
		}
	}
	if len(x.shape) < 2 {
		return nil, invalidf("input X has shape %v, want rank >= 2 (N, C, ...)", x.shape)
	}
	ch := x.shape[1]
	for i := 1; i < 5; i++ {
		if s := c.input(i).shape; len(s) != 1 || s[0] != ch {
			return nil, invalidf("input %s has shape %v, want [%d]", names[i], s, ch)
		}
	}
	c.setOut(0, tensor.FP32, clone(x.shape))
	n, inner := int(x.shape[0]), prod(x.shape[2:])
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		xs, y := viewAs[float32](in[0].Data), viewAs[float32](out[0].Data)
		scale, bias := viewAs[float32](in[1].Data), viewAs[float32](in[2].Data)
		mean, vr := viewAs[float32](in[3].Data), viewAs[float32](in[4].Data)
		for k := range int(ch) {
			s := float64(scale[k]) / math.Sqrt(float64(vr[k])+float64(eps))
			a, b := float32(s), float32(float64(bias[k])-float64(mean[k])*s)
			for b0 := range n {
				off := (b0*int(ch) + k) * inner
				src, dst := xs[off:off+inner], y[off:off+inner]
				for i, v := range src {
					dst[i] = v*a + b
				}
			}
		}
		return nil
	}), nil
}

// compileLayerNorm compiles LayerNormalization (opset 17) on FP32 and
// FP64: each row of the dims from axis on is normalised to mean 0 and
// variance 1 (statistics in float64, epsilon added to the variance),
// then multiplied by Scale and added B, both broadcast to the row's
// shape. The optional outputs Mean and InvStdDev have X's shape with the
// normalised dims set to 1. stash_type other than 1 (FP32) is refused.
//
// fuse also produces this node from the exporters' decomposition
// (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, then Mul and Add),
// with Scale and B optional.
func compileLayerNorm(c *opCtx) (kernel, error) {
	x, scale, b := c.input(0), c.input(1), c.input(2)
	axis, err := c.n.attrs.Int("axis", -1)
	if err != nil {
		return nil, err
	}
	eps, err := c.n.attrs.Float("epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	stash, err := c.n.attrs.Int("stash_type", 1)
	if err != nil {
		return nil, err
	}
	if stash != 1 {
		return nil, unsupportedf("stash_type %d (supported: 1)", stash)
	}
	if err := c.wantDType(0, "X", tensor.FP32, tensor.FP64); err != nil {
		return nil, err
	}
	ax, err := normAxis(axis, len(x.shape))
	if err != nil {
		return nil, err
	}
	row := x.shape[ax:]
	n := prod(row)
	var idx [2][]int32 // per parameter: its element for each row position (nil: the identity)
	for i, p := range []*valueInfo{scale, b} {
		if p == nil {
			continue
		}
		if p.dtype != x.dtype {
			return nil, invalidf("input %d is %s, X %s", i+1, p.dtype, x.dtype)
		}
		if s, err := broadcast(row, p.shape); err != nil || !sameShape(s, row) {
			return nil, invalidf("input %d has shape %v, not broadcastable to the normalised shape %v", i+1, p.shape, row)
		}
		if !sameShape(p.shape, row) && prod(p.shape) != n {
			st := broadcastStrides(p.shape, row)
			m := make([]int32, n)
			for j := range m {
				off := 0
				for d, k := range unravelInts(j, row) {
					off += k * st[d]
				}
				m[j] = int32(off)
			}
			idx[i] = m
		}
	}
	c.setOut(0, x.dtype, clone(x.shape))
	stat := clone(x.shape)
	for d := ax; d < len(stat); d++ {
		stat[d] = 1
	}
	c.setOut(1, tensor.FP32, stat)
	c.setOut(2, tensor.FP32, clone(stat))
	rows := prod(x.shape[:ax])
	if x.dtype == tensor.FP64 {
		return layerNormKernel[float64](rows, n, eps, idx), nil
	}
	return layerNormKernel[float32](rows, n, eps, idx), nil
}

// unravelInts returns the multi-index of i in shape.
func unravelInts(i int, shape []int64) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % int(shape[d])
		i /= int(shape[d])
	}
	return idx
}

func layerNormKernel[T float](rows, n int, eps float32, idx [2][]int32) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		var scale, bias []T
		if len(in) > 1 && in[1] != nil {
			scale = viewAs[T](in[1].Data)
		}
		if len(in) > 2 && in[2] != nil {
			bias = viewAs[T](in[2].Data)
		}
		var mean, inv []float32
		if len(out) > 1 && out[1] != nil {
			mean = viewAs[float32](out[1].Data)
		}
		if len(out) > 2 && out[2] != nil {
			inv = viewAs[float32](out[2].Data)
		}
		for r := range rows {
			xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
			m := sumFloat(xr) / float64(n)
			var s0, s1 float64
			i := 0
			for ; i+2 <= n; i += 2 {
				d0, d1 := float64(xr[i])-m, float64(xr[i+1])-m
				s0 += d0 * d0
				s1 += d1 * d1
			}
			if i < n {
				d := float64(xr[i]) - m
				s0 += d * d
			}
			is := 1 / math.Sqrt((s0+s1)/float64(n)+float64(eps))
			if mean != nil {
				mean[r] = float32(m)
			}
			if inv != nil {
				inv[r] = float32(is)
			}
			mT, isT := T(m), T(is)
			switch {
			case scale != nil && bias != nil && idx[0] == nil && idx[1] == nil:
				sc, bi := scale[:n], bias[:n]
				for j, v := range xr {
					yr[j] = (v-mT)*isT*sc[j] + bi[j]
				}
			default:
				for j, v := range xr {
					o := (v - mT) * isT
					if scale != nil {
						k := j
						if idx[0] != nil {
							k = int(idx[0][j])
						}
						o *= scale[k%len(scale)]
					}
					if bias != nil {
						k := j
						if idx[1] != nil {
							k = int(idx[1][j])
						}
						o += bias[k%len(bias)]
					}
					yr[j] = o
				}
			}
		}
		return nil
	})
}

// isTest checks the is_test attribute of BatchNormalization and Dropout
// before opset 7: absent or 1 is inference, 0 (training) is refused.
// From opset 7 the attribute does not exist.
func isTest(c *opCtx) error {
	if !c.n.attrs.Has("is_test") {
		return nil
	}
	if c.opset >= 7 {
		return invalidf("attribute is_test exists before opset 7 only")
	}
	v, err := c.n.attrs.Bool("is_test", false)
	if err != nil {
		return err
	}
	if !v {
		return unsupportedf("is_test=0 (training)")
	}
	return nil
}
