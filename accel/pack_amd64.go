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

// packA4f64 packs four rows of A, lda apart in src, into a panel of
// height h, 4×4 blocks transposed in AVX registers, prefetching the next
// four rows:
//
//	for p := 0; p < kc; p++ {
//		for i := 0; i < 4; i++ {
//			dst[p*h+i] = src[i*lda+p]
//		}
//	}
//
//go:noescape
func packA4f64(dst, src *float64, lda, kc, h int)

// packA4f32 is packA4f64 for float32.
//
//go:noescape
func packA4f32(dst, src *float32, lda, kc, h int)

// packA4 is packA4Generic, in assembly where AVX2 is there. In a large
// product A comes from memory: the generic loop packed a 1024² float64 A at
// 1.2 ns per element there, 3% of the product.
func packA4[T float32 | float64](dst, src []T, lda, kc, h int) {
	if !useAVX2 || kc == 0 {
		packA4Generic(dst, src, lda, kc, h)
		return
	}
	// The routines do no bounds checks: these are the last elements they
	// read and write.
	_ = dst[(kc-1)*h+3]
	_ = src[3*lda+kc-1]
	switch d := any(dst).(type) {
	case []float64:
		packA4f64(&d[0], &any(src).([]float64)[0], lda, kc, h)
	case []float32:
		packA4f32(&d[0], &any(src).([]float32)[0], lda, kc, h)
	}
}
