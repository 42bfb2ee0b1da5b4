package cpu

// This file is the FP32 matrix-multiply kernel layer. Operators call only
// sgemm; faster architecture-specific kernels can replace the bodies here
// without touching the graph code.

// Cache blocking of sgemmNN: a kc×nc panel of B (256×512 floats = 512 KiB
// at most) is reused by every row of A before moving on.
const (
	gemmKC = 256
	gemmNC = 512
)

// sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n
// and C is m×n. lda, ldb and ldc are the row strides (elements) of A, B
// and C as stored. When beta is 0, C is written without being read, so it
// may hold garbage (NaNs included).
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
	if k == 0 || alpha == 0 {
		return
	}
	switch {
	case !transA && !transB:
		sgemmNN(m, n, k, alpha, a, lda, b, ldb, c, ldc)
	case !transA && transB:
		sgemmNT(m, n, k, alpha, a, lda, b, ldb, c, ldc)
	default:
		sgemmTx(transB, m, n, k, alpha, a, lda, b, ldb, c, ldc)
	}
}

// sgemmNN accumulates alpha·A·B into C in i-k-j order: the innermost loop
// runs along a row of B and a row of C (both contiguous), four rows of C
// at a time so that each loaded element of B feeds four products. It
// serves B computed at run time; constant B is packed for sgemmNT.
func sgemmNN(m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for j0 := 0; j0 < n; j0 += gemmNC {
		jn := min(gemmNC, n-j0)
		for p0 := 0; p0 < k; p0 += gemmKC {
			pk := min(gemmKC, k-p0)
			i := 0
			for ; i+4 <= m; i += 4 {
				c0 := c[i*ldc+j0 : i*ldc+j0+jn]
				c1 := c[(i+1)*ldc+j0 : (i+1)*ldc+j0+jn]
				c2 := c[(i+2)*ldc+j0 : (i+2)*ldc+j0+jn]
				c3 := c[(i+3)*ldc+j0 : (i+3)*ldc+j0+jn]
				for p := p0; p < p0+pk; p++ {
					a0 := alpha * a[i*lda+p]
					a1 := alpha * a[(i+1)*lda+p]
					a2 := alpha * a[(i+2)*lda+p]
					a3 := alpha * a[(i+3)*lda+p]
					brow := b[p*ldb+j0 : p*ldb+j0+jn]
					c0, c1, c2, c3 := c0[:len(brow)], c1[:len(brow)], c2[:len(brow)], c3[:len(brow)]
					for j, bv := range brow {
						c0[j] += a0 * bv
						c1[j] += a1 * bv
						c2[j] += a2 * bv
						c3[j] += a3 * bv
					}
				}
			}
			for ; i < m; i++ {
				ci := c[i*ldc+j0 : i*ldc+j0+jn]
				for p := p0; p < p0+pk; p++ {
					av := alpha * a[i*lda+p]
					brow := b[p*ldb+j0 : p*ldb+j0+jn]
					ci := ci[:len(brow)]
					for j, bv := range brow {
						ci[j] += av * bv
					}
				}
			}
		}
	}
}

// Cache blocking of sgemmNT: a block of ntNC rows of B (as stored,
// n×k) by ntKC columns (at most 64×512 floats = 128 KiB) is reused by
// every row of A before moving on.
const (
	ntNC = 64
	ntKC = 512
)

// sgemmNT accumulates alpha·A·Bᵀ into C as dot products of rows of A with
// rows of B, both contiguous. The micro-kernel computes a 2×2 tile of C
// in four scalar accumulators: wider tiles (2×4, 4×2) measured slower
// because the Go compiler spills their products to the stack (see
// BenchmarkSgemm). Constant weights are stored in this layout by packB.
func sgemmNT(m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for j0 := 0; j0 < n; j0 += ntNC {
		jn := min(j0+ntNC, n)
		for p0 := 0; p0 < k; p0 += ntKC {
			pk := min(ntKC, k-p0)
			i := 0
			for ; i+2 <= m; i += 2 {
				a0 := a[i*lda+p0 : i*lda+p0+pk]
				a1 := a[(i+1)*lda+p0 : (i+1)*lda+p0+pk]
				c0 := c[i*ldc : i*ldc+n]
				c1 := c[(i+1)*ldc : (i+1)*ldc+n]
				j := j0
				for ; j+2 <= jn; j += 2 {
					dot2x2(a0, a1, b[j*ldb+p0:], b[(j+1)*ldb+p0:], alpha, c0[j:j+2], c1[j:j+2])
				}
				if j < jn {
					brow := b[j*ldb+p0 : j*ldb+p0+pk]
					c0[j] += alpha * dot(a0, brow)
					c1[j] += alpha * dot(a1, brow)
				}
			}
			if i < m {
				a0 := a[i*lda+p0 : i*lda+p0+pk]
				c0 := c[i*ldc : i*ldc+n]
				j := j0
				for ; j+4 <= jn; j += 4 {
					dot1x4(a0, b[j*ldb+p0:], b[(j+1)*ldb+p0:], b[(j+2)*ldb+p0:], b[(j+3)*ldb+p0:], alpha, c0[j:j+4])
				}
				for ; j < jn; j++ {
					c0[j] += alpha * dot(a0, b[j*ldb+p0:j*ldb+p0+pk])
				}
			}
		}
	}
}

// dot2x2 adds alpha times the dot products of a0 and a1 with b0 and b1 to
// c0[0:2] and c1[0:2]. The b rows are at least len(a0) long.
func dot2x2(a0, a1, b0, b1 []float32, alpha float32, c0, c1 []float32) {
	a1 = a1[:len(a0)]
	b0, b1 = b0[:len(a0)], b1[:len(a0)]
	var s00, s01, s10, s11 float32
	for p, x0 := range a0 {
		x1 := a1[p]
		v0, v1 := b0[p], b1[p]
		s00 += x0 * v0
		s01 += x0 * v1
		s10 += x1 * v0
		s11 += x1 * v1
	}
	c0, c1 = c0[:2], c1[:2]
	c0[0] += alpha * s00
	c0[1] += alpha * s01
	c1[0] += alpha * s10
	c1[1] += alpha * s11
}

// dot1x4 adds alpha times the dot products of a0 with b0..b3 to c0[0:4].
func dot1x4(a0, b0, b1, b2, b3 []float32, alpha float32, c0 []float32) {
	b0, b1, b2, b3 = b0[:len(a0)], b1[:len(a0)], b2[:len(a0)], b3[:len(a0)]
	var s0, s1, s2, s3 float32
	for p, x := range a0 {
		s0 += x * b0[p]
		s1 += x * b1[p]
		s2 += x * b2[p]
		s3 += x * b3[p]
	}
	c0 = c0[:4]
	c0[0] += alpha * s0
	c0[1] += alpha * s1
	c0[2] += alpha * s2
	c0[3] += alpha * s3
}

// dot returns the dot product of a and b[:len(a)].
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for p, x := range a {
		s += x * b[p]
	}
	return s
}

// packB returns the k×n matrix op(B) stored as its transpose (n rows of k),
// the layout sgemmNT streams; b is k×n (transB false) or n×k (transB true)
// with row stride ldb. Operators pack constant weights once at load.
func packB(transB bool, k, n int, b []float32, ldb int) []float32 {
	out := make([]float32, n*k)
	for j := range n {
		row := out[j*k : j*k+k]
		for p := range row {
			if transB {
				row[p] = b[j*ldb+p]
			} else {
				row[p] = b[p*ldb+j]
			}
		}
	}
	return out
}

// sgemmTx accumulates alpha·Aᵀ·op(B) into C. Transposed A is rare in
// inference graphs; this is the plain loop.
func sgemmTx(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for i := range m {
		crow := c[i*ldc : i*ldc+n]
		for p := range k {
			av := alpha * a[p*lda+i]
			if !transB {
				brow := b[p*ldb : p*ldb+n]
				for j, bv := range brow {
					crow[j] += av * bv
				}
				continue
			}
			for j := range crow {
				crow[j] += av * b[j*ldb+p]
			}
		}
	}
}
