package batcher_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/tensor"
)

// doubler is a backend whose model doubles its FP32 input, row by row.
type doubler struct{ meta backends.Metadata }

func (d *doubler) Metadata() *backends.Metadata { return &d.meta }
func (d *doubler) Close() error                 { return nil }

func (d *doubler) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	y := tensor.New("y", tensor.FP32, in[0].Shape)
	for i, v := range in[0].Float32s() {
		y.Float32s()[i] = 2 * v
	}
	return []*tensor.Tensor{y}, nil
}

// A batcher in front of a backend: clients submit concurrently, each gets
// its own rows back whichever batches the batcher formed, and Close runs
// what is queued before it stops.
func Example() {
	b := &doubler{meta: backends.Metadata{
		Inputs:       []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}}},
		Outputs:      []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 2}}},
		MaxBatchSize: 8,
		Concurrency:  1,
	}}
	bt := batcher.New(b, batcher.Config{Enabled: true, MaxQueueDelay: time.Millisecond}, nil, nil)

	answers := make([]string, 4)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := tensor.FromFloat32s("x", []int64{1, 2}, []float32{float32(i), 10})
			out, err := bt.Submit(batcher.Request{Inputs: []*tensor.Tensor{x}, Deadline: time.Now().Add(time.Second)})
			if err != nil {
				answers[i] = err.Error()
				return
			}
			answers[i] = fmt.Sprint(out[0].Shape, out[0].Float32s())
		}()
	}
	wg.Wait()
	for i, a := range answers {
		fmt.Printf("client %d: %s\n", i, a)
	}

	if err := bt.Close(context.Background()); err != nil {
		fmt.Println("close:", err)
	}
	_, err := bt.Submit(batcher.Request{Inputs: []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 2}, []float32{1, 2})}, Deadline: time.Now().Add(time.Second)})
	fmt.Println("after Close:", err)
	// Output:
	// client 0: [1 2] [0 20]
	// client 1: [1 2] [2 20]
	// client 2: [1 2] [4 20]
	// client 3: [1 2] [6 20]
	// after Close: batcher: closed
}
