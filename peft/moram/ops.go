package moram

import (
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file holds the generic row ops MoRAM's mixture needs: L2
// normalisation of rows, the top-k mask of each row, and a softmax that
// sees only the kept entries. None needs a backward of its own: each is a
// composition of peft's ops, so its gradient is theirs (checked against
// central differences in ops_test.go). n is rows, m columns.

// normEps is the floor of a row's norm in normalizeRows, F.normalize's ε.
const normEps = 1e-12

// normalizeRows returns p̂ (n×m), each row of p (n×m) divided by its
// Euclidean norm: p̂_i = p_i / max(‖p_i‖₂, ε), ε = 1e-12, as PyTorch's
// F.normalize(p, dim=-1). It is
//
//	ν = RowNorms(p) + c        (n×1), c_i = max(ε − ‖p_i‖, 0), a constant
//	p̂ = p ⊘ (ν·1ᵀ)            1 (m×1) all ones: ν broadcast to (n×m)
//
// so a row whose norm is at least ε is divided by its norm exactly (one
// rounding per entry: positive homogeneity holds bit for bit for scalings
// by powers of two), and a zero row gives a zero row, not NaN, with the
// gradient 1/ε times the upstream one, as F.normalize (p ↦ p̂ jumps at 0;
// in MoRAM p = x·Aᵀ has a zero row when x's row is zero, and then A's
// gradient from it, x's row times that, is zero). Below ε the gradient
// also flows through RowNorms, where PyTorch's clamp stops it; only rows
// with ‖p_i‖ < 1e-12 see the difference.
func normalizeRows(p *peft.Tensor) *peft.Tensor {
	n, m := p.Dims()
	nrm := peft.RowNorms(p) // (n×1)
	floor := mat.NewDense(n, 1, nil)
	for i := 0; i < n; i++ {
		if v := nrm.Value.At(i, 0); v < normEps {
			floor.Set(i, 0, normEps-v)
		}
	}
	nu := peft.Add(nrm, peft.NewConst(floor))          // (n×1) max(‖p_i‖, ε)
	wide := peft.MatMul(nu, peft.NewConst(ones(1, m))) // (n×m), row i all ν_i
	return peft.Div(p, wide)                           // (n×m)
}

// ones returns an (r×c) matrix of ones.
func ones(r, c int) *mat.Dense {
	v := make([]float64, r*c)
	for i := range v {
		v[i] = 1
	}
	return mat.NewDense(r, c, v)
}

// topK returns, for each row of v (n×m), whether each entry is among the k
// largest of its row (n×m, true kept): exactly min(k, m) per row, ties
// broken towards the lower column index (torch.topk leaves ties
// unspecified). NaN entries sort last.
func topK(v *mat.Dense, k int) [][]bool {
	n, m := v.Dims()
	k = min(k, m)
	keep := make([][]bool, n)
	idx := make([]int, m)
	for i := 0; i < n; i++ {
		row := v.RawRowView(i)
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return greater(row[idx[a]], row[idx[b]]) })
		keep[i] = make([]bool, m)
		for _, j := range idx[:k] {
			keep[i][j] = true
		}
	}
	return keep
}

// greater orders numbers descending with NaN last.
func greater(a, b float64) bool {
	if math.IsNaN(b) {
		return !math.IsNaN(a)
	}
	return a > b
}

// maskedSoftmax returns w (n×m): in each row of z (n×m) the softmax over
// the kept entries, and exactly 0 elsewhere. It is Softmax(z + M) with M a
// constant (0 where kept, −∞ elsewhere): exp(−∞) = 0, so the dropped
// entries get weight 0 and, their softmax output being 0, gradient 0. The
// selection itself is piecewise constant in z and passes no gradient:
// only the kept entries of z get one. Each row must keep at least one
// entry.
func maskedSoftmax(z *peft.Tensor, keep [][]bool) *peft.Tensor {
	n, m := z.Dims()
	mask := mat.NewDense(n, m, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			if !keep[i][j] {
				mask.Set(i, j, math.Inf(-1))
			}
		}
	}
	return peft.Softmax(peft.Add(z, peft.NewConst(mask)))
}
