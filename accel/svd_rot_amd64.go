//go:build !purego

package accel

import "golang.org/x/sys/cpu"

// rotStrip is the column width rotSeq handles at once.
const rotStrip = 32

var (
	useRotAVX512 = cpu.X86.HasAVX512F
	useRotAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

// rotSeqFwdAVX512 is rotSeqFwdGeneric(a, lda, 32, cs[:2*count]) on a
// 32-column strip starting at a, rows 0…count.
//
//go:noescape
func rotSeqFwdAVX512(a *float64, lda int, cs *float64, count int)

// rotSeqBwdAVX512 is rotSeqBwdGeneric(a, lda, 32, cs[:2*count]).
//
//go:noescape
func rotSeqBwdAVX512(a *float64, lda int, cs *float64, count int)

// rotSeqFwdAVX2 is rotSeqFwdGeneric(a, lda, 16, cs[:2*count]) on a
// 16-column strip.
//
//go:noescape
func rotSeqFwdAVX2(a *float64, lda int, cs *float64, count int)

// rotSeqBwdAVX2 is rotSeqBwdGeneric(a, lda, 16, cs[:2*count]).
//
//go:noescape
func rotSeqBwdAVX2(a *float64, lda int, cs *float64, count int)

// rotSeq2FwdAVX512 is
//
//	rotSeqFwdGeneric(a, lda, 32, csA[:2*count])
//	rotSeqFwdGeneric(a, lda, 32, csB[:2*count]) // csB[:2*count-2] unless fullB
//
// in one pass over the rows.
//
//go:noescape
func rotSeq2FwdAVX512(a *float64, lda int, csA, csB *float64, count int, fullB bool)

// rotSeq2Fwd applies the forward sequence csA (count rotations on rows
// 0…count) and then the forward sequence csB (count or count−1 rotations) to
// the w-column block a; with AVX-512, in one pass over the rows.
func rotSeq2Fwd(a []float64, lda, w int, csA, csB []float64) {
	count := len(csA) / 2
	cb := len(csB) / 2
	if count == 0 || w == 0 {
		return
	}
	if cb != count && cb != count-1 {
		panic("accel: rotSeq2Fwd: sequences of different lengths")
	}
	_ = a[count*lda+w-1]
	i := 0
	if useRotAVX512 && cb > 0 {
		for ; i+32 <= w; i += 32 {
			rotSeq2FwdAVX512(&a[i], lda, &csA[0], &csB[0], count, cb == count)
		}
	}
	if i < w {
		rotSeq(a[i:], lda, w-i, csA, false)
		rotSeq(a[i:], lda, w-i, csB, false)
	}
}

// rotSeq applies the rotations cs (pairs c, s) to rows k, k+1 of the
// w-column block a (row stride lda), k ascending, or descending when
// backward; see rotSeqFwdGeneric. Full strips go to the widest kernel the
// CPU has, the remaining columns to the generic code.
func rotSeq(a []float64, lda, w int, cs []float64, backward bool) {
	count := len(cs) / 2
	if count == 0 || w == 0 {
		return
	}
	// Bounds: rows 0…count of w columns.
	_ = a[count*lda+w-1]
	i := 0
	switch {
	case useRotAVX512:
		for ; i+32 <= w; i += 32 {
			if backward {
				rotSeqBwdAVX512(&a[i], lda, &cs[0], count)
			} else {
				rotSeqFwdAVX512(&a[i], lda, &cs[0], count)
			}
		}
	case useRotAVX2:
		for ; i+16 <= w; i += 16 {
			if backward {
				rotSeqBwdAVX2(&a[i], lda, &cs[0], count)
			} else {
				rotSeqFwdAVX2(&a[i], lda, &cs[0], count)
			}
		}
	}
	if i < w {
		if backward {
			rotSeqBwdGeneric(a[i:], lda, w-i, cs)
		} else {
			rotSeqFwdGeneric(a[i:], lda, w-i, cs)
		}
	}
}
