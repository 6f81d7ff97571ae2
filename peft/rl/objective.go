package rl

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// ClippedObjective returns PPO's clipped surrogate (Schulman et al., 2017,
// arXiv:1707.06347, eq. 7) over M tokens, less β times the k3 estimate of
// the KL to the reference, as GRPO's loss has it (Shao et al., 2024,
// arXiv:2402.03300, eq. 3), and its derivative in each logp:
//
//	ρ_i = exp(logp_i − old_i)
//	J   = Σ_i w_i·[ min(ρ_i·A_i, clip(ρ_i, 1−ε, 1+ε)·A_i) − β·k3(logp_i, ref_i) ]
//	∂J/∂logp_i = w_i·[ ρ_i·A_i·𝟙(unclipped) − β·(1 − exp(ref_i − logp_i)) ]
//
// where the min picks the clipped term, whose derivative is 0, exactly when
// A_i > 0 and ρ_i > 1+ε or A_i < 0 and ρ_i < 1−ε. A is each token's
// advantage and w its weight: nil gives every token 1/M (the mean), and
// GRPO's per-sequence mean gives the tokens of sample i 1/(B·|o_i|) and
// padding 0. All slices have length M ≥ 1 (ref may be nil when β = 0).
// Mismatched lengths panic.
func ClippedObjective(logp, old, ref, adv, weight []float64, eps, beta float64) (j float64, dj []float64) {
	M := len(logp)
	if M == 0 || len(old) != M || len(adv) != M || (beta != 0 && len(ref) != M) || (weight != nil && len(weight) != M) {
		panic(peft.ShapeError{Op: "rl.ClippedObjective", Got: fmt.Sprintf("logp %d, old %d, ref %d, adv %d, weight %d", M, len(old), len(ref), len(adv), len(weight)), Want: "M ≥ 1 of each (ref may be empty when β = 0, weight when uniform)"})
	}
	dj = make([]float64, M)
	for i, lp := range logp {
		w := 1 / float64(M)
		if weight != nil {
			w = weight[i]
		}
		if w == 0 {
			continue
		}
		rho := math.Exp(lp - old[i])
		a := adv[i]
		c := math.Min(math.Max(rho, 1-eps), 1+eps)
		f, d := rho*a, rho*a
		if c*a < rho*a { // min is the clipped term, flat in logp
			f, d = c*a, 0
		}
		if beta != 0 {
			f -= beta * K3(lp, ref[i])
			d -= beta * (1 - math.Exp(ref[i]-lp))
		}
		j += w * f
		dj[i] = w * d
	}
	return j, dj
}

// flatten returns the rows of x one after the other.
func flatten(x [][]float64) []float64 {
	var out []float64
	for _, r := range x {
		out = append(out, r...)
	}
	return out
}

// PolicyStep computes the objective J(θ) = f(logp(θ)) of a batch of
// rollouts, where f is any function of the completion tokens' log-probs
// (flattened, (B·n), sequence after sequence) that returns its value and
// its derivative ∂f/∂logp, and adds −∇_θ J into the gradients of g's
// trainable tensors, with one forward and one backward pass. It returns J
// and the log-probs.
//
// How. The autograd has no exp, so the ratio ρ cannot be written as an op;
// but J depends on θ only through the log-probs, so by the chain rule
//
//	∇_θ J = Σ_i c_i·∇_θ logp_i,   c_i = ∂f/∂logp_i  (computed in float64)
//
// and −Σ_i c_i·∇_θ logp_i is the gradient of the cross-entropy summed over
// the completion tokens with row i's gradient scaled by c_i. The scaling
// is an op on the logits z whose value is z exactly:
//
//	z' = (z − sg(z))⊙c + sg(z)     (sg: Detach; z − sg(z) is 0 exactly)
//
// so Σ_i CE_i(z') has the gradient wanted, and its value (not J) is
// discarded. The finite-difference test checks this against J itself.
func PolicyStep(g *peft.GPT, r *Rollouts, f func(logp []float64) (float64, []float64)) (j float64, logp [][]float64) {
	j, logp, _ = policyStepZ(g, r, f)
	return j, logp
}

// policyStep is PolicyStep returning the logits at τ (B·(L−1)×V) instead.
func policyStep(g *peft.GPT, r *Rollouts, f func(logp []float64) (float64, []float64)) *mat.Dense {
	_, _, z := policyStepZ(g, r, f)
	return z
}

func policyStepZ(g *peft.GPT, r *Rollouts, f func(logp []float64) (float64, []float64)) (j float64, logp [][]float64, zv *mat.Dense) {
	z, tg := forward(g, r)
	if r.Temperature != 1 {
		z = peft.Scale(z, 1/r.Temperature)
	}
	// z now holds the logits at τ; log-probs from it at τ = 1
	logp = tokenLogProbs(z.Value, tg, &Rollouts{Seqs: r.Seqs, PromptLen: r.PromptLen, Temperature: 1})
	j, dj := f(flatten(logp))
	if len(dj) != r.B()*r.N() {
		panic(peft.ShapeError{Op: "rl.PolicyStep", Got: fmt.Sprintf("%d derivatives", len(dj)), Want: fmt.Sprintf("B·n = %d", r.B()*r.N())})
	}
	rows, _ := z.Dims()
	c := mat.NewDense(rows, 1, nil) // (B·(L−1)×1), 0 on prompt rows
	for b := 0; b < r.B(); b++ {
		for t := 0; t < r.N(); t++ {
			c.Set(r.row(b, t), 0, dj[b*r.N()+t])
		}
	}
	sg := peft.Detach(z)
	zc := peft.Add(peft.MulCol(peft.Sub(z, sg), peft.NewConst(c)), sg)
	loss := peft.Scale(peft.CrossEntropy(zc, tg), float64(rows)) // Σ_i CE_i
	loss.Backward()
	return j, logp, z.Value
}
