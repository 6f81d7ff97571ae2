package peft

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/mat"
)

// This file compares the singular subspaces of matrices, as section 7 of
// the LoRA paper does (Hu et al., 2021, "LoRA: Low-rank adaptation of large
// language models", arXiv:2106.09685, §7.2–7.3), and measures how sparse an
// update is.

// Side says which singular vectors of A = UΣVᵀ a comparison uses: the left
// ones (columns of U, the output space) or the right ones (columns of V,
// the input space).
type Side int

const (
	Left  Side = iota // columns of U
	Right             // columns of V
)

func (s Side) String() string {
	if s == Right {
		return "right"
	}
	return "left"
}

// SubspaceSimilarity returns the normalized subspace similarity of Hu et al.
// (2021, §7.2, eq. 4) between the top singular directions of a and b:
//
//	φ(A, B, i, j) = ‖U_Aⁱᵀ U_Bʲ‖²_F / min(i, j)   ∈ [0, 1]
//
// where U_Aⁱ holds the top-i singular vectors of a on the given side (its
// first i columns), U_Bʲ likewise for b. The result is maxI×maxJ with
// φ(i, j) at (i−1, j−1): 1 where one subspace contains the other, 0 where
// they are orthogonal. (The paper compares the right singular vectors of
// two LoRA A matrices: side Right, a = A_{r=8}, b = A_{r=64}.)
//
// a and b must have the same number of rows (side Left) or columns (side
// Right); maxI ≤ min(dims of a), maxJ ≤ min(dims of b). A bad argument or
// a non-finite matrix is an error naming it.
func SubspaceSimilarity(ctx context.Context, a, b mat.Matrix, side Side, maxI, maxJ int) (*mat.Dense, error) {
	ua, err := singularBasis(ctx, "SubspaceSimilarity", "a", a, side, maxI)
	if err != nil {
		return nil, err
	}
	ub, err := singularBasis(ctx, "SubspaceSimilarity", "b", b, side, maxJ)
	if err != nil {
		return nil, err
	}
	return SubspaceSimilarityBases(ua, ub)
}

// SubspaceSimilarityBases returns φ(i, j) = ‖U_iᵀ V_j‖²_F / min(i, j) for
// the first i columns of u and the first j columns of v, i = 1…cols(u),
// j = 1…cols(v). The columns of u and of v must be orthonormal and u, v
// must have the same number of rows.
func SubspaceSimilarityBases(u, v mat.Matrix) (*mat.Dense, error) {
	du, p := u.Dims()
	dv, q := v.Dims()
	if du != dv {
		return nil, fmt.Errorf("peft: SubspaceSimilarity: bases live in different spaces: u %s, v %s (rows must match)", ShapeOf(du, p), ShapeOf(dv, q))
	}
	if p == 0 || q == 0 {
		return nil, fmt.Errorf("peft: SubspaceSimilarity: empty basis: u %s, v %s", ShapeOf(du, p), ShapeOf(dv, q))
	}
	if err := checkFiniteMatrix("SubspaceSimilarity", "u", u); err != nil {
		return nil, err
	}
	if err := checkFiniteMatrix("SubspaceSimilarity", "v", v); err != nil {
		return nil, err
	}
	var g mat.Dense // g = uᵀv is p×q; ‖U_iᵀV_j‖²_F = Σ_{k<i, l<j} g_kl²
	g.Mul(u.T(), v)
	// c is the 2-D prefix sum of g∘g.
	phi := mat.NewDense(p, q, nil)
	c := make([]float64, (p+1)*(q+1))
	for i := 1; i <= p; i++ {
		for j := 1; j <= q; j++ {
			x := g.At(i-1, j-1)
			c[i*(q+1)+j] = x*x + c[(i-1)*(q+1)+j] + c[i*(q+1)+j-1] - c[(i-1)*(q+1)+j-1]
			phi.Set(i-1, j-1, c[i*(q+1)+j]/float64(min(i, j)))
		}
	}
	return phi, nil
}

// PrincipalAngles returns the k principal angles (radians, ascending, in
// [0, π/2]) between the spans of the top-k singular vectors of a and of b on
// the given side: θ_i = arccos σ_i(U_Aᵏᵀ U_Bᵏ) (Björck & Golub, 1973).
// θ = 0 is a shared direction, π/2 an orthogonal one.
func PrincipalAngles(ctx context.Context, a, b mat.Matrix, side Side, k int) ([]float64, error) {
	ua, err := singularBasis(ctx, "PrincipalAngles", "a", a, side, k)
	if err != nil {
		return nil, err
	}
	ub, err := singularBasis(ctx, "PrincipalAngles", "b", b, side, k)
	if err != nil {
		return nil, err
	}
	return PrincipalAnglesBases(ua, ub)
}

// PrincipalAnglesBases returns the min(cols) principal angles between the
// column spans of u and v, whose columns must be orthonormal, ascending.
func PrincipalAnglesBases(u, v mat.Matrix) ([]float64, error) {
	du, p := u.Dims()
	dv, q := v.Dims()
	if du != dv || p == 0 || q == 0 {
		return nil, fmt.Errorf("peft: PrincipalAngles: bases u %s and v %s must be non-empty with equal rows", ShapeOf(du, p), ShapeOf(dv, q))
	}
	var g mat.Dense
	g.Mul(u.T(), v)
	var svd mat.SVD
	if !svd.Factorize(&g, mat.SVDNone) {
		return nil, fmt.Errorf("peft: PrincipalAngles: SVD of UᵀV %s did not converge", ShapeOf(p, q))
	}
	s := svd.Values(nil) // descending cosines → ascending angles
	th := make([]float64, len(s))
	for i, c := range s {
		th[i] = math.Acos(min(max(c, 0), 1))
	}
	return th, nil
}

// Amplification returns the feature-amplification factor of Hu et al.
// (2021, §7.3, Table 7): with U_r, V_r the top-r left and right singular
// vectors of the update ΔW (d×k),
//
//	amplification = ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F
//
// where U_rᵀ W V_r (r×r) is W projected onto ΔW's r-dimensional subspace
// (the paper writes it UᵀWVᵀ, with its V holding the right vectors as
// rows). A large factor (the paper reports ≈ 21.5 at r = 4 for GPT-3's
// W_q) says ΔW strongly amplifies directions that W already has but does not
// emphasize. W and ΔW must have the same shape, 1 ≤ r ≤ min(d, k), and the
// projection must be nonzero; otherwise it returns an error.
func Amplification(ctx context.Context, w, dw mat.Matrix, r int) (float64, error) {
	d, k := w.Dims()
	dd, dk := dw.Dims()
	if d != dd || k != dk {
		return 0, fmt.Errorf("peft: Amplification: W %s and ΔW %s differ in shape", ShapeOf(d, k), ShapeOf(dd, dk))
	}
	if err := checkFiniteMatrix("Amplification", "W", w); err != nil {
		return 0, err
	}
	u, err := singularBasis(ctx, "Amplification", "ΔW", dw, Left, r)
	if err != nil {
		return 0, err
	}
	v, err := singularBasis(ctx, "Amplification", "ΔW", dw, Right, r)
	if err != nil {
		return 0, err
	}
	var wv, p mat.Dense
	wv.Mul(w, v)      // (d×k)·(k×r) = d×r
	p.Mul(u.T(), &wv) // (r×d)·(d×r) = r×r
	den := mat.Norm(&p, 2)
	if den == 0 {
		return 0, fmt.Errorf("peft: Amplification: W has no component in ΔW's top-%d subspace (‖U_rᵀ W V_r‖_F = 0)", r)
	}
	return mat.Norm(dw, 2) / den, nil
}

// UpdateSparsity returns the fraction of the entries of ΔW whose magnitude
// is at most tol (tol ≥ 0; 0 counts exact zeros). An empty or non-finite
// ΔW or a negative tol is an error.
func UpdateSparsity(dw mat.Matrix, tol float64) (float64, error) {
	m, n := dw.Dims()
	if m == 0 || n == 0 {
		return 0, fmt.Errorf("peft: UpdateSparsity: ΔW is empty %s", ShapeOf(m, n))
	}
	if !(tol >= 0) || math.IsInf(tol, 0) {
		return 0, fmt.Errorf("peft: UpdateSparsity: tol = %v, want a finite value ≥ 0", tol)
	}
	c := 0
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			v := dw.At(i, j)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("peft: UpdateSparsity: ΔW %s has %v at (%d, %d)", ShapeOf(m, n), v, i, j)
			}
			if math.Abs(v) <= tol {
				c++
			}
		}
	}
	return float64(c) / float64(m*n), nil
}

// singularBasis returns the top-k singular vectors of a on side (d×k),
// from accel's thin SVD (cancellable through ctx).
func singularBasis(ctx context.Context, op, name string, a mat.Matrix, side Side, k int) (*mat.Dense, error) {
	m, n := a.Dims()
	if m == 0 || n == 0 {
		return nil, fmt.Errorf("peft: %s: %s is empty %s", op, name, ShapeOf(m, n))
	}
	if k < 1 || k > min(m, n) {
		return nil, fmt.Errorf("peft: %s: rank %d for %s %s is outside [1, %d]", op, k, name, ShapeOf(m, n), min(m, n))
	}
	if err := checkFiniteMatrix(op, name, a); err != nil {
		return nil, err
	}
	svd, err := accel.ThinSVD(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: SVD of %s %s: %w", op, name, ShapeOf(m, n), err)
	}
	var full mat.Matrix = svd.U // m×p
	if side == Right {
		full = svd.VT.T() // n×p
	}
	rows, _ := full.Dims()
	basis := mat.NewDense(rows, k, nil)
	for i := 0; i < rows; i++ {
		for j := 0; j < k; j++ {
			basis.Set(i, j, full.At(i, j))
		}
	}
	return basis, nil
}
