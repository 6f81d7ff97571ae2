//go:build !purego

package accel

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

//go:generate go run -C _asm . -out ../gemm_kernels_amd64.s -stubs ../gemm_kernels_amd64.go

// CPU features, read once. Tests flip them to cover every path on one machine.
var (
	useAVX512 = cpu.X86.HasAVX512F
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

// Kernel sets of the assembly paths. Blocking: a B panel kc×nr (32 KiB)
// stays in L1, an A block mc×kc in L2.
var (
	dgemmAVX512Set = kernelSet[float64]{name: "AVX512", mr: 14, nr: 16, kc: 256, mc: 14 * 24, nc: 2048,
		tile: func(h, kc int, a, b, c []float64, ldc int, alpha, beta float64) {
			checkTile(h, kc, 16, len(a), len(b), len(c), ldc)
			dgemmAVX512[h-1](kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
	dgemmAVX2Set = kernelSet[float64]{name: "AVX2", mr: 6, nr: 8, kc: 256, mc: 6 * 48, nc: 2048,
		tile: func(h, kc int, a, b, c []float64, ldc int, alpha, beta float64) {
			checkTile(h, kc, 8, len(a), len(b), len(c), ldc)
			dgemmAVX2[h-1](kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
	sgemmAVX512Set = kernelSet[float32]{name: "AVX512", mr: 14, nr: 32, kc: 256, mc: 14 * 24, nc: 2048,
		tile: func(h, kc int, a, b, c []float32, ldc int, alpha, beta float32) {
			checkTile(h, kc, 32, len(a), len(b), len(c), ldc)
			sgemmAVX512[h-1](kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
	sgemmAVX2Set = kernelSet[float32]{name: "AVX2", mr: 6, nr: 16, kc: 256, mc: 6 * 48, nc: 2048,
		tile: func(h, kc int, a, b, c []float32, ldc int, alpha, beta float32) {
			checkTile(h, kc, 16, len(a), len(b), len(c), ldc)
			sgemmAVX2[h-1](kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
		}}
)

// checkTile panics unless the slices given to an assembly kernel of height h
// and width nr cover everything it reads and writes: the kernels themselves
// do no bounds checks.
func checkTile(h, kc, nr, lenA, lenB, lenC, ldc int) {
	if kc < 1 || lenA < h*kc || lenB < nr*kc || lenC < (h-1)*ldc+nr || ldc < nr {
		panic(fmt.Sprintf("accel: internal error: kernel %d×%d, kc=%d: len(a)=%d len(b)=%d len(c)=%d ldc=%d", h, nr, kc, lenA, lenB, lenC, ldc))
	}
}

// dgemm is Dgemm after the argument checks and special cases.
func dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	switch {
	case useAVX512:
		gemmBlocked(&dgemmAVX512Set, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case useAVX2:
		gemmBlocked(&dgemmAVX2Set, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	default:
		gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// sgemm is Sgemm after the argument checks and special cases.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	switch {
	case useAVX512:
		gemmBlocked(&sgemmAVX512Set, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case useAVX2:
		gemmBlocked(&sgemmAVX2Set, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	default:
		gemmGeneric(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}
