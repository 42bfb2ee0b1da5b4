package sgemm

import (
	"fmt"
	"strings"
	"sync"
)

// This file is the SGEMM driver shared by every kernel set: packing of B
// into panels, cache blocking, and the loop over row strips that calls a
// set's strip kernel (assembly on amd64, plain Go elsewhere).

// Epilogue flags of Gemm, Sgemm and Splitter.Gemm, applied in this order
// as C is stored. The strip kernels take them as is: the generator
// (sgemm_gen.go) mirrors the values.
const (
	Accumulate = 1 << iota // add the product to C instead of overwriting C
	AddBias                // add Packed.Bias (one value per column)
	ReLU                   // store max(0, x); NaN passes through, as with Go's max
)

// stripFunc computes rows (1..mr) rows of C, n columns, from K block
// length k of A (row stride lda) and the packed B panels: b is the first
// full panel at the block's first row, consecutive full panels are
// bstride floats apart, and btail is the narrow tail panel (width nr/2) at
// the block's first row, read when n mod nr is in 1..nr/2. bias is
// indexed by column. flags are Accumulate|AddBias|ReLU.
type stripFunc func(a []float32, lda int, b []float32, bstride int, btail []float32,
	c []float32, ldc int, bias []float32, k, rows, n, flags int)

// Kernels is one kernel set: an implementation of the SGEMM strip kernel
// with the packing of B it needs, and optionally a vectorised softmax.
// The sets are package variables returned by Available and Lookup; they
// are immutable and safe for concurrent use.
type Kernels struct {
	name  string // "avx512", "avx2" or "generic"
	mr    int    // rows per strip
	nr    int    // panel width (columns); tails use nr/2 when they fit
	strip stripFunc
	// softmaxRows, when not nil, sets each row of n floats of y (rows·n
	// floats, rows, n ≥ 1) to the softmax of that row of x, vectorised;
	// SoftmaxRows reports false otherwise.
	softmaxRows func(x, y []float32, rows, n int)
	// axpy, when not nil, is Axpy vectorised.
	axpy func(y, x []float32, a float32)
	// clamp, when not nil, is Clamp vectorised.
	clamp func(v []float32, bias, lo, hi float32)
	// gelu, when not nil, is GeluPrefix vectorised.
	gelu func(d, s []float32) int
}

// GeluPrefix sets d[i] to GELU(s[i]) = s[i]·Φ(s[i]) (the exact, erf
// form; NaN stays NaN, 0 below −10) for a prefix of s, in float32 with
// a fractional error of a few 1e-7, and returns its length: a multiple of
// the vector width, 0 when the set has no vector GELU. The caller computes
// the rest. d must hold len(s) floats.
func (ks *Kernels) GeluPrefix(d, s []float32) int {
	if ks.gelu == nil {
		return 0
	}
	return ks.gelu(d[:len(s)], s)
}

// Clamp sets each v[i] to min(max(v[i]+bias, lo), hi), NaN staying NaN:
// a bias and a Relu or Clip applied after a product (the convolutions'
// epilogue when the GEMM's cannot do it), vectorised in the assembly
// sets.
func (ks *Kernels) Clamp(v []float32, bias, lo, hi float32) {
	if ks.clamp != nil {
		ks.clamp(v, bias, lo, hi)
		return
	}
	clampGo(v, bias, lo, hi)
}

// clampGo is Clamp in Go.
func clampGo(v []float32, bias, lo, hi float32) {
	for i, x := range v {
		v[i] = min(max(x+bias, lo), hi)
	}
}

// Axpy adds a·x[i] to each y[i] (len(x) ≥ len(y)): the inner loop of
// the depthwise convolutions of package cpu, vectorised in the assembly
// sets (the rounding of each element is the same: one fused multiply-add
// there, a multiply and an add in Go, so results may differ in the last
// bit between sets).
func (ks *Kernels) Axpy(y, x []float32, a float32) {
	x = x[:len(y)]
	if ks.axpy != nil {
		ks.axpy(y, x, a)
		return
	}
	axpyGo(y, x, a)
}

// axpyGo is Axpy in Go.
func axpyGo(y, x []float32, a float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}

// Name returns the set's name: "avx512", "avx2" or "generic".
func (ks *Kernels) Name() string { return ks.name }

// SoftmaxRows sets each of rows rows of n floats of y (n ≥ 1; x and y hold
// at least rows·n floats) to the softmax of that row of x and reports
// true, when the set has a vectorised softmax (only "avx512" has). It
// computes x-max in float32, as PyTorch does. Otherwise it reports false
// and leaves y alone.
func (ks *Kernels) SoftmaxRows(x, y []float32, rows, n int) bool {
	if ks.softmaxRows == nil {
		return false
	}
	if rows > 0 {
		ks.softmaxRows(x, y, rows, n)
	}
	return true
}

// Cache blocking: a K block of A's rows (mr×kc floats) stays in L1 while
// the strip walks the panels; a kc×nc block of B (at most 512 KiB) stays
// in L2 while the strips walk it.
const (
	maxKC      = 512
	blockBytes = 512 << 10
)

// Lookup returns the kernel set named name ("" or "auto": the best this
// CPU and build support, Available()[0]), or an error naming the sets
// available.
func Lookup(name string) (*Kernels, error) {
	sets := Available()
	if name == "" || name == "auto" {
		return sets[0], nil
	}
	var names []string
	for _, ks := range sets {
		if ks.name == name {
			return ks, nil
		}
		names = append(names, ks.name)
	}
	return nil, fmt.Errorf("kernels %q not available on this CPU and build (available: auto, %s)", name, strings.Join(names, ", "))
}

// Packed is a k×n matrix op(B)·alpha stored by Kernels.Pack for the
// strip kernels of one set: n/nr full panels, each k rows of nr
// consecutive columns, then one tail panel of k rows of tw columns (tw is
// 0, nr/2 or nr; columns past n are zero). It is read-only once built and
// may be shared by concurrent products.
type Packed struct {
	k, n, nr, tw int
	data         []float32
	// Bias, read when a product has the AddBias flag, holds one value per
	// column padded with zeros to the panels' width: build it with
	// Kernels.PackBias of the same set.
	Bias []float32
}

// tailWidth returns the width of the tail panel for n columns.
func (ks *Kernels) tailWidth(n int) int {
	switch rem := n % ks.nr; {
	case rem == 0:
		return 0
	case rem <= ks.nr/2:
		return ks.nr / 2
	default:
		return ks.nr
	}
}

// paddedWidth returns n rounded up to the panels' width.
func (ks *Kernels) paddedWidth(n int) int { return n/ks.nr*ks.nr + ks.tailWidth(n) }

// PackedLen returns the number of floats Pack stores for a k×n matrix.
func (ks *Kernels) PackedLen(k, n int) int { return k * ks.paddedWidth(n) }

// Pack stores alpha·op(B) into dst (at least PackedLen(k, n) floats),
// where op(B) is k×n: B is k×n (transB false) or n×k (transB true) with
// row stride ldb. The result shares dst and has no Bias. Pack a constant
// B once and multiply by it with Gemm as often as needed.
func (ks *Kernels) Pack(dst []float32, transB bool, k, n int, b []float32, ldb int, alpha float32) Packed {
	nr, tw := ks.nr, ks.tailWidth(n)
	p := Packed{k: k, n: n, nr: nr, tw: tw, data: dst[:ks.PackedLen(k, n)]}
	for j0 := 0; j0 < n; j0 += nr {
		w := nr
		if j0+nr > n {
			w = tw
		}
		panel := p.data[j0*k : j0*k+k*w]
		cols := min(w, n-j0)
		for r := range k {
			row := panel[r*w : r*w+w]
			if transB {
				for j := range cols {
					row[j] = alpha * b[(j0+j)*ldb+r]
				}
			} else {
				src := b[r*ldb+j0 : r*ldb+j0+cols]
				for j, v := range src {
					row[j] = alpha * v
				}
			}
			clear(row[cols:])
		}
	}
	return p
}

// PackFill stores into dst (at least PackedLen(k, n) floats) the k×n
// matrix that fill produces, in Pack's layout: fill(r, j0, row) must
// write row r's columns j0 to j0+len(row)-1 (at most one panel's width).
// The padding columns past n are zeroed. Convolutions use it to write
// their im2col matrix straight into the packed form (one pass over
// memory instead of two).
func (ks *Kernels) PackFill(dst []float32, k, n int, fill func(r, j0 int, row []float32)) Packed {
	nr, tw := ks.nr, ks.tailWidth(n)
	p := Packed{k: k, n: n, nr: nr, tw: tw, data: dst[:ks.PackedLen(k, n)]}
	for j0 := 0; j0 < n; j0 += nr {
		w := nr
		if j0+nr > n {
			w = tw
		}
		panel := p.data[j0*k : j0*k+k*w]
		cols := min(w, n-j0)
		for r := range k {
			row := panel[r*w : r*w+w]
			fill(r, j0, row[:cols])
			clear(row[cols:])
		}
	}
	return p
}

// PanelWidth returns the width of the packed panels (the columns one
// strip kernel call computes per panel): 32 for AVX-512, 16 for AVX2, 8
// for the generic set.
func (ks *Kernels) PanelWidth() int { return ks.nr }

// PackBias returns beta·C as a per-column bias for Packed.Bias, padded to
// the panels' width; C holds n values (one per column) or one
// (broadcast). The result is newly allocated.
func (ks *Kernels) PackBias(cv []float32, n int, beta float32) []float32 {
	out := make([]float32, ks.paddedWidth(n))
	for j := range n {
		if len(cv) == 1 {
			out[j] = beta * cv[0]
		} else {
			out[j] = beta * cv[j]
		}
	}
	return out
}

// Gemm computes C = A·B (flags add C, the bias and ReLU: Accumulate,
// AddBias, ReLU) for the m×k matrix A with row stride lda (which may be
// less than k: rows may overlap, as the implicit-GEMM convolutions of
// package cpu read them; A is only read), B packed by
// this set (pb, k×n) and the m×n matrix C with row stride ldc. Without
// Accumulate, C is written without being read. It checks every length the assembly kernels rely on: a
// violation is a bug and panics before any memory is touched. Loops, from
// the outside: K blocks of at most maxKC (accumulating into C after the
// first; the bias and ReLU go with the last), column blocks of B that fit
// blockBytes, strips of mr rows (see stripRows); each strip call walks its
// column block's panels.
func (ks *Kernels) Gemm(m int, a []float32, lda int, pb *Packed, c []float32, ldc int, flags int) {
	k, n := pb.k, pb.n
	if m == 0 || n == 0 {
		return
	}
	ks.checkGemm(m, a, lda, pb, c, ldc, flags)
	if k == 0 {
		epilogueOnly(m, n, c, ldc, pb.Bias, flags)
		return
	}
	ks.gemmBlocks(m, a, lda, pb, c, ldc, flags)
}

// checkGemm panics, naming the sizes, when the arguments of Gemm violate
// a length the kernels rely on (m, n >= 1).
func (ks *Kernels) checkGemm(m int, a []float32, lda int, pb *Packed, c []float32, ldc int, flags int) {
	k, n := pb.k, pb.n
	if lda < 0 || ldc < n || len(a) < (m-1)*lda+k || len(c) < (m-1)*ldc+n ||
		len(pb.data) < ks.PackedLen(k, n) || pb.nr != ks.nr || flags&AddBias != 0 && len(pb.Bias) < ks.paddedWidth(n) {
		panic(fmt.Sprintf("BUG: gemm %s: m=%d k=%d n=%d lda=%d ldc=%d len(a)=%d len(c)=%d len(b)=%d nr=%d",
			ks.name, m, k, n, lda, ldc, len(a), len(c), len(pb.data), pb.nr))
	}
}

// gemmBlocks is Gemm for checked arguments with k >= 1.
func (ks *Kernels) gemmBlocks(m int, a []float32, lda int, pb *Packed, c []float32, ldc int, flags int) {
	k, n := pb.k, pb.n
	nr, mr := ks.nr, ks.mr
	// Split K evenly into blocks of at most maxKC.
	kc := k
	if k > maxKC {
		nb := (k + maxKC - 1) / maxKC
		kc = (k + nb - 1) / nb
	}
	nc := max(nr, blockBytes/(4*kc)/nr*nr)
	nfull := n / nr
	var bias []float32
	if flags&AddBias != 0 {
		bias = pb.Bias
	}
	for k0 := 0; k0 < k; k0 += kc {
		kb := min(kc, k-k0)
		fl := flags
		if k0 > 0 {
			fl |= Accumulate
		}
		if k0+kb < k {
			fl &^= AddBias | ReLU
		}
		var btail []float32
		if pb.tw > 0 {
			btail = pb.data[nfull*nr*k+k0*pb.tw:]
		}
		for j0 := 0; j0 < n; j0 += nc {
			nb := min(nc, n-j0)
			b := pb.data[j0*k+k0*min(nr, pb.panelWidth(j0)):]
			var bj []float32
			if bias != nil {
				bj = bias[j0:]
			}
			for i0 := 0; i0 < m; {
				rows := stripRows(m-i0, mr)
				ks.strip(a[i0*lda+k0:], lda, b, k*nr, btail, c[i0*ldc+j0:], ldc, bj, kb, rows, nb, fl)
				i0 += rows
			}
		}
	}
}

// panelWidth returns the width of the panel holding column j.
func (p *Packed) panelWidth(j int) int {
	if j >= p.n/p.nr*p.nr {
		return p.tw
	}
	return p.nr
}

// epilogueOnly applies the epilogue of a product with K = 0 (all zeros).
func epilogueOnly(m, n int, c []float32, ldc int, bias []float32, flags int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if flags&Accumulate == 0 {
			clear(row)
		}
		for j := range row {
			v := row[j]
			if flags&AddBias != 0 {
				v += bias[j]
			}
			if flags&ReLU != 0 {
				v = max(v, 0)
			}
			row[j] = v
		}
	}
}

// Scratch is a pool of float32 buffers, used by Sgemm for B packed at
// run time and transposed A, and by callers for their own temporaries.
// The zero value is ready to use; it is safe for concurrent use, and
// steady-state use does not allocate.
type Scratch struct {
	pool sync.Pool // of *[]float32
}

// Get returns a buffer of n floats (contents undefined); the caller owns
// it until it gives it back with Put.
func (s *Scratch) Get(n int) *[]float32 {
	if p, _ := s.pool.Get().(*[]float32); p != nil {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	buf := make([]float32, n)
	return &buf
}

// Put gives back a buffer from Get; the caller must not use it afterwards.
func (s *Scratch) Put(p *[]float32) { s.pool.Put(p) }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n
// and C is m×n. lda, ldb and ldc are the row strides (elements) of A, B
// and C as stored. When beta is 0, C is written without being read, so it
// may hold garbage (NaNs included). flags may add ReLU. B (and A
// when transposed) is packed per call into buffers from sc.
func (ks *Kernels) Sgemm(sc *Scratch, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int, flags int) {
	if m == 0 || n == 0 {
		return
	}
	switch beta {
	case 0:
	case 1:
		flags |= Accumulate
	default:
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		flags |= Accumulate
	}
	if alpha == 0 {
		k = 0 // alpha·A·B is zero, even where A or B holds Inf or NaN
	}
	bufB := sc.Get(ks.PackedLen(k, n))
	defer sc.Put(bufB)
	pb := ks.Pack(*bufB, transB, k, n, b, ldb, alpha)
	if transA {
		bufA := sc.Get(m * k)
		defer sc.Put(bufA)
		at := *bufA
		for p := range k {
			for i, v := range a[p*lda : p*lda+m] {
				at[i*k+p] = v
			}
		}
		a, lda = at, k
	}
	ks.Gemm(m, a, lda, &pb, c, ldc, flags)
}

// stripRows returns the height of the next strip when left rows remain:
// mr, except that a last strip of a row or two (for mr = 12; one for
// mr = 6) is avoided by splitting the last mr+r rows in two halves. A
// one-row strip streams its B panels for a fraction of the work (M=13 on
// AVX-512: 145 GFLOPS as 12+1 rows, 164 as 7+6); splitting 6+2 into 4+4
// on AVX2 measured slower (80 → 72 GFLOPS at M=8), hence the mr/6 bound.
func stripRows(left, mr int) int {
	if left > mr && left <= mr+mr/6 {
		return (left + 1) / 2
	}
	return min(left, mr)
}
