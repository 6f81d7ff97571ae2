package perk

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// The truncated meta-gradient through a general model.
//
// With g_t = ∇L_ctx(φ_t) and H_t = ∇²L_ctx(φ_t), the inner step
// φ_{t+1} = φ_t − η·g_t has the Jacobian I − η·H_t (symmetric), so the
// adjoint v_t = ∂L_out/∂φ_t runs backwards from v_N = ∇L_question(φ_N):
//
//	v_t = v_{t+1} − η·H_t·v_{t+1},   t = N−1 … N−T
//
// and the truncated meta-gradient is v_{N−T} (∂φ_{N−T}/∂θ := I). gopeft's
// autograd gives gradients, not Hessians, so each H_t·v is taken by a
// central difference of gradients along v:
//
//	H_t·v ≈ (∇L_ctx(φ_t + ε·v̂) − ∇L_ctx(φ_t − ε·v̂))·‖v‖/(2ε),   v̂ = v/‖v‖
//
// whose error is O(ε²) from the third derivative plus O(u/ε) from
// rounding (u the float64 unit roundoff); ε = u^{1/3}·(1 + ‖φ_t‖) balances
// the two, about 6e-6 relative. A step of the adjoint costs two gradient
// evaluations, so a meta-gradient costs N + 1 + 2T forward and backward
// passes against N + 1 for the first-order one, and keeps T + 1 copies of
// the memory (the LoRA factors only, not activations).

// MetaGradient returns the question loss L_question(φ_N) of ep after
// cfg.InnerSteps SGD steps at cfg.InnerLR on ep's context, starting from
// the current values of m's trainable adapter parameters (θ), and the
// meta-gradient ∂L_question(φ_N)/∂θ truncated to the last cfg.Truncate
// inner steps (see the package doc); Truncate = 0 gives the first-order
// gradient ∇L_question(φ_N). The gradients are in the order of
// peft.AdapterParams(m.Modules()), trainable ones only, and m's
// parameters are left holding θ. It is an error if cfg is out of range,
// m has no trainable adapter parameter or a loss is not finite; it stops
// with ctx's error if ctx is cancelled.
//
// A model in training mode with dropout would make the differences of
// gradients noise: MetaGradient is for deterministic forward passes (the
// tiny GPT has no dropout; peft.LinearModel and peft.MLP are
// deterministic).
func MetaGradient(ctx context.Context, m peft.Model, ep Episode, cfg Config) (loss float64, grads []*mat.Dense, err error) {
	if err := cfg.check(false); err != nil {
		return 0, nil, err
	}
	ps, err := memory("MetaGradient", m)
	if err != nil {
		return 0, nil, err
	}
	theta := values(ps)
	defer setValues(ps, theta)
	return metaGradient(ctx, m, ps, ep, cfg)
}

// metaGradient is MetaGradient on the memory ps, which it leaves changed.
func metaGradient(ctx context.Context, m peft.Model, ps []*peft.Tensor, ep Episode, cfg Config) (float64, []*mat.Dense, error) {
	n, T := cfg.InnerSteps, cfg.Truncate
	// The first N−T steps carry no gradient.
	if _, err := innerLoop(ctx, m, ps, ep.Context, n-T, cfg.InnerLR); err != nil {
		return 0, nil, err
	}
	// The last T steps, keeping each φ_t.
	kept := make([][]*mat.Dense, 0, T)
	for t := n - T; t < n; t++ {
		kept = append(kept, values(ps))
		if _, err := innerLoop(ctx, m, ps, ep.Context, 1, cfg.InnerLR); err != nil {
			return 0, nil, err
		}
	}
	loss, v, err := gradient(ctx, m, ps, ep.Question, "the questions after the inner loop")
	if err != nil {
		return 0, nil, err
	}
	for i := len(kept) - 1; i >= 0; i-- {
		hv, err := hessVec(ctx, m, ps, kept[i], v, ep.Context)
		if err != nil {
			return 0, nil, err
		}
		for j := range v {
			v[j].Add(v[j], scaled(hv[j], -cfg.InnerLR))
		}
	}
	return loss, v, nil
}

// hessVec returns ∇²L(b)·v at φ = phi by a central difference of
// gradients (see above), leaving ps changed.
func hessVec(ctx context.Context, m peft.Model, ps []*peft.Tensor, phi, v []*mat.Dense, b peft.Batch) ([]*mat.Dense, error) {
	nv, nphi := norm(v), norm(phi)
	out := make([]*mat.Dense, len(v))
	if nv == 0 {
		for i := range v {
			r, c := v[i].Dims()
			out[i] = mat.NewDense(r, c, nil)
		}
		return out, nil
	}
	eps := math.Cbrt(0x1p-53) * (1 + nphi)
	step := eps / nv // φ ± step·v moves φ by ±ε
	at := func(sign float64) ([]*mat.Dense, error) {
		for i, p := range ps {
			p.Value.Copy(phi[i])
			p.Value.Add(p.Value, scaled(v[i], sign*step))
		}
		_, g, err := gradient(ctx, m, ps, b, "a context step of the meta-gradient")
		return g, err
	}
	plus, err := at(1)
	if err != nil {
		return nil, err
	}
	minus, err := at(-1)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i] = mat.NewDense(plus[i].RawMatrix().Rows, plus[i].RawMatrix().Cols, nil)
		out[i].Sub(plus[i], minus[i])
		out[i].Scale(1/(2*step), out[i])
	}
	return out, nil
}

// gradient returns L(b) and its gradient with respect to ps at their
// current values, or an error if ctx is done or L(b) is not finite; what
// names the loss in that error.
func gradient(ctx context.Context, m peft.Model, ps []*peft.Tensor, b peft.Batch, what string) (float64, []*mat.Dense, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	for _, p := range ps {
		p.ZeroGrad()
	}
	loss := m.Loss(b)
	l := loss.Scalar()
	if math.IsNaN(l) || math.IsInf(l, 0) {
		return l, nil, fmt.Errorf("peft: PERK: loss is %v at %s", l, what)
	}
	loss.Backward()
	g := make([]*mat.Dense, len(ps))
	for i, p := range ps {
		g[i] = mat.DenseCopyOf(p.Grad)
	}
	return l, g, nil
}

// values returns copies of ps's values.
func values(ps []*peft.Tensor) []*mat.Dense {
	out := make([]*mat.Dense, len(ps))
	for i, p := range ps {
		out[i] = mat.DenseCopyOf(p.Value)
	}
	return out
}

// setValues copies vs into ps.
func setValues(ps []*peft.Tensor, vs []*mat.Dense) {
	for i, p := range ps {
		p.Value.Copy(vs[i])
	}
}

// norm is the Euclidean norm of the concatenation of ms.
func norm(ms []*mat.Dense) float64 {
	var s float64
	for _, x := range ms {
		f := mat.Norm(x, 2)
		s += f * f
	}
	return math.Sqrt(s)
}

// scaled returns s·x as a new matrix.
func scaled(x *mat.Dense, s float64) *mat.Dense {
	var out mat.Dense
	out.Scale(s, x)
	return &out
}
