// Package lorapro is LoRA-Pro: an optimizer for LoRA adapters that adjusts
// the gradients of the two factors so that the step they make on the
// merged weight comes as close as any rank-r step can to full fine-tuning's.
package lorapro

import (
	"fmt"
	"math"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// LoRAPro trains LoRA adapters with adjusted gradients (Wang, Liang, He,
// Wang and Tan, ICLR 2025, "LoRA-Pro: Are Low-Rank Adapters Properly
// Optimized?", arXiv:2407.18242). For a LoRA ΔW = s·B·A on a frozen W₀
// (d×k), B (d×r), A (r×k), with G = ∂L/∂W (d×k) the full fine-tuning
// gradient, LoRA's gradients are
//
//	g_A^L = s·Bᵀ·G (r×k),   g_B^L = s·G·Aᵀ (d×r)
//
// and a small step (A, B) ← (A − η·g_A, B − η·g_B) moves W by −η times the
// equivalent gradient g̃ = s·(B·g_A + g_B·A) (d×k). Plain LoRA's g̃ is
// s²(B·Bᵀ·G + G·AᵀA), not G. LoRA-Pro replaces g_A, g_B by the minimizers of
// ‖g̃ − G‖_F (Theorem 2.1; Adjust gives the closed form), which makes g̃ the
// projection P_B·G + G·P_A − P_B·G·P_A of G onto the tangent space
// {B·Y + Z·A} of the rank-r matrices at B·A, P_B = B(BᵀB)⁻¹Bᵀ,
// P_A = Aᵀ(AAᵀ)⁻¹A. The minimizers form a family g_A + X·A, g_B − B·X with
// the same g̃; X is chosen to keep them closest to LoRA's own gradients,
// the solution of the Sylvester equation BᵀB·X + X·AAᵀ =
// −(1/s²)(BᵀB)⁻¹g_A^L·Aᵀ (Theorem 2.3).
//
// How G is obtained: it is not. The minimizer depends on G only through
// Bᵀ·G and G·Aᵀ, which are g_A^L/s and g_B^L/s, so LoRA-Pro needs no more
// than LoRA's backward pass, and W₀ stays frozen. (To compare against G in a
// notebook or a test, unfreeze W₀ for one backward pass: the autograd then
// fills W₀'s Grad with G, at the cost of one d×k product and a d×k
// buffer per layer; this package's tests do exactly that.)
//
// Two ways to apply Adam, as the reference code's two modes:
//
//   - "efficient" (the reference's default): AdamW on the adjusted g_A,
//     g_B, with moments of A's and B's shapes: 2·r·(d+k) numbers.
//   - "full" (the paper's Algorithm 1): Adam moments M, V (d×k) are kept on
//     g̃, N = M̂/(√V̂ + ε) is Adam's step in W's space, and the factors move
//     along the adjusted gradients whose equivalent gradient best
//     approximates N: Adjust(A, B, s·Bᵀ·N, s·N·Aᵀ). 2·d·k numbers.
//
// Config.SGD replaces Adam by plain steps on the adjusted gradients, as the
// reference's SGD class. Every other trainable tensor (biases, heads,
// factors of adapters not given to New) gets plain AdamW with the same β₁,
// β₂, ε and weight decay.
//
// Defaults, as the reference code (mrflogs/LoRA-Pro, peta/optim.py): mode
// "efficient", X from the Sylvester equation, δ = 1e-8 added to BᵀB and AAᵀ
// before inverting, β₁ = 0.9, β₂ = 0.999, ε = 1e-8. Departures from it:
// s is read from each adapter (α/r or α/√r) instead of being one
// optimizer-wide scaling_factor (2 by default there) that has to match the
// LoRA config by hand; the Sylvester equation is solved in float64 from
// the two r×r symmetric eigendecompositions rather than with complex
// general eigenvectors; the moments are float64 rather than the full mode's
// bfloat16; weight decay shrinks A and B by (1 − η·λ) in both modes (the
// reference's full mode shrinks each by √(1 − η·λ) and also decays the
// frozen W₀, which gopeft's optimizers never touch).
//
// LoRAPro implements peft.Optimizer. Its extra cost per adapter and step is
// two r×r eigendecompositions and O(r·d·k) products (full mode: the d×k
// moments and equivalent gradient).
type LoRAPro struct {
	cfg   Config
	pairs map[*peft.Tensor]*pairState  // an adapter's A and B → its state
	other map[*peft.Tensor]*adamMoment // plain AdamW for everything else
}

// Mode values of Config.Mode.
const (
	Efficient = "efficient"
	Full      = "full"
)

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// Mode is "efficient" (Adam moments on the adjusted g_A, g_B; the
	// default) or "full" (Adam moments on the d×k equivalent gradient, the
	// paper's Algorithm 1).
	Mode string
	// XMode picks the free term X: Sylvester (the default), Zero or
	// Symmetry.
	XMode XMode
	// Delta δ is added to BᵀB and AAᵀ before inverting (0 selects 1e-8).
	Delta float64
	// Beta1, Beta2 are Adam's moment decay rates (0 selects 0.9, 0.999).
	Beta1, Beta2 float64
	// Eps is Adam's ε (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled: every trained tensor is scaled by
	// (1 − η·λ) before its step.
	WeightDecay float64
	// SGD replaces Adam by plain steps: A ← A − η·g_A, B ← B − η·g_B for
	// adapters, θ ← θ − η·g for the rest. No state is kept.
	SGD bool
}

// pairState is one adapter's optimizer state.
type pairState struct {
	a      *lora.LoRA
	mA, vA *mat.Dense // efficient: moments of g_A (r×k)
	mB, vB *mat.Dense // efficient: moments of g_B (d×r)
	m, v   *mat.Dense // full: moments of g̃ (d×k)
	t      int        // steps taken
	x      *mat.Dense // X of the last step (r×r)
}

// adamMoment is a plain AdamW tensor's state.
type adamMoment struct {
	m, v []float64
	t    int
}

// New returns a LoRA-Pro optimizer for the adapters ads (as lora.Add
// returns them). It is an error if cfg is out of range or an adapter is nil
// or given twice; the error names the field and its value.
func New(ads []*lora.LoRA, cfg Config) (*LoRAPro, error) {
	if cfg.Mode == "" {
		cfg.Mode = Efficient
	}
	if cfg.XMode == "" {
		cfg.XMode = Sylvester
	}
	if cfg.Delta == 0 {
		cfg.Delta = 1e-8
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: LoRA-Pro: Config.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Mode != Efficient && cfg.Mode != Full:
		return nil, bad("Mode", fmt.Sprintf("%q", cfg.Mode), `"efficient" or "full"`)
	case cfg.XMode != Sylvester && cfg.XMode != Zero && cfg.XMode != Symmetry:
		return nil, bad("XMode", fmt.Sprintf("%q", cfg.XMode), `"sylvester", "zero" or "symmetry"`)
	case !(cfg.Delta > 0) || math.IsInf(cfg.Delta, 0):
		return nil, bad("Delta", cfg.Delta, "a finite δ > 0 (0 selects 1e-8)")
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		return nil, bad("Beta1", cfg.Beta1, "a value in [0, 1)")
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		return nil, bad("Beta2", cfg.Beta2, "a value in [0, 1)")
	case !(cfg.Eps > 0) || math.IsInf(cfg.Eps, 0):
		return nil, bad("Eps", cfg.Eps, "a finite ε > 0 (0 selects 1e-8)")
	case !(cfg.WeightDecay >= 0) || math.IsInf(cfg.WeightDecay, 0):
		return nil, bad("WeightDecay", cfg.WeightDecay, "a finite λ ≥ 0")
	}
	o := &LoRAPro{cfg: cfg, pairs: map[*peft.Tensor]*pairState{}, other: map[*peft.Tensor]*adamMoment{}}
	for i, a := range ads {
		if a == nil || a.A == nil || a.B == nil {
			return nil, fmt.Errorf("peft: LoRA-Pro: adapter %d is nil or has no factors", i)
		}
		if o.pairs[a.A] != nil || o.pairs[a.B] != nil {
			return nil, fmt.Errorf("peft: LoRA-Pro: adapter %s is given twice", a.A.Name)
		}
		st := &pairState{a: a}
		o.pairs[a.A], o.pairs[a.B] = st, st
	}
	return o, nil
}

// Config returns o's configuration with the defaults filled in.
func (o *LoRAPro) Config() Config { return o.cfg }

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. An adapter given to New whose A and B are both in params,
// trainable and with gradients gets LoRA-Pro's step; every other tensor
// (one factor alone included) gets plain AdamW, or SGD.
func (o *LoRAPro) Step(params []*peft.Tensor, lr float64) {
	ready := func(p *peft.Tensor) bool { return p.Trainable && p.Grad != nil }
	in := map[*peft.Tensor]bool{}
	for _, p := range params {
		in[p] = true
	}
	done := map[*pairState]bool{}
	for _, p := range params {
		if !ready(p) {
			continue
		}
		if st := o.pairs[p]; st != nil {
			a, b := st.a.A, st.a.B
			if in[a] && in[b] && ready(a) && ready(b) {
				if !done[st] {
					done[st] = true
					o.stepPair(st, lr)
				}
				continue
			}
		}
		o.stepPlain(p, lr)
	}
}

// stepPair takes LoRA-Pro's step on one adapter.
func (o *LoRAPro) stepPair(st *pairState, lr float64) {
	A, B := st.a.A, st.a.B
	s := st.a.Scaling()
	av, bv := mat.DenseCopyOf(A.Value), mat.DenseCopyOf(B.Value) // A (r×k), B (d×r)
	var ga, gb *mat.Dense
	switch {
	case o.cfg.SGD || o.cfg.Mode == Efficient:
		// adjust LoRA's gradients (Theorem 2.1 with Theorem 2.3's X)
		adj := Adjust(av, bv, A.Grad, B.Grad, s, o.cfg.Delta, o.cfg.XMode)
		st.x = adj.X
		ga, gb = adj.GA, adj.GB
		if !o.cfg.SGD {
			st.t++
			if st.mA == nil {
				r, k := av.Dims()
				d, _ := bv.Dims()
				st.mA, st.vA = mat.NewDense(r, k, nil), mat.NewDense(r, k, nil)
				st.mB, st.vB = mat.NewDense(d, r, nil), mat.NewDense(d, r, nil)
			}
			ga = o.adam(st.mA, st.vA, st.t, ga)
			gb = o.adam(st.mB, st.vB, st.t, gb)
		}
	default: // full: Adam in W's space on the equivalent gradient
		// g̃ = s(B·g_A + g_B·A) of the adjusted gradients; X cancels in it
		adj := Adjust(av, bv, A.Grad, B.Grad, s, o.cfg.Delta, Zero)
		eq := Equivalent(av, bv, adj.GA, adj.GB, s) // (d×k)
		st.t++
		if st.m == nil {
			d, k := eq.Dims()
			st.m, st.v = mat.NewDense(d, k, nil), mat.NewDense(d, k, nil)
		}
		n := o.adam(st.m, st.v, st.t, eq) // N = M̂/(√V̂ + ε) (d×k)
		// the adjusted gradients whose equivalent gradient best fits N
		var gAL, gBL mat.Dense
		gAL.Mul(bv.T(), n)
		gAL.Scale(s, &gAL) // s·Bᵀ·N (r×k)
		gBL.Mul(n, av.T())
		gBL.Scale(s, &gBL) // s·N·Aᵀ (d×r)
		adj = Adjust(av, bv, &gAL, &gBL, s, o.cfg.Delta, o.cfg.XMode)
		st.x = adj.X
		ga, gb = adj.GA, adj.GB
	}
	o.apply(A, ga, lr)
	o.apply(B, gb, lr)
}

// apply sets p ← p·(1 − η·λ) − η·g.
func (o *LoRAPro) apply(p *peft.Tensor, g *mat.Dense, lr float64) {
	if o.cfg.WeightDecay > 0 {
		p.Value.Scale(1-lr*o.cfg.WeightDecay, p.Value) // decoupled weight decay
	}
	var step mat.Dense
	step.Scale(lr, g)
	p.Value.Sub(p.Value, &step)
}

// adam updates the moments m, v (g's shape) with g at step t and returns
// the bias-corrected direction m̂/(√v̂ + ε), as peft.AdamW computes it.
func (o *LoRAPro) adam(m, v *mat.Dense, t int, g *mat.Dense) *mat.Dense {
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	c1 := 1 - math.Pow(b1, float64(t)) // bias corrections of both moments
	c2 := 1 - math.Pow(b2, float64(t))
	r, c := g.Dims()
	out := mat.NewDense(r, c, nil)
	md, vd, od := m.RawMatrix().Data, v.RawMatrix().Data, out.RawMatrix().Data
	gd := mat.DenseCopyOf(g).RawMatrix().Data
	for i, gi := range gd {
		md[i] = b1*md[i] + (1-b1)*gi    // update the first moment (momentum)
		vd[i] = b2*vd[i] + (1-b2)*gi*gi // update the second moment
		mh, vh := md[i]/c1, vd[i]/c2    // bias-correct both moments
		od[i] = mh / (math.Sqrt(vh) + o.cfg.Eps)
	}
	return out
}

// stepPlain takes an AdamW (or SGD) step on a tensor outside any pair.
func (o *LoRAPro) stepPlain(p *peft.Tensor, lr float64) {
	g := p.Grad
	if !o.cfg.SGD {
		st := o.other[p]
		r, c := p.Dims()
		if st == nil {
			st = &adamMoment{m: make([]float64, r*c), v: make([]float64, r*c)}
			o.other[p] = st
		}
		st.t++
		g = o.adam(mat.NewDense(r, c, st.m), mat.NewDense(r, c, st.v), st.t, g)
	}
	o.apply(p, g, lr)
}

// StateBytes returns the size of o's state in bytes, as float64: per
// adapter 16·r·(d+k) in efficient mode and 16·d·k in full mode (Adam's two
// moments), 16 bytes per entry of every other tensor stepped with AdamW,
// and nothing with SGD. It grows as Step first meets each tensor.
func (o *LoRAPro) StateBytes() int {
	n := 0
	seen := map[*pairState]bool{}
	for _, st := range o.pairs {
		if seen[st] {
			continue
		}
		seen[st] = true
		for _, d := range []*mat.Dense{st.mA, st.vA, st.mB, st.vB, st.m, st.v} {
			if d != nil {
				r, c := d.Dims()
				n += 8 * r * c
			}
		}
	}
	for _, st := range o.other {
		n += 8 * (len(st.m) + len(st.v))
	}
	return n
}

// X returns the free term X (r×r) of a's last step, or nil before it.
func (o *LoRAPro) X(a *lora.LoRA) *mat.Dense {
	if st := o.pairs[a.A]; st != nil {
		return st.x
	}
	return nil
}

var _ peft.Optimizer = (*LoRAPro)(nil)

func init() {
	peft.Register(peft.Method{
		Name:    "LoRA-Pro",
		Kind:    peft.OptimizerMethod,
		Paper:   "Wang, Liang, He, Wang and Tan 2025 (ICLR), LoRA-Pro: Are Low-Rank Adapters Properly Optimized?, arXiv:2407.18242",
		Package: "github.com/gopeft/gopeft/peft/lorapro",
		Summary: "adjusts LoRA's g_A, g_B so that s(B·g_A + g_B·A) is the closest rank-r-tangent step to the full gradient G, then Adam",
	})
}
