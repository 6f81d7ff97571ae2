//go:build !purego

#include "textflag.h"

// Matrix-vector kernels behind Implementation.Dgemv and Dger; the Go
// equivalents are gemvDot4Generic, gemvAxpy4Generic and gemvGer4Generic in
// blas_gemv.go. Rows are row-major
// with stride lda (elements); n is a multiple of 16 (AVX-512) or 8 (AVX2).

// func gemvDot4AVX512(n int, a *float64, lda int, x *float64, dst *[4]float64)
TEXT ·gemvDot4AVX512(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ x+24(FP), BX
	MOVQ dst+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2; rows 1 and 3 are +lda
	// s_r = 0 for rows r = 0..3, two accumulators per row (Z0..Z3, Z4..Z7)
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	SHRQ $4, CX               // 16 columns per iteration
	JZ   dot4avx512_sum

dot4avx512_loop:
	// x8, x9 = x[j : j+16]
	VMOVUPD (BX), Z8
	VMOVUPD 64(BX), Z9
	// s_r += a[r*lda+j : r*lda+j+16] * x[j : j+16], r = 0..3
	VFMADD231PD (AX), Z8, Z0
	VFMADD231PD 64(AX), Z9, Z4
	VFMADD231PD (AX)(R8*1), Z8, Z1
	VFMADD231PD 64(AX)(R8*1), Z9, Z5
	VFMADD231PD (SI), Z8, Z2
	VFMADD231PD 64(SI), Z9, Z6
	VFMADD231PD (SI)(R8*1), Z8, Z3
	VFMADD231PD 64(SI)(R8*1), Z9, Z7
	ADDQ $128, AX
	ADDQ $128, SI
	ADDQ $128, BX
	DECQ CX
	JNZ  dot4avx512_loop

dot4avx512_sum:
	// dst[r] = sum of the lanes of s_r
	VADDPD Z4, Z0, Z0
	VADDPD Z5, Z1, Z1
	VADDPD Z6, Z2, Z2
	VADDPD Z7, Z3, Z3
	VEXTRACTF64X4 $1, Z0, Y4
	VEXTRACTF64X4 $1, Z1, Y5
	VEXTRACTF64X4 $1, Z2, Y6
	VEXTRACTF64X4 $1, Z3, Y7
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	// Y0..Y3 hold four partial sums each: pairwise add to one vector of 4 sums
	VHADDPD Y1, Y0, Y0        // (s0a+s0b, s1a+s1b, s0c+s0d, s1c+s1d)
	VHADDPD Y3, Y2, Y2        // same for rows 2, 3
	VPERM2F128 $0x20, Y2, Y0, Y4 // low halves: (s0, s1, s2, s3) part 1
	VPERM2F128 $0x31, Y2, Y0, Y5 // high halves: part 2
	VADDPD Y5, Y4, Y4
	VMOVUPD Y4, (DX)
	VZEROUPPER
	RET

// func gemvDot4AVX2(n int, a *float64, lda int, x *float64, dst *[4]float64)
TEXT ·gemvDot4AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ x+24(FP), BX
	MOVQ dst+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	SHRQ $3, CX               // 8 columns per iteration
	JZ   dot4avx2_sum

dot4avx2_loop:
	// y8, y9 = x[j : j+8]
	VMOVUPD (BX), Y8
	VMOVUPD 32(BX), Y9
	// s_r += a[r*lda+j : r*lda+j+8] * x[j : j+8], r = 0..3
	VFMADD231PD (AX), Y8, Y0
	VFMADD231PD 32(AX), Y9, Y4
	VFMADD231PD (AX)(R8*1), Y8, Y1
	VFMADD231PD 32(AX)(R8*1), Y9, Y5
	VFMADD231PD (SI), Y8, Y2
	VFMADD231PD 32(SI), Y9, Y6
	VFMADD231PD (SI)(R8*1), Y8, Y3
	VFMADD231PD 32(SI)(R8*1), Y9, Y7
	ADDQ $64, AX
	ADDQ $64, SI
	ADDQ $64, BX
	DECQ CX
	JNZ  dot4avx2_loop

dot4avx2_sum:
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	VHADDPD Y1, Y0, Y0
	VHADDPD Y3, Y2, Y2
	VPERM2F128 $0x20, Y2, Y0, Y4
	VPERM2F128 $0x31, Y2, Y0, Y5
	VADDPD Y5, Y4, Y4
	VMOVUPD Y4, (DX)
	VZEROUPPER
	RET

// func gemvAxpy4AVX512(n int, a *float64, lda int, s *[4]float64, y *float64)
TEXT ·gemvAxpy4AVX512(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ s+24(FP), BX
	MOVQ y+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2
	// z8..z11 = broadcast s[0..3]
	VBROADCASTSD (BX), Z8
	VBROADCASTSD 8(BX), Z9
	VBROADCASTSD 16(BX), Z10
	VBROADCASTSD 24(BX), Z11
	SHRQ $4, CX               // 16 columns per iteration
	JZ   axpy4avx512_done

axpy4avx512_loop:
	// y[j:j+16] += s0*a0[j:j+16] + s1*a1[...] + s2*a2[...] + s3*a3[...]
	VMOVUPD (DX), Z0
	VMOVUPD 64(DX), Z1
	VFMADD231PD (AX), Z8, Z0
	VFMADD231PD 64(AX), Z8, Z1
	VFMADD231PD (AX)(R8*1), Z9, Z0
	VFMADD231PD 64(AX)(R8*1), Z9, Z1
	VFMADD231PD (SI), Z10, Z0
	VFMADD231PD 64(SI), Z10, Z1
	VFMADD231PD (SI)(R8*1), Z11, Z0
	VFMADD231PD 64(SI)(R8*1), Z11, Z1
	VMOVUPD Z0, (DX)
	VMOVUPD Z1, 64(DX)
	ADDQ $128, AX
	ADDQ $128, SI
	ADDQ $128, DX
	DECQ CX
	JNZ  axpy4avx512_loop

axpy4avx512_done:
	VZEROUPPER
	RET

// func gemvAxpy4AVX2(n int, a *float64, lda int, s *[4]float64, y *float64)
TEXT ·gemvAxpy4AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ s+24(FP), BX
	MOVQ y+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2
	// y8..y11 = broadcast s[0..3]
	VBROADCASTSD (BX), Y8
	VBROADCASTSD 8(BX), Y9
	VBROADCASTSD 16(BX), Y10
	VBROADCASTSD 24(BX), Y11
	SHRQ $3, CX               // 8 columns per iteration
	JZ   axpy4avx2_done

axpy4avx2_loop:
	// y[j:j+8] += s0*a0[j:j+8] + s1*a1[...] + s2*a2[...] + s3*a3[...]
	VMOVUPD (DX), Y0
	VMOVUPD 32(DX), Y1
	VFMADD231PD (AX), Y8, Y0
	VFMADD231PD 32(AX), Y8, Y1
	VFMADD231PD (AX)(R8*1), Y9, Y0
	VFMADD231PD 32(AX)(R8*1), Y9, Y1
	VFMADD231PD (SI), Y10, Y0
	VFMADD231PD 32(SI), Y10, Y1
	VFMADD231PD (SI)(R8*1), Y11, Y0
	VFMADD231PD 32(SI)(R8*1), Y11, Y1
	VMOVUPD Y0, (DX)
	VMOVUPD Y1, 32(DX)
	ADDQ $64, AX
	ADDQ $64, SI
	ADDQ $64, DX
	DECQ CX
	JNZ  axpy4avx2_loop

axpy4avx2_done:
	VZEROUPPER
	RET

// func gemvGer4AVX512(n int, a *float64, lda int, s *[4]float64, y *float64)
TEXT ·gemvGer4AVX512(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ s+24(FP), BX
	MOVQ y+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2
	// z8..z11 = broadcast s[0..3]
	VBROADCASTSD (BX), Z8
	VBROADCASTSD 8(BX), Z9
	VBROADCASTSD 16(BX), Z10
	VBROADCASTSD 24(BX), Z11
	SHRQ $4, CX               // 16 columns per iteration
	JZ   ger4avx512_done

ger4avx512_loop:
	// y0, y1 = y[j : j+16]
	VMOVUPD (DX), Z0
	VMOVUPD 64(DX), Z1
	// a[r*lda+j : r*lda+j+16] += s_r * y[j : j+16], r = 0..3
	VMOVUPD (AX), Z2
	VMOVUPD 64(AX), Z3
	VFMADD231PD Z0, Z8, Z2
	VFMADD231PD Z1, Z8, Z3
	VMOVUPD Z2, (AX)
	VMOVUPD Z3, 64(AX)
	VMOVUPD (AX)(R8*1), Z4
	VMOVUPD 64(AX)(R8*1), Z5
	VFMADD231PD Z0, Z9, Z4
	VFMADD231PD Z1, Z9, Z5
	VMOVUPD Z4, (AX)(R8*1)
	VMOVUPD Z5, 64(AX)(R8*1)
	VMOVUPD (SI), Z6
	VMOVUPD 64(SI), Z7
	VFMADD231PD Z0, Z10, Z6
	VFMADD231PD Z1, Z10, Z7
	VMOVUPD Z6, (SI)
	VMOVUPD Z7, 64(SI)
	VMOVUPD (SI)(R8*1), Z12
	VMOVUPD 64(SI)(R8*1), Z13
	VFMADD231PD Z0, Z11, Z12
	VFMADD231PD Z1, Z11, Z13
	VMOVUPD Z12, (SI)(R8*1)
	VMOVUPD Z13, 64(SI)(R8*1)
	ADDQ $128, AX
	ADDQ $128, SI
	ADDQ $128, DX
	DECQ CX
	JNZ  ger4avx512_loop

ger4avx512_done:
	VZEROUPPER
	RET

// func gemvGer4AVX2(n int, a *float64, lda int, s *[4]float64, y *float64)
TEXT ·gemvGer4AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $3, R8               // lda in bytes
	MOVQ s+24(FP), BX
	MOVQ y+32(FP), DX
	LEAQ (AX)(R8*2), SI       // SI = row 2
	// y8..y11 = broadcast s[0..3]
	VBROADCASTSD (BX), Y8
	VBROADCASTSD 8(BX), Y9
	VBROADCASTSD 16(BX), Y10
	VBROADCASTSD 24(BX), Y11
	SHRQ $3, CX               // 8 columns per iteration
	JZ   ger4avx2_done

ger4avx2_loop:
	// y0, y1 = y[j : j+8]
	VMOVUPD (DX), Y0
	VMOVUPD 32(DX), Y1
	// a[r*lda+j : r*lda+j+8] += s_r * y[j : j+8], r = 0..3
	VMOVUPD (AX), Y2
	VMOVUPD 32(AX), Y3
	VFMADD231PD Y0, Y8, Y2
	VFMADD231PD Y1, Y8, Y3
	VMOVUPD Y2, (AX)
	VMOVUPD Y3, 32(AX)
	VMOVUPD (AX)(R8*1), Y4
	VMOVUPD 32(AX)(R8*1), Y5
	VFMADD231PD Y0, Y9, Y4
	VFMADD231PD Y1, Y9, Y5
	VMOVUPD Y4, (AX)(R8*1)
	VMOVUPD Y5, 32(AX)(R8*1)
	VMOVUPD (SI), Y6
	VMOVUPD 32(SI), Y7
	VFMADD231PD Y0, Y10, Y6
	VFMADD231PD Y1, Y10, Y7
	VMOVUPD Y6, (SI)
	VMOVUPD Y7, 32(SI)
	VMOVUPD (SI)(R8*1), Y12
	VMOVUPD 32(SI)(R8*1), Y13
	VFMADD231PD Y0, Y11, Y12
	VFMADD231PD Y1, Y11, Y13
	VMOVUPD Y12, (SI)(R8*1)
	VMOVUPD Y13, 32(SI)(R8*1)
	ADDQ $64, AX
	ADDQ $64, SI
	ADDQ $64, DX
	DECQ CX
	JNZ  ger4avx2_loop

ger4avx2_done:
	VZEROUPPER
	RET
