package soka

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file is the Kronecker-product SVD (Van Loan and Pitsianis, 1993,
// "Approximation with Kronecker Products") and SoKA's rank rules.
//
// Index convention (row-major, as Go and PyTorch store matrices): for
// A (m1×n1), B (m2×n2),
//
//	(A⊗B)[i1·m2 + i2, j1·n2 + j2] = A[i1, j1]·B[i2, j2]
//
// The rearrangement R maps W (m1·m2 × n1·n2) to R(W) (m1·n1 × m2·n2),
//
//	R(W)[i1·n1 + j1, i2·n2 + j2] = W[i1·m2 + i2, j1·n2 + j2]
//
// so that row i1·n1 + j1 of R(W) is block (i1, j1) of W, flattened, and
// R(A⊗B) = vec(A)·vec(B)ᵀ with vec the row-major flattening. R only moves
// entries, so ‖R(W)‖_F = ‖W‖_F, and the SVD R(W) = Σ_k σ_k u_k v_kᵀ folds
// back to W = Σ_k σ_k U_k ⊗ V_k, U_k = vec⁻¹(u_k) (m1×n1), V_k = vec⁻¹(v_k)
// (m2×n2), ‖U_k‖_F = ‖V_k‖_F = 1. By Eckart–Young on R(W), the first r
// terms are the best sum of r Kronecker products of those shapes, with
// error² Σ_{k>r} σ_k², and Σ_k σ_k² = ‖W‖_F².

// Rearrange returns R(w) (m1·n1 × m2·n2) for w (m1·m2 × n1·n2). It panics
// if m1 does not divide w's rows or n1 its columns.
func Rearrange(w mat.Matrix, m1, n1 int) *mat.Dense {
	d, k := w.Dims()
	m2, n2 := split("soka.Rearrange", d, k, m1, n1)
	r := mat.NewDense(m1*n1, m2*n2, nil)
	for i1 := 0; i1 < m1; i1++ {
		for j1 := 0; j1 < n1; j1++ {
			row := r.RawRowView(i1*n1 + j1)
			for i2 := 0; i2 < m2; i2++ {
				for j2 := 0; j2 < n2; j2++ {
					row[i2*n2+j2] = w.At(i1*m2+i2, j1*n2+j2)
				}
			}
		}
	}
	return r
}

// Unrearrange returns W (m1·m2 × n1·n2) from R(W) (m1·n1 × m2·n2): the
// inverse of Rearrange.
func Unrearrange(rw mat.Matrix, m1, n1, m2, n2 int) *mat.Dense {
	if r, c := rw.Dims(); r != m1*n1 || c != m2*n2 {
		panic(peft.ShapeError{Op: "soka.Unrearrange", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(m1*n1, m2*n2) + ", (m1·n1 × m2·n2)"})
	}
	w := mat.NewDense(m1*m2, n1*n2, nil)
	for i1 := 0; i1 < m1; i1++ {
		for j1 := 0; j1 < n1; j1++ {
			for i2 := 0; i2 < m2; i2++ {
				for j2 := 0; j2 < n2; j2++ {
					w.Set(i1*m2+i2, j1*n2+j2, rw.At(i1*n1+j1, i2*n2+j2))
				}
			}
		}
	}
	return w
}

func split(op string, d, k, m1, n1 int) (m2, n2 int) {
	if m1 < 1 || n1 < 1 || d%m1 != 0 || k%n1 != 0 {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("W %s with U_k (%d×%d)", peft.ShapeOf(d, k), m1, n1), Want: "m1 dividing W's rows and n1 its columns"})
	}
	return d / m1, k / n1
}

// KPSVD is a matrix's Kronecker-product SVD W = Σ_k S[k]·U[k] ⊗ V[k].
type KPSVD struct {
	M1, N1, M2, N2 int          // U[k] is (M1×N1), V[k] (M2×N2)
	S              []float64    // σ_k, descending, min(M1·N1, M2·N2) of them
	U, V           []*mat.Dense // unit Frobenius norm each
}

// Factorize returns the KPSVD of w (m1·m2 × n1·n2) with factors U_k
// (m1×n1): the thin SVD of R(w), folded back. It panics if m1 or n1 does
// not divide w's dimensions; an SVD failure or a cancelled ctx is an error.
func Factorize(ctx context.Context, w mat.Matrix, m1, n1 int) (*KPSVD, error) {
	d, k := w.Dims()
	m2, n2 := split("soka.Factorize", d, k, m1, n1)
	svd, err := accel.ThinSVD(ctx, Rearrange(w, m1, n1))
	if err != nil {
		return nil, err
	}
	p := min(m1*n1, m2*n2)
	f := &KPSVD{M1: m1, N1: n1, M2: m2, N2: n2, S: append([]float64(nil), svd.S[:p]...)}
	for t := 0; t < p; t++ {
		u := mat.NewDense(m1, n1, nil) // vec⁻¹ of column t of U
		for i := 0; i < m1*n1; i++ {
			u.Set(i/n1, i%n1, svd.U.At(i, t))
		}
		v := mat.NewDense(m2, n2, nil) // vec⁻¹ of row t of Vᵀ
		for i := 0; i < m2*n2; i++ {
			v.Set(i/n2, i%n2, svd.VT.At(t, i))
		}
		f.U = append(f.U, u)
		f.V = append(f.V, v)
	}
	return f, nil
}

// Sum returns Σ_{k<r} S[k]·U[k] ⊗ V[k] (M1·M2 × N1·N2), the best sum of r
// Kronecker products of these shapes. It panics if r is outside [0, len(S)].
func (f *KPSVD) Sum(r int) *mat.Dense {
	if r < 0 || r > len(f.S) {
		panic(peft.ArgError{Op: "soka.KPSVD.Sum", Msg: fmt.Sprintf("r = %d outside [0, %d]", r, len(f.S))})
	}
	w := mat.NewDense(f.M1*f.M2, f.N1*f.N2, nil)
	var kr mat.Dense
	for t := 0; t < r; t++ {
		kr.Kronecker(f.U[t], f.V[t])
		kr.Scale(f.S[t], &kr)
		w.Add(w, &kr)
	}
	return w
}

// Energy returns the cumulative energy shares E(i) = Σ_{k≤i} σ_k²/Σσ², for
// i = 1…len(sigma) (all 0 if every σ is 0).
func Energy(sigma []float64) []float64 {
	total := 0.0
	for _, s := range sigma {
		total += s * s
	}
	e := make([]float64, len(sigma))
	acc := 0.0
	for i, s := range sigma {
		acc += s * s
		if total > 0 {
			e[i] = acc / total
		}
	}
	return e
}

// EnergyRank returns the smallest r with Σ_{k≤r} σ_k² ≥ τ·Σσ² for sigma
// descending (0 if every σ is 0). It panics unless τ is in (0, 1].
func EnergyRank(sigma []float64, tau float64) int {
	if !(tau > 0 && tau <= 1) {
		panic(peft.ArgError{Op: "soka.EnergyRank", Msg: fmt.Sprintf("τ = %v outside (0, 1]", tau)})
	}
	for i, e := range Energy(sigma) {
		if e >= tau*(1-1e-12) {
			return i + 1
		}
	}
	return 0
}

// ElbowRank returns the elbow of the spectrum sigma (descending): the i in
// 1…p maximizing E(i) − i/p, where the cumulative energy curve rises
// farthest above the chord from (0, 0) to (p, 1), as the Kneedle rule
// finds a knee (ties go to the smaller i). A flat spectrum, where no i
// rises above the chord by more than 1e-12, has no elbow: ElbowRank returns
// p and leaves the choice to the other rules. It returns 0 for no σ or all
// zero.
func ElbowRank(sigma []float64) int {
	p := len(sigma)
	e := Energy(sigma)
	if p == 0 || e[p-1] == 0 {
		return 0
	}
	best, at := 1e-12, p
	for i := 1; i <= p; i++ {
		if g := e[i-1] - float64(i)/float64(p); g > best {
			best, at = g, i
		}
	}
	return at
}

// SelectRank returns SoKA's rank for spectrum sigma (descending) with at
// most rMax terms: min(rMax, EnergyRank(τ), ElbowRank), or without the
// elbow rule min(rMax, EnergyRank(τ)); at least 1.
func SelectRank(sigma []float64, tau float64, rMax int, elbow bool) int {
	r := min(rMax, EnergyRank(sigma, tau))
	if elbow {
		r = min(r, ElbowRank(sigma))
	}
	return max(r, 1)
}

// ChooseFactors returns SoKA's default factor shape U_k (m1×n1), V_k
// (d/m1 × k/n1) for a weight (d×k): the one with the fewest numbers per
// Kronecker term, m1·n1 + (d/m1)·(k/n1), which also allows the most terms,
// min(m1·n1, (d/m1)·(k/n1)). Ties go to the smaller U_k, then to m1
// nearest √d. It is an error if no shape allows two terms or more (d·k
// prime, or 1), since one term is W itself.
func ChooseFactors(d, k int) (m1, n1 int, err error) {
	if d < 1 || k < 1 {
		panic(peft.ShapeError{Op: "soka.ChooseFactors", Got: peft.ShapeOf(d, k), Want: "a weight of positive dimensions"})
	}
	bestCost := math.MaxInt
	for a := 1; a <= d; a++ {
		if d%a != 0 {
			continue
		}
		for b := 1; b <= k; b++ {
			if k%b != 0 {
				continue
			}
			u, v := a*b, (d/a)*(k/b)
			cost := u + v
			better := cost < bestCost
			if cost == bestCost {
				bu := m1 * n1
				switch {
				case u != bu:
					better = u < bu
				default:
					better = math.Abs(float64(a)-math.Sqrt(float64(d))) < math.Abs(float64(m1)-math.Sqrt(float64(d)))
				}
			}
			if better {
				bestCost, m1, n1 = cost, a, b
			}
		}
	}
	if Terms(d, k, m1, n1) < 2 {
		return 0, 0, fmt.Errorf("no factorisation of W %s into U_k (m1×n1) ⊗ V_k (d/m1 × k/n1) gives more than one Kronecker term", peft.ShapeOf(d, k))
	}
	return m1, n1, nil
}

// Terms returns the number of terms of the KPSVD of a (d×k) weight with
// U_k (m1×n1): min(m1·n1, (d/m1)·(k/n1)).
func Terms(d, k, m1, n1 int) int { return min(m1*n1, (d/m1)*(k/n1)) }
