package cpu

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// resnet18Conv3x3 are the 3×3 convolutions of ResNet-18 at a 224×224
// input, batch 1: input channels, output channels, input size, stride,
// and how many the network has.
var resnet18Conv3x3 = []struct{ c, m, size, stride, count int }{
	{64, 64, 56, 1, 4},
	{64, 128, 56, 2, 1}, {128, 128, 28, 1, 3},
	{128, 256, 28, 2, 1}, {256, 256, 14, 1, 3},
	{256, 512, 14, 2, 1}, {512, 512, 7, 1, 3},
}

// BenchmarkConvEfficiency reports the 3×3 convolutions of ResNet-18
// (bias and ReLU fused, as after BatchNorm folding) as a share of the
// core's FMA peak (%peak), on one worker with the auto-chosen kernels:
// each convolution (one Infer of Conv → Relu → GlobalAveragePool, the
// pool's pass over the output counted against the convolution) timed
// alternately with the peak probe, the median of the per-pair ratios, as
// BenchmarkSgemmEfficiency does. /all is the whole set weighted by how
// often each shape occurs: the network's 3×3 FLOPs over their summed
// medians.
func BenchmarkConvEfficiency(b *testing.B) {
	ks, err := sgemm.Lookup("")
	if err != nil {
		b.Fatal(err)
	}
	if ks.FMAPeak(1) == 0 {
		b.Skipf("kernel set %s has no FMA peak probe", ks.Name())
	}
	type layer struct {
		be    *Backend
		x     *tensor.Tensor
		flops float64
		count int
	}
	var layers []layer
	for _, l := range resnet18Conv3x3 {
		r := newRand()
		w := randTensor(r, tensor.FP32, int64(l.m), int64(l.c), 3, 3)
		bias := randTensor(r, tensor.FP32, int64(l.m))
		model := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 1, l.c, l.size, l.size).Output("y").
			Init("w", w).Init("b", bias).
			Node("conv", "Conv", []string{"x", "w", "b"}, []string{"c"}, onnxtest.AttrInts("kernel_shape", 3, 3),
				onnxtest.AttrInts("pads", 1, 1, 1, 1), onnxtest.AttrInts("strides", int64(l.stride), int64(l.stride))).
			Node("relu", "Relu", []string{"c"}, []string{"r"}).
			Node("pool", "GlobalAveragePool", []string{"r"}, []string{"y"}).Bytes()
		be, err := LoadBytes(model, Options{Concurrency: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close()
		out := l.size / l.stride
		layers = append(layers, layer{be, randTensor(r, tensor.FP32, 1, int64(l.c), int64(l.size), int64(l.size)),
			float64(2 * l.m * l.c * 9 * out * out), l.count})
	}
	ctx := context.Background()
	// measure returns the median share of the peak and the median
	// seconds of one call of layer l over rounds alternations.
	measure := func(l layer, rounds int) (ratio, secs float64) {
		// The probe does as many FLOPs as the convolution, so that both
		// are equally exposed to the other processes of a shared machine.
		peakIters := max(1<<12, int(l.flops)/ks.FMAPeak(1))
		var ratios, times []float64
		in := []*tensor.Tensor{l.x}
		for range rounds {
			t0 := time.Now()
			flops := ks.FMAPeak(peakIters)
			t1 := time.Now()
			if _, err := l.be.Infer(ctx, in); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			peak := float64(flops) / t1.Sub(t0).Seconds()
			ratios = append(ratios, l.flops/t2.Sub(t1).Seconds()/peak)
			times = append(times, t2.Sub(t1).Seconds()*peak) // in peak-seconds: load-independent
		}
		slices.Sort(ratios)
		slices.Sort(times)
		return ratios[len(ratios)/2], times[len(times)/2]
	}
	for _, l := range layers {
		l.be.Infer(ctx, []*tensor.Tensor{l.x}) // compile the plan
	}
	for i, l := range layers {
		s := resnet18Conv3x3[i]
		b.Run(fmt.Sprintf("c=%d/m=%d/size=%d/stride=%d", s.c, s.m, s.size, s.stride), func(b *testing.B) {
			var ratio float64
			for b.Loop() {
				ratio, _ = measure(l, 15)
			}
			b.ReportMetric(100*ratio, "%peak")
		})
	}
	b.Run("all", func(b *testing.B) {
		var share float64
		for b.Loop() {
			var flops, work float64 // work: peak-FLOPs spent
			for _, l := range layers {
				_, t := measure(l, 15)
				flops += l.flops * float64(l.count)
				work += t * float64(l.count)
			}
			share = flops / work
		}
		b.ReportMetric(100*share, "%peak")
	})
}
