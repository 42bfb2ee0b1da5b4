package cpu

import (
	"math"
	"slices"

	"github.com/coalesce-ml/coalesce/tensor"
)

// reduceAxes returns the axes a Reduce* node (or any node taking axes
// the same way) reduces: the attribute axes (up to opset 12 for
// ReduceSum, 17 for the others) or the constant input 1, normalised and
// sorted; all axes when none are given, unless noopEmpty, when nil and
// noop true are returned.
func reduceAxes(c *opCtx, rank int, noopEmpty bool) (axes []int, noop bool, err error) {
	attr, hasAttr, err := c.n.attrs.Ints("axes")
	if err != nil {
		return nil, false, err
	}
	raw := attr
	if t, err := c.constInput(1, "axes"); err != nil {
		return nil, false, err
	} else if t != nil {
		if hasAttr {
			return nil, false, invalidf("axes given both as attribute and as input")
		}
		if t.DType != tensor.Int64 || len(t.Shape) > 1 {
			return nil, false, invalidf("input axes is %s%v, want a 1-D INT64 tensor", t.DType, t.Shape)
		}
		raw = viewAs[int64](t.Data)
		hasAttr = t.Len() > 0
	}
	if !hasAttr || len(raw) == 0 {
		if noopEmpty {
			return nil, true, nil
		}
		for i := range rank {
			axes = append(axes, i)
		}
		return axes, false, nil
	}
	for _, a := range raw {
		ax, err := normAxis(a, rank)
		if err != nil {
			return nil, false, err
		}
		if slices.Contains(axes, ax) {
			return nil, false, invalidf("axis %d repeated in %v", a, raw)
		}
		axes = append(axes, ax)
	}
	slices.Sort(axes)
	return axes, false, nil
}

// compileReduce compiles ReduceMean, ReduceSum, ReduceMax, ReduceMin,
// ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum and
// ReduceLogSumExp with keepdims and noop_with_empty_axes, on FP32, FP64
// and the integer types. Values are accumulated in float64 and rounded
// once. A reduction over no elements gives the operation's identity
// (0 for sums, 1 for products, -Inf and +Inf for Max and Min, NaN for
// Mean).
func compileReduce(c *opCtx) (kernel, error) {
	x := c.input(0)
	keep, err := c.n.attrs.Bool("keepdims", true)
	if err != nil {
		return nil, err
	}
	noopEmpty, err := c.n.attrs.Bool("noop_with_empty_axes", false)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	axes, noop, err := reduceAxes(c, r, noopEmpty)
	if err != nil {
		return nil, err
	}
	if noop {
		c.setOut(0, x.dtype, clone(x.shape))
		return aliasKernel{}, nil
	}
	var out []int64
	red := make([]bool, r)
	for _, a := range axes {
		red[a] = true
	}
	for d, n := range x.shape {
		switch {
		case !red[d]:
			out = append(out, n)
		case keep:
			out = append(out, 1)
		}
	}
	c.setOut(0, x.dtype, out)
	// Merge adjacent dims of the same kind (kept or reduced).
	var dims []int
	var kinds []bool
	for d, n := range x.shape {
		if n == 1 {
			continue
		}
		if k := len(dims) - 1; k >= 0 && kinds[k] == red[d] {
			dims[k] *= int(n)
			continue
		}
		dims, kinds = append(dims, int(n)), append(kinds, red[d])
	}
	if prod(x.shape) == 0 {
		// Nothing to read: every output is final(init) over count elements.
		count := 1
		for _, a := range axes {
			count *= int(x.shape[a])
		}
		dims, kinds = []int{prod(out), count}, []bool{false, true}
	}
	rp := newReducePlan(dims, kinds, prod(out))
	op := c.n.op
	switch x.dtype {
	case tensor.FP32:
		return reduceKernel[float32](rp, op), nil
	case tensor.FP64:
		return reduceKernel[float64](rp, op), nil
	case tensor.Int32:
		return reduceKernel[int32](rp, op), nil
	case tensor.Int64:
		return reduceKernel[int64](rp, op), nil
	case tensor.Int8:
		return reduceKernel[int8](rp, op), nil
	case tensor.Uint8:
		return reduceKernel[uint8](rp, op), nil
	case tensor.Uint32:
		return reduceKernel[uint32](rp, op), nil
	case tensor.Uint64:
		return reduceKernel[uint64](rp, op), nil
	}
	return nil, unsupportedf("datatype %s", x.dtype)
}

// reducePlan walks a reduction: for each output element (in order) the
// input offsets of the elements it reduces. The common shapes, where the
// reduced dims form one block after merging (outer × n × inner), use a
// strided loop; others enumerate offsets with counters.
type reducePlan struct {
	outer, n, inner int   // the one-block form; n = -1 when not applicable
	keptDims        []int // general form: kept dims and their input strides
	keptStr         []int
	redDims         []int // reduced dims and their input strides
	redStr          []int
	count           int // elements per output
	outLen          int
}

func newReducePlan(dims []int, kinds []bool, outLen int) *reducePlan {
	rp := &reducePlan{n: -1, count: 1, outLen: outLen}
	str := make([]int, len(dims))
	s := 1
	for i := len(dims) - 1; i >= 0; i-- {
		str[i] = s
		s *= dims[i]
	}
	nRed := 0
	for i, d := range dims {
		if kinds[i] {
			nRed++
			rp.redDims, rp.redStr = append(rp.redDims, d), append(rp.redStr, str[i])
			rp.count *= d
		} else {
			rp.keptDims, rp.keptStr = append(rp.keptDims, d), append(rp.keptStr, str[i])
		}
	}
	switch {
	case nRed == 0:
		rp.outer, rp.n, rp.inner = outLen, 1, 1
		if len(dims) == 1 && dims[0] == 0 {
			rp.outer = 0
		}
	case nRed == 1:
		rp.outer, rp.inner, rp.n = 1, 1, rp.count
		at := slices.Index(kinds, true)
		for i, d := range dims {
			if i < at {
				rp.outer *= d
			} else if i > at {
				rp.inner *= d
			}
		}
	}
	return rp
}

// offsets calls f with each output index and the offset of its first
// reduced element (general form).
func (rp *reducePlan) each(f func(o, base int)) {
	var idx [maxRank]int
	for o := range rp.outLen {
		base := 0
		for k := range rp.keptDims {
			base += idx[k] * rp.keptStr[k]
		}
		f(o, base)
		for k := len(rp.keptDims) - 1; k >= 0; k-- {
			if idx[k]++; idx[k] < rp.keptDims[k] {
				break
			}
			idx[k] = 0
		}
	}
}

type reducer struct {
	init  float64
	step  func(acc, v float64) float64
	final func(acc float64, n int) float64
}

func reducerFor(op string) reducer {
	id := func(acc float64, _ int) float64 { return acc }
	add := func(acc, v float64) float64 { return acc + v }
	switch op {
	case "ReduceSum":
		return reducer{0, add, id}
	case "ReduceMean":
		return reducer{0, add, func(acc float64, n int) float64 { return acc / float64(n) }}
	case "ReduceMax":
		return reducer{math.Inf(-1), func(acc, v float64) float64 {
			if v > acc || v != v {
				return v
			}
			return acc
		}, id}
	case "ReduceMin":
		return reducer{math.Inf(1), func(acc, v float64) float64 {
			if v < acc || v != v {
				return v
			}
			return acc
		}, id}
	case "ReduceProd":
		return reducer{1, func(acc, v float64) float64 { return acc * v }, id}
	case "ReduceL1":
		return reducer{0, func(acc, v float64) float64 { return acc + math.Abs(v) }, id}
	case "ReduceL2":
		return reducer{0, func(acc, v float64) float64 { return acc + v*v }, func(acc float64, _ int) float64 { return math.Sqrt(acc) }}
	case "ReduceSumSquare":
		return reducer{0, func(acc, v float64) float64 { return acc + v*v }, id}
	case "ReduceLogSum":
		return reducer{0, add, func(acc float64, _ int) float64 { return math.Log(acc) }}
	case "ReduceLogSumExp":
		return reducer{0, func(acc, v float64) float64 { return acc + math.Exp(v) }, func(acc float64, _ int) float64 { return math.Log(acc) }}
	}
	panic("BUG: reducerFor(" + op + ")")
}

// toElem converts a float64 result to T; integer results of Max/Min of
// an empty set saturate instead of overflowing.
func toElem[T number](v float64) T {
	var z T
	switch any(z).(type) {
	case float32, float64:
		return T(v)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return T(v)
}

func reduceKernel[T number](rp *reducePlan, op string) kernel {
	rd := reducerFor(op)
	isSum := op == "ReduceSum" || op == "ReduceMean"
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		x, y := viewAs[T](in[0].Data), viewAs[T](out[0].Data)
		if rp.n >= 0 {
			o := 0
			for a := range rp.outer {
				for i := range rp.inner {
					base := a*rp.n*rp.inner + i
					var acc float64
					if isSum && rp.inner == 1 {
						acc = sumFloat(x[base : base+rp.n])
					} else {
						acc = rd.init
						for j := range rp.n {
							acc = rd.step(acc, float64(x[base+j*rp.inner]))
						}
					}
					y[o] = toElem[T](rd.final(acc, rp.n))
					o++
				}
			}
			return nil
		}
		rp.each(func(o, base int) {
			acc := rd.init
			var idx [maxRank]int
			off := base
			for range rp.count {
				acc = rd.step(acc, float64(x[off]))
				for k := len(rp.redDims) - 1; k >= 0; k-- {
					off += rp.redStr[k]
					if idx[k]++; idx[k] < rp.redDims[k] {
						break
					}
					off -= rp.redStr[k] * rp.redDims[k]
					idx[k] = 0
				}
			}
			y[o] = toElem[T](rd.final(acc, rp.count))
		})
		return nil
	})
}

// sumFloat adds contiguous values in float64.
func sumFloat[T number](v []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += float64(v[i])
		s1 += float64(v[i+1])
		s2 += float64(v[i+2])
		s3 += float64(v[i+3])
	}
	for ; i < len(v); i++ {
		s0 += float64(v[i])
	}
	return (s0 + s1) + (s2 + s3)
}
