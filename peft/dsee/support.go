package dsee

import (
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file holds the fixed support Ω of S₂ and the scatter that turns S₂'s
// N trained values into a (d×k) matrix inside the autograd graph.
//
// Ω is kept as N flat indices into the row-major (d×k) weight, Ω[t] = i·k + j
// for the entry (i, j), strictly increasing, the layout of SLTrain's
// sparse_index. S₂ is then the vector s (1×N) with S₂[Ω[t]] = s[t]: only the
// N values are parameters, so an optimizer cannot move anything off Ω.

// support is a fixed support Ω in a (d×k) matrix, with what the scatter
// needs precomputed.
type support struct {
	d, k  int
	omega []int   // (N) flat indices i·k + j, strictly increasing
	cols  []int   // the columns j of (d×k) that hold an entry of Ω, increasing
	ids   [][]int // ids[c][i] = t if Ω[t] = i·k + cols[c], else N (the zero row)
}

// newSupport returns Ω (not copied) in a (d×k) matrix. It panics if Ω is
// not valid (see checkSupport): callers check first.
func newSupport(d, k int, omega []int) *support {
	if err := checkSupport(omega, d, k); err != nil {
		panic(peft.ArgError{Op: "dsee.newSupport", Msg: err.Error()})
	}
	n := len(omega)
	sp := &support{d: d, k: k, omega: omega}
	col := map[int]int{} // column j → its position in cols
	for _, f := range omega {
		if _, ok := col[f%k]; !ok {
			col[f%k] = 0
			sp.cols = append(sp.cols, f%k)
		}
	}
	sort.Ints(sp.cols)
	sp.ids = make([][]int, len(sp.cols))
	for c, j := range sp.cols {
		col[j] = c
		ids := make([]int, d)
		for i := range ids {
			ids[i] = n
		}
		sp.ids[c] = ids
	}
	for t, f := range omega {
		sp.ids[col[f%k]][f/k] = t
	}
	return sp
}

// checkSupport returns an error unless omega holds at least one flat index
// into a (d×k) matrix, each in [0, d·k) and strictly increasing.
func checkSupport(omega []int, d, k int) error {
	if len(omega) == 0 {
		return fmt.Errorf("an empty support Ω")
	}
	for t, f := range omega {
		if f < 0 || f >= d*k {
			return fmt.Errorf("Ω[%d] = %d outside [0, d·k) = [0, %d) for W %s", t, f, d*k, peft.ShapeOf(d, k))
		}
		if t > 0 && f <= omega[t-1] {
			return fmt.Errorf("Ω[%d] = %d after Ω[%d] = %d: want strictly increasing flat indices", t, f, t-1, omega[t-1])
		}
	}
	return nil
}

// scatter returns S (d×k) with S[Ω[t]] = s[t] and 0 off Ω, for s (1×N), as a
// composition of peft's ops, so that the gradient reaches s: column j of S is
// a gather (peft.Embedding) of the rows of [sᵀ; 0] ((N+1)×1) at ids, whose
// backward adds column j's gradient at Ω into s's; a column with no entry is
// a constant zero. Its cost is O(d·k) and one gather per column holding an
// entry of Ω.
func (sp *support) scatter(s *peft.Tensor) *peft.Tensor {
	n := len(sp.omega)
	if r, c := s.Dims(); r != 1 || c != n {
		panic(peft.ShapeError{Op: "DSEE.scatter", Got: "s " + peft.ShapeOf(r, c), Want: fmt.Sprintf("s (1×%d), one value per entry of Ω", n)})
	}
	table := peft.ConcatRows(peft.Transpose(s), peft.NewConst(mat.NewDense(1, 1, nil))) // ((N+1)×1), row N is 0
	zero := peft.NewConst(mat.NewDense(sp.d, 1, nil))                                   // (d×1)
	cols := make([]*peft.Tensor, sp.k)
	for j := range cols {
		cols[j] = zero
	}
	for c, j := range sp.cols {
		cols[j] = peft.Embedding(table, sp.ids[c]) // (d×1): column j of S
	}
	return peft.ConcatCols(cols...) // (d×k)
}

// dense returns S (d×k) with S[Ω[t]] = v[t] and 0 off Ω, as a plain matrix.
func (sp *support) dense(v []float64) *mat.Dense {
	s := mat.NewDense(sp.d, sp.k, nil)
	raw := s.RawMatrix().Data
	for t, f := range sp.omega {
		raw[f] = v[t]
	}
	return s
}

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
