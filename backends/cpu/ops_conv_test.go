package cpu

import (
	"fmt"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// convCase is one convolution of the tests: spatial input size, kernel,
// strides, dilations and pads (begin then end) per spatial dim.
type convCase struct {
	n, c, m, group int
	in, k, s, d    []int64
	pads           []int64
}

// refConv is Conv by its definition, in float64, output size from the
// explicit pads.
func refConv(x, w ref, b *ref, cc convCase) ref {
	r := len(cc.in)
	out := []int64{int64(cc.n), int64(cc.m)}
	for i := range r {
		eff := (cc.k[i]-1)*cc.d[i] + 1
		out = append(out, (cc.in[i]+cc.pads[i]+cc.pads[i+r]-eff)/cc.s[i]+1)
	}
	y := newRef(out...)
	cg, mg := cc.c/cc.group, cc.m/cc.group
	kShape := append([]int64{int64(cg)}, cc.k...)
	for i := range y.data {
		idx := unravel(i, out)
		n, m := idx[0], idx[1]
		g := m / mg
		sum := 0.0
		if b != nil {
			sum = b.data[m]
		}
		for t := range prod(kShape) {
			kidx := unravel(t, kShape)
			ch := g*cg + kidx[0]
			flat, inside := (n*cc.c + ch), true
			for d := range r {
				p := idx[2+d]*int(cc.s[d]) - int(cc.pads[d]) + kidx[1+d]*int(cc.d[d])
				if p < 0 || p >= int(cc.in[d]) {
					inside = false
				}
				flat = flat*int(cc.in[d]) + p
			}
			if inside {
				sum += x.data[flat] * w.data[m*prod(kShape)+t]
			}
		}
		y.data[i] = sum
	}
	return y
}

func TestConv(t *testing.T) {
	cases := []convCase{
		{n: 2, c: 3, m: 4, group: 1, in: sh(5, 6), k: sh(3, 3), s: sh(1, 1), d: sh(1, 1), pads: sh(1, 1, 1, 1)},
		{n: 1, c: 4, m: 6, group: 2, in: sh(7, 5), k: sh(3, 2), s: sh(2, 1), d: sh(1, 2), pads: sh(0, 1, 2, 0)},
		{n: 2, c: 6, m: 6, group: 6, in: sh(6, 6), k: sh(3, 3), s: sh(1, 1), d: sh(1, 1), pads: sh(1, 1, 1, 1)},
		{n: 1, c: 3, m: 6, group: 3, in: sh(6, 7), k: sh(3, 3), s: sh(2, 2), d: sh(2, 1), pads: sh(2, 1, 0, 1)},
		{n: 2, c: 5, m: 70, group: 1, in: sh(9, 9), k: sh(1, 1), s: sh(1, 1), d: sh(1, 1), pads: sh(0, 0, 0, 0)},
		{n: 1, c: 3, m: 5, group: 1, in: sh(20), k: sh(5), s: sh(3), d: sh(2), pads: sh(2, 3)},
		{n: 2, c: 2, m: 4, group: 2, in: sh(4, 5, 3), k: sh(2, 3, 2), s: sh(1, 2, 1), d: sh(2, 1, 1), pads: sh(1, 0, 1, 0, 1, 1)},
		{n: 1, c: 40, m: 33, group: 1, in: sh(30, 25), k: sh(3, 3), s: sh(1, 1), d: sh(1, 1), pads: sh(1, 1, 1, 1)},
	}
	for _, ks := range sgemm.Available() {
		for i, cc := range cases {
			for _, bias := range []bool{false, true} {
				for _, act := range []string{"", "Relu", "Clip"} {
					t.Run(fmt.Sprintf("%s/%d/bias=%v/act=%s", ks.Name(), i, bias, act), func(t *testing.T) {
						r := newRand()
						xs := append(sh(int64(cc.n), int64(cc.c)), cc.in...)
						ws := append(sh(int64(cc.m), int64(cc.c/cc.group)), cc.k...)
						x, w := randTensor(r, tensor.FP32, xs...), randTensor(r, tensor.FP32, ws...)
						m := onnxtest.NewModel(13)
						dims := make([]any, len(xs))
						for i, d := range xs {
							dims[i] = d
						}
						m.Input("x", onnxtest.ElemType(tensor.FP32), dims...).Init("w", w)
						ins := []string{"x", "w"}
						var bref *ref
						if bias {
							b := randTensor(r, tensor.FP32, int64(cc.m))
							m.Init("b", b)
							ins = append(ins, "b")
							br := toRef(b)
							bref = &br
						}
						attrs := [][]byte{onnxtest.AttrInt("group", int64(cc.group)), onnxtest.AttrInts("kernel_shape", cc.k...),
							onnxtest.AttrInts("strides", cc.s...), onnxtest.AttrInts("dilations", cc.d...), onnxtest.AttrInts("pads", cc.pads...)}
						want := refConv(toRef(x), toRef(w), bref, cc)
						switch act {
						case "":
							m.Node("conv", "Conv", ins, []string{"y"}, attrs...)
						case "Relu":
							m.Node("conv", "Conv", ins, []string{"c"}, attrs...).Node("act", "Relu", []string{"c"}, []string{"y"})
							want = refUnary(want, func(v float64) float64 { return max(v, 0) })
						case "Clip":
							m.Init("lo", f32(sh(), 0)).Init("hi", f32(sh(), 6))
							m.Node("conv", "Conv", ins, []string{"c"}, attrs...).Node("act", "Clip", []string{"c", "lo", "hi"}, []string{"y"})
							want = refUnary(want, func(v float64) float64 { return min(max(v, 0), 6) })
						}
						m.Output("y")
						outs := runModelWith(t, Options{Concurrency: 1, Kernels: ks.Name()}, m.Bytes(), x)
						expectCloseTol(t, outs[0], want, 1e-4)
					})
				}
			}
		}
	}
}
