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
