package cpu

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
	"go.uber.org/goleak"
)

// TestSplitInfer runs digits-shaped MLPs with splitting forced (SplitRows
// 1) and disabled, from concurrent callers, on every kernel set: the
// outputs must be bit-identical.
func TestSplitInfer(t *testing.T) {
	model := syntheticDigits()
	for _, ks := range sgemm.Available() {
		t.Run(ks.Name(), func(t *testing.T) {
			split, err := LoadBytes(model, Options{Kernels: ks.Name(), SplitRows: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer split.Close()
			plain, err := LoadBytes(model, Options{Kernels: ks.Name(), SplitRows: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			ctx := context.Background()
			r := newRand()
			var wg sync.WaitGroup
			for _, m := range []int64{1, 12, 13, 64, 65, 255, 256, 257} {
				x := []*tensor.Tensor{randTensor(r, tensor.FP32, m, 64)}
				want, err := plain.Infer(ctx, x)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					wg.Go(func() {
						got, err := split.Infer(ctx, x)
						if err != nil {
							t.Error(err)
							return
						}
						for i := range want {
							if string(got[i].Data) != string(want[i].Data) {
								t.Errorf("batch %d: output %s differs from the unsplit path", m, want[i].Name)
							}
						}
					})
				}
			}
			wg.Wait()
			// Every helper token comes back once the helpers have seen
			// their (possibly late) tasks.
			for deadline := time.Now().Add(5 * time.Second); split.split.Busy() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d tokens not given back", split.split.Busy())
				}
			}
		})
	}
}

// TestSplitClose checks that Close stops the helper goroutines.
func TestSplitClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	be, err := LoadBytes(syntheticDigits(), Options{SplitRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOMAXPROCS(0) > 1 && be.split == nil {
		t.Fatal("no helpers with SplitRows 1")
	}
	if _, err := be.Infer(context.Background(), []*tensor.Tensor{randTensor(newRand(), tensor.FP32, 100, 64)}); err != nil {
		t.Fatal(err)
	}
	be.Close()
	be.Close()
	if _, err := be.Infer(context.Background(), []*tensor.Tensor{randTensor(newRand(), tensor.FP32, 100, 64)}); err == nil {
		t.Fatal("Infer after Close succeeded")
	}
}
