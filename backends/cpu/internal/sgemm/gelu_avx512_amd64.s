//go:build !purego

#include "textflag.h"

// BCAST loads the float32 with bits b into every lane of z.
#define BCAST(b, z) MOVL $b, AX; VPBROADCASTD AX, z

// func geluAVX512(d *float32, s *float32, n int)
// d[i] = GELU(s[i]) = s[i]·Φ(s[i]) for n a multiple of 16, in float32,
// as cpu's geluRow32 computes it in float64: with z = min(|x|, 10)/√2 and
// t = 1/(1 + z/2), erfc(z) = t·exp(−z² + P(t)) (Numerical Recipes' erfcc,
// fractional error below 1.2e-7), Φ(x) = 1 − erfc(z)/2 for x ≥ 0 and
// erfc(z)/2 below; exp by k = round(u·log2 e), r = u − k·ln 2 (ln 2 in
// two parts), a degree-7 polynomial and VSCALEFPS. NaN stays NaN (VMINPS
// returns its second Intel source, |x|, when either is NaN); below −10,
// where GELU is within 1e-22 of 0, 0 (the clamped argument would give
// x·erfc(7.07)/2 instead, −Inf at −Inf).
//
// Registers: Z0–Z23 constants, Z24 x, Z25 |x| then z, Z26 t, Z27 P then
// u, Z28 k, Z29 r, Z30 exp then h, Z31 Φ then the result.
TEXT ·geluAVX512(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ n+16(FP), CX
	BCAST(0x7fffffff, Z0) // |·| mask
	BCAST(0x41200000, Z1) // 10
	BCAST(0x3f3504f3, Z2) // 1/√2
	BCAST(0x3f800000, Z3) // 1
	BCAST(0x3f000000, Z4) // 1/2
	BCAST(0xbfa1fc4e, Z5) // P(t) = c0 + t·(c1 + t·(... + t·c9))
	BCAST(0x3f8000c7, Z6)
	BCAST(0x3ebf88fb, Z7)
	BCAST(0x3dc636c9, Z8)
	BCAST(0xbe3ec24c, Z9)
	BCAST(0x3e8ec7cc, Z10)
	BCAST(0xbf914e5d, Z11)
	BCAST(0x3fbe87b0, Z12)
	BCAST(0xbf527892, Z13)
	BCAST(0x3e2ef945, Z14) // c9
	BCAST(0x3fb8aa3b, Z15) // log2 e
	BCAST(0x3f318000, Z16) // ln 2, high part
	BCAST(0xb95e8083, Z17) // ln 2, low part
	BCAST(0x3e2aaaab, Z18) // 1/3!
	BCAST(0x3d2aaaab, Z19) // 1/4!
	BCAST(0x3c088889, Z20) // 1/5!
	BCAST(0x3ab60b61, Z21) // 1/6!
	BCAST(0x39500d01, Z22) // 1/7!
	BCAST(0xc1200000, Z23) // −10

loop:
	CMPQ CX, $16
	JLT  done
	VMOVUPS (SI), Z24
	VPANDD  Z0, Z24, Z25
	VCMPPS  $4, Z25, Z24, K1 // x ≠ |x| (NEQ_UQ): negative, or NaN
	VCMPPS  $1, Z23, Z24, K2 // x < −10 (LT_OS)
	VMINPS  Z25, Z1, Z25     // min(10, |x|), NaN from |x|
	VMULPS  Z2, Z25, Z25     // z

	// t = 1/(1 + z/2)
	VMOVAPS     Z25, Z26
	VFMADD213PS Z3, Z4, Z26
	VDIVPS      Z26, Z3, Z26

	// u = −z² + P(t)
	VMOVAPS      Z14, Z27
	VFMADD213PS  Z13, Z26, Z27
	VFMADD213PS  Z12, Z26, Z27
	VFMADD213PS  Z11, Z26, Z27
	VFMADD213PS  Z10, Z26, Z27
	VFMADD213PS  Z9, Z26, Z27
	VFMADD213PS  Z8, Z26, Z27
	VFMADD213PS  Z7, Z26, Z27
	VFMADD213PS  Z6, Z26, Z27
	VFMADD213PS  Z5, Z26, Z27
	VFNMADD231PS Z25, Z25, Z27

	// exp(u) = 2^k·exp(r)
	VMULPS       Z15, Z27, Z28
	VRNDSCALEPS  $0, Z28, Z28
	VMOVAPS      Z27, Z29
	VFNMADD231PS Z16, Z28, Z29
	VFNMADD231PS Z17, Z28, Z29
	VMOVAPS      Z22, Z30
	VFMADD213PS  Z21, Z29, Z30
	VFMADD213PS  Z20, Z29, Z30
	VFMADD213PS  Z19, Z29, Z30
	VFMADD213PS  Z18, Z29, Z30
	VFMADD213PS  Z4, Z29, Z30
	VFMADD213PS  Z3, Z29, Z30
	VFMADD213PS  Z3, Z29, Z30
	VSCALEFPS    Z28, Z30, Z30

	// h = erfc(z)/2 = t·exp(u)/2; Φ = 1 − h, or h where x < 0
	VMULPS  Z26, Z30, Z30
	VMULPS  Z4, Z30, Z30
	VSUBPS  Z30, Z3, Z31
	VMOVAPS Z30, K1, Z31
	VMULPS  Z24, Z31, Z31
	VPXORD  Z31, Z31, K2, Z31 // 0 below −10, as geluRow32
	VMOVUPS Z31, (DI)

	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  loop

done:
	VZEROUPPER
	RET
