// Package conda is Conda, column-normalized Adam: an optimizer that trains
// every weight in full, normalizing Adam's step in the orthogonal basis of
// the momentum's singular vectors instead of in the weight's own
// coordinates.
package conda

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Conda is Adam whose second moment is taken in a rotated basis (Wang et
// al. 2025, "Conda: Column-Normalized Adam for Training Large Language
// Models Faster", arXiv:2509.24218). For a targeted matrix W (m×n) with
// gradient G (m×n) it keeps the first moment M in W's coordinates, takes a
// square orthogonal basis B from M's singular vectors every T steps, and
// runs Adam's normalization in that basis, with the second moment S:
//
//	M ← β₁·M + (1−β₁)·G                                  M: m×n
//	at steps 1, T+1, 2T+1, …:  M = U·Σ·Vᵀ (SVD of the new M)
//	m < n (left):   B = U (m×m),  proj(X) = Bᵀ·X,  back(Y) = B·Y
//	m ≥ n (right):  B = V (n×n),  proj(X) = X·B,   back(Y) = Y·Bᵀ
//	G̃ = proj(G),  M̃ = proj(M)                             both m×n
//	S ← β₂·S + (1−β₂)·G̃⊙G̃                                S: m×n, in the basis
//	W ← W − η·√(1−β₂ᵗ)/(1−β₁ᵗ) · α·back(M̃ / (√S + ε))
//	W ← W·(1 − η·λ)                                      decoupled weight decay
//
// On the left, column j of G̃ is column j of G in the basis U: the paper
// calls normalizing by S "column-wise second moment normalization"; its
// code, and this package, divide entrywise. At the first step M̃/√S =
// sign(UᵀG), so every column of the update has norm η·α·√m (every row
// η·α·√n on the right). B is square, so back(proj(X)) = X and nothing is
// truncated: the state is two m×n moments plus the min(m,n)² basis, more
// than Adam's, not less. S is not rotated when the basis changes, as in the
// paper's code. When B is a signed permutation, Conda with α = 1 is Adam.
// Every other trainable tensor (biases, norms, untargeted matrices) gets
// Adam with the same β₁, β₂, ε, bias correction and weight decay, and no
// projection.
//
// Defaults are those of the paper's scripts (conda_torch, examples/): α =
// 0.25, T = 2000, β = (0.9, 0.99), ε = 1e-8; they train with η = 0.01
// (LLaMA-60M) or 0.006 (GPT-2 125M). As in the reference code, weight decay
// is applied after the update (torch's AdamW applies it before), bias
// correction folds into the step size, and ε is added to √S uncorrected.
// Departures: the reference puts Conda only on the attention and MLP
// Linear weights, chosen by the training script; here Config.Targets
// chooses, and by default every 2-D tensor (both sides > 1) is projected.
// An SVD that fails or is cancelled leaves the whole step undone (weights
// and state), where the reference would raise midway.
//
// Conda implements peft.Optimizer and peft.ContextOptimizer: Train gives it
// its context, which stops a basis SVD when cancelled.
type Conda struct {
	cfg   Config
	state map[*peft.Tensor]*condaState
	ctx   context.Context // of the SVDs; nil: context.Background()
}

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// UpdateProjGap T: the basis is recomputed from the momentum's SVD
	// every T steps of each matrix (0 selects the paper's 2000).
	UpdateProjGap int
	// Scale α of the projected-back update (0 selects the paper's 0.25).
	// Scale 1 makes a Conda step as long as an Adam step.
	Scale float64
	// Targets names the matrices to project: a tensor's full name
	// ("blocks.0.attn.q.weight"), its module's name ("blocks.0.attn.q"), a
	// dotted suffix of either ("attn.q"), a path.Match glob
	// ("blocks.*.mlp.*") or a regular expression written ^…$ over either.
	// Only 2-D tensors (both sides > 1) are projected. Empty: every 2-D
	// trainable tensor.
	Targets []string
	// Beta1, Beta2 are the moment decay rates (0 selects 0.9, 0.99).
	Beta1, Beta2 float64
	// Eps is ε, added to √S (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled, for every tensor (0: none).
	WeightDecay float64
}

// condaState is one tensor's optimizer state.
type condaState struct {
	proj bool       // projected (a targeted matrix) or plain Adam
	left bool       // basis on the left (m < n): B = U (m×m); else right: Bᵀ = Vᵀ (n×n)
	b    *mat.Dense // U (m×m) if left, Vᵀ (n×n) if right; nil until the first step
	m, v *mat.Dense // M (W's coordinates) and S (the basis's), both like W
	t    int        // steps taken
}

// New returns a Conda optimizer. A configuration out of range (β outside
// [0, 1), T < 0, …) panics with a peft.ArgError naming the field and
// value; peft.Maybe turns it into an error.
func New(cfg Config) *Conda {
	if cfg.UpdateProjGap == 0 {
		cfg.UpdateProjGap = 2000
	}
	if cfg.Scale == 0 {
		cfg.Scale = 0.25
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.99
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	bad := func(msg string, args ...any) {
		panic(peft.ArgError{Op: "conda.New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case cfg.UpdateProjGap < 0:
		bad("Config.UpdateProjGap = %d out of range: want T ≥ 1 (0 selects 2000)", cfg.UpdateProjGap)
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		bad("Config.Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		bad("Config.Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps > 0) || math.IsInf(cfg.Eps, 0):
		bad("Config.Eps = %g out of range: want a finite ε > 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0) || math.IsInf(cfg.WeightDecay, 0):
		bad("Config.WeightDecay = %g out of range: want a finite λ ≥ 0", cfg.WeightDecay)
	case math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0):
		bad("Config.Scale = %g: want a finite α", cfg.Scale)
	}
	for _, p := range cfg.Targets {
		if err := peft.CheckParamPattern(p); err != nil {
			bad("Config.Targets pattern %q: %v", p, err)
		}
	}
	return &Conda{cfg: cfg, state: map[*peft.Tensor]*condaState{}}
}

// Config returns c's configuration with the defaults filled in.
func (c *Conda) Config() Config { return c.cfg }

// SetContext sets the context of the basis SVDs of the following steps
// (Train calls it with its own). Until it is called, they run with
// context.Background().
func (c *Conda) SetContext(ctx context.Context) { c.ctx = ctx }

// projects reports whether c projects p.
func (c *Conda) projects(p *peft.Tensor) bool {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false
	}
	return len(c.cfg.Targets) == 0 || peft.MatchParam(c.cfg.Targets, p.Name)
}

// refresh is a basis computed in the first phase of a step.
type refresh struct {
	m    *mat.Dense // the new first moment M (m×n)
	b    *mat.Dense // U (m×m) or Vᵀ (n×n) from M's SVD
	left bool
}

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. It first computes the bases due at this step (the SVDs
// of the new momenta) and only then updates anything: if an SVD does not
// converge, or the context set by SetContext is cancelled, Step panics with
// an error naming the tensor and the step (wrapping the context's error),
// and no weight and no state has changed; peft.Maybe turns the panic into
// an error.
func (c *Conda) Step(params []*peft.Tensor, lr float64) {
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	// phase 1: the SVDs, which may fail
	due := map[*peft.Tensor]refresh{}
	for _, p := range params {
		if !p.Trainable || p.Grad == nil || !c.projects(p) {
			continue
		}
		st := c.state[p]
		if st != nil && st.t%c.cfg.UpdateProjGap != 0 {
			continue
		}
		if _, ok := due[p]; ok {
			continue // listed twice
		}
		m, n := p.Dims()
		mNew := mat.NewDense(m, n, nil) // β₁·M + (1−β₁)·G
		if st != nil {
			mNew.Scale(c.cfg.Beta1, st.m)
		}
		mNew.Apply(func(i, j int, v float64) float64 { return v + (1-c.cfg.Beta1)*p.Grad.At(i, j) }, mNew)
		svd, err := accel.ThinSVD(ctx, mNew)
		if err != nil {
			t := 1
			if st != nil {
				t = st.t + 1
			}
			panic(fmt.Errorf("peft: Conda(%s): SVD of the %s momentum at step %d: %w", p.Name, peft.ShapeOf(m, n), t, err))
		}
		r := refresh{m: mNew, left: m < n}
		if r.left {
			r.b = svd.U // m×m: p = min(m,n) = m
		} else {
			r.b = svd.VT // n×n: p = n
		}
		due[p] = r
	}
	// phase 2: the updates
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := c.state[p]
		if st == nil {
			m, n := p.Dims()
			st = &condaState{proj: c.projects(p), m: mat.NewDense(m, n, nil), v: mat.NewDense(m, n, nil)}
			c.state[p] = st
		}
		if st.proj {
			r, ok := due[p]
			delete(due, p) // once per step if p is listed twice
			c.stepProjected(p, st, r, ok, lr)
		} else {
			c.stepAdam(p, st, lr)
		}
		if c.cfg.WeightDecay > 0 {
			p.Value.Scale(1-lr*c.cfg.WeightDecay, p.Value) // decoupled weight decay, after the update
		}
	}
}

// stepSize returns η·√(1−β₂ᵗ)/(1−β₁ᵗ), Adam's bias correction folded into
// the step size.
func (c *Conda) stepSize(lr float64, t int) float64 {
	return lr * math.Sqrt(1-math.Pow(c.cfg.Beta2, float64(t))) / (1 - math.Pow(c.cfg.Beta1, float64(t)))
}

// stepAdam is the unprojected update of a tensor: Adam.
func (c *Conda) stepAdam(p *peft.Tensor, st *condaState, lr float64) {
	b1, b2, eps := c.cfg.Beta1, c.cfg.Beta2, c.cfg.Eps
	st.t++
	s := c.stepSize(lr, st.t)
	r, n := p.Dims()
	md, vd := st.m.RawMatrix().Data, st.v.RawMatrix().Data // contiguous (mat.NewDense)
	for i := 0; i < r; i++ {
		for j := 0; j < n; j++ {
			k := i*n + j
			g := p.Grad.At(i, j)
			md[k] = b1*md[k] + (1-b1)*g   // update the first moment (momentum)
			vd[k] = b2*vd[k] + (1-b2)*g*g // update the second moment
			p.Value.Set(i, j, p.Value.At(i, j)-s*md[k]/(math.Sqrt(vd[k])+eps))
		}
	}
}

// stepProjected is Conda's update of a targeted matrix; r is the refreshed
// basis and momentum if fresh is set.
func (c *Conda) stepProjected(p *peft.Tensor, st *condaState, r refresh, fresh bool, lr float64) {
	b1, b2, eps := c.cfg.Beta1, c.cfg.Beta2, c.cfg.Eps
	// update the first moment, in W's coordinates (phase 1 did it if the
	// basis was refreshed)
	if fresh {
		st.m, st.b, st.left = r.m, r.b, r.left
	} else {
		st.m.Scale(b1, st.m)
		var g mat.Dense
		g.Scale(1-b1, p.Grad)
		st.m.Add(st.m, &g)
	}
	// rotate the gradient and the momentum into the basis
	var gt, mt mat.Dense // G̃, M̃ (m×n)
	if st.left {
		gt.Mul(st.b.T(), p.Grad) // Uᵀ·G
		mt.Mul(st.b.T(), st.m)   // Uᵀ·M
	} else {
		gt.Mul(p.Grad, st.b.T()) // G·V
		mt.Mul(st.m, st.b.T())   // M·V
	}
	st.t++
	// update the second moment S in the basis, and normalize
	gd, md := gt.RawMatrix().Data, mt.RawMatrix().Data // fresh results: contiguous
	vd := st.v.RawMatrix().Data
	for k, g := range gd {
		vd[k] = b2*vd[k] + (1-b2)*g*g
		md[k] /= math.Sqrt(vd[k]) + eps // M̃ / (√S + ε), in place
	}
	// rotate back and apply
	var back mat.Dense
	if st.left {
		back.Mul(st.b, &mt) // U·N
	} else {
		back.Mul(&mt, st.b) // N·Vᵀ
	}
	back.Scale(c.stepSize(lr, st.t)*c.cfg.Scale, &back)
	p.Value.Sub(p.Value, &back)
}

// StateBytes returns the size of c's state in bytes, as float64: the two
// moments (m×n each) of every tensor stepped, and the basis (min(m,n)²) of
// every projected one. It grows as Step first meets each tensor.
func (c *Conda) StateBytes() int {
	n := 0
	for _, st := range c.state {
		for _, d := range []*mat.Dense{st.m, st.v, st.b} {
			if d != nil {
				r, k := d.Dims()
				n += 8 * r * k
			}
		}
	}
	return n
}

// Basis returns p's current basis B, orthogonal and square: U (m×m) with
// left true, used as Uᵀ·X; or Vᵀ (n×n) with left false, used as X·V. It
// returns nil if p is not projected or not yet stepped.
func (c *Conda) Basis(p *peft.Tensor) (b *mat.Dense, left bool) {
	st := c.state[p]
	if st == nil || !st.proj {
		return nil, false
	}
	return st.b, st.left
}

var (
	_ peft.Optimizer        = (*Conda)(nil)
	_ peft.ContextOptimizer = (*Conda)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "Conda",
		Kind:    peft.OptimizerMethod,
		Paper:   "Wang et al. 2025, Conda: Column-Normalized Adam for Training Large Language Models Faster, arXiv:2509.24218",
		Package: "github.com/gopeft/gopeft/peft/conda",
		Summary: "Adam normalized in the orthogonal basis of the momentum's singular vectors (refreshed every T steps): full-rank updates, state 2mn + min(m,n)²",
	})
}
