//go:build !purego

#include "textflag.h"

// Constants of softmaxRowAVX512 (broadcast from memory).
DATA sm<>+0(SB)/4, $0xff800000   // -Inf
DATA sm<>+4(SB)/4, $-104.0       // below it, e**x is 0 in float32
DATA sm<>+8(SB)/4, $88.7         // above it, +Inf
DATA sm<>+12(SB)/4, $1.44269504  // log2(e)
DATA sm<>+16(SB)/4, $0.693359375 // ln2, high part (exact in 9 bits)
DATA sm<>+20(SB)/4, $-2.12194440e-4 // ln2 - ln2Hi
DATA sm<>+24(SB)/4, $1.9875691500e-4 // Cephes expf coefficients, r**7 ... r**2
DATA sm<>+28(SB)/4, $1.3981999507e-3
DATA sm<>+32(SB)/4, $8.3334519073e-3
DATA sm<>+36(SB)/4, $4.1665795894e-2
DATA sm<>+40(SB)/4, $1.6666665459e-1
DATA sm<>+44(SB)/4, $5.0000001201e-1
DATA sm<>+48(SB)/4, $1.0
GLOBL sm<>(SB), RODATA|NOPTR, $52

// tail16<>+2·i holds the 16-bit mask of the first i lanes.
DATA tail16<>+0(SB)/2, $0x0000
DATA tail16<>+2(SB)/2, $0x0001
DATA tail16<>+4(SB)/2, $0x0003
DATA tail16<>+6(SB)/2, $0x0007
DATA tail16<>+8(SB)/2, $0x000f
DATA tail16<>+10(SB)/2, $0x001f
DATA tail16<>+12(SB)/2, $0x003f
DATA tail16<>+14(SB)/2, $0x007f
DATA tail16<>+16(SB)/2, $0x00ff
DATA tail16<>+18(SB)/2, $0x01ff
DATA tail16<>+20(SB)/2, $0x03ff
DATA tail16<>+22(SB)/2, $0x07ff
DATA tail16<>+24(SB)/2, $0x0fff
DATA tail16<>+26(SB)/2, $0x1fff
DATA tail16<>+28(SB)/2, $0x3fff
DATA tail16<>+30(SB)/2, $0x7fff
GLOBL tail16<>(SB), RODATA|NOPTR, $32

// EXP sets Z2 = e**Z2 (float32, within 2 ulp; NaN stays NaN), using Z3
// and Z4 and the constants loaded into Z11-Z22. x is clamped to
// [-104, 88.7] (max and min with x as the second source keep NaN),
// x = k·ln2 + r with k = round(x·log2e) and ln2 split in two, e**r =
// 1 + r + r²·P(r) with Cephes expf's degree-5 P in Horner form, then
// VSCALEFPS multiplies by 2**k.
#define EXP \
	VMAXPS Z2, Z11, Z2 \
	VMINPS Z2, Z12, Z2 \
	VMULPS Z13, Z2, Z3 \
	VRNDSCALEPS $0, Z3, Z3 \
	VFNMADD231PS Z14, Z3, Z2 \
	VFNMADD231PS Z15, Z3, Z2 \
	VMOVAPS Z16, Z4 \
	VFMADD213PS Z17, Z2, Z4 \
	VFMADD213PS Z18, Z2, Z4 \
	VFMADD213PS Z19, Z2, Z4 \
	VFMADD213PS Z20, Z2, Z4 \
	VFMADD213PS Z21, Z2, Z4 \
	VFMADD213PS Z22, Z2, Z4 \
	VFMADD213PS Z22, Z2, Z4 \
	VSCALEFPS Z3, Z4, Z2

// func softmaxRowsAVX512(x *float32, y *float32, rows int, n int)
//
// For each of rows ≥ 1 rows of n ≥ 1 floats, y = softmax(x): the maximum
// m, e_i = e**(x_i-m) (stored in y), their sum s in float64, then
// y_i = e_i·float32(1/s). Rows are independent, so the out-of-order core
// overlaps the long dependency chains of consecutive rows.
TEXT ·softmaxRowsAVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ rows+16(FP), R9
	MOVQ n+24(FP), CX
	MOVQ CX, R10
	SHLQ $2, R10 // row bytes
	MOVQ CX, DX
	ANDQ $15, DX
	LEAQ tail16<>(SB), AX
	KMOVW (AX)(DX*2), K1 // lanes of the last, partial vector
	SHRQ $4, CX          // full vectors
	LEAQ sm<>(SB), AX
	VBROADCASTSS 0(AX), Z10
	VBROADCASTSS 4(AX), Z11
	VBROADCASTSS 8(AX), Z12
	VBROADCASTSS 12(AX), Z13
	VBROADCASTSS 16(AX), Z14
	VBROADCASTSS 20(AX), Z15
	VBROADCASTSS 24(AX), Z16
	VBROADCASTSS 28(AX), Z17
	VBROADCASTSS 32(AX), Z18
	VBROADCASTSS 36(AX), Z19
	VBROADCASTSS 40(AX), Z20
	VBROADCASTSS 44(AX), Z21
	VBROADCASTSS 48(AX), Z22

row:
	// Pass 1: Z1 = max over x (a NaN makes the sum, hence every
	// output, NaN).
	VMOVAPS Z10, Z1
	MOVQ SI, AX
	MOVQ CX, BX
	TESTQ BX, BX
	JEQ maxtail
maxloop:
	VMAXPS (AX), Z1, Z1
	ADDQ $64, AX
	DECQ BX
	JNZ maxloop
maxtail:
	VMOVAPS Z10, Z2
	VMOVUPS (AX), K1, Z2
	VMAXPS Z2, Z1, Z1
	VSHUFF32X4 $0x4e, Z1, Z1, Z2
	VMAXPS Z2, Z1, Z1
	VSHUFF32X4 $0xb1, Z1, Z1, Z2
	VMAXPS Z2, Z1, Z1
	VPERMILPS $0x4e, Z1, Z2
	VMAXPS Z2, Z1, Z1
	VPERMILPS $0xb1, Z1, Z2
	VMAXPS Z2, Z1, Z1

	// Pass 2: y = e**(x-m); Z8, Z9 = sums in float64.
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	MOVQ SI, AX
	MOVQ DI, R8
	MOVQ CX, BX
	TESTQ BX, BX
	JEQ exptail
exploop:
	VMOVUPS (AX), Z2
	VSUBPS Z1, Z2, Z2
	EXP
	VMOVUPS Z2, (R8)
	VCVTPS2PD Y2, Z3
	VADDPD Z3, Z8, Z8
	VEXTRACTF64X4 $1, Z2, Y4
	VCVTPS2PD Y4, Z4
	VADDPD Z4, Z9, Z9
	ADDQ $64, AX
	ADDQ $64, R8
	DECQ BX
	JNZ exploop
exptail:
	VMOVUPS.Z (AX), K1, Z2
	VSUBPS Z1, Z2, Z2
	EXP
	VMOVUPS.Z Z2, K1, Z2
	VMOVUPS Z2, K1, (R8)
	VCVTPS2PD Y2, Z3
	VADDPD Z3, Z8, Z8
	VEXTRACTF64X4 $1, Z2, Y4
	VCVTPS2PD Y4, Z4
	VADDPD Z4, Z9, Z9
	VADDPD Z9, Z8, Z8
	VEXTRACTF64X4 $1, Z8, Y9
	VADDPD Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VPERMILPD $1, X8, X9
	VADDSD X9, X8, X8
	VCVTSS2SD X22, X22, X9 // 1.0
	VDIVSD X8, X9, X9      // 1/s
	VCVTSD2SS X9, X9, X9
	VBROADCASTSS X9, Z1

	// Pass 3: y ·= 1/s.
	MOVQ DI, R8
	MOVQ CX, BX
	TESTQ BX, BX
	JEQ scaletail
scaleloop:
	VMULPS (R8), Z1, Z2
	VMOVUPS Z2, (R8)
	ADDQ $64, R8
	DECQ BX
	JNZ scaleloop
scaletail:
	VMULPS.Z (R8), Z1, K1, Z2
	VMOVUPS Z2, K1, (R8)
	ADDQ R10, SI
	ADDQ R10, DI
	DECQ R9
	JNZ row
	VZEROUPPER
	RET
