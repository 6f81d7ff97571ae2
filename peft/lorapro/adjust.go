package lorapro

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// XMode chooses the free r×r matrix X of the adjusted gradients (see
// Adjust): every X gives the same equivalent gradient, and they differ in
// how the step is split between A and B.
type XMode string

const (
	// Sylvester picks the X that keeps the adjusted gradients closest to
	// LoRA's own, min ‖g_A − g_A^L‖²_F + ‖g_B − g_B^L‖²_F (the paper's
	// Theorem 2.3), by solving BᵀB·X + X·AAᵀ = −(1/s²)(BᵀB)⁻¹g_A^L·Aᵀ.
	Sylvester XMode = "sylvester"
	// Zero takes X = 0.
	Zero XMode = "zero"
	// Symmetry takes X = −½(1/s²)(BᵀB)⁻¹Bᵀg_B^L·AAᵀ, the reference code's
	// third choice.
	Symmetry XMode = "symmetry"
)

// Adjusted holds LoRA-Pro's adjusted gradients of one adapter.
type Adjusted struct {
	GA *mat.Dense // g_A (r×k)
	GB *mat.Dense // g_B (d×r)
	X  *mat.Dense // the free term X (r×r) that was used
}

// Adjust returns LoRA-Pro's adjusted gradients for the factors a = A (r×k)
// and b = B (d×r) of ΔW = s·B·A, given LoRA's gradients gAL = g_A^L (r×k)
// and gBL = g_B^L (d×r) (Wang et al., ICLR 2025, Theorem 2.1):
//
//	g_A = (1/s²)(BᵀB + δI)⁻¹·g_A^L + X·A                      (r×k)
//	g_B = (1/s²)(I − B(BᵀB + δI)⁻¹Bᵀ)·g_B^L·(AAᵀ + δI)⁻¹ − B·X  (d×r)
//
// with X from mode (Sylvester if empty). When g_A^L = s·Bᵀ·G and
// g_B^L = s·G·Aᵀ are the LoRA gradients of some full gradient G (d×k), and
// δ = 0, these minimize ‖s(B·g_A + g_B·A) − G‖_F: the equivalent gradient
// s(B·g_A + g_B·A) is then the projection P_B·G + G·P_A − P_B·G·P_A of G
// onto the matrices of the form B·Y + Z·A, for every X. G itself is never
// needed: it enters only through Bᵀ·G and G·Aᵀ, which LoRA's backward pass
// already computes.
//
// δ ≥ 0 regularizes the two r×r inverses (the reference code's 1e-8); with
// δ = 0 they are pseudo-inverses, so a singular BᵀB (B = 0 at LoRA's init)
// gives g_A = X·A and g_B = (1/s²)·g_B^L·(AAᵀ)⁺ − B·X. The r×r
// matrices are inverted from their symmetric eigendecompositions, and the
// same eigenvectors solve the Sylvester equation: with BᵀB = U·Λ·Uᵀ and
// AAᵀ = V·M·Vᵀ, X = U·((Uᵀ·C·V) ⊘ (λᵢ + μⱼ))·Vᵀ, a zero entry where
// λᵢ + μⱼ vanishes. Shapes that do not chain panic with a peft.ShapeError.
func Adjust(a, b, gAL, gBL *mat.Dense, s, delta float64, mode XMode) Adjusted {
	r, k := a.Dims()
	d, rb := b.Dims()
	ga1, ga2 := gAL.Dims()
	gb1, gb2 := gBL.Dims()
	if rb != r || ga1 != r || ga2 != k || gb1 != d || gb2 != r {
		panic(peft.ShapeError{
			Op:   "lorapro.Adjust",
			Got:  fmt.Sprintf("A %s, B %s, g_A %s, g_B %s", peft.ShapeOf(r, k), peft.ShapeOf(d, rb), peft.ShapeOf(ga1, ga2), peft.ShapeOf(gb1, gb2)),
			Want: fmt.Sprintf("B (d×%d), g_A %s, g_B (d×%d)", r, peft.ShapeOf(r, k), r),
		})
	}
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) || delta < 0 || math.IsNaN(delta) {
		panic(peft.ArgError{Op: "lorapro.Adjust", Msg: fmt.Sprintf("scale s = %v, δ = %v: want a finite s ≠ 0 and δ ≥ 0", s, delta)})
	}
	if mode == "" {
		mode = Sylvester
	}
	inv2 := 1 / (s * s)

	// eigendecompositions of the Gram matrices BᵀB = U·Λ·Uᵀ, AAᵀ = V·M·Vᵀ
	var btb, aat mat.Dense
	btb.Mul(b.T(), b) // (r×r)
	aat.Mul(a, a.T()) // (r×r)
	lam, u := eigSym(&btb)
	mu, v := eigSym(&aat)
	invBB := inverseFromEig(lam, u, delta) // (BᵀB + δI)⁻¹ (r×r)
	invAA := inverseFromEig(mu, v, delta)  // (AAᵀ + δI)⁻¹ (r×r)

	// the X = 0 parts
	ga := mat.NewDense(r, k, nil)
	ga.Mul(invBB, gAL)
	ga.Scale(inv2, ga) // (1/s²)(BᵀB)⁻¹·g_A^L  (r×k)
	var pb mat.Dense   // B·(BᵀB)⁻¹·Bᵀ·g_B^L (d×r), the part of g_B^L in B's column space
	{
		var t1, t2 mat.Dense
		t1.Mul(b.T(), gBL) // (r×r)
		t2.Mul(invBB, &t1) // (r×r)
		pb.Mul(b, &t2)     // (d×r)
	}
	var resid mat.Dense
	resid.Sub(gBL, &pb) // (I − P_B)·g_B^L (d×r)
	gb := mat.NewDense(d, r, nil)
	gb.Mul(&resid, invAA)
	gb.Scale(inv2, gb) // (d×r)

	// the free term X (r×r)
	x := mat.NewDense(r, r, nil)
	switch mode {
	case Sylvester:
		// C = −(1/s²)(BᵀB)⁻¹·g_A^L·Aᵀ = −ga0·Aᵀ (r×r)
		var c mat.Dense
		c.Mul(ga, a.T())
		c.Scale(-1, &c)
		// Ĉ = Uᵀ·C·V, Y = Ĉ ⊘ (λᵢ + μⱼ), X = U·Y·Vᵀ
		var ch, uy mat.Dense
		ch.Product(u.T(), &c, v)
		tol := eigTol(lam, mu)
		for i := 0; i < r; i++ {
			for j := 0; j < r; j++ {
				if den := lam[i] + mu[j]; den > tol {
					ch.Set(i, j, ch.At(i, j)/den)
				} else {
					ch.Set(i, j, 0)
				}
			}
		}
		uy.Mul(u, &ch)
		x.Mul(&uy, v.T())
	case Symmetry:
		var t mat.Dense
		t.Product(invBB, b.T(), gBL, &aat) // (r×r)
		x.Scale(-0.5*inv2, &t)
	case Zero:
	default:
		panic(peft.ArgError{Op: "lorapro.Adjust", Msg: fmt.Sprintf("XMode = %q: want %q, %q or %q", mode, Sylvester, Zero, Symmetry)})
	}

	// g_A += X·A, g_B −= B·X
	var xa, bx mat.Dense
	xa.Mul(x, a)
	ga.Add(ga, &xa)
	bx.Mul(b, x)
	gb.Sub(gb, &bx)
	return Adjusted{GA: ga, GB: gb, X: x}
}

// Equivalent returns the equivalent gradient s·(B·gA + gB·A) (d×k) of
// gradients gA (r×k) and gB (d×r) of the factors a = A (r×k), b = B (d×r)
// of ΔW = s·B·A: to first order, a step (A, B) ← (A − η·gA, B − η·gB)
// changes ΔW by −η times it.
func Equivalent(a, b, gA, gB *mat.Dense, s float64) *mat.Dense {
	_, k := a.Dims()
	d, _ := b.Dims()
	g := mat.NewDense(d, k, nil)
	var t mat.Dense
	g.Mul(b, gA)
	t.Mul(gB, a)
	g.Add(g, &t)
	g.Scale(s, g)
	return g
}

// eigSym returns the eigenvalues (ascending) and eigenvectors (columns) of
// the symmetric matrix m (n×n), symmetrized first.
func eigSym(m *mat.Dense) ([]float64, *mat.Dense) {
	n, _ := m.Dims()
	sym := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			sym.SetSym(i, j, 0.5*(m.At(i, j)+m.At(j, i)))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, true) {
		// EigenSym fails only on NaN or Inf input; keep them visible.
		nan := mat.NewDense(n, n, nil)
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = math.NaN()
		}
		nan.Apply(func(int, int, float64) float64 { return math.NaN() }, nan)
		return vals, nan
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	for i, l := range vals {
		if l < 0 { // a Gram matrix is PSD: rounding only
			vals[i] = 0
		}
	}
	return vals, &vecs
}

// eigTol returns the threshold under which an eigenvalue (or a sum of two)
// counts as zero: n·ε·max eigenvalue.
func eigTol(vals ...[]float64) float64 {
	mx, n := 0.0, 0
	for _, vs := range vals {
		for _, v := range vs {
			mx = math.Max(mx, v)
		}
		n = max(n, len(vs))
	}
	return float64(n) * 0x1p-52 * mx
}

// inverseFromEig returns (Q·diag(vals)·Qᵀ + δI)⁻¹ = Q·diag(1/(λᵢ+δ))·Qᵀ,
// taking 1/(λᵢ+δ) as 0 where λᵢ+δ is zero to rounding (a pseudo-inverse).
func inverseFromEig(vals []float64, q *mat.Dense, delta float64) *mat.Dense {
	n := len(vals)
	tol := eigTol(vals)
	var qd mat.Dense
	qd.Apply(func(_, j int, v float64) float64 {
		if l := vals[j] + delta; l > tol {
			return v / l
		}
		return 0
	}, q)
	out := mat.NewDense(n, n, nil)
	out.Mul(&qd, q.T())
	return out
}
