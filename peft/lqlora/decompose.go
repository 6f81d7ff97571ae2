package lqlora

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/quant"
	"gonum.org/v1/gonum/mat"
)

// DefaultMaxIter is the paper's reference code's iteration count.
const DefaultMaxIter = 100

// Options control Decompose.
type Options struct {
	// MaxIter is the number of iterations at most; 0 means 100.
	MaxIter int
	// Fixed runs all MaxIter iterations and returns the last, instead of
	// stopping at the first that does not lower the error.
	Fixed bool
}

// Decomposition is W ≈ Q + L1·L2 for a weight W (d×k) and rank r.
type Decomposition struct {
	Q  *quant.Quantized // quantized part, (d×k) once dequantized
	L1 *mat.Dense       // (d×r) = U_r·S_r^{1/2}; nil for r = 0
	L2 *mat.Dense       // (r×k) = S_r^{1/2}·V_rᵀ; nil for r = 0
	R  int              // rank r
	// Errors[t] is ‖W − Q_{t+1} − L1_{t+1}·L2_{t+1}‖_F after iteration
	// t+1, for every iteration run (including the one that stopped it).
	Errors []float64
	// Iter is the iteration (from 1) whose Q, L1, L2 these are.
	Iter int
}

// Err returns ‖W − Q − L1·L2‖_F of the returned iterate.
func (d *Decomposition) Err() float64 { return d.Errors[d.Iter-1] }

// LowRank returns L1·L2 (d×k), zero for r = 0.
func (d *Decomposition) LowRank() *mat.Dense {
	if d.R == 0 {
		return mat.NewDense(d.Q.Rows, d.Q.Cols, nil)
	}
	var l mat.Dense
	l.Mul(d.L1, d.L2)
	return &l
}

// Approx returns Q + L1·L2 (d×k), dequantized.
func (d *Decomposition) Approx() *mat.Dense {
	a := d.Q.Dequantize()
	a.Add(a, d.LowRank())
	return a
}

// StorageBits returns the bits of Q's storage plus r·(d+k) entries of
// L1 and L2 at lowRankBits each (16 for bfloat16 factors).
func (d *Decomposition) StorageBits(lowRankBits int) int64 {
	return d.Q.StorageBits() + int64(d.R*(d.Q.Rows+d.Q.Cols)*lowRankBits)
}

// Decompose splits w (d×k) into a quantized part and a rank-r part by LQ-LoRA's
// alternation (Guo et al. 2023, Algorithm 1), starting from Q_0 = 0:
//
//	L1_t·L2_t ← best rank-r approximation of W − Q_{t−1}   (thin SVD, U_r·S_r·V_rᵀ)
//	Q_t       ← quant(W − L1_t·L2_t)
//	e_t       = ‖W − Q_t − L1_t·L2_t‖_F
//
// for t = 1, …, MaxIter. Unless opt.Fixed, it stops at the first t with
// e_t ≥ e_{t−1} and returns iterate t−1 — the best one; the reference code
// returns iterate t, the worse, as its own comment notes. Each SVD step
// cannot raise the error (Eckart–Young, given Q); the quantization step can,
// since the block scales change with W − L1·L2, which is why the stop is
// needed. r = 0 gives plain quantization, Q = quant(W), in one iteration.
// Cancelling ctx stops the SVDs and returns its error.
func Decompose(ctx context.Context, w *mat.Dense, q quant.Quantizer, r int, opt *Options) (*Decomposition, error) {
	d, k := w.Dims()
	if r < 0 || r > min(d, k) {
		panic(peft.ArgError{Op: "lqlora.Decompose", Msg: fmt.Sprintf("rank r = %d out of range for W %s: want 0 ≤ r ≤ %d", r, peft.ShapeOf(d, k), min(d, k))})
	}
	var o Options
	if opt != nil {
		o = *opt
	}
	if o.MaxIter < 0 {
		return nil, fmt.Errorf("peft: LQ-LoRA: MaxIter = %d out of range: want ≥ 1 (0 means %d)", o.MaxIter, DefaultMaxIter)
	}
	if o.MaxIter == 0 {
		o.MaxIter = DefaultMaxIter
	}
	if r == 0 {
		o.MaxIter = 1
	}
	best := &Decomposition{R: r}
	var cur Decomposition
	resid := mat.NewDense(d, k, nil) // W − Q_{t−1}, then W − L1·L2
	resid.Copy(w)
	for t := 1; t <= o.MaxIter; t++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur = Decomposition{R: r}
		if r > 0 {
			svd, err := accel.ThinSVD(ctx, resid)
			if err != nil {
				return nil, fmt.Errorf("peft: LQ-LoRA: SVD of W − Q %s at iteration %d: %w", peft.ShapeOf(d, k), t, err)
			}
			cur.L1, cur.L2 = factors(svd, r)
			var lr mat.Dense
			lr.Mul(cur.L1, cur.L2)
			resid.Sub(w, &lr) // W − L1·L2
		}
		z, err := q.Quantize(resid)
		if err != nil {
			return nil, err
		}
		cur.Q = z
		resid.Sub(resid, z.Dequantize()) // W − L1·L2 − Q
		e := mat.Norm(resid, 2)
		best.Errors = append(best.Errors, e)
		resid.Sub(w, z.Dequantize()) // W − Q_t, for the next SVD
		if !o.Fixed && t > 1 && e >= best.Errors[t-2] {
			break
		}
		best.Q, best.L1, best.L2, best.Iter = cur.Q, cur.L1, cur.L2, t
	}
	return best, nil
}

// factors returns L1 = U_r·S_r^{1/2} (d×r) and L2 = S_r^{1/2}·V_rᵀ (r×k).
func factors(svd accel.SVD, r int) (l1, l2 *mat.Dense) {
	d, _ := svd.U.Dims()
	_, k := svd.VT.Dims()
	l1, l2 = mat.NewDense(d, r, nil), mat.NewDense(r, k, nil)
	for i := 0; i < r; i++ {
		q := math.Sqrt(svd.S[i])
		for j := 0; j < d; j++ {
			l1.Set(j, i, svd.U.At(j, i)*q)
		}
		for j := 0; j < k; j++ {
			l2.Set(i, j, q*svd.VT.At(i, j))
		}
	}
	return l1, l2
}
