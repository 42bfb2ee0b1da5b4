package cpu

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/tensor"
	"go.uber.org/goleak"
)

// TestSplitBoundaries checks that every chunk boundary of a split product
// is a boundary of the unsplit strip sequence (stripRows), for every mr
// of the kernel sets: each row is then computed by the same kernel body,
// hence bit-identical results.
func TestSplitBoundaries(t *testing.T) {
	for _, mr := range []int{2, 4, 6, 12, 16} {
		for m := 1; m <= 400; m++ {
			strips := map[int]bool{}
			for i0 := 0; i0 < m; i0 += stripRows(m-i0, mr) {
				strips[i0] = true
			}
			units := splitUnits(m, mr)
			for u := 1; u < units; u++ {
				if !strips[u*mr] {
					t.Fatalf("mr=%d m=%d: unit boundary %d is not a strip boundary", mr, m, u*mr)
				}
			}
			if units < 1 || (units-1)*mr >= m {
				t.Fatalf("mr=%d m=%d: %d units", mr, m, units)
			}
		}
	}
}

// TestSplitGemmExact runs products with packed B through a started
// splitter (splitting from one row) and checks that C is bit-identical
// to the unsplit driver's, on every kernel set, with and without bias,
// ReLU, accumulation and K blocks.
func TestSplitGemmExact(t *testing.T) {
	sp := newSplitter(1, 2)
	if sp == nil {
		t.Skip("GOMAXPROCS is 1: no splitting")
	}
	sp.start()
	defer sp.stop(true)
	r := newRand()
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.Float64()*2 - 1)
		}
		return s
	}
	for _, ks := range kernelSets() {
		for i, kn := range [][2]int{{64, 256}, {300, 100}, {1030, 33}} {
			k, n := kn[0], kn[1]
			pb := ks.packB(make([]float32, ks.packedLen(k, n)), i%2 == 1, k, n, fill(k*n), map[bool]int{false: n, true: k}[i%2 == 1], 0.5)
			pb.bias = ks.packBias(fill(n), n, 1)
			for _, m := range []int{1, 12, 13, 64, 65, 255, 256, 257} {
				for _, flags := range []int{0, flagBias | flagRelu, flagAcc | flagBias} {
					t.Run(fmt.Sprintf("%s/M=%d/K=%d/N=%d/flags=%d", ks.name, m, k, n, flags), func(t *testing.T) {
						lda, ldc := k+3, n+1
						a, c0 := fill(m*lda), fill(m*ldc)
						want := append([]float32(nil), c0...)
						ks.gemm(m, a, lda, &pb, want, ldc, flags)
						for rep := range 5 {
							got := append([]float32(nil), c0...)
							sp.gemm(ks, m, a, lda, &pb, got, ldc, flags)
							for x := range got {
								if math.Float32bits(got[x]) != math.Float32bits(want[x]) {
									t.Fatalf("rep %d: C[%d][%d] = %v, unsplit %v", rep, x/ldc, x%ldc, got[x], want[x])
								}
							}
						}
					})
				}
			}
		}
	}
	checkTokens(t, sp)
}

// TestSplitInfer runs digits-shaped MLPs with splitting forced (SplitRows
// 1) and disabled, from concurrent callers, on every kernel set: the
// outputs must be bit-identical.
func TestSplitInfer(t *testing.T) {
	model := syntheticDigits()
	for _, ks := range kernelSets() {
		t.Run(ks.name, func(t *testing.T) {
			split, err := LoadBytes(model, Options{Kernels: ks.name, SplitRows: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer split.Close()
			plain, err := LoadBytes(model, Options{Kernels: ks.name, SplitRows: -1})
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
			checkTokens(t, split.split)
		})
	}
}

// checkTokens checks that every helper token comes back once the
// helpers have seen their (possibly late) tasks.
func checkTokens(t *testing.T, sp *splitter) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sp.busy.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens not given back", sp.busy.Load())
		}
		time.Sleep(time.Millisecond)
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
