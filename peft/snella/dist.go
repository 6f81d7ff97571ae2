package snella

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Dist returns the pairwise Euclidean distances between the rows of x and
// the rows of y, the kernel SNELLA merges its factors with (PyTorch's
// torch.cdist with p = 2):
//
//	D_ij = ‖x_i − y_j‖₂          x (m×p), y (n×p) → D (m×n)
//
// Its backward pass, for an upstream gradient G (m×n), is
//
//	dx_i += Σ_j G_ij·(x_i − y_j)/D_ij
//	dy_j −= Σ_i G_ij·(x_i − y_j)/D_ij
//
// Zero distance. ‖·‖ is not differentiable at 0; its subdifferential there
// is the unit ball, and Dist takes its smallest element, 0: a pair with
// D_ij = 0 adds nothing to either gradient (as torch.cdist does). It is
// also what central differences give, since (‖h‖ − ‖−h‖)/2h = 0.
//
// How the backward is attached. peft exports no way to give a Tensor a
// hand-written backward function from outside the core, so Dist builds, from
// peft's ops, the linear surrogate of D at the forward point,
//
//	L(x, y) = U ⊙ ( (x̄ ⊙ x)·1·1ᵀ − x·ȳᵀ − x̄·yᵀ + 1·1ᵀ·(ȳ ⊙ y)ᵀ )
//	U_ij = 1/D_ij (0 where D_ij = 0),   x̄, ȳ the values of x and y, held fixed
//
// (the row sums (x̄ ⊙ x)·1 are (m×1), (ȳ ⊙ y)·1 are (n×1)), and returns
// L − L̄ + D̄ with L̄ and D̄ constants: its value is D̄ exactly (L − L̄ is 0 in
// floating point), and, L being linear with coefficients fixed at (x̄, ȳ),
// its gradient is the Jacobian of D there, the formulas above. The test
// checks both against a direct loop and central differences. It costs
// about three times the m·n·p multiply-adds of the distances themselves.
func Dist(x, y *peft.Tensor) *peft.Tensor {
	m, p := x.Dims()
	n, p2 := y.Dims()
	if p != p2 {
		panic(peft.ShapeError{Op: "snella.Dist", Got: fmt.Sprintf("x %s, y %s", peft.ShapeOf(m, p), peft.ShapeOf(n, p2)), Want: "x (m×p), y (n×p)"})
	}
	d := distances(x.Value, y.Value) // (m×n)
	if !x.NeedsGrad() && !y.NeedsGrad() {
		return peft.NewConst(d)
	}
	u := mat.NewDense(m, n, nil) // (m×n) 1/D, 0 at zero distance
	u.Apply(func(_, _ int, v float64) float64 {
		if v == 0 {
			return 0
		}
		return 1 / v
	}, d)
	xc, yc := peft.Detach(x), peft.Detach(y)
	onesP := peft.NewConst(ones(p, 1))
	onesM := peft.NewConst(ones(m, 1))
	onesN := peft.NewConst(ones(1, n))
	rx := peft.MatMul(peft.Mul(xc, x), onesP) // (m×1) x̄_i·x_i
	ry := peft.MatMul(peft.Mul(yc, y), onesP) // (n×1) ȳ_j·y_j
	s := peft.MatMul(rx, onesN)               // (m×n) x̄_i·x_i in every column
	s = peft.Sub(s, peft.MatMulT(x, yc))      // − x_i·ȳ_j
	s = peft.Sub(s, peft.MatMulT(xc, y))      // − x̄_i·y_j
	s = peft.Add(s, peft.MatMulT(onesM, ry))  // + ȳ_j·y_j in every row
	l := peft.Mul(peft.NewConst(u), s)        // (m×n) the surrogate L
	return peft.Add(peft.Sub(l, peft.NewConst(mat.DenseCopyOf(l.Value))), peft.NewConst(d))
}

// distances returns D_ij = ‖x_i − y_j‖₂ (m×n) for x (m×p), y (n×p).
func distances(x, y *mat.Dense) *mat.Dense {
	m, p := x.Dims()
	n, _ := y.Dims()
	d := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		xi := x.RawRowView(i)
		for j := 0; j < n; j++ {
			yj := y.RawRowView(j)
			var s float64
			for t := 0; t < p; t++ {
				e := xi[t] - yj[t]
				s += e * e
			}
			d.Set(i, j, math.Sqrt(s))
		}
	}
	return d
}

// ones returns an r×c matrix of ones.
func ones(r, c int) *mat.Dense {
	v := make([]float64, r*c)
	for i := range v {
		v[i] = 1
	}
	return mat.NewDense(r, c, v)
}
