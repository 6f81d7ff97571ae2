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
