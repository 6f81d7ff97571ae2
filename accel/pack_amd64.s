//go:build !purego

#include "textflag.h"

// func packRows128(dst, src *byte, rows, srcStride, panels, panelStride int)
//
// for p := 0; p < rows; p++ {
//	for q := 0; q < panels; q++ {
//		copy 128 bytes from src[p*srcStride + q*128:] to dst[q*panelStride + p*128:]
//	}
// }
TEXT ·packRows128(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), CX
	MOVQ srcStride+24(FP), R8
	MOVQ panels+32(FP), R9
	MOVQ panelStride+40(FP), R10
	TESTQ CX, CX
	JZ done128
	TESTQ R9, R9
	JZ done128

row128:
	MOVQ SI, AX // this row of the source
	MOVQ DI, BX // this row's place in the first panel
	MOVQ R9, DX

panel128:
	VMOVUPS 0(AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS 64(AX), Y2
	VMOVUPS 96(AX), Y3
	VMOVUPS Y0, 0(BX)
	VMOVUPS Y1, 32(BX)
	VMOVUPS Y2, 64(BX)
	VMOVUPS Y3, 96(BX)
	ADDQ $128, AX
	ADDQ R10, BX
	DECQ DX
	JNZ panel128
	ADDQ R8, SI
	ADDQ $128, DI
	DECQ CX
	JNZ row128

done128:
	VZEROUPPER
	RET

// func packRows64(dst, src *byte, rows, srcStride, panels, panelStride int)
//
// packRows128 for rows of 64 bytes.
TEXT ·packRows64(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), CX
	MOVQ srcStride+24(FP), R8
	MOVQ panels+32(FP), R9
	MOVQ panelStride+40(FP), R10
	TESTQ CX, CX
	JZ done64
	TESTQ R9, R9
	JZ done64

row64:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ R9, DX

panel64:
	VMOVUPS 0(AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS Y0, 0(BX)
	VMOVUPS Y1, 32(BX)
	ADDQ $64, AX
	ADDQ R10, BX
	DECQ DX
	JNZ panel64
	ADDQ R8, SI
	ADDQ $64, DI
	DECQ CX
	JNZ row64

done64:
	VZEROUPPER
	RET
