package drift

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// wideModel has digits-mlp's width: 64 input and 21 output columns, all
// profiled with 10 bins.
func wideModel(b *testing.B, slots int) (*Handle, []*tensor.Tensor, []*tensor.Tensor) {
	m := &backends.ModelVersion{Name: "wide", Version: "1", Meta: &backends.Metadata{
		Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 64}}},
		Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 21}}},
	}}
	rng := rand.New(rand.NewPCG(1, 1))
	p := &Profile{Version: 1}
	for _, t := range []struct {
		name string
		n    int
		out  *[]Feature
	}{{"x", 64, &p.Features}, {"y", 21, &p.Outputs}} {
		for j := range t.n {
			c := Column{Name: fmt.Sprintf("%s%d", t.name, j), Tensor: t.name, Column: j}
			for range 1000 {
				c.Values = append(c.Values, rng.NormFloat64())
			}
			f, err := BuildFeature(c, 10, 20)
			if err != nil {
				b.Fatal(err)
			}
			*t.out = append(*t.out, f)
		}
	}
	h, err := New(Config{SampleRate: 0.1, Slots: slots}, p, m, metrics.NewSet(), false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	x := make([]float32, 64)
	y := make([]float32, 21)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range y {
		y[i] = float32(rng.NormFloat64())
	}
	return h, []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 64}, x)}, []*tensor.Tensor{tensor.FromFloat32s("y", []int64{1, 21}, y)}
}

// BenchmarkDrift measures the drift work of one request of a model as
// wide as digits-mlp (85 profiled columns): "sampling" is what every
// request pays (the random draw at 10 %), "sample" what a sampled request
// pays on its own goroutine (copying into a slot), "count" what the
// aggregator pays per sample (binning it into the window). The CPU per
// request at 10 % is sampling + (sample + count) / 10.
func BenchmarkDrift(b *testing.B) {
	h, in, out := wideModel(b, 0)
	b.Run("sampling", func(b *testing.B) {
		n := 0
		for b.Loop() {
			if h.Sampling() {
				n++
			}
		}
		_ = n
	})
	b.Run("sample", func(b *testing.B) {
		h, in, out := wideModel(b, 8) // freeing the slots costs little
		h.mu.Lock()                   // the aggregator stays out; the test frees the slot
		defer h.mu.Unlock()
		b.ReportAllocs()
		for b.Loop() {
			h.Sample(in, out, nil)
			for i := range h.slots {
				h.slots[i].state.Store(slotFree)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		// A scan of the ring per wake-up, with an eighth of it ready.
		h.mu.Lock()
		defer h.mu.Unlock()
		b.ReportAllocs()
		batch := len(h.slots) / 8
		for b.Loop() {
			b.StopTimer()
			for range batch {
				h.Sample(in, out, nil)
			}
			b.StartTimer()
			h.drain()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/sample")
	})
}
