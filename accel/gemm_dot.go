package accel

// dgemmDotRows computes C = alpha·op(A)·Bᵀ + beta·C (tB true) as m·n dot
// products of rows of op(A) with rows of B, both contiguous along k, so B is
// neither packed nor transposed. This is the shape of a linear layer's
// forward pass, x·Wᵀ with W stored out×in, for a small batch: there packing
// B (transposing it) would cost more than the product. When tA, the small
// op(A) is first copied out transposed. It reports whether it took the
// product: only for m ≤ maxRows, and when reading in place is allowed (tests
// turn it off to cover packing). Arguments are checked, m, n, k > 0 and
// alpha ≠ 0.
func dgemmDotRows(maxRows int, tA bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) bool {
	if !useSmallDirect || m > maxRows {
		return false
	}
	if tA {
		// op(A)[i, p] = a[p*lda+i]: gather it into rows (m·k values).
		at := make([]float64, m*k)
		for p := 0; p < k; p++ {
			for i, v := range a[p*lda : p*lda+m] {
				at[i*k+p] = v
			}
		}
		a, lda = at, k
	}
	if nt := gemvThreads(m*n*k/16, n); nt > 1 {
		// Split the columns of C, that is the rows of B.
		defer parallelBusy.Store(false)
		gemvSplit(nt, n, func(lo, hi int) {
			dotRowsSerial(m, hi-lo, k, alpha, a, lda, b[lo*ldb:], ldb, beta, c[lo:], ldc)
		})
		return true
	}
	dotRowsSerial(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	return true
}

// dotRowsSerial is dgemmDotRows on the caller's goroutine: for each group
// of four rows of B (kept in L1), gemvDot4 takes their dot products with
// each row of A.
func dotRowsSerial(m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	var d [4]float64
	set := func(i, j int, dot float64) {
		if beta == 0 {
			c[i*ldc+j] = alpha * dot
		} else {
			c[i*ldc+j] = alpha*dot + beta*c[i*ldc+j]
		}
	}
	j := 0
	for ; j+4 <= n; j += 4 {
		for i := 0; i < m; i++ {
			gemvDot4(k, b[j*ldb:], ldb, a[i*lda:i*lda+k], &d)
			for r, v := range d {
				set(i, j+r, v)
			}
		}
	}
	for ; j < n; j++ {
		brow := b[j*ldb : j*ldb+k]
		for i := 0; i < m; i++ {
			var dot float64
			for p, v := range a[i*lda : i*lda+k] {
				dot += v * brow[p]
			}
			set(i, j, dot)
		}
	}
}
