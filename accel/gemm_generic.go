package accel

// gemmGeneric is the pure-Go implementation of C = alpha·op(A)·op(B) + beta·C
// behind Dgemm and Sgemm: the shared blocked driver (gemm_block.go) with the
// pure-Go microkernel gemmKernelGeneric. It is always compiled: it is the
// implementation on platforms without assembly and with the purego tag, and
// tests compare the assembly paths against it. Arguments are checked,
// m, n, k > 0 and alpha ≠ 0.
func gemmGeneric[T float32 | float64](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	var ks *kernelSet[T]
	switch any(alpha).(type) {
	case float64:
		ks = any(&dgemmGenericSet).(*kernelSet[T])
	default:
		ks = any(&sgemmGenericSet).(*kernelSet[T])
	}
	gemmBlocked(ks, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

var (
	dgemmGenericSet = withBlocking(kernelSet[float64]{name: "generic", mr: 4, nr: 4, tile: gemmKernelGeneric[float64]}, caches)
	sgemmGenericSet = withBlocking(kernelSet[float32]{name: "generic", mr: 4, nr: 4, tile: gemmKernelGeneric[float32]}, caches)
)
