//go:build !purego

// Rotation-sequence kernels; the Go each one implements is
// rotSeqFwdGeneric/rotSeqBwdGeneric (svd_rot.go), and the stubs in
// svd_rot_amd64.go say which. The four kernels share one shape: the row carried from one rotation to the next
// stays in registers (4 vectors: 32 doubles with AVX-512, 16 with AVX2); each
// rotation loads the next row, writes the finished one and updates the
// carried one with two multiplies and two fused multiply-adds per vector.

#include "textflag.h"

// func rotSeqFwdAVX512(a *float64, lda int, cs *float64, count int)
TEXT ·rotSeqFwdAVX512(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ lda+8(FP), BX
	SHLQ $3, BX // BX = row stride in bytes
	MOVQ cs+16(FP), SI
	MOVQ count+24(FP), CX
	// Load the carried row (x = row 0).
	VMOVUPD 0(DI), Z0
	VMOVUPD 64(DI), Z1
	VMOVUPD 128(DI), Z2
	VMOVUPD 192(DI), Z3
rotSeqFwdAVX512loop:
	VBROADCASTSD 0(SI), Z8 // c
	VBROADCASTSD 8(SI), Z9 // s
	LEAQ (DI)(BX*1), DX // DX = the next row down
	// y = next row
	VMOVUPD 0(DX), Z4
	VMOVUPD 64(DX), Z5
	VMOVUPD 128(DX), Z6
	VMOVUPD 192(DX), Z7
	// row k = c·x + s·y; carried x = c·y − s·x
	VMULPD Z0, Z8, Z10
	VFMADD231PD Z4, Z9, Z10
	VMOVUPD Z10, 0(DI)
	VMULPD Z0, Z9, Z0
	VFMSUB231PD Z4, Z8, Z0
	VMULPD Z1, Z8, Z11
	VFMADD231PD Z5, Z9, Z11
	VMOVUPD Z11, 64(DI)
	VMULPD Z1, Z9, Z1
	VFMSUB231PD Z5, Z8, Z1
	VMULPD Z2, Z8, Z12
	VFMADD231PD Z6, Z9, Z12
	VMOVUPD Z12, 128(DI)
	VMULPD Z2, Z9, Z2
	VFMSUB231PD Z6, Z8, Z2
	VMULPD Z3, Z8, Z13
	VFMADD231PD Z7, Z9, Z13
	VMOVUPD Z13, 192(DI)
	VMULPD Z3, Z9, Z3
	VFMSUB231PD Z7, Z8, Z3
	ADDQ $16, SI
	MOVQ DX, DI
	DECQ CX
	JNZ rotSeqFwdAVX512loop
	// Store the carried row.
	VMOVUPD Z0, 0(DI)
	VMOVUPD Z1, 64(DI)
	VMOVUPD Z2, 128(DI)
	VMOVUPD Z3, 192(DI)
	VZEROUPPER
	RET

// func rotSeqBwdAVX512(a *float64, lda int, cs *float64, count int)
TEXT ·rotSeqBwdAVX512(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ lda+8(FP), BX
	SHLQ $3, BX // BX = row stride in bytes
	MOVQ cs+16(FP), SI
	MOVQ count+24(FP), CX
	// Start at the bottom row (count) and the last rotation.
	MOVQ CX, AX
	IMULQ BX, AX
	ADDQ AX, DI
	MOVQ CX, AX
	SHLQ $4, AX
	LEAQ -16(SI)(AX*1), SI
	// Load the carried row (y = row count).
	VMOVUPD 0(DI), Z0
	VMOVUPD 64(DI), Z1
	VMOVUPD 128(DI), Z2
	VMOVUPD 192(DI), Z3
rotSeqBwdAVX512loop:
	VBROADCASTSD 0(SI), Z8 // c
	VBROADCASTSD 8(SI), Z9 // s
	MOVQ DI, DX
	SUBQ BX, DX // DX = the next row up
	// x = next row
	VMOVUPD 0(DX), Z4
	VMOVUPD 64(DX), Z5
	VMOVUPD 128(DX), Z6
	VMOVUPD 192(DX), Z7
	// row k+1 = c·y − s·x; carried y = c·x + s·y
	VMULPD Z0, Z8, Z10
	VFNMADD231PD Z4, Z9, Z10
	VMOVUPD Z10, 0(DI)
	VMULPD Z0, Z9, Z0
	VFMADD231PD Z4, Z8, Z0
	VMULPD Z1, Z8, Z11
	VFNMADD231PD Z5, Z9, Z11
	VMOVUPD Z11, 64(DI)
	VMULPD Z1, Z9, Z1
	VFMADD231PD Z5, Z8, Z1
	VMULPD Z2, Z8, Z12
	VFNMADD231PD Z6, Z9, Z12
	VMOVUPD Z12, 128(DI)
	VMULPD Z2, Z9, Z2
	VFMADD231PD Z6, Z8, Z2
	VMULPD Z3, Z8, Z13
	VFNMADD231PD Z7, Z9, Z13
	VMOVUPD Z13, 192(DI)
	VMULPD Z3, Z9, Z3
	VFMADD231PD Z7, Z8, Z3
	SUBQ $16, SI
	MOVQ DX, DI
	DECQ CX
	JNZ rotSeqBwdAVX512loop
	// Store the carried row.
	VMOVUPD Z0, 0(DI)
	VMOVUPD Z1, 64(DI)
	VMOVUPD Z2, 128(DI)
	VMOVUPD Z3, 192(DI)
	VZEROUPPER
	RET

// func rotSeqFwdAVX2(a *float64, lda int, cs *float64, count int)
TEXT ·rotSeqFwdAVX2(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ lda+8(FP), BX
	SHLQ $3, BX // BX = row stride in bytes
	MOVQ cs+16(FP), SI
	MOVQ count+24(FP), CX
	// Load the carried row (x = row 0).
	VMOVUPD 0(DI), Y0
	VMOVUPD 32(DI), Y1
	VMOVUPD 64(DI), Y2
	VMOVUPD 96(DI), Y3
rotSeqFwdAVX2loop:
	VBROADCASTSD 0(SI), Y8 // c
	VBROADCASTSD 8(SI), Y9 // s
	LEAQ (DI)(BX*1), DX // DX = the next row down
	// y = next row
	VMOVUPD 0(DX), Y4
	VMOVUPD 32(DX), Y5
	VMOVUPD 64(DX), Y6
	VMOVUPD 96(DX), Y7
	// row k = c·x + s·y; carried x = c·y − s·x
	VMULPD Y0, Y8, Y10
	VFMADD231PD Y4, Y9, Y10
	VMOVUPD Y10, 0(DI)
	VMULPD Y0, Y9, Y0
	VFMSUB231PD Y4, Y8, Y0
	VMULPD Y1, Y8, Y11
	VFMADD231PD Y5, Y9, Y11
	VMOVUPD Y11, 32(DI)
	VMULPD Y1, Y9, Y1
	VFMSUB231PD Y5, Y8, Y1
	VMULPD Y2, Y8, Y12
	VFMADD231PD Y6, Y9, Y12
	VMOVUPD Y12, 64(DI)
	VMULPD Y2, Y9, Y2
	VFMSUB231PD Y6, Y8, Y2
	VMULPD Y3, Y8, Y13
	VFMADD231PD Y7, Y9, Y13
	VMOVUPD Y13, 96(DI)
	VMULPD Y3, Y9, Y3
	VFMSUB231PD Y7, Y8, Y3
	ADDQ $16, SI
	MOVQ DX, DI
	DECQ CX
	JNZ rotSeqFwdAVX2loop
	// Store the carried row.
	VMOVUPD Y0, 0(DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VZEROUPPER
	RET

// func rotSeqBwdAVX2(a *float64, lda int, cs *float64, count int)
TEXT ·rotSeqBwdAVX2(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), DI
	MOVQ lda+8(FP), BX
	SHLQ $3, BX // BX = row stride in bytes
	MOVQ cs+16(FP), SI
	MOVQ count+24(FP), CX
	// Start at the bottom row (count) and the last rotation.
	MOVQ CX, AX
	IMULQ BX, AX
	ADDQ AX, DI
	MOVQ CX, AX
	SHLQ $4, AX
	LEAQ -16(SI)(AX*1), SI
	// Load the carried row (y = row count).
	VMOVUPD 0(DI), Y0
	VMOVUPD 32(DI), Y1
	VMOVUPD 64(DI), Y2
	VMOVUPD 96(DI), Y3
rotSeqBwdAVX2loop:
	VBROADCASTSD 0(SI), Y8 // c
	VBROADCASTSD 8(SI), Y9 // s
	MOVQ DI, DX
	SUBQ BX, DX // DX = the next row up
	// x = next row
	VMOVUPD 0(DX), Y4
	VMOVUPD 32(DX), Y5
	VMOVUPD 64(DX), Y6
	VMOVUPD 96(DX), Y7
	// row k+1 = c·y − s·x; carried y = c·x + s·y
	VMULPD Y0, Y8, Y10
	VFNMADD231PD Y4, Y9, Y10
	VMOVUPD Y10, 0(DI)
	VMULPD Y0, Y9, Y0
	VFMADD231PD Y4, Y8, Y0
	VMULPD Y1, Y8, Y11
	VFNMADD231PD Y5, Y9, Y11
	VMOVUPD Y11, 32(DI)
	VMULPD Y1, Y9, Y1
	VFMADD231PD Y5, Y8, Y1
	VMULPD Y2, Y8, Y12
	VFNMADD231PD Y6, Y9, Y12
	VMOVUPD Y12, 64(DI)
	VMULPD Y2, Y9, Y2
	VFMADD231PD Y6, Y8, Y2
	VMULPD Y3, Y8, Y13
	VFNMADD231PD Y7, Y9, Y13
	VMOVUPD Y13, 96(DI)
	VMULPD Y3, Y9, Y3
	VFMADD231PD Y7, Y8, Y3
	SUBQ $16, SI
	MOVQ DX, DI
	DECQ CX
	JNZ rotSeqBwdAVX2loop
	// Store the carried row.
	VMOVUPD Y0, 0(DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VZEROUPPER
	RET
