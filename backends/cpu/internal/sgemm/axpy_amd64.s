//go:build !purego

#include "textflag.h"

// func axpyAVX2(y *float32, x *float32, a float32, n int)
// y[i] += a·x[i] for i < n, n a multiple of 8: 32 floats per iteration in
// four independent FMAs (VFMADD231PS: Y = a·x + Y), then 8 at a time.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS a+16(FP), Y0
	MOVQ         n+24(FP), CX

loop32:
	CMPQ        CX, $32
	JLT         loop8
	VMOVUPS     (DI), Y1
	VMOVUPS     32(DI), Y2
	VMOVUPS     64(DI), Y3
	VMOVUPS     96(DI), Y4
	VFMADD231PS (SI), Y0, Y1
	VFMADD231PS 32(SI), Y0, Y2
	VFMADD231PS 64(SI), Y0, Y3
	VFMADD231PS 96(SI), Y0, Y4
	VMOVUPS     Y1, (DI)
	VMOVUPS     Y2, 32(DI)
	VMOVUPS     Y3, 64(DI)
	VMOVUPS     Y4, 96(DI)
	ADDQ        $128, DI
	ADDQ        $128, SI
	SUBQ        $32, CX
	JMP         loop32

loop8:
	CMPQ        CX, $8
	JLT         done
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, DI
	ADDQ        $32, SI
	SUBQ        $8, CX
	JMP         loop8

done:
	VZEROUPPER
	RET

// func clampAVX2(v *float32, bias, lo, hi float32, n int)
// v[i] = min(max(v[i] + bias, lo), hi) for n a multiple of 8. The operand
// order makes a NaN in v come out as NaN: VMAXPS and VMINPS return their
// second source (v's lane, in Intel order) when either is NaN.
TEXT ·clampAVX2(SB), NOSPLIT, $0-32
	MOVQ         v+0(FP), DI
	VBROADCASTSS bias+8(FP), Y0
	VBROADCASTSS lo+12(FP), Y1
	VBROADCASTSS hi+16(FP), Y2
	MOVQ         n+24(FP), CX

cloop:
	CMPQ    CX, $8
	JLT     cdone
	VADDPS  (DI), Y0, Y3
	VMAXPS  Y3, Y1, Y3
	VMINPS  Y3, Y2, Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     cloop

cdone:
	VZEROUPPER
	RET
