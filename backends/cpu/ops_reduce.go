package cpu

import (
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
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
	axis, err := c.n.attrs.Int("axis", def)
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
		if inner == 1 && !log && n > 0 {
			return softmaxRowsKernel(c.ks, outer, n), nil
		}
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

// softmaxRowsKernel is softmaxKernel for FP32 rows of n ≥ 1 contiguous
// elements (the common case: class scores): the kernel set's vectorised
// version where it has one, softmaxRows32 otherwise.
func softmaxRowsKernel(ks *sgemm.Kernels, rows, n int) kernel {
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[float32](in[0].Data), viewAs[float32](out[0].Data)
		if rows > 0 && !ks.SoftmaxRows(x, y, rows, n) {
			softmaxRows32(x, y, rows, n)
		}
		return nil
	})
}

// softmaxRows32 computes softmaxKernel's result for FP32 rows of n
// contiguous elements, with the exponential inlined (see expRow32).
func softmaxRows32(x, y []float32, rows, n int) {
	for o := range rows {
		xs, ys := x[o*n:o*n+n], y[o*n:o*n+n]
		mx := math.Inf(-1)
		for _, v := range xs {
			mx = max(mx, float64(v))
		}
		inv := 1 / expRow32(ys, xs, mx)
		for j, v := range ys {
			ys[j] = float32(float64(v) * inv)
		}
	}
}

// expRow32 sets dst[i] = e**(src[i]-shift) and returns the sum of the
// unrounded values. The exponential has a relative error below 1e-11,
// ample for a result rounded to float32 (spacing 6e-8), and math.Exp's
// special cases (NaN, ±Inf, underflow to 0). It is written out in the
// loop because math.Exp costs about 13 ns a call on amd64 and a call
// spills every register: it dominated the softmax of digits-mlp at batch
// 256. x = k·ln2 + r with |r| ≤ ln2/2 (ln2 split in two so that k·ln2Hi
// is exact), e**r by its degree-9 Taylor polynomial evaluated in Estrin's
// scheme (short dependency chains), then scaled by 2**k.
func expRow32(dst, src []float32, shift float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		log2e = 1.44269504088896338700e+00
		round = 0x1.8p52 // adding it rounds a float64 of magnitude < 2**51 to an integer
	)
	dst = dst[:len(src)]
	sum := 0.0
	for i, v := range src {
		x := float64(v) - shift
		var e float64
		switch {
		case x != x:
			e = x
		case x > 709.8:
			e = math.Inf(1)
		case x < -745.2:
			e = 0
		default:
			k := (x*log2e + round) - round
			r := (x - k*ln2Hi) - k*ln2Lo
			r2 := r * r
			r4 := r2 * r2
			p01 := 1 + r
			p23 := 1.0/2 + r*(1.0/6)
			p45 := 1.0/24 + r*(1.0/120)
			p67 := 1.0/720 + r*(1.0/5040)
			p89 := 1.0/40320 + r*(1.0/362880)
			p := (p01 + r2*p23) + r4*((p45+r2*p67)+r4*p89)
			switch ki := int64(k); { // scale by 2**k in two steps where 2**k is not a normal float64
			case ki < -1021:
				e = p * math.Float64frombits(uint64(ki+1023+60)<<52) * 0x1p-60
			case ki > 1023:
				e = p * math.Float64frombits(uint64(ki+1023-60)<<52) * 0x1p60
			default:
				e = p * math.Float64frombits(uint64(ki+1023)<<52)
			}
		}
		dst[i] = float32(e)
		sum += e
	}
	return sum
}

// compileArgMax compiles ArgMax and ArgMin (INT64 indices; ties go to the
// first index, or the last with select_last_index=1).
func compileArgMax(c *opCtx) (kernel, error) {
	x := c.input(0)
	axis, err := c.n.attrs.Int("axis", 0)
	if err != nil {
		return nil, err
	}
	keep, err := c.n.attrs.Bool("keepdims", true)
	if err != nil {
		return nil, err
	}
	last, err := c.n.attrs.Bool("select_last_index", false)
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
	if inner == 1 && isMax && !last {
		// The common case (class scores) in a loop with one comparison.
		return kernelFunc(func(in, out []*tensor.Tensor) error {
			x, y := viewAs[T](in[0].Data), viewAs[int64](out[0].Data)
			for o := range outer {
				row := x[o*n : o*n+n]
				best, bi := row[0], 0
				for j, v := range row {
					if v > best {
						best, bi = v, j
					}
				}
				y[o] = int64(bi)
			}
			return nil
		})
	}
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
