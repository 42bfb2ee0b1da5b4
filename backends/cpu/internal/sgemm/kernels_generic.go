package sgemm

// genericKernels is the portable path: plain Go over 8-column panels,
// computed in 2×4 register tiles (eight scalar accumulators: wider tiles
// make the Go compiler spill them to the stack).
var genericKernels = Kernels{name: "generic", mr: 4, nr: 8, strip: stripGeneric}

// stripGeneric implements stripFunc for genericKernels.
func stripGeneric(a []float32, lda int, b []float32, bstride int, btail []float32,
	c []float32, ldc int, bias []float32, k, rows, n, flags int) {
	const nr = 8
	for j0 := 0; j0 < n; j0 += nr {
		cols := min(nr, n-j0)
		panel, w := btail, nr/2
		if cols > nr/2 {
			panel, w = b[j0/nr*bstride:], nr
		}
		for h := 0; h < cols; h += 4 {
			q := min(4, cols-h)
			var bq []float32
			if bias != nil {
				bq = bias[j0+h : j0+h+4]
			}
			i := 0
			for ; i+2 <= rows; i += 2 {
				s0, s1 := dot2x4(a[i*lda:i*lda+k], a[(i+1)*lda:(i+1)*lda+k], panel[h:], w)
				storeQuad(c[i*ldc+j0+h:], s0, q, bq, flags)
				storeQuad(c[(i+1)*ldc+j0+h:], s1, q, bq, flags)
			}
			if i < rows {
				s0 := dot1x4(a[i*lda:i*lda+k], panel[h:], w)
				storeQuad(c[i*ldc+j0+h:], s0, q, bq, flags)
			}
		}
	}
}

// dot2x4 returns the products of rows a0 and a1 (k long) with the four
// columns of b starting at b[0], row stride w.
func dot2x4(a0, a1, b []float32, w int) (r0, r1 [4]float32) {
	a1 = a1[:len(a0)]
	var s00, s01, s02, s03, s10, s11, s12, s13 float32
	for p, x0 := range a0 {
		x1 := a1[p]
		bp := b[p*w : p*w+4 : p*w+4]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		s00 += x0 * b0
		s01 += x0 * b1
		s02 += x0 * b2
		s03 += x0 * b3
		s10 += x1 * b0
		s11 += x1 * b1
		s12 += x1 * b2
		s13 += x1 * b3
	}
	return [4]float32{s00, s01, s02, s03}, [4]float32{s10, s11, s12, s13}
}

// dot1x4 is dot2x4 for one row.
func dot1x4(a0, b []float32, w int) [4]float32 {
	var s0, s1, s2, s3 float32
	for p, x := range a0 {
		bp := b[p*w : p*w+4 : p*w+4]
		s0 += x * bp[0]
		s1 += x * bp[1]
		s2 += x * bp[2]
		s3 += x * bp[3]
	}
	return [4]float32{s0, s1, s2, s3}
}

// storeQuad writes the first q of s to c with the epilogue flags.
func storeQuad(c []float32, s [4]float32, q int, bias []float32, flags int) {
	c = c[:q]
	for j := range c {
		v := s[j]
		if flags&Accumulate != 0 {
			v += c[j]
		}
		if flags&AddBias != 0 {
			v += bias[j]
		}
		if flags&ReLU != 0 {
			v = max(v, 0)
		}
		c[j] = v
	}
}
