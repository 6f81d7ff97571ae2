//go:build !purego

package accel

import "unsafe"

// packRows128 deals rows of 128 bytes out to panels, with AVX moves:
//
//	for p := 0; p < rows; p++ {
//		for q := 0; q < panels; q++ {
//			copy 128 bytes from src[p*srcStride + q*128:] to dst[q*panelStride + p*128:]
//		}
//	}
//
//go:noescape
func packRows128(dst, src *byte, rows, srcStride, panels, panelStride int)

// packRows64 is packRows128 for rows of 64 bytes.
//
//go:noescape
func packRows64(dst, src *byte, rows, srcStride, panels, panelStride int)

// packBPanels is packBPanelsGeneric. Panels whose rows are 64 or 128
// bytes (the AVX2 and AVX-512 kernels' nr) are copied by packRows64 and
// packRows128: the generic code's fixed-size array copies are each a call
// of memmove, 3% of a 1024² float64 product.
func packBPanels[T float32 | float64](dst, src []T, ldb, kc, nr, panels int) {
	size := elemSize[T]()
	w := nr * size
	if !useAVX2 || w != 64 && w != 128 || kc == 0 || panels == 0 {
		packBPanelsGeneric(dst, src, ldb, kc, nr, panels)
		return
	}
	// The routines do no bounds checks: these are the last elements they
	// read and write.
	_ = dst[(panels-1)*kc*nr+kc*nr-1]
	_ = src[(kc-1)*ldb+panels*nr-1]
	d, s := (*byte)(unsafe.Pointer(&dst[0])), (*byte)(unsafe.Pointer(&src[0]))
	if w == 128 {
		packRows128(d, s, kc, ldb*size, panels, kc*w)
	} else {
		packRows64(d, s, kc, ldb*size, panels, kc*w)
	}
}
