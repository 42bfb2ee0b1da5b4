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
