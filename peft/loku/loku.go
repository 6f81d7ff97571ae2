// Package loku is LoKU, low-rank knowledge unlearning: make a trained
// model forget a set of examples while keeping what it knows about the
// rest, by training LoRA adapters with the inverted hinge loss on the
// forget set and cross-entropy on a retain set, the adapters initialized
// from a Fisher-weighted low-rank approximation of the weights (FILA,
// Fisher-Initialization of Low-rank Adapters).
//
// Cha, Cho, Hwang and Lee, 2024, "Towards Robust and Parameter-Efficient
// Knowledge Unlearning for LLMs", arXiv:2408.06621, ICLR 2025; reference
// code github.com/csm9493/efficient-llm-unlearning (TOFU/forget.py,
// TOFU/measure_importance.py). Three parts, each a function here:
//
//	IHL(z, t)  the inverted hinge loss on logits z (n×V) with targets t:
//	           mean_i [1 + p_i(t_i) − max_{v≠t_i} p_i(v)],  p_i = softmax(z_i)
//	Add        LoRA adapters with FILA's init from a relative Fisher F
//	           (see Importance), W replaced by the frozen residual
//	Unlearn    the training loop: IHL(forget) + λ·CE(retain) per step
//
// Gradient ascent (GA), the usual baseline, maximizes the forget set's
// cross-entropy: its loss −CE is unbounded below and its gradient does not
// fade once a token is forgotten, so it keeps pushing until the model's
// other knowledge collapses. IHL lies in [0, 2] and reaches 0 as soon as
// some other token v is certain; its gradient
//
//	∂IHL_i/∂z_ij = p_t·([j=t] − p_j) − p_v·([j=v] − p_j)   (t = t_i, v the runner-up)
//
// lowers the true token and raises the runner-up only, and vanishes as p_t
// → 0 with p_v → 1. Unlearn's Loss "GA" runs the baseline for comparison.
//
// Defaults: Loss "IHL", retain weight λ = 1, α = r (s = 1), FILA's ε =
// 1e-5 and the Fisher ratio's ε_F = 1e-5 (the reference code's). The rank
// has no default: the paper's ranks and learning rates are for billion-
// parameter models and were not carried over.
//
// Where gopeft departs from the reference code, and why:
//   - The paper writes IHL as max(0, 1 + p(x_t) − max_{v≠x_t} p(v)); the
//     max(0, ·) never acts, as p(x_t) − p(v) ≥ −1, so IHL composes
//     Softmax, an elementwise product with a constant ±1 mask (the true
//     token and the runner-up, picked from the values: piecewise constant,
//     so exact almost everywhere) and a sum, with no backward of its own.
//   - FILA's SVD is accel's exact thin SVD where the code calls PyTorch's
//     randomized svd_lowrank.
//   - Fisher sums squared gradients of whole batches, weighted by their
//     items, as measure_importance.py does; pass batches of one example
//     for the per-example empirical Fisher. The model is in evaluation
//     mode (no dropout) while it is measured.
//   - The task need not be language modelling: Unlearn and Evaluate take
//     any model whose logits they can get (an MLP's class logits, the
//     GPT's next-token logits, or a Logitser).
package loku

import (
	"fmt"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "LoKU",
		Kind:    peft.AdapterMethod,
		Paper:   "Cha, Cho, Hwang and Lee 2024, Towards Robust and Parameter-Efficient Knowledge Unlearning for LLMs, arXiv:2408.06621",
		Package: "github.com/gopeft/gopeft/peft/loku",
		Summary: "unlearning: LoRA from a Fisher-weighted rank-r SVD of W (FILA, W replaced by the residual), trained with the inverted hinge loss on the forget set plus CE on the retain set",
		// nil: the adapters are *lora.LoRA, which LoRA's format saves and
		// loads (relative to W_res: save the base model too).
		Format: nil,
	})
}

// IHL returns the inverted hinge loss of logits (n×V) against targets (n,
// each in [0, V)), averaged over the rows:
//
//	IHL = (1/n)·Σ_i [1 + p_i(t_i) − max_{v≠t_i} p_i(v)],   p_i = softmax(logits_i)
//
// a (1×1) tensor in [0, 2]. It panics if targets does not have one entry
// per row, if one is out of range, or if V < 2 (no other token).
func IHL(logits *peft.Tensor, targets []int) *peft.Tensor {
	n, V := logits.Dims()
	if len(targets) != n || V < 2 {
		panic(peft.ShapeError{Op: "loku.IHL", Got: fmt.Sprintf("logits %s, %d targets", peft.ShapeOf(n, V), len(targets)), Want: fmt.Sprintf("%d targets, one per row, and V ≥ 2", n)})
	}
	p := peft.Softmax(logits) // (n×V)
	// d (n×V): +1 at the target, −1 at the most likely other token.
	d := mat.NewDense(n, V, nil)
	for i, t := range targets {
		if t < 0 || t >= V {
			panic(peft.ArgError{Op: "loku.IHL", Msg: fmt.Sprintf("targets[%d] = %d outside [0, %d)", i, t, V)})
		}
		row := p.Value.RawRowView(i)
		v := -1
		for j, pj := range row {
			if j != t && (v < 0 || pj > row[v]) {
				v = j
			}
		}
		d.Set(i, t, 1)
		d.Set(i, v, -1)
	}
	gap := peft.Scale(peft.SumAll(peft.Mul(p, peft.NewConst(d))), 1/float64(n)) // mean p_t − p_v
	return peft.Add(peft.NewConst(mat.NewDense(1, 1, []float64{1})), gap)
}
