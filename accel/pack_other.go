//go:build !amd64 || purego

package accel

// packBPanels is packBPanelsGeneric.
func packBPanels[T float32 | float64](dst, src []T, ldb, kc, nr, panels int) {
	packBPanelsGeneric(dst, src, ldb, kc, nr, panels)
}
