package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/tensor"
)

// compileSoftmax compiles Softmax and LogSoftmax. Before opset 13 the
// input is coerced to 2-D at axis (default 1) and normalised over the
// flattened trailing dims; from opset 13 it is normalised along the one
// axis (default -1).
func compileSoftmax(c *opCtx) (kernel, error) {
	x := c.input(0)
	def := int64(-1)
	if c.opset < 13 {
		def = 1
	}
	axis, err := c.n.attrs.int("axis", def)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	if r == 0 {
		return nil, invalidf("input is a scalar")
	}
	ax, err := normAxis(axis, r)
	if err != nil {
		return nil, err
	}
	outer, n, inner := prod(x.shape[:ax]), prod(x.shape[ax:]), 1
	if c.opset >= 13 {
		n, inner = int(x.shape[ax]), prod(x.shape[ax+1:])
	}
	c.setOut(0, x.dtype, clone(x.shape))
	log := c.n.op == "LogSoftmax"
	switch x.dtype {
	case tensor.FP32:
		return softmaxKernel[float32](outer, n, inner, log), nil
	case tensor.FP64:
		return softmaxKernel[float64](outer, n, inner, log), nil
	}
	return nil, unsupportedf("datatype %s (supported: FP32, FP64)", x.dtype)
}

// softmaxKernel normalises outer×inner vectors of n elements with stride
// inner. Sums are taken in float64 after subtracting the maximum.
func softmaxKernel[T float](outer, n, inner int, log bool) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		for o := range outer {
			for i := range inner {
				base := o*n*inner + i
				mx := math.Inf(-1)
				for j := range n {
					mx = max(mx, float64(x[base+j*inner]))
				}
				sum := 0.0
				for j := range n {
					e := math.Exp(float64(x[base+j*inner]) - mx)
					if !log {
						y[base+j*inner] = T(e)
					}
					sum += e
				}
				if log {
					ls := math.Log(sum)
					for j := range n {
						y[base+j*inner] = T(float64(x[base+j*inner]) - mx - ls)
					}
					continue
				}
				inv := 1 / sum
				for j := range n {
					k := base + j*inner
					y[k] = T(float64(y[k]) * inv)
				}
			}
		}
		return nil
	})
}

// compileArgMax compiles ArgMax and ArgMin (INT64 indices; ties go to the
// first index, or the last with select_last_index=1).
func compileArgMax(c *opCtx) (kernel, error) {
	x := c.input(0)
	axis, err := c.n.attrs.int("axis", 0)
	if err != nil {
		return nil, err
	}
	keep, err := c.n.attrs.boolInt("keepdims", true)
	if err != nil {
		return nil, err
	}
	last, err := c.n.attrs.boolInt("select_last_index", false)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	if r == 0 {
		return nil, invalidf("input is a scalar")
	}
	ax, err := normAxis(axis, r)
	if err != nil {
		return nil, err
	}
	if x.shape[ax] == 0 {
		return nil, invalidf("reducing empty axis %d of shape %v", ax, x.shape)
	}
	out := clone(x.shape)
	if keep {
		out[ax] = 1
	} else {
		out = append(out[:ax], out[ax+1:]...)
	}
	c.setOut(0, tensor.Int64, out)
	outer, n, inner := prod(x.shape[:ax]), int(x.shape[ax]), prod(x.shape[ax+1:])
	isMax := c.n.op == "ArgMax"
	switch x.dtype {
	case tensor.FP32:
		return argKernel[float32](outer, n, inner, isMax, last), nil
	case tensor.FP64:
		return argKernel[float64](outer, n, inner, isMax, last), nil
	case tensor.Int32:
		return argKernel[int32](outer, n, inner, isMax, last), nil
	case tensor.Int64:
		return argKernel[int64](outer, n, inner, isMax, last), nil
	case tensor.Uint8:
		return argKernel[uint8](outer, n, inner, isMax, last), nil
	case tensor.Int8:
		return argKernel[int8](outer, n, inner, isMax, last), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

func argKernel[T number](outer, n, inner int, isMax, last bool) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[int64](out[0].Data)
		for o := range outer {
			for i := range inner {
				base := o*n*inner + i
				best, bi := x[base], 0
				for j := 1; j < n; j++ {
					v := x[base+j*inner]
					better := v > best
					if !isMax {
						better = v < best
					}
					if better || last && v == best {
						best, bi = v, j
					}
				}
				y[o*inner+i] = int64(bi)
			}
		}
		return nil
	})
}
