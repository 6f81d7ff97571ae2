package rl

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

// tinyPolicy returns a GPT of odd small sizes with a rank-2 LoRA whose B is
// random (as if trained), and rollouts sampled from it.
func tinyPolicy(t *testing.T, tau float64) (*peft.GPT, []*lora.LoRA, *Rollouts) {
	t.Helper()
	g := peft.NewGPT(peft.GPTConfig{Vocab: 7, Context: 8, Layers: 1, Heads: 2, Dim: 6, Hidden: 10, Seed: 3})
	ads, err := lora.Add(g, lora.Config{R: 2, Alpha: 4, Targets: []string{"q", "v", "fc", "head"}, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(11))
	for _, a := range ads {
		d := a.B.Value.RawMatrix().Data
		for i := range d {
			d[i] = 0.5 * rng.NormFloat64()
		}
	}
	prompts := [][]int{{1, 2}, {3, 0}, {1, 2}}
	r, err := Sample(context.Background(), g, prompts, 4, tau, rand.New(rand.NewSource(2)))
	if err != nil {
		t.Fatal(err)
	}
	return g, ads, r
}

// TestPolicyStepGradient checks that PolicyStep adds −∇_θ J for the clipped
// objective with a KL term into the LoRA gradients, against central
// differences of J itself on a tiny model, with old log-probs shifted so
// that some ratios are clipped on each side.
func TestPolicyStepGradient(t *testing.T) {
	for _, tau := range []float64{1, 0.7} {
		g, ads, r := tinyPolicy(t, tau)
		M := r.B() * r.N()
		rng := rand.New(rand.NewSource(4))
		logp := flatten(LogProbs(g, r))
		old, adv := make([]float64, M), make([]float64, M)
		for i := range old {
			old[i] = logp[i] + 0.4*rng.NormFloat64() // ρ from about 0.5 to 2
			adv[i] = rng.NormFloat64()
		}
		ref := flatten(RefLogProbs(g, r))
		const eps, beta = 0.2, 0.3
		clipped := 0
		for i := range logp {
			rho := math.Exp(logp[i] - old[i])
			if (adv[i] > 0 && rho > 1+eps) || (adv[i] < 0 && rho < 1-eps) {
				clipped++
			}
		}
		if clipped == 0 || clipped == M {
			t.Fatalf("τ = %v: %d of %d tokens clipped; the test needs both kinds", tau, clipped, M)
		}
		J := func() float64 {
			j, _ := ClippedObjective(flatten(LogProbs(g, r)), old, ref, adv, nil, eps, beta)
			return j
		}
		for _, a := range ads {
			a.A.Grad, a.B.Grad = nil, nil
		}
		j, _ := PolicyStep(g, r, func(lp []float64) (float64, []float64) { return ClippedObjective(lp, old, ref, adv, nil, eps, beta) })
		if d := math.Abs(j - J()); d > 1e-12 {
			t.Errorf("τ = %v: PolicyStep's J = %v, direct %v", tau, j, J())
		}
		maxErr, maxG := 0.0, 0.0
		for _, a := range ads {
			for _, p := range []*peft.Tensor{a.A, a.B} {
				d := p.Value.RawMatrix().Data
				gd := p.Grad.RawMatrix().Data
				for i := range d {
					const h = 1e-6
					x := d[i]
					d[i] = x + h
					jp := J()
					d[i] = x - h
					jm := J()
					d[i] = x
					fd := (jp - jm) / (2 * h)
					maxErr = math.Max(maxErr, math.Abs(-gd[i]-fd))
					maxG = math.Max(maxG, math.Abs(fd))
				}
			}
		}
		t.Logf("τ = %v: %d of %d tokens clipped; max |∇J − FD| = %.2e, max |FD| = %.2e", tau, clipped, M, maxErr, maxG)
		if maxErr > 1e-6*math.Max(1, maxG) || maxG == 0 {
			t.Errorf("τ = %v: gradient differs from central differences by %.2e (scale %.2e)", tau, maxErr, maxG)
		}
	}
}
