package sgemm

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
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
// Splitter (splitting from one row) and checks that C is bit-identical
// to the unsplit driver's, on every kernel set, with and without bias,
// ReLU, accumulation and K blocks.
func TestSplitGemmExact(t *testing.T) {
	sp := NewSplitter(1, 2)
	if sp == nil {
		t.Skip("GOMAXPROCS is 1: no splitting")
	}
	sp.Start()
	defer sp.Stop(true)
	r := newRand()
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.Float64()*2 - 1)
		}
		return s
	}
	for _, ks := range Available() {
		// The last shape's B (4.2 MB, a tail panel) is split by columns.
		for i, kn := range [][2]int{{64, 256}, {300, 100}, {1030, 33}, {1024, 1030}} {
			k, n := kn[0], kn[1]
			pb := ks.Pack(make([]float32, ks.PackedLen(k, n)), i%2 == 1, k, n, fill(k*n), map[bool]int{false: n, true: k}[i%2 == 1], 0.5)
			pb.Bias = ks.PackBias(fill(n), n, 1)
			for _, m := range []int{1, 12, 13, 64, 65, 255, 256, 257} {
				if k*n > 1<<20 && m > 65 {
					continue // the column split's cases end at 64/65 rows; keeps -race short
				}
				for _, flags := range []int{0, AddBias | ReLU, Accumulate | AddBias} {
					t.Run(fmt.Sprintf("%s/M=%d/K=%d/N=%d/flags=%d", ks.name, m, k, n, flags), func(t *testing.T) {
						lda, ldc := k+3, n+1
						a, c0 := fill(m*lda), fill(m*ldc)
						want := append([]float32(nil), c0...)
						ks.Gemm(m, a, lda, &pb, want, ldc, flags)
						for rep := range 5 {
							got := append([]float32(nil), c0...)
							sp.Gemm(ks, m, a, lda, &pb, got, ldc, flags)
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

// checkTokens checks that every helper token comes back once the
// helpers have seen their (possibly late) tasks.
func checkTokens(t *testing.T, sp *Splitter) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sp.busy.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens not given back", sp.busy.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSplitConcurrent runs split products from concurrent callers, each
// bracketed by Enter and Leave as cpu's Infer does, on every kernel set:
// every result is bit-identical to the unsplit driver's, and every helper
// token comes back (Busy returns to 0).
func TestSplitConcurrent(t *testing.T) {
	sp := NewSplitter(1, 4)
	if sp == nil {
		t.Skip("GOMAXPROCS is 1: no splitting")
	}
	sp.Start()
	defer sp.Stop(true)
	r := newRand()
	const m, k, n = 100, 64, 40
	a, w := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(r.Float64()*2 - 1)
	}
	for i := range w {
		w[i] = float32(r.Float64()*2 - 1)
	}
	for _, ks := range Available() {
		pb := ks.Pack(make([]float32, ks.PackedLen(k, n)), false, k, n, w, n, 1)
		want := make([]float32, m*n)
		ks.Gemm(m, a, k, &pb, want, n, 0)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				got := make([]float32, m*n)
				for range 50 {
					sp.Enter()
					sp.Gemm(ks, m, a, k, &pb, got, n, 0)
					sp.Leave()
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Errorf("%s: C[%d] = %v, unsplit %v", ks.Name(), i, got[i], want[i])
							return
						}
					}
				}
			})
		}
		wg.Wait()
	}
	deadline := time.Now().Add(5 * time.Second)
	for sp.Busy() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Busy() = %d after every caller left; want 0", sp.Busy())
		}
		time.Sleep(time.Millisecond)
	}
}
