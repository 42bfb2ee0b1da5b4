package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gemmCase is one product checked by TestKernels: C = relu?(alpha·op(A)·op(B)
// + beta·C + bias).
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    float32
	bias, relu     bool
}

func (c gemmCase) String() string {
	return fmt.Sprintf("M=%d/N=%d/K=%d/tA=%v/tB=%v/alpha=%v/beta=%v/bias=%v/relu=%v",
		c.m, c.n, c.k, c.transA, c.transB, c.alpha, c.beta, c.bias, c.relu)
}

// gemmCases returns every shape of the M, N and K tables (crossing the
// tile, panel, tail and cache-block boundaries of every kernel set), each
// with a different combination of transpositions, scales and epilogue, so
// that every combination is met at many shapes.
func gemmCases() []gemmCase {
	ms := []int{1, 2, 3, 7, 8, 9, 13, 64, 65}
	ns := []int{1, 5, 16, 17, 31, 32, 33, 100, 256, 257}
	ks := []int{1, 3, 16, 64, 255, 256, 300}
	var out []gemmCase
	i := 0
	for _, m := range ms {
		for _, n := range ns {
			for _, k := range ks {
				out = append(out, variant(gemmCase{m: m, n: n, k: k}, i))
				i++
			}
		}
	}
	// K split into cache blocks (maxKC), N split into L2 blocks.
	for _, s := range [][3]int{{5, 600, 300}, {9, 3, 1030}, {13, 70, 1030}, {2, 1100, 130}, {14, 33, 513}} {
		for v := range 4 {
			out = append(out, variant(gemmCase{m: s[0], n: s[1], k: s[2]}, v*7+1))
		}
	}
	return out
}

// variant sets the options of c from the bits of i.
func variant(c gemmCase, i int) gemmCase {
	c.transA, c.transB = i&1 != 0, i&2 != 0
	c.bias, c.relu = i&4 != 0, i%3 == 0
	switch i / 8 % 3 {
	case 0:
		c.alpha, c.beta = 1, 0
	case 1:
		c.alpha, c.beta = 1, 1
	default:
		c.alpha, c.beta = -0.5, 2
	}
	return c
}

// gemmData is the operands of a gemmCase, with padded row strides.
type gemmData struct {
	a, b, c, bias []float32
	lda, ldb, ldc int
	want          []float64 // m×n
	tol           float64
}

func newGemmData(r *rand.Rand, tc gemmCase) *gemmData {
	m, n, k := tc.m, tc.n, tc.k
	ar, ac := m, k
	if tc.transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tc.transB {
		br, bc = n, k
	}
	d := &gemmData{lda: ac + 2, ldb: bc + 1, ldc: n + 3}
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.Float64()*2 - 1)
		}
		return s
	}
	d.a, d.b, d.c = fill(ar*d.lda), fill(br*d.ldb), fill(m*d.ldc)
	if tc.beta == 0 { // beta 0 must not read C, NaN included
		for i := range d.c {
			d.c[i] = float32(math.NaN())
		}
	}
	if tc.bias {
		d.bias = fill(n)
	}
	d.want = make([]float64, m*n)
	for i := range m {
		for j := range n {
			s := 0.0
			for p := range k {
				ai, bi := i*d.lda+p, p*d.ldb+j
				if tc.transA {
					ai = p*d.lda + i
				}
				if tc.transB {
					bi = j*d.ldb + p
				}
				s += float64(d.a[ai]) * float64(d.b[bi])
			}
			v := float64(tc.alpha) * s
			if tc.beta != 0 {
				v += float64(tc.beta) * float64(d.c[i*d.ldc+j])
			}
			if tc.bias {
				v += float64(d.bias[j])
			}
			if tc.relu {
				v = max(v, 0)
			}
			d.want[i*n+j] = v
		}
	}
	// Operands are in [-1, 1]: a float32 dot product of length K is off by
	// at most about K·max|a|·max|b|·eps, the C and bias terms by one
	// rounding each.
	eps := math.Pow(2, -23)
	d.tol = eps * (float64(k)*math.Abs(float64(tc.alpha)) + math.Abs(float64(tc.beta)) + 2)
	return d
}

// check compares c (the result, row stride ldc) with d.want and checks
// that the padding of C was not written.
func (d *gemmData) check(t *testing.T, tc gemmCase, c []float32) {
	t.Helper()
	for i := range tc.m {
		for j := range tc.n {
			got, want := float64(c[i*d.ldc+j]), d.want[i*tc.n+j]
			if diff := math.Abs(got - want); diff > d.tol || math.IsNaN(got) {
				t.Fatalf("C[%d,%d] = %v, want %v (diff %.3g, tol %.3g)", i, j, got, want, diff, d.tol)
			}
		}
		for j := tc.n; j < d.ldc; j++ {
			if math.Float32bits(c[i*d.ldc+j]) != math.Float32bits(d.c[i*d.ldc+j]) {
				t.Fatalf("padding C[%d,%d] written", i, j)
			}
		}
	}
}

// TestKernels runs every kernel set this CPU supports against a float64
// reference, through both entry points: sgemm (B packed per call, as for
// a B computed at run time) and gemm on B packed once with the bias
// folded in (the path of Gemm with constant weights).
func TestKernels(t *testing.T) {
	cases := gemmCases()
	r := newRand()
	data := make([]*gemmData, len(cases))
	for i, tc := range cases {
		data[i] = newGemmData(r, tc)
	}
	for _, ks := range Available() {
		t.Run(ks.name, func(t *testing.T) {
			var sc Scratch
			for i, tc := range cases {
				d := data[i]
				if !tc.bias { // sgemm has no bias
					t.Run("sgemm/"+tc.String(), func(t *testing.T) {
						c := append([]float32(nil), d.c...)
						flags := 0
						if tc.relu {
							flags = ReLU
						}
						ks.Sgemm(&sc, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, d.a, d.lda, d.b, d.ldb, tc.beta, c, d.ldc, flags)
						d.check(t, tc, c)
					})
				}
				if tc.transA || tc.beta != 0 && tc.beta != 1 {
					continue // gemm reads A as stored and adds C unscaled
				}
				t.Run("packed/"+tc.String(), func(t *testing.T) {
					c := append([]float32(nil), d.c...)
					pb := ks.Pack(make([]float32, ks.PackedLen(tc.k, tc.n)), tc.transB, tc.k, tc.n, d.b, d.ldb, tc.alpha)
					flags := 0
					if tc.bias {
						pb.Bias = ks.PackBias(d.bias, tc.n, 1)
						flags |= AddBias
					}
					if tc.beta == 1 {
						flags |= Accumulate
					}
					if tc.relu {
						flags |= ReLU
					}
					ks.Gemm(tc.m, d.a, d.lda, &pb, c, d.ldc, flags)
					d.check(t, tc, c)
				})
			}
		})
	}
}

// TestKernelsSpecialValues checks that NaN and Inf propagate through the
// kernels and the ReLU epilogue as they do in plain Go arithmetic (ReLU
// keeps NaN, like max(x, 0)), and that alpha = 0 ignores NaN in A.
func TestKernelsSpecialValues(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, ks := range Available() {
		t.Run(ks.name, func(t *testing.T) {
			var sc Scratch
			const m, n, k = 3, 40, 5
			a := make([]float32, m*k)
			b := make([]float32, k*n)
			for i := range b {
				b[i] = 1
			}
			a[0] = nan    // row 0: NaN
			a[k] = inf    // row 1: +Inf
			a[2*k] = -inf // row 2: -Inf, ReLU → 0
			c := make([]float32, m*n)
			ks.Sgemm(&sc, false, false, m, n, k, 1, a, k, b, n, 0, c, n, ReLU)
			for j := range n {
				if !math.IsNaN(float64(c[j])) || !math.IsInf(float64(c[n+j]), 1) || c[2*n+j] != 0 {
					t.Fatalf("column %d: got %v, %v, %v; want NaN, +Inf, 0", j, c[j], c[n+j], c[2*n+j])
				}
			}
			for i := range c {
				c[i] = 7
			}
			ks.Sgemm(&sc, false, false, m, n, k, 0, a, k, b, n, 1, c, n, 0)
			for i, v := range c {
				if v != 7 {
					t.Fatalf("alpha=0: C[%d] = %v, want 7", i, v)
				}
			}
		})
	}
}

// TestLookup checks the kernel-set names Lookup accepts (cpu's Options.Kernels).
func TestLookup(t *testing.T) {
	f := func(name, want string, ok bool) {
		t.Helper()
		ks, err := Lookup(name)
		if (err == nil) != ok {
			t.Fatalf("Lookup(%q) error = %v, want ok=%v", name, err, ok)
		}
		if ok && want != "" && ks.name != want {
			t.Fatalf("Lookup(%q) = %s, want %s", name, ks.name, want)
		}
	}
	best := Available()[0].name
	f("", best, true)
	f("auto", best, true)
	f("generic", "generic", true)
	f("sse", "", false)
	for _, ks := range Available() {
		f(ks.name, ks.name, true)
	}
}

// newRand returns the tests' deterministic source of operands.
func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// TestAxpy checks Kernels.Axpy on every set against float64 for the
// lengths around the vector widths.
func TestAxpy(t *testing.T) {
	r := newRand()
	for _, ks := range Available() {
		for n := range 70 {
			x, y := make([]float32, n+3), make([]float32, n)
			for i := range x {
				x[i] = float32(r.Float64()*2 - 1)
			}
			for i := range y {
				y[i] = float32(r.Float64()*2 - 1)
			}
			want := make([]float64, n)
			for i := range want {
				want[i] = float64(y[i]) + 0.75*float64(x[i])
			}
			ks.Axpy(y, x, 0.75)
			for i := range y {
				if d := float64(y[i]) - want[i]; d > 1e-6 || d < -1e-6 {
					t.Fatalf("%s n=%d: y[%d] = %v; want %v", ks.Name(), n, i, y[i], want[i])
				}
			}
		}
	}
}

// TestClamp checks Kernels.Clamp on every set, NaN included.
func TestClamp(t *testing.T) {
	nan := float32(math.NaN())
	for _, ks := range Available() {
		for n := range 40 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(i%13) - 6
			}
			if n > 3 {
				v[3] = nan
			}
			want := make([]float32, n)
			for i, x := range v {
				want[i] = min(max(x+0.5, 0), 4)
			}
			ks.Clamp(v, 0.5, 0, 4)
			for i := range v {
				if v[i] != want[i] && !(v[i] != v[i] && want[i] != want[i]) {
					t.Fatalf("%s n=%d: v[%d] = %v; want %v", ks.Name(), n, i, v[i], want[i])
				}
			}
		}
	}
}
