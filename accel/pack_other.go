//go:build !amd64 || purego

package accel

// packBPanels is packBPanelsGeneric.
func packBPanels[T float32 | float64](dst, src []T, ldb, kc, nr, panels int) {
	packBPanelsGeneric(dst, src, ldb, kc, nr, panels)
}

// packA4 is packA4Generic.
func packA4[T float32 | float64](dst, src []T, lda, kc, h int) {
	packA4Generic(dst, src, lda, kc, h)
}
