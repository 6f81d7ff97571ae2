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

// func packA4f64(dst, src *float64, lda, kc, h int)
//
// for p := 0; p < kc; p++ {
//	for i := 0; i < 4; i++ {
//		dst[p*h+i] = src[i*lda+p]
//	}
// }
//
// Four p at a time: a 4×4 block of rows is loaded and transposed in
// registers. The next four rows (src + 4·lda) are prefetched as we go:
// they are the next call's, and come from memory in a large product.
TEXT ·packA4f64(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $3, R8 // lda in bytes
	MOVQ kc+24(FP), CX
	MOVQ h+32(FP), R9
	SHLQ $3, R9 // h in bytes: the distance between steps p in dst
	LEAQ (R8)(R8*2), R10 // 3·lda
	LEAQ (SI)(R8*4), R11 // the next four rows
	LEAQ (R9)(R9*2), R12 // 3·h
	MOVQ CX, DX
	SHRQ $2, DX // blocks of four steps
	JZ tailA4f64

blockA4f64:
	VMOVUPD (SI), Y0
	VMOVUPD (SI)(R8*1), Y1
	VMOVUPD (SI)(R8*2), Y2
	VMOVUPD (SI)(R10*1), Y3
	PREFETCHT0 (R11)
	PREFETCHT0 (R11)(R8*1)
	PREFETCHT0 (R11)(R8*2)
	PREFETCHT0 (R11)(R10*1)
	VUNPCKLPD Y1, Y0, Y4 // r0p0 r1p0 r0p2 r1p2
	VUNPCKHPD Y1, Y0, Y5 // r0p1 r1p1 r0p3 r1p3
	VUNPCKLPD Y3, Y2, Y6 // r2p0 r3p0 r2p2 r3p2
	VUNPCKHPD Y3, Y2, Y7 // r2p1 r3p1 r2p3 r3p3
	VPERM2F128 $0x20, Y6, Y4, Y0 // step p
	VPERM2F128 $0x20, Y7, Y5, Y1 // p+1
	VPERM2F128 $0x31, Y6, Y4, Y2 // p+2
	VPERM2F128 $0x31, Y7, Y5, Y3 // p+3
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, (DI)(R9*1)
	VMOVUPD Y2, (DI)(R9*2)
	VMOVUPD Y3, (DI)(R12*1)
	ADDQ $32, SI
	ADDQ $32, R11
	LEAQ (DI)(R9*4), DI
	DECQ DX
	JNZ blockA4f64

tailA4f64:
	ANDQ $3, CX
	JZ doneA4f64

stepA4f64:
	MOVQ (SI), AX
	MOVQ AX, (DI)
	MOVQ (SI)(R8*1), AX
	MOVQ AX, 8(DI)
	MOVQ (SI)(R8*2), AX
	MOVQ AX, 16(DI)
	MOVQ (SI)(R10*1), AX
	MOVQ AX, 24(DI)
	ADDQ $8, SI
	ADDQ R9, DI
	DECQ CX
	JNZ stepA4f64

doneA4f64:
	VZEROUPPER
	RET

// func packA4f32(dst, src *float32, lda, kc, h int)
//
// packA4f64 for float32, with 4×4 blocks in 128-bit registers.
TEXT ·packA4f32(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	MOVQ kc+24(FP), CX
	MOVQ h+32(FP), R9
	SHLQ $2, R9
	LEAQ (R8)(R8*2), R10
	LEAQ (SI)(R8*4), R11
	LEAQ (R9)(R9*2), R12
	MOVQ CX, DX
	SHRQ $2, DX
	JZ tailA4f32

blockA4f32:
	VMOVUPS (SI), X0
	VMOVUPS (SI)(R8*1), X1
	VMOVUPS (SI)(R8*2), X2
	VMOVUPS (SI)(R10*1), X3
	PREFETCHT0 (R11)
	PREFETCHT0 (R11)(R8*1)
	PREFETCHT0 (R11)(R8*2)
	PREFETCHT0 (R11)(R10*1)
	VUNPCKLPS X1, X0, X4 // r0p0 r1p0 r0p1 r1p1
	VUNPCKHPS X1, X0, X5 // r0p2 r1p2 r0p3 r1p3
	VUNPCKLPS X3, X2, X6 // r2p0 r3p0 r2p1 r3p1
	VUNPCKHPS X3, X2, X7 // r2p2 r3p2 r2p3 r3p3
	VMOVLHPS X6, X4, X0 // step p: X4's low half, then X6's
	VMOVHLPS X4, X6, X1 // p+1: X4's high half, then X6's
	VMOVLHPS X7, X5, X2 // p+2
	VMOVHLPS X5, X7, X3 // p+3
	VMOVUPS X0, (DI)
	VMOVUPS X1, (DI)(R9*1)
	VMOVUPS X2, (DI)(R9*2)
	VMOVUPS X3, (DI)(R12*1)
	ADDQ $16, SI
	ADDQ $16, R11
	LEAQ (DI)(R9*4), DI
	DECQ DX
	JNZ blockA4f32

tailA4f32:
	ANDQ $3, CX
	JZ doneA4f32

stepA4f32:
	MOVL (SI), AX
	MOVL AX, (DI)
	MOVL (SI)(R8*1), AX
	MOVL AX, 4(DI)
	MOVL (SI)(R8*2), AX
	MOVL AX, 8(DI)
	MOVL (SI)(R10*1), AX
	MOVL AX, 12(DI)
	ADDQ $4, SI
	ADDQ R9, DI
	DECQ CX
	JNZ stepA4f32

doneA4f32:
	VZEROUPPER
	RET
