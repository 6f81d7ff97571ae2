package rl

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// LayerSparsity is the update sparsity of one layer: how many entries of
// its weight an RL run left unchanged.
type LayerSparsity struct {
	Module    string
	Unchanged int     // entries with |W − W₀| ≤ tol
	Total     int     // entries of W
	Fraction  float64 // Unchanged / Total
}

// Sparsity returns how many entries of w differ from w0 by at most tol
// (0: exactly equal), and how many there are: the update sparsity of
// "Reinforcement Learning Finetunes Small Subnetworks in Large Language
// Models" (Mukherjee et al., 2025, arXiv:2505.11711), which counts
// |θ_RL − θ_init| ≤ 1e-5 in bf16. Shapes that differ panic.
func Sparsity(w0, w *mat.Dense, tol float64) (unchanged, total int) {
	r, c := w0.Dims()
	if r2, c2 := w.Dims(); r2 != r || c2 != c {
		panic(peft.ShapeError{Op: "rl.Sparsity", Got: peft.ShapeOf(r, c) + " and " + peft.ShapeOf(r2, c2), Want: "two weights of one shape"})
	}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			if math.Abs(w.At(i, j)-w0.At(i, j)) <= tol {
				unchanged++
			}
		}
	}
	return unchanged, r * c
}

// UpdateSparsity returns, for every Linear layer of m, the update sparsity
// of its adapter-merged weight against its base weight: the active
// adapter's MergedWeight(W₀) against W₀, as the checkpoint a run would
// ship after merging (Tina merges its LoRA). A layer with no active
// adapter, or with adapters disabled, is unchanged throughout. A LoRA
// update s·B·A is dense unless rows of B or columns of A are exactly 0,
// so after any training its layers' fractions are near 0, unlike the
// 70–95% the paper finds for full-parameter RL. A merged layer, whose W₀
// is no longer at hand, is an error: unmerge first.
func UpdateSparsity(m peft.Model, tol float64) ([]LayerSparsity, error) {
	var out []LayerSparsity
	for _, l := range m.Modules() {
		if l.Merged() != "" {
			return nil, fmt.Errorf("peft: rl.UpdateSparsity: %s has adapter %q merged; call peft.UnmergeAdapters first", l.Name, l.Merged())
		}
		w0 := l.W.Value
		r, c := w0.Dims()
		ls := LayerSparsity{Module: l.Name, Unchanged: r * c, Total: r * c}
		if a := l.ActiveAdapter(); a != nil && !l.Disabled {
			ls.Unchanged, _ = Sparsity(w0, a.MergedWeight(mat.DenseCopyOf(w0)), tol)
		}
		ls.Fraction = float64(ls.Unchanged) / float64(ls.Total)
		out = append(out, ls)
	}
	return out, nil
}
