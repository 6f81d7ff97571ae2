//go:build !amd64 || purego

package accel

// rotStrip is the column width rotSeq handles at once.
const rotStrip = 32

// rotSeq applies the rotations cs (pairs c, s) to rows k, k+1 of the
// w-column block a (row stride lda), k ascending, or descending when
// backward; see rotSeqFwdGeneric.
func rotSeq(a []float64, lda, w int, cs []float64, backward bool) {
	if backward {
		rotSeqBwdGeneric(a, lda, w, cs)
	} else {
		rotSeqFwdGeneric(a, lda, w, cs)
	}
}

// rotSeq2Fwd applies the forward sequence csA (count rotations on rows
// 0…count) and then the forward sequence csB (count or count−1 rotations) to
// the w-column block a.
func rotSeq2Fwd(a []float64, lda, w int, csA, csB []float64) {
	rotSeqFwdGeneric(a, lda, w, csA)
	rotSeqFwdGeneric(a, lda, w, csB)
}
