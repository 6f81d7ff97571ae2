// Package loralimits is a diagnostic, not a training method: it measures,
// on a model, the quantities in which "Computational Limits of Low-Rank
// Adaptation (LoRA) for Transformer-Based Models" (Hu, Su, Kuo, Song and
// Liu, 2024, arXiv:2406.03136, ICLR 2025) states its efficiency phase
// transition, and shows the transition on the tiny GPT.
//
// The paper's two points, as the abstract gives them:
//
//  1. LoRA's gradients are built from low-rank factors. For a layer
//     Y = X·(W₀ + s·B·A)ᵀ with X (L×k) the L tokens' inputs, W₀ (d×k),
//     B (d×r), A (r×k) and G = ∂ℒ/∂Y (L×d, rows = tokens):
//
//     ∇_A ℒ = s·Bᵀ·Gᵀ·X   (r×k)      ∇_B ℒ = s·Gᵀ·X·Aᵀ   (d×r)
//     ∇_ΔW ℒ = Gᵀ·X       (d×k), rank ≤ L
//
//     (LoRAGradients and DenseGradient; the tests check them against
//     gopeft's autograd and central differences.)
//
//  2. Under SETH, a sub-quadratic (in L) algorithm for the LoRA update of
//     attention exists only when the norms of X·W_Q, X·W_K (and their
//     adapted versions X·(W⋆ + αBA/r)) stay below a threshold; below it,
//     almost-linear algorithms exist, built from low-rank approximations
//     of the attention matrix. The threshold follows Alman and Song's
//     attention results, where the entries of Q and K bounded by B make
//     exp(Q·Kᵀ/√d) approximable by a low-degree polynomial (hence low
//     rank) if B = o(√log L), and not (under SETH) if B = Ω(√log L).
//
// What Diagnose reports, per block, input scale and adapter scale (Row):
// the max-entry norms ‖X·W_Qᵀ‖_max and ‖X·W_Kᵀ‖_max (gopeft stores W as
// out×in, so X·Wᵀ is the paper's X·W; biases left out, as in the paper's
// X·W), the same with the active adapters merged, the scale √(ln L), and
// the measured error of the polynomial method at that norm: exp(S), S =
// Q_h·K_hᵀ/√d_h for each head h over the causal entries, replaced by its
// Taylor polynomial of degree g, Σ_{m≤g} S^m/m!, which is a low-rank
// kernel (rank ≤ C(d_h + g, g), the number of monomials of degree ≤ g in
// d_h variables). As the max-entry norm passes the √log L scale the
// error of a fixed degree jumps from negligible to order one.
//
// What it does not assert: the exact constant of the threshold. gopeft's
// notes (methods-b.md §B8) could not verify it from the paper's text, so
// Row.Threshold is the scale √(ln L), and Row.Below compares against that
// scale only. The layer inputs are captured by a temporary adapter
// wrapping blocks.i.attn.q and .k (the GPT has no hooks), removed before
// Diagnose returns. At the tiny GPT's sizes C(d_h + g, g) exceeds L for
// every useful g, so the polynomial kernel saves nothing there: the
// error, not the speed, is what the table shows.
//
// The method is registered as "LoRA limits (diagnostic)", Kind
// HookMethod (it acts on whole models, not one layer's forward pass),
// with no adapter format: it has nothing to save.
package loralimits

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "LoRA limits (diagnostic)",
		Kind:    peft.HookMethod,
		Paper:   "Hu, Su, Kuo, Song and Liu 2024, Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models, arXiv:2406.03136",
		Package: "github.com/gopeft/gopeft/peft/loralimits",
		Summary: "diagnostic: max-entry norms of X·W_Q, X·W_K (base and adapted) against the √log L scale, with the polynomial (Taylor) attention approximation's error; LoRA's factored gradients",
	})
}

// LoRAGradients returns the gradients of a LoRA layer Y = X·(W₀ +
// s·B·A)ᵀ + b with respect to its factors, from the layer's input X (L×k)
// and the loss gradient G = ∂ℒ/∂Y (L×d):
//
//	dA = s·Bᵀ·Gᵀ·X  (r×k),    dB = s·Gᵀ·X·Aᵀ  (d×r)
//
// computed in the low-rank order (Gᵀ·X is never formed for dA: Bᵀ·Gᵀ
// first). It panics if the shapes do not chain.
func LoRAGradients(x, g, a, b *mat.Dense, s float64) (dA, dB *mat.Dense) {
	L, k := x.Dims()
	Lg, d := g.Dims()
	r, ka := a.Dims()
	db, rb := b.Dims()
	if Lg != L || ka != k || db != d || rb != r {
		panic(peft.ShapeError{Op: "loralimits.LoRAGradients",
			Got:  fmt.Sprintf("X %s, G %s, A %s, B %s", peft.ShapeOf(L, k), peft.ShapeOf(Lg, d), peft.ShapeOf(r, ka), peft.ShapeOf(db, rb)),
			Want: "X (L×k), G (L×d), A (r×k), B (d×r)"})
	}
	var bg, gx mat.Dense
	bg.Mul(b.T(), g.T()) // (r×L) = Bᵀ·Gᵀ
	dA = mat.NewDense(r, k, nil)
	dA.Mul(&bg, x)
	dA.Scale(s, dA)
	var xa mat.Dense
	xa.Mul(x, a.T()) // (L×r) = X·Aᵀ
	gx.Mul(g.T(), &xa)
	dB = mat.NewDense(d, r, nil)
	dB.Scale(s, &gx)
	return dA, dB
}

// DenseGradient returns ∇_ΔW ℒ = Gᵀ·X (d×k) for G (L×d) and X (L×k): a
// sum of L outer products, so of rank ≤ L. It panics if the row counts
// differ.
func DenseGradient(x, g *mat.Dense) *mat.Dense {
	L, k := x.Dims()
	Lg, d := g.Dims()
	if L != Lg {
		panic(peft.ShapeError{Op: "loralimits.DenseGradient", Got: fmt.Sprintf("X %s, G %s", peft.ShapeOf(L, k), peft.ShapeOf(Lg, d)), Want: "X and G with the same rows L"})
	}
	out := mat.NewDense(d, k, nil)
	out.Mul(g.T(), x)
	return out
}

// MaxNorm returns ‖M‖_max = max_ij |m_ij|.
func MaxNorm(m mat.Matrix) float64 {
	r, c := m.Dims()
	var v float64
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			v = math.Max(v, math.Abs(m.At(i, j)))
		}
	}
	return v
}

// Threshold returns √(ln L), the scale (not the constant) of the
// Alman–Song bound on the entries of Q and K for sequence length L ≥ 2.
func Threshold(L int) float64 {
	if L < 2 {
		panic(peft.ArgError{Op: "loralimits.Threshold", Msg: fmt.Sprintf("L = %d; want L ≥ 2", L)})
	}
	return math.Sqrt(math.Log(float64(L)))
}

// Monomials returns C(n + g, g), the number of monomials of degree ≤ g in
// n variables: the rank of the degree-g polynomial kernel on n-dimensional
// queries and keys.
func Monomials(n, g int) float64 {
	v := 1.0
	for i := 1; i <= g; i++ {
		v = v * float64(n+i) / float64(i)
	}
	return v
}

// PolyError returns the relative errors of replacing exp by its degree-g
// Taylor polynomial in causal attention with queries q and keys k (L×dh
// each), scores S = q·kᵀ/√dh over the entries j ≤ i: expErr = ‖exp(S) −
// P_g(S)‖_F / ‖exp(S)‖_F, and attnErr the largest entry of |softmax(S) −
// D̂⁻¹·P_g(S)| (rows normalised by their own sums). Also the largest |S|.
func PolyError(q, k *mat.Dense, g int) (expErr, attnErr, scoreMax float64) {
	L, dh := q.Dims()
	Lk, dk := k.Dims()
	if L != Lk || dh != dk {
		panic(peft.ShapeError{Op: "loralimits.PolyError", Got: fmt.Sprintf("q %s, k %s", peft.ShapeOf(L, dh), peft.ShapeOf(Lk, dk)), Want: "q and k of the same shape (L×d_h)"})
	}
	if g < 0 {
		panic(peft.ArgError{Op: "loralimits.PolyError", Msg: fmt.Sprintf("degree g = %d; want ≥ 0", g)})
	}
	var s mat.Dense
	s.Mul(q, k.T())
	s.Scale(1/math.Sqrt(float64(dh)), &s)
	// Both sums of squares are scaled by exp(−2M), M the largest causal
	// score, so that exp does not overflow at large norms.
	M := math.Inf(-1)
	for i := 0; i < L; i++ {
		for j := 0; j <= i; j++ {
			M = math.Max(M, s.At(i, j))
		}
	}
	taylor := func(x float64) float64 {
		term, sum := 1.0, 1.0
		for m := 1; m <= g; m++ {
			term *= x / float64(m)
			sum += term
		}
		return sum
	}
	var num, den float64
	e := make([]float64, L)
	p := make([]float64, L)
	for i := 0; i < L; i++ {
		rowMax := math.Inf(-1)
		for j := 0; j <= i; j++ {
			x := s.At(i, j)
			scoreMax = math.Max(scoreMax, math.Abs(x))
			rowMax = math.Max(rowMax, x)
			ex, px := math.Exp(x-M), taylor(x)*math.Exp(-M)
			num += (ex - px) * (ex - px)
			den += ex * ex
		}
		// The attention rows, each normalised by its own sum (softmax
		// shifted by the row's largest score).
		var se, sp float64
		for j := 0; j <= i; j++ {
			e[j] = math.Exp(s.At(i, j) - rowMax)
			p[j] = taylor(s.At(i, j))
			se += e[j]
			sp += p[j]
		}
		for j := 0; j <= i; j++ {
			attnErr = math.Max(attnErr, math.Abs(e[j]/se-p[j]/sp))
		}
	}
	return math.Sqrt(num / den), attnErr, scoreMax
}
