package batcher

import (
	"context"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// costBackend takes a + b·rows of CPU per batch (a busy loop), like a
// model with a fixed per-call cost that batching amortises.
type costBackend struct {
	meta backends.Metadata
	a, b time.Duration
}

func (c *costBackend) Metadata() *backends.Metadata { return &c.meta }
func (c *costBackend) Close() error                 { return nil }
func (c *costBackend) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	rows := in[0].BatchSize()
	for end := time.Now().Add(c.a + time.Duration(rows)*c.b); time.Now().Before(end); {
	}
	return []*tensor.Tensor{tensor.New("y", tensor.FP32, in[0].Shape)}, nil
}

// BenchmarkSubmitUnderLoad: 64 goroutines submit one-row requests to a
// backend costing 20µs + 1µs per row, one batch at a time: ns/op is the
// time per request (wall clock, all goroutines), rows/batch the mean size
// of the last 64 batches (the cost model's window). It measures the batching machinery where
// batching pays: queueing, the scheduler, hand-offs, merge and split.
func BenchmarkSubmitUnderLoad(b *testing.B) {
	be := &costBackend{a: 20 * time.Microsecond, b: time.Microsecond, meta: backends.Metadata{
		Inputs:      []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}},
		Outputs:     []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 4}}},
		Concurrency: 1,
	}}
	bt := New(be, Config{Enabled: true, MaxBatchSize: 32, MaxQueueDelay: time.Millisecond}, nil, nil)
	defer bt.Close(context.Background())
	var batches, rows int64
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		x := tensor.New("x", tensor.FP32, []int64{1, 4})
		for pb.Next() {
			if _, err := bt.Submit(Request{Inputs: []*tensor.Tensor{x}, Deadline: time.Now().Add(5 * time.Second)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	bt.mu.Lock()
	for i := 0; i < bt.cost.len; i++ {
		batches++
		rows += int64(bt.cost.n[i])
	}
	bt.mu.Unlock()
	if batches > 0 {
		b.ReportMetric(float64(rows)/float64(batches), "rows/batch")
	}
}
