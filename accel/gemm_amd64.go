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

// Kernel sets of the assembly paths, with their cache blocks (kc, mc, nc)
// derived from this machine's caches (gemmBlocking in cache.go).
var (
	dgemmAVX512Set = withBlocking(kernelSet[float64]{name: "AVX512", mr: 14, nr: 16,
		tile: asmTileFunc(16, dgemmAVX512[:], dgemmAVX512R[:]),
		half: asmTileFunc(8, dgemmAVX512H[:], dgemmAVX512HR[:])}, caches)
	dgemmAVX2Set = withBlocking(kernelSet[float64]{name: "AVX2", mr: 6, nr: 8,
		tile: asmTileFunc(8, dgemmAVX2[:], dgemmAVX2R[:]),
		half: asmTileFunc(4, dgemmAVX2H[:], dgemmAVX2HR[:])}, caches)
	sgemmAVX512Set = withBlocking(kernelSet[float32]{name: "AVX512", mr: 14, nr: 32,
		tile: asmTileFunc(32, sgemmAVX512[:], sgemmAVX512R[:]),
		half: asmTileFunc(16, sgemmAVX512H[:], sgemmAVX512HR[:])}, caches)
	sgemmAVX2Set = withBlocking(kernelSet[float32]{name: "AVX2", mr: 6, nr: 16,
		tile: asmTileFunc(16, sgemmAVX2[:], sgemmAVX2R[:]),
		half: asmTileFunc(8, sgemmAVX2H[:], sgemmAVX2HR[:])}, caches)
)

// asmTile picks the kernel for a tile of height h whose A is read at
// a[i*rsa + p*csa] (the P family when rsa == 1, the R family when csa == 1)
// and returns it with its A stride. It panics unless the slices cover
// everything the kernel reads and writes: the kernels do no bounds checks.
func asmTile[K any](h, kc, nr, lenA, rsa, csa, lenB, sb, lenC, ldc int, p, r []K) (K, int) {
	if kc < 1 || h < 1 || h > len(p) || lenB < (kc-1)*sb+nr || sb < nr || lenC < (h-1)*ldc+nr || ldc < nr ||
		lenA < (h-1)*rsa+(kc-1)*csa+1 || rsa != 1 && csa != 1 || rsa < 1 || csa < 1 {
		panic(fmt.Sprintf("accel: internal error: kernel %d×%d, kc=%d: len(a)=%d rsa=%d csa=%d len(b)=%d sb=%d len(c)=%d ldc=%d",
			h, nr, kc, lenA, rsa, csa, lenB, sb, lenC, ldc))
	}
	if rsa == 1 {
		return p[h-1], csa
	}
	return r[h-1], rsa
}

// asmTileFunc returns a kernelSet's tile function for microkernels nr
// columns wide: p holds the kernels for a packed A and r those that read A
// in place, by panel height; asmTile checks the operands and picks one.
func asmTileFunc[T float32 | float64](nr int, p, r []func(kc int, a, b, c *T, ldc, sa, sb int, alpha, beta T)) func(h, kc int, a []T, rsa, csa int, b []T, sb int, c []T, ldc int, alpha, beta T) {
	return func(h, kc int, a []T, rsa, csa int, b []T, sb int, c []T, ldc int, alpha, beta T) {
		k, sa := asmTile(h, kc, nr, len(a), rsa, csa, len(b), sb, len(c), ldc, p, r)
		k(kc, &a[0], &b[0], &c[0], ldc, sa, sb, alpha, beta)
	}
}

// dgemm is Dgemm after the argument checks and special cases.
func dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if tB {
		mr := 6
		if useAVX512 {
			mr = 14
		}
		if dgemmDotRows(2*mr, tA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
			return
		}
	}
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
