package dsee

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// This file holds the choice of S₂'s fixed support Ω by magnitude. Ω is kept
// as N flat indices into the row-major (d×k) weight, Ω[t] = i·k + j for the
// entry (i, j), strictly increasing, the layout of SLTrain's sparse_index
// (peft.CheckSupport). S₂ is then the vector s₂ (1×N) with S₂[Ω[t]] = s₂[t],
// turned into a (d×k) matrix inside the autograd graph by peft.Scatter: only
// the N values are parameters, so an optimizer cannot move anything off Ω.

// topN returns the flat indices of the n entries of w (d×k) largest in
// magnitude, increasing; among equal magnitudes the lower index wins, so the
// choice is deterministic. NaNs count as largest.
func topN(w mat.Matrix, n int) []int {
	d, k := w.Dims()
	mag := make([]float64, d*k)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			v := math.Abs(w.At(i, j))
			if math.IsNaN(v) {
				v = math.Inf(1)
			}
			mag[i*k+j] = v
		}
	}
	idx := make([]int, d*k)
	for f := range idx {
		idx[f] = f
	}
	sort.SliceStable(idx, func(a, b int) bool { return mag[idx[a]] > mag[idx[b]] })
	out := append([]int(nil), idx[:n]...)
	sort.Ints(out)
	return out
}
