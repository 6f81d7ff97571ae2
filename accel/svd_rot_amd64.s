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

// func rotSeq2FwdAVX512(a *float64, lda int, csA, csB *float64, count int, fullB bool)
//
// Two forward sequences in one pass (see rotSeq2Fwd): after rotation k+1 of
// A has finished row k+1, rotation k of B runs on rows k, k+1, so each row
// is loaded and stored once for both. Registers: Z0-Z3 the row carried by A,
// Z16-Z19 the row carried by B, Z4-Z7 the row loaded, Z12-Z15 the row A
// finished, Z20-Z23 the row B finished, Z8-Z11 the broadcast c and s.
TEXT ·rotSeq2FwdAVX512(SB), NOSPLIT, $0-41
	MOVQ a+0(FP), DI
	MOVQ lda+8(FP), BX
	SHLQ $3, BX // BX = row stride in bytes
	MOVQ csA+16(FP), SI
	MOVQ csB+24(FP), R8
	MOVQ count+32(FP), CX
	MOVBQZX fullB+40(FP), R9
	// rA = row 0; y = row 1
	VMOVUPD 0(DI), Z0
	VMOVUPD 64(DI), Z1
	VMOVUPD 128(DI), Z2
	VMOVUPD 192(DI), Z3
	LEAQ (DI)(BX*1), DX // DX = row 1
	VMOVUPD 0(DX), Z4
	VMOVUPD 64(DX), Z5
	VMOVUPD 128(DX), Z6
	VMOVUPD 192(DX), Z7
	// Rotation 0 of A: rB = c·rA + s·y (row 0, finished by A); rA = c·y − s·rA
	VBROADCASTSD 0(SI), Z8
	VBROADCASTSD 8(SI), Z9
	VMULPD Z0, Z8, Z16
	VFMADD231PD Z4, Z9, Z16
	VMULPD Z0, Z9, Z0
	VFMSUB231PD Z4, Z8, Z0
	VMULPD Z1, Z8, Z17
	VFMADD231PD Z5, Z9, Z17
	VMULPD Z1, Z9, Z1
	VFMSUB231PD Z5, Z8, Z1
	VMULPD Z2, Z8, Z18
	VFMADD231PD Z6, Z9, Z18
	VMULPD Z2, Z9, Z2
	VFMSUB231PD Z6, Z8, Z2
	VMULPD Z3, Z8, Z19
	VFMADD231PD Z7, Z9, Z19
	VMULPD Z3, Z9, Z3
	VFMSUB231PD Z7, Z8, Z3
	ADDQ $16, SI
	DECQ CX // CX = rotations of A left
	JZ rot2epilogue
rot2loop:
	// DI = row k (carried by B), DX = row k+1 (carried by A); y = row k+2
	LEAQ (DX)(BX*1), R10
	VMOVUPD 0(R10), Z4
	VMOVUPD 64(R10), Z5
	VMOVUPD 128(R10), Z6
	VMOVUPD 192(R10), Z7
	VBROADCASTSD 0(SI), Z8 // c of A
	VBROADCASTSD 8(SI), Z9 // s of A
	VBROADCASTSD 0(R8), Z10 // c of B
	VBROADCASTSD 8(R8), Z11 // s of B
	// Rotation k+1 of A: t = c·rA + s·y (row k+1 finished by A); rA = c·y − s·rA
	VMULPD Z0, Z8, Z12
	VFMADD231PD Z4, Z9, Z12
	VMULPD Z0, Z9, Z0
	VFMSUB231PD Z4, Z8, Z0
	VMULPD Z1, Z8, Z13
	VFMADD231PD Z5, Z9, Z13
	VMULPD Z1, Z9, Z1
	VFMSUB231PD Z5, Z8, Z1
	VMULPD Z2, Z8, Z14
	VFMADD231PD Z6, Z9, Z14
	VMULPD Z2, Z9, Z2
	VFMSUB231PD Z6, Z8, Z2
	VMULPD Z3, Z8, Z15
	VFMADD231PD Z7, Z9, Z15
	VMULPD Z3, Z9, Z3
	VFMSUB231PD Z7, Z8, Z3
	// Rotation k of B: row k = c·rB + s·t (stored); rB = c·t − s·rB
	VMULPD Z16, Z10, Z20
	VFMADD231PD Z12, Z11, Z20
	VMOVUPD Z20, 0(DI)
	VMULPD Z16, Z11, Z16
	VFMSUB231PD Z12, Z10, Z16
	VMULPD Z17, Z10, Z21
	VFMADD231PD Z13, Z11, Z21
	VMOVUPD Z21, 64(DI)
	VMULPD Z17, Z11, Z17
	VFMSUB231PD Z13, Z10, Z17
	VMULPD Z18, Z10, Z22
	VFMADD231PD Z14, Z11, Z22
	VMOVUPD Z22, 128(DI)
	VMULPD Z18, Z11, Z18
	VFMSUB231PD Z14, Z10, Z18
	VMULPD Z19, Z10, Z23
	VFMADD231PD Z15, Z11, Z23
	VMOVUPD Z23, 192(DI)
	VMULPD Z19, Z11, Z19
	VFMSUB231PD Z15, Z10, Z19
	ADDQ $16, SI
	ADDQ $16, R8
	MOVQ DX, DI
	MOVQ R10, DX
	DECQ CX
	JNZ rot2loop
rot2epilogue:
	// DI = row count−1 (carried by B), DX = row count (finished by A).
	TESTQ R9, R9
	JZ rot2nolast
	// Last rotation of B: row count−1 = c·rB + s·rA; row count = c·rA − s·rB
	VBROADCASTSD 0(R8), Z10
	VBROADCASTSD 8(R8), Z11
	VMULPD Z16, Z10, Z20
	VFMADD231PD Z0, Z11, Z20
	VMOVUPD Z20, 0(DI)
	VMULPD Z16, Z11, Z16
	VFMSUB231PD Z0, Z10, Z16
	VMOVUPD Z16, 0(DX)
	VMULPD Z17, Z10, Z21
	VFMADD231PD Z1, Z11, Z21
	VMOVUPD Z21, 64(DI)
	VMULPD Z17, Z11, Z17
	VFMSUB231PD Z1, Z10, Z17
	VMOVUPD Z17, 64(DX)
	VMULPD Z18, Z10, Z22
	VFMADD231PD Z2, Z11, Z22
	VMOVUPD Z22, 128(DI)
	VMULPD Z18, Z11, Z18
	VFMSUB231PD Z2, Z10, Z18
	VMOVUPD Z18, 128(DX)
	VMULPD Z19, Z10, Z23
	VFMADD231PD Z3, Z11, Z23
	VMOVUPD Z23, 192(DI)
	VMULPD Z19, Z11, Z19
	VFMSUB231PD Z3, Z10, Z19
	VMOVUPD Z19, 192(DX)
	VZEROUPPER
	RET
rot2nolast:
	VMOVUPD Z16, 0(DI)
	VMOVUPD Z0, 0(DX)
	VMOVUPD Z17, 64(DI)
	VMOVUPD Z1, 64(DX)
	VMOVUPD Z18, 128(DI)
	VMOVUPD Z2, 128(DX)
	VMOVUPD Z19, 192(DI)
	VMOVUPD Z3, 192(DX)
	VZEROUPPER
	RET
