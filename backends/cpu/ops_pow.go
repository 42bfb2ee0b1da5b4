package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compilePow compiles Pow with numpy broadcasting. The base is FP32,
// FP64, INT32 or INT64; the exponent (opset 12+: FP32, FP64 or any
// integer type, before: the base's type) is converted to float64, and the power is
// computed in float64 and rounded once to the base's type, so that FP32
// results are correctly rounded to within an ulp and integer powers are
// exact while they fit in 2**53.
func compilePow(c *opCtx) (kernel, error) {
	x, y := c.input(0), c.input(1)
	if c.opset < 12 && x.dtype != y.dtype {
		return nil, invalidf("input X is %s but input Y is %s (the types may differ from opset 12)", x.dtype, y.dtype)
	}
	out, err := broadcast(x.shape, y.shape)
	if err != nil {
		return nil, invalidf("input X has shape %v and input Y has shape %v, which do not broadcast", x.shape, y.shape)
	}
	c.setOut(0, x.dtype, out)
	switch y.dtype {
	case tensor.FP32, tensor.FP64, tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64,
		tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
	default:
		return nil, unsupportedf("exponent datatype %s (supported: FP32, FP64 and the integer types)", y.dtype)
	}
	bc := newBcast(x.shape, y.shape, out)
	switch x.dtype {
	case tensor.FP32:
		return powKernel[float32](bc), nil
	case tensor.FP64:
		return powKernel[float64](bc), nil
	case tensor.Int32:
		return powKernel[int32](bc), nil
	case tensor.Int64:
		return powKernel[int64](bc), nil
	}
	return nil, unsupportedf("base datatype %s (supported: FP32, FP64, INT32, INT64)", x.dtype)
}

// powKernel computes x**y elementwise; y may have any numeric datatype.
func powKernel[T number](bc *bcast) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		xs, d, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data), in[1]
		bc.walk(len(d), func(o, offX, offY, n, sx, sy int) {
			if sy == 0 { // one exponent for the run: the common x**2, x**0.5
				e := y.Float64At(offY)
				for i := range n {
					d[o+i] = T(math.Pow(float64(xs[offX+i*sx]), e))
				}
				return
			}
			for i := range n {
				d[o+i] = T(math.Pow(float64(xs[offX+i*sx]), y.Float64At(offY+i)))
			}
		})
		return nil
	})
}
