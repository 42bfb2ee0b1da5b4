package proxy

import (
	"context"
	"testing"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkOfferShadow is what a shadow adds to a request's path after
// its answer: the draw, the pooled copy and the send into the queue
// (copy), or the draw and the drop of a full queue (full). The copies are
// taken back from the queue outside the timer's reach only in copy.
func BenchmarkOfferShadow(b *testing.B) {
	s, _, _ := testServerWith(b, patientConfig())
	stuck := fakemodel.Models["double"]()
	release := make(chan struct{})
	run := stuck.Run
	stuck.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		<-release
		return run(ctx, in)
	}
	b.Cleanup(func() { close(release) })
	must(b, s.Update(withVersion2(b, stuck, func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 1024}
	})))
	sn := s.snap.Load()
	ran, err := sn.get("double", "1")
	must(b, err)
	in := []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 4}, []float32{1, 2, 3, 4})}
	out := []*tensor.Tensor{tensor.FromFloat32s("y", []int64{1, 4}, []float32{2, 4, 6, 8}), tensor.FromInt64s("cls", []int64{1}, []int64{3})}
	q := sn.shadows["double"].sh.q
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			s.offerShadow(sn, ran, in, out)
			if i%512 == 511 {
				b.StopTimer()
				for len(q) > 0 {
					(<-q).release()
				}
				b.StartTimer()
			}
		}
	})
	for len(q) < cap(q) {
		q <- copyJob(sn.shadows["double"].target, ran.Meta.Outputs, in, out)
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.offerShadow(sn, ran, in, out)
		}
	})
}

// BenchmarkShadowRun is the shadow worker's part of a copy: four one-row
// copies queued together, merged, run on the shadow version's batcher and
// compared with the primary's outputs. The shadow backend writes into
// outputs it reuses, so that what is counted is the worker's and the
// batcher's, not a backend's (the CPU engine allocates two blocks per
// Infer for its outputs).
func BenchmarkShadowRun(b *testing.B) {
	r, run := shadowWorker(b, 4)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	if got := r.sh.rows.Get(); got == 0 || r.sh.agreeing.Get() != got {
		b.Fatalf("%d rows compared, %d agreeing; want all of them", got, r.sh.agreeing.Get())
	}
}

// shadowWorker serves double with version 2 as its shadow (reusingDouble,
// share 1) and stops the shadow's worker, so that the caller is it: run
// takes n one-row copies of a request and runs them as one shadow batch.
func shadowWorker(tb testing.TB, n int) (*shadowRoute, func()) {
	s, _, _ := testServerWith(tb, patientConfig())
	must(tb, s.Update(withVersion2(tb, reusingDouble(), func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 1024}
	})))
	sn := s.snap.Load()
	ran, err := sn.get("double", "1")
	must(tb, err)
	r := sn.shadows["double"]
	r.sh.stop()
	in := []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 4}, []float32{1, 2, 3, 4})}
	out := []*tensor.Tensor{tensor.FromFloat32s("y", []int64{1, 4}, []float32{2, 4, 6, 8}), tensor.FromInt64s("cls", []int64{1}, []int64{3})}
	batch := make([]*shadowJob, n)
	return r, func() {
		for i := range batch {
			batch[i] = copyJob(r.target, ran.Meta.Outputs, in, out)
		}
		s.shadowBatch(r.sh, batch)
	}
}

// reusingDouble is fakemodel's double, writing into outputs it reuses
// from one call to the next (the caller reads them before its next call).
func reusingDouble() *fakemodel.Backend {
	d := fakemodel.Models["double"]()
	var outs [8][]*tensor.Tensor // by rows - 1
	d.Run = func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		rows := in[0].BatchSize()
		o := outs[rows-1]
		if o == nil {
			o = []*tensor.Tensor{tensor.New("y", tensor.FP32, []int64{int64(rows), 4}), tensor.New("cls", tensor.Int64, []int64{int64(rows)})}
			outs[rows-1] = o
		}
		x, ys, cs := in[0].Float32s(), o[0].Float32s(), o[1].Int64s()
		for r := range rows {
			best := 0
			for j := range 4 {
				ys[r*4+j] = 2 * x[r*4+j]
				if x[r*4+j] > x[r*4+best] {
					best = j
				}
			}
			cs[r] = int64(best)
		}
		return o, nil
	}
	return d
}
