package cpu

import (
	"fmt"
	"math"
	"testing"
)

// TestSgemm compares sgemm with a float64 triple loop for every
// transposition, padded leading dimensions, several alpha/beta and sizes
// that cross the cache blocks and the 4-wide unrolling.
func TestSgemm(t *testing.T) {
	r := newRand()
	sizes := [][3]int{{1, 1, 1}, {3, 5, 2}, {4, 4, 4}, {7, 9, 13}, {5, 600, 300}, {9, 3, 520}, {6, 70, 1030}}
	for _, s := range sizes {
		m, n, k := s[0], s[1], s[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}} {
					t.Run(fmt.Sprintf("%dx%dx%d/tA=%v/tB=%v/alpha=%v/beta=%v", m, n, k, tA, tB, ab[0], ab[1]), func(t *testing.T) {
						ar, ac := m, k
						if tA {
							ar, ac = k, m
						}
						br, bc := k, n
						if tB {
							br, bc = n, k
						}
						lda, ldb, ldc := ac+2, bc+1, n+3
						a, b, c := make([]float32, ar*lda), make([]float32, br*ldb), make([]float32, m*ldc)
						for i := range a {
							a[i] = float32(r.Float64()*2 - 1)
						}
						for i := range b {
							b[i] = float32(r.Float64()*2 - 1)
						}
						for i := range c {
							c[i] = float32(r.Float64()*2 - 1)
						}
						if ab[1] == 0 { // beta 0 must not read C, NaN included
							for i := range c {
								c[i] = float32(math.NaN())
							}
						}
						want := make([]float64, m*n)
						for i := range m {
							for j := range n {
								s := 0.0
								for p := range k {
									ai, bi := i*lda+p, p*ldb+j
									if tA {
										ai = p*lda + i
									}
									if tB {
										bi = j*ldb + p
									}
									av, bv := a[ai], b[bi]
									s += float64(av) * float64(bv)
								}
								want[i*n+j] = float64(ab[0]) * s
								if ab[1] != 0 {
									want[i*n+j] += float64(ab[1]) * float64(c[i*ldc+j])
								}
							}
						}
						sgemm(tA, tB, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
						tol := 1e-5 * math.Sqrt(float64(k))
						for i := range m {
							for j := range n {
								if d := math.Abs(float64(c[i*ldc+j]) - want[i*n+j]); d > tol*max(1, math.Abs(want[i*n+j])) || math.IsNaN(d) {
									t.Fatalf("C[%d,%d] = %v, want %v", i, j, c[i*ldc+j], want[i*n+j])
								}
							}
							for j := n; j < ldc; j++ { // padding untouched
								if ab[1] != 0 && math.IsNaN(float64(c[i*ldc+j])) {
									t.Fatalf("padding C[%d,%d] written", i, j)
								}
							}
						}
					})
				}
			}
		}
	}
}
