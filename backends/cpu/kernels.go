package cpu

import (
	"fmt"
	"strings"
	"sync"
)

// This file is the SGEMM driver shared by every kernel path: packing of B
// into panels, cache blocking, and the loop over row strips that calls a
// path's strip kernel (assembly on amd64, plain Go elsewhere).

// Epilogue flags of a strip kernel, applied in this order when C is
// stored. They are mirrored by the generator (sgemm_gen.go).
const (
	flagAcc  = 1 << iota // add the product to C instead of overwriting C
	flagBias             // add the packed bias (one value per column)
	flagRelu             // store max(0, x)
)

// stripFunc computes rows (1..mr) rows of C, n columns, from K block
// length k of A (row stride lda) and the packed B panels: b is the first
// full panel at the block's first row, consecutive full panels are
// bstride floats apart, and btail is the narrow tail panel (width nr/2) at
// the block's first row, read when n mod nr is in 1..nr/2. bias is
// indexed by column. flags are flagAcc|flagBias|flagRelu.
type stripFunc func(a []float32, lda int, b []float32, bstride int, btail []float32,
	c []float32, ldc int, bias []float32, k, rows, n, flags int)

// kernelSet is one implementation of the SGEMM strip kernel with the
// packing it needs. Sets are immutable.
type kernelSet struct {
	name  string // "avx512", "avx2" or "generic": Options.Kernels and Metadata().Info["kernels"]
	mr    int    // rows per strip
	nr    int    // panel width (columns); tails use nr/2 when they fit
	strip stripFunc
	// softmaxRows, when not nil, sets each row of n floats of y (rows·n
	// floats, rows, n ≥ 1) to the softmax of that row of x, vectorised;
	// Softmax uses plain Go otherwise.
	softmaxRows func(x, y []float32, rows, n int)
}

// Cache blocking: a K block of A's rows (mr×kc floats) stays in L1 while
// the strip walks the panels; a kc×nc block of B (at most 512 KiB) stays
// in L2 while the strips walk it.
const (
	maxKC      = 512
	blockBytes = 512 << 10
)

// kernelsFor returns the kernel set named name ("" or "auto": the best
// this CPU and build support).
func kernelsFor(name string) (*kernelSet, error) {
	sets := kernelSets()
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

// packedB is a constant k×n matrix op(B)·alpha stored for the strip
// kernels: n/nr full panels, each k rows of nr consecutive columns, then
// one tail panel of k rows of tw columns (tw is 0, nr/2 or nr; columns
// past n are zero). bias, when set, holds one value per column padded
// with zeros to the panels' width.
type packedB struct {
	k, n, nr, tw int
	data         []float32
	bias         []float32
}

// tailWidth returns the width of the tail panel for n columns.
func (ks *kernelSet) tailWidth(n int) int {
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
func (ks *kernelSet) paddedWidth(n int) int { return n/ks.nr*ks.nr + ks.tailWidth(n) }

// packedLen returns the number of floats packB stores for a k×n matrix.
func (ks *kernelSet) packedLen(k, n int) int { return k * ks.paddedWidth(n) }

// packB stores alpha·op(B) into dst (at least packedLen(k, n) floats),
// where op(B) is k×n: B is k×n (transB false) or n×k (transB true) with
// row stride ldb. The result shares dst.
func (ks *kernelSet) packB(dst []float32, transB bool, k, n int, b []float32, ldb int, alpha float32) packedB {
	nr, tw := ks.nr, ks.tailWidth(n)
	p := packedB{k: k, n: n, nr: nr, tw: tw, data: dst[:ks.packedLen(k, n)]}
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

// packBias returns beta·C as a per-column bias padded to the panels'
// width; C holds n values (one per column) or one (broadcast).
func (ks *kernelSet) packBias(cv []float32, n int, beta float32) []float32 {
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

// gemm computes C = A·B (flags add C, the bias and ReLU, see flagAcc)
// for the m×k matrix A with row stride lda and the m×n matrix C with row
// stride ldc. It checks every length the assembly kernels rely on: a
// violation is a bug and panics before any memory is touched. Loops, from
// the outside: K blocks of at most maxKC (accumulating into C after the
// first; the bias and ReLU go with the last), column blocks of B that fit
// blockBytes, strips of mr rows (see stripRows); each strip call walks its
// column block's panels.
func (ks *kernelSet) gemm(m int, a []float32, lda int, pb *packedB, c []float32, ldc int, flags int) {
	k, n := pb.k, pb.n
	if m == 0 || n == 0 {
		return
	}
	ks.checkGemm(m, a, lda, pb, c, ldc, flags)
	if k == 0 {
		epilogueOnly(m, n, c, ldc, pb.bias, flags)
		return
	}
	ks.gemmBlocks(m, a, lda, pb, c, ldc, flags)
}

// checkGemm panics, naming the sizes, when the arguments of gemm violate
// a length the kernels rely on (m, n >= 1).
func (ks *kernelSet) checkGemm(m int, a []float32, lda int, pb *packedB, c []float32, ldc int, flags int) {
	k, n := pb.k, pb.n
	if lda < k || ldc < n || len(a) < (m-1)*lda+k || len(c) < (m-1)*ldc+n ||
		len(pb.data) < ks.packedLen(k, n) || pb.nr != ks.nr || flags&flagBias != 0 && len(pb.bias) < ks.paddedWidth(n) {
		panic(fmt.Sprintf("BUG: gemm %s: m=%d k=%d n=%d lda=%d ldc=%d len(a)=%d len(c)=%d len(b)=%d nr=%d",
			ks.name, m, k, n, lda, ldc, len(a), len(c), len(pb.data), pb.nr))
	}
}

// gemmBlocks is gemm for checked arguments with k >= 1.
func (ks *kernelSet) gemmBlocks(m int, a []float32, lda int, pb *packedB, c []float32, ldc int, flags int) {
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
	if flags&flagBias != 0 {
		bias = pb.bias
	}
	for k0 := 0; k0 < k; k0 += kc {
		kb := min(kc, k-k0)
		fl := flags
		if k0 > 0 {
			fl |= flagAcc
		}
		if k0+kb < k {
			fl &^= flagBias | flagRelu
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
func (p *packedB) panelWidth(j int) int {
	if j >= p.n/p.nr*p.nr {
		return p.tw
	}
	return p.nr
}

// epilogueOnly applies the epilogue of a product with K = 0 (all zeros).
func epilogueOnly(m, n int, c []float32, ldc int, bias []float32, flags int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if flags&flagAcc == 0 {
			clear(row)
		}
		for j := range row {
			v := row[j]
			if flags&flagBias != 0 {
				v += bias[j]
			}
			if flags&flagRelu != 0 {
				v = max(v, 0)
			}
			row[j] = v
		}
	}
}

// scratch is a pool of float32 buffers for B packed at run time and
// transposed A. It is safe for concurrent use; steady-state use does not
// allocate.
type scratch struct {
	pool sync.Pool // of *[]float32
}

// get returns a buffer of at least n floats; give it back with put.
func (s *scratch) get(n int) *[]float32 {
	if p, _ := s.pool.Get().(*[]float32); p != nil {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	buf := make([]float32, n)
	return &buf
}

func (s *scratch) put(p *[]float32) { s.pool.Put(p) }

// sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n
// and C is m×n. lda, ldb and ldc are the row strides (elements) of A, B
// and C as stored. When beta is 0, C is written without being read, so it
// may hold garbage (NaNs included). flags may add flagRelu. B (and A
// when transposed) is packed into buffers from sc.
func (ks *kernelSet) sgemm(sc *scratch, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int, flags int) {
	if m == 0 || n == 0 {
		return
	}
	switch beta {
	case 0:
	case 1:
		flags |= flagAcc
	default:
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		flags |= flagAcc
	}
	if alpha == 0 {
		k = 0 // alpha·A·B is zero, even where A or B holds Inf or NaN
	}
	bufB := sc.get(ks.packedLen(k, n))
	defer sc.put(bufB)
	pb := ks.packB(*bufB, transB, k, n, b, ldb, alpha)
	if transA {
		bufA := sc.get(m * k)
		defer sc.put(bufA)
		at := *bufA
		for p := range k {
			for i, v := range a[p*lda : p*lda+m] {
				at[i*k+p] = v
			}
		}
		a, lda = at, k
	}
	ks.gemm(m, a, lda, &pb, c, ldc, flags)
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
