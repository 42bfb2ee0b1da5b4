package cpu

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// refSlice slices x by enumerating, per dim, the indices numpy's
// x[start:end:step] visits.
func refSlice(x ref, starts, ends, axes, steps []int64) ref {
	r := len(x.shape)
	picks := make([][]int, r)
	for d := range r {
		for i := range int(x.shape[d]) {
			picks[d] = append(picks[d], i)
		}
	}
	for i, a := range axes {
		if a < 0 {
			a += int64(r)
		}
		dim, st := x.shape[a], steps[i]
		norm := func(v int64) int64 {
			if v < 0 {
				v += dim
			}
			if st > 0 {
				return min(max(v, 0), dim)
			}
			return min(max(v, -1), dim-1)
		}
		picks[a] = nil
		for k := norm(starts[i]); (st > 0 && k < norm(ends[i])) || (st < 0 && k > norm(ends[i])); k += st {
			picks[a] = append(picks[a], int(k))
			if (st > 0) != (k+st > k) {
				break // k+st overflows: past the end either way
			}
		}
	}
	shape := make([]int64, r)
	for d := range r {
		shape[d] = int64(len(picks[d]))
	}
	out := newRef(shape...)
	for i := range out.data {
		idx := unravel(i, shape)
		flat := 0
		for d := range r {
			flat = flat*int(x.shape[d]) + picks[d][idx[d]]
		}
		out.data[i] = x.data[flat]
	}
	return out
}

func TestSlice(t *testing.T) {
	const big, small = math.MaxInt64, math.MinInt64
	tests := []struct {
		name                       string
		shape                      []int64
		starts, ends, axes, steps  []int64
		noAxes, noSteps, int32Args bool
	}{
		{name: "basic", shape: sh(4, 5), starts: sh(1, 0), ends: sh(3, 4), axes: sh(0, 1), steps: sh(1, 1)},
		{name: "default axes", shape: sh(4, 5), starts: sh(1, 1), ends: sh(3, 5), axes: sh(0, 1), steps: sh(1, 1), noAxes: true, noSteps: true},
		{name: "negative axes and bounds", shape: sh(3, 4, 5), starts: sh(-3), ends: sh(-1), axes: sh(-1), steps: sh(1)},
		{name: "steps", shape: sh(6, 7), starts: sh(0, 1), ends: sh(6, 7), axes: sh(0, 1), steps: sh(2, 3)},
		{name: "negative step", shape: sh(4, 5), starts: sh(-1), ends: sh(small), axes: sh(1), steps: sh(-1)},
		{name: "negative step 2 partial", shape: sh(4, 9), starts: sh(7, 3), ends: sh(1, 0), axes: sh(1, 0), steps: sh(-2, -1)},
		{name: "clamp big end", shape: sh(3, 4), starts: sh(1), ends: sh(big), axes: sh(1), steps: sh(1)},
		{name: "clamp start past end", shape: sh(3, 4), starts: sh(10), ends: sh(20), axes: sh(0), steps: sh(1)},
		{name: "empty", shape: sh(3, 4), starts: sh(2), ends: sh(1), axes: sh(1), steps: sh(1)},
		{name: "huge step", shape: sh(3, 4), starts: sh(1), ends: sh(big), axes: sh(1), steps: sh(big)},
		{name: "huge negative step", shape: sh(3, 4), starts: sh(big), ends: sh(small), axes: sh(1), steps: sh(small)},
		{name: "int32 args", shape: sh(2, 3, 4), starts: sh(0, 1), ends: sh(2, 3), axes: sh(2, 0), steps: sh(1, 1), int32Args: true},
		{name: "rank 1", shape: sh(10), starts: sh(-8), ends: sh(-2), axes: sh(0), steps: sh(3)},
	}
	r := newRand()
	for _, tc := range tests {
		x := randTensor(r, tensor.FP32, tc.shape...)
		want := refSlice(toRef(x), tc.starts, tc.ends, tc.axes, tc.steps)
		vec := func(v []int64) *tensor.Tensor {
			if !tc.int32Args {
				return i64(sh(int64(len(v))), v...)
			}
			t32 := tensor.New("", tensor.Int32, sh(int64(len(v))))
			for i, e := range v {
				t32.SetFloat64(i, float64(e))
			}
			return t32
		}
		t.Run("opset13/"+tc.name, func(t *testing.T) {
			args := []arg{in("x", x), cst("starts", vec(tc.starts)), cst("ends", vec(tc.ends)), cst("axes", vec(tc.axes)), cst("steps", vec(tc.steps))}
			if tc.noSteps {
				args = args[:4]
			}
			if tc.noAxes {
				args[3] = arg{}
			}
			outs := runModel(t, oneNode(13, "Slice", args, 1), x)
			expectClose(t, outs[0], want)
		})
		if !tc.noSteps && !allOnes(tc.steps) || tc.int32Args {
			continue
		}
		t.Run("opset1/"+tc.name, func(t *testing.T) {
			attrs := [][]byte{onnxtest.AttrInts("starts", tc.starts...), onnxtest.AttrInts("ends", tc.ends...)}
			if !tc.noAxes {
				attrs = append(attrs, onnxtest.AttrInts("axes", tc.axes...))
			}
			outs := runModel(t, oneNode(7, "Slice", []arg{in("x", x)}, 1, attrs...), x)
			expectClose(t, outs[0], want)
		})
	}
	t.Run("int64 data", func(t *testing.T) {
		x := i64(sh(2, 3), 1, 2, 3, 4, 5, 6)
		args := []arg{in("x", x), cst("s", i64(sh(1), -1)), cst("e", i64(sh(1), small)), cst("a", i64(sh(1), 1)), cst("st", i64(sh(1), -2))}
		outs := runModel(t, oneNode(13, "Slice", args, 1), x)
		expectClose(t, outs[0], ref{shape: sh(2, 2), data: []float64{3, 1, 6, 4}})
	})
	errs := []struct {
		name string
		args []arg
		err  error
	}{
		{"zero step", []arg{in("x", f32(sh(3), 1, 2, 3)), cst("s", i64(sh(1), 0)), cst("e", i64(sh(1), 3)), cst("a", i64(sh(1), 0)), cst("st", i64(sh(1), 0))}, ErrInvalidModel},
		{"runtime starts", []arg{in("x", f32(sh(3), 1, 2, 3)), in("s", i64(sh(1), 0)), cst("e", i64(sh(1), 3))}, ErrUnsupported},
		{"repeated axis", []arg{in("x", f32(sh(3), 1, 2, 3)), cst("s", i64(sh(2), 0, 0)), cst("e", i64(sh(2), 3, 3)), cst("a", i64(sh(2), 0, 0))}, ErrInvalidModel},
	}
	for _, tc := range errs {
		t.Run("error/"+tc.name, func(t *testing.T) {
			_, err := LoadBytes(oneNode(13, "Slice", tc.args, 1), Options{Concurrency: 1})
			if !errors.Is(err, tc.err) {
				t.Fatalf("LoadBytes = %v; want %v", err, tc.err)
			}
		})
	}
}

func allOnes(v []int64) bool {
	for _, e := range v {
		if e != 1 {
			return false
		}
	}
	return true
}

func TestPow(t *testing.T) {
	r := newRand()
	positive := func(x *tensor.Tensor) *tensor.Tensor { // real powers need a positive base
		for i := range x.Len() {
			x.SetFloat64(i, math.Abs(x.Float64At(i))+0.1)
		}
		return x
	}
	tests := []struct {
		name  string
		opset int64
		x, y  *tensor.Tensor
	}{
		{"same shape", 13, positive(randTensor(r, tensor.FP32, 3, 4)), randTensor(r, tensor.FP32, 3, 4)},
		{"scalar exponent", 7, randTensor(r, tensor.FP32, 2, 5), f32(sh(), 2)},
		{"sqrt exponent", 13, positive(randTensor(r, tensor.FP32, 2, 5)), f32(sh(1), 0.5)},
		{"broadcast row", 13, positive(randTensor(r, tensor.FP32, 2, 3, 4)), randTensor(r, tensor.FP32, 4)},
		{"broadcast both", 13, positive(randTensor(r, tensor.FP32, 3, 1)), randTensor(r, tensor.FP32, 1, 4)},
		{"int64 exponent", 15, randTensor(r, tensor.FP32, 2, 3), randTensor(r, tensor.Int64, 2, 3)},
		{"int32 exponent", 12, randTensor(r, tensor.FP32, 6), i32s(sh(6), 0, 1, 2, 3, -1, -2)},
		{"fp64", 13, positive(randTensor(r, tensor.FP64, 4)), randTensor(r, tensor.FP64, 4)},
		{"int64 base", 13, i64(sh(4), 2, -3, 5, 0), i64(sh(4), 10, 3, 2, 0)},
	}
	for _, tc := range tests {
		for _, konst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/const=%v", tc.name, konst), func(t *testing.T) {
				args := []arg{in("x", tc.x), {name: "y", t: tc.y, konst: konst}}
				outs := runModel(t, oneNode(tc.opset, "Pow", args, 1), graphInputs(args)...)
				if outs[0].DType != tc.x.DType {
					t.Fatalf("output is %s, want %s", outs[0].DType, tc.x.DType)
				}
				expectClose(t, outs[0], refBinary(toRef(tc.x), toRef(tc.y), math.Pow))
			})
		}
	}
	t.Run("error/mixed types before opset 12", func(t *testing.T) {
		x, y := f32(sh(2), 1, 2), i64(sh(2), 1, 2)
		_, err := LoadBytes(oneNode(11, "Pow", []arg{in("x", x), in("y", y)}, 1), Options{Concurrency: 1})
		if !errors.Is(err, ErrInvalidModel) {
			t.Fatalf("LoadBytes = %v; want ErrInvalidModel", err)
		}
	})
}

func i32s(shape []int64, v ...int32) *tensor.Tensor {
	t := tensor.New("", tensor.Int32, shape)
	for i, e := range v {
		t.SetFloat64(i, float64(e))
	}
	return t
}

// TestErf checks Erf to within 1e-7 absolute (FP32 rounding of a value
// in [-1, 1] is at most 6e-8) against float64, across the range where
// approximations such as Abramowitz-Stegun 7.1.26 (error 1.5e-7) fail.
func TestErf(t *testing.T) {
	var xs []float32
	for x := -6.0; x <= 6; x += 1.0 / 64 {
		xs = append(xs, float32(x))
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-8, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	x := f32(sh(int64(len(xs))), xs...)
	outs := runModel(t, oneNode(13, "Erf", []arg{in("x", x)}, 1), x)
	got := outs[0].Float32s()
	for i, v := range xs {
		want := math.Erf(float64(v))
		if g := float64(got[i]); !(math.Abs(g-want) <= 1e-7) && !(math.IsNaN(g) && math.IsNaN(want)) {
			t.Errorf("Erf(%v) = %v; want %v", v, g, want)
		}
	}
	t.Run("fp64", func(t *testing.T) {
		x := randTensor(newRand(), tensor.FP64, 3, 7)
		outs := runModel(t, oneNode(9, "Erf", []arg{in("x", x)}, 1), x)
		expectClose(t, outs[0], refUnary(toRef(x), math.Erf))
	})
}
