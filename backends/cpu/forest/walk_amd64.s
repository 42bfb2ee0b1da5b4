//go:build amd64 && !purego

#include "textflag.h"

// func walk16AVX512(nodes *node, x *float32, pos *int32, xoff *int32, depth int)
//
// Per level and lane: gather the node's feature, threshold, first child
// and flag word (kind | nan<<8 | step<<16), gather x[xoff+feature],
// c = !(v < thr) (1 for NaN too), NaN lanes take the node's nan bit, c is
// masked by step (0 on leaves), pos = first + c.
TEXT ·walk16AVX512(SB), NOSPLIT, $0-40
	MOVQ nodes+0(FP), AX
	MOVQ x+8(FP), BX
	MOVQ pos+16(FP), CX
	MOVQ xoff+24(FP), DX
	MOVQ depth+32(FP), SI
	VMOVDQU32 (CX), Z0
	VMOVDQU32 (DX), Z1
	MOVL $1, DI
	VPBROADCASTD DI, Z2
	TESTQ SI, SI
	JLE done

loop:
	VPADDD Z0, Z0, Z3
	KXNORW K0, K0, K1
	VPGATHERDD 4(AX)(Z3*8), K1, Z4
	KXNORW K0, K0, K2
	VPGATHERDD (AX)(Z3*8), K2, Z5
	KXNORW K0, K0, K3
	VPGATHERDD 8(AX)(Z3*8), K3, Z6
	KXNORW K0, K0, K4
	VPGATHERDD 12(AX)(Z3*8), K4, Z7
	VPADDD Z1, Z4, Z4
	KXNORW K0, K0, K1
	VGATHERDPS (BX)(Z4*4), K1, Z8
	VCMPPS $0x15, Z5, Z8, K2
	VCMPPS $3, Z8, Z8, K3
	VMOVDQA32.Z Z2, K2, Z9
	VPSRLD $8, Z7, Z10
	VPANDD Z2, Z10, Z10
	VMOVDQA32 Z10, K3, Z9
	VPSRLD $16, Z7, Z11
	VPANDD Z2, Z11, Z11
	VPANDD Z11, Z9, Z9
	VPADDD Z9, Z6, Z0
	DECQ SI
	JNZ loop

done:
	VMOVDQU32 Z0, (CX)
	VZEROUPPER
	RET
