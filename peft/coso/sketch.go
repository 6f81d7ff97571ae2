package coso

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// FrequentDirections is a Frequent-Directions sketch (Liberty 2013,
// "Simple and Deterministic Matrix Sketching", arXiv:1206.0594; Ghashami,
// Liberty, Phillips & Woodruff 2016, arXiv:1501.01711) of a stream of rows
// a_i ∈ ℝⁿ, the rows of a tall matrix A: a matrix B of ℓ rows with
//
//	0 ≼ AᵀA − BᵀB   and   ‖AᵀA − BᵀB‖₂ ≤ ‖A‖²_F / (ℓ+1)
//
// so B keeps A's top right singular directions in ℓ·n numbers however many
// rows arrive. Rows arrive in blocks (a gradient's m rows at once): Add
// stacks the block C = [B; block], takes its SVD C = UΣVᵀ, and keeps
//
//	B ← diag(√max(σᵢ² − δ, 0))·V[:, :ℓ]ᵀ,   δ = σ²_{ℓ+1}
//
// Each shrink removes ≥ (ℓ+1)·δ of ‖·‖²_F and moves BᵀB by at most δ in
// the spectral norm, which gives the bound. The zero value is not usable;
// call NewFrequentDirections.
type FrequentDirections struct {
	L, N  int        // sketch rows ℓ and row width n
	B     *mat.Dense // (ℓ×n) the sketch
	Delta float64    // Σδ over the shrinks so far: a bound on ‖AᵀA − BᵀB‖₂
	Rows  int        // rows of A seen
}

// NewFrequentDirections returns an empty sketch of ℓ rows of width n.
func NewFrequentDirections(l, n int) *FrequentDirections {
	if l < 1 || n < 1 {
		panic(peft.ArgError{Op: "coso.NewFrequentDirections", Msg: fmt.Sprintf("ℓ = %d, n = %d: want ℓ ≥ 1 and n ≥ 1", l, n)})
	}
	return &FrequentDirections{L: l, N: n, B: mat.NewDense(l, n, nil)}
}

// Add appends the rows of block (k×n) to the sketched stream. It returns
// ctx's error if ctx is cancelled during the SVD, or the SVD's if it fails,
// with the sketch unchanged.
func (f *FrequentDirections) Add(ctx context.Context, block mat.Matrix) error {
	k, n := block.Dims()
	if n != f.N {
		panic(peft.ShapeError{Op: "FrequentDirections.Add", Got: peft.ShapeOf(k, n), Want: fmt.Sprintf("rows of width %d", f.N)})
	}
	c := mat.NewDense(f.L+k, n, nil)
	c.Slice(0, f.L, 0, n).(*mat.Dense).Copy(f.B)
	c.Slice(f.L, f.L+k, 0, n).(*mat.Dense).Copy(block)
	svd, err := accel.ThinSVD(ctx, c)
	if err != nil {
		return err
	}
	delta := 0.0
	if len(svd.S) > f.L {
		delta = svd.S[f.L] * svd.S[f.L]
	}
	b := mat.NewDense(f.L, n, nil)
	for i := 0; i < min(f.L, len(svd.S)); i++ {
		s := math.Sqrt(max(svd.S[i]*svd.S[i]-delta, 0))
		for j := 0; j < n; j++ {
			b.Set(i, j, s*svd.VT.At(i, j))
		}
	}
	f.B, f.Delta, f.Rows = b, f.Delta+delta, f.Rows+k
	return nil
}

// Reset empties the sketch.
func (f *FrequentDirections) Reset() {
	f.B.Zero()
	f.Delta, f.Rows = 0, 0
}
