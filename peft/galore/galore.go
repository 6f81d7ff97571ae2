// Package galore is GaLore, Adam on low-rank projections of the gradients:
// an optimizer that trains every weight in full with less optimizer state.
package galore

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// GaLore is Adam on low-rank projections of the gradients (Zhao et al. 2024,
// "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection",
// arXiv:2403.03507). It trains every weight in full, but keeps Adam's
// moments for a targeted matrix W (m×n) only in an r-dimensional subspace
// of its gradient G (m×n), found from G's SVD and refreshed every T steps
// (the "std" projection of the paper's code):
//
//	at steps 1, T+1, 2T+1, …:  G = U·Σ·Vᵀ (thin SVD)
//	m < n (left):   P = U[:, :r] (m×r),   R = Pᵀ·G (r×n),   back(N) = P·N
//	m ≥ n (right):  Q = Vᵀ[:r, :] (r×n),  R = G·Qᵀ (m×r),   back(N) = N·Q
//	M ← β₁M + (1−β₁)R,   V ← β₂V + (1−β₂)R⊙R        (same shape as R)
//	W ← W − η·√(1−β₂ᵗ)/(1−β₁ᵗ) · α·back(M / (√V + ε))
//
// so its state is 2·max(m,n)·r moment entries plus a min(m,n)·r projector
// instead of Adam's 2·m·n. The moments are not rotated when the projector
// changes, as in the paper's code. Every other trainable tensor (biases,
// norms, untargeted matrices) gets plain AdamW with the same β₁, β₂, ε.
// Weight decay is decoupled, W ← W·(1 − η·λ), applied before the update as
// in torch's AdamW. With SGD set, the projected step is W ← W − η·α·back(R):
// for r = min(m,n) and α = 1 it is plain SGD, W ← W − η·G.
//
// GaLore implements peft.Optimizer and peft.ContextOptimizer: Train gives it its
// context, which stops a projector's SVD when cancelled.
type GaLore struct {
	cfg   Config
	state map[*peft.Tensor]*galoreState
	ctx   context.Context // of the SVDs; nil: context.Background()
}

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// Rank r of the projected gradient, 1 ≤ r ≤ min(m,n) of every targeted
	// matrix. The paper pre-trains with r = 128 and fine-tunes GLUE with
	// r = 4 or 8.
	Rank int
	// UpdateProjGap T: the projector is recomputed from the gradient's SVD
	// every T steps of each matrix (0 selects the paper's 200).
	UpdateProjGap int
	// Scale α of the projected-back update (0 selects the paper's 0.25).
	Scale float64
	// Targets names the matrices to project: a tensor's full name
	// ("blocks.0.attn.q.weight"), its module's name ("blocks.0.attn.q"), a
	// dotted suffix of either ("attn.q", "q"), a path.Match glob
	// ("blocks.*.mlp.*") or a regular expression written ^…$ over either
	// ("^blocks\.[01]\.attn\.(q|v)$"). Only 2-D tensors (both sides > 1) are
	// projected. Empty: every 2-D trainable tensor with min(m,n) > Rank.
	Targets []string
	// Beta1, Beta2 are Adam's moment decay rates (0 selects 0.9, 0.999).
	Beta1, Beta2 float64
	// Eps is Adam's ε (0 selects 1e-8).
	Eps float64
	// WeightDecay λ, decoupled, for every tensor (0: none).
	WeightDecay float64
	// SGD replaces Adam by plain SGD, for targeted and other tensors alike.
	SGD bool
}

// galoreState is one tensor's optimizer state.
type galoreState struct {
	proj bool       // projected (a targeted matrix) or plain AdamW
	left bool       // projected on the left (m < n): P (m×r); else right: Q (r×n)
	pq   *mat.Dense // P (m×r) or Q (r×n); nil until the first step
	m, v *mat.Dense // Adam moments: shape of R (r×n or m×r), or of W if !proj
	t    int        // steps taken
}

// New returns a GaLore optimizer. A configuration out of range (rank
// r ≤ 0, β outside [0, 1), …) panics with a peft.ArgError; peft.Maybe turns
// it into an error.
func New(cfg Config) *GaLore {
	if cfg.UpdateProjGap == 0 {
		cfg.UpdateProjGap = 200
	}
	if cfg.Scale == 0 {
		cfg.Scale = 0.25
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
	bad := func(msg string, args ...any) {
		panic(peft.ArgError{Op: "New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case cfg.Rank <= 0:
		bad("Rank = %d out of range: want 1 ≤ r ≤ min(m,n) of each targeted matrix", cfg.Rank)
	case cfg.UpdateProjGap < 0:
		bad("UpdateProjGap = %d out of range: want T ≥ 1 (0 selects 200)", cfg.UpdateProjGap)
	case cfg.Beta1 < 0 || cfg.Beta1 >= 1:
		bad("Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case cfg.Beta2 < 0 || cfg.Beta2 >= 1:
		bad("Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case cfg.Eps < 0:
		bad("Eps = %g out of range: want ε ≥ 0", cfg.Eps)
	case cfg.WeightDecay < 0:
		bad("WeightDecay = %g out of range: want λ ≥ 0", cfg.WeightDecay)
	case math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0):
		bad("Scale = %g: want a finite α", cfg.Scale)
	}
	for _, p := range cfg.Targets {
		if err := peft.CheckParamPattern(p); err != nil {
			bad("target pattern %q: %v", p, err)
		}
	}
	return &GaLore{cfg: cfg, state: map[*peft.Tensor]*galoreState{}}
}

// Config returns g's configuration with the defaults filled in.
func (g *GaLore) Config() Config { return g.cfg }

// projects reports whether p is a matrix g projects, or an error when it is
// targeted but the rank does not fit it.
func (g *GaLore) projects(p *peft.Tensor) (bool, error) {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false, nil
	}
	if len(g.cfg.Targets) == 0 {
		return min(m, n) > g.cfg.Rank, nil
	}
	if !peft.MatchParam(g.cfg.Targets, p.Name) {
		return false, nil
	}
	if g.cfg.Rank > min(m, n) {
		return false, peft.ArgError{Op: "GaLore(" + p.Name + ")", Msg: fmt.Sprintf(
			"rank r = %d out of range [1, %d] for the %s matrix", g.cfg.Rank, min(m, n), peft.ShapeOf(m, n))}
	}
	return true, nil
}

// Check returns the error that Step would panic with for params: a targeted
// matrix whose min(m,n) is below the rank. Call it before training to get
// the error as a value.
func (g *GaLore) Check(params []*peft.Tensor) error {
	for _, p := range params {
		if !p.Trainable {
			continue
		}
		if _, err := g.projects(p); err != nil {
			return err
		}
	}
	return nil
}

// SetContext sets the context of the SVDs of the following steps (Train
// calls it with its own). Until it is called, they run with
// context.Background().
func (g *GaLore) SetContext(ctx context.Context) { g.ctx = ctx }

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. It panics with a peft.ArgError if a targeted matrix is
// smaller than the rank (see Check), and with an error naming the tensor
// and the step if the SVD of its gradient fails: it does not converge, or
// the context set by SetContext is cancelled (the error then wraps the
// context's). Tensors before that one in params have been updated, the
// others not; peft.Maybe turns the panic into an error.
func (g *GaLore) Step(params []*peft.Tensor, lr float64) {
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := g.state[p]
		if st == nil {
			proj, err := g.projects(p)
			if err != nil {
				panic(err)
			}
			st = &galoreState{proj: proj}
			g.state[p] = st
		}
		// The update first, so that a step cancelled in its SVD changes
		// nothing; then W ← W·(1 − η·λ) − update, as before.
		var upd *mat.Dense
		if st.proj {
			upd = g.stepProjected(p, st, lr)
		} else {
			upd = g.stepFull(p, st, lr)
		}
		if g.cfg.WeightDecay > 0 {
			p.Value.Scale(1-lr*g.cfg.WeightDecay, p.Value) // decoupled weight decay
		}
		p.Value.Sub(p.Value, upd)
	}
}

// stepFull returns plain Adam's (or SGD's) update of the whole tensor,
// lr included.
func (g *GaLore) stepFull(p *peft.Tensor, st *galoreState, lr float64) *mat.Dense {
	if g.cfg.SGD {
		return scaled(lr, p.Grad)
	}
	r, c := p.Dims()
	if st.m == nil {
		st.m, st.v = mat.NewDense(r, c, nil), mat.NewDense(r, c, nil)
	}
	st.t++
	upd := g.adam(st, p.Grad) // (r×c)
	return scaled(lr, upd)
}

// stepProjected returns GaLore's projected Adam (or SGD) update of a
// matrix, lr and the scale α included.
func (g *GaLore) stepProjected(p *peft.Tensor, st *galoreState, lr float64) *mat.Dense {
	gr := p.Grad // G (m×n)
	m, n := gr.Dims()
	r := g.cfg.Rank
	// refresh the projector from G's SVD at steps 1, T+1, 2T+1, …
	if st.pq == nil || st.t%g.cfg.UpdateProjGap == 0 {
		ctx := g.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		svd, err := accel.ThinSVD(ctx, gr)
		if err != nil {
			panic(fmt.Errorf("peft: GaLore(%s): SVD of the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.t+1, err))
		}
		st.left = m < n
		if st.left {
			st.pq = mat.DenseCopyOf(svd.U.Slice(0, m, 0, r)) // P (m×r)
		} else {
			st.pq = mat.DenseCopyOf(svd.VT.Slice(0, r, 0, n)) // Q (r×n)
		}
	}
	// project the gradient
	var rg mat.Dense
	if st.left {
		rg.Mul(st.pq.T(), gr) // R = Pᵀ·G (r×n)
	} else {
		rg.Mul(gr, st.pq.T()) // R = G·Qᵀ (m×r)
	}
	st.t++
	upd := &rg
	if !g.cfg.SGD {
		if st.m == nil {
			rr, rc := rg.Dims()
			st.m, st.v = mat.NewDense(rr, rc, nil), mat.NewDense(rr, rc, nil)
		}
		upd = g.adam(st, &rg)
	}
	// project the normalized update back and apply it
	var back mat.Dense
	if st.left {
		back.Mul(st.pq, upd) // P·N (m×n)
	} else {
		back.Mul(upd, st.pq) // N·Q (m×n)
	}
	return scaled(lr*g.cfg.Scale, &back)
}

// adam updates st's moments with gradient gr (st.t already counts this step)
// and returns the bias-corrected step direction
// √(1−β₂ᵗ)/(1−β₁ᵗ) · M/(√V + ε), of gr's shape.
func (g *GaLore) adam(st *galoreState, gr *mat.Dense) *mat.Dense {
	return peft.AdamDirection(st.m, st.v, gr, g.cfg.Beta1, g.cfg.Beta2, g.cfg.Eps, peft.AdamBiasCorrection(st.t, g.cfg.Beta1, g.cfg.Beta2))
}

// scaled returns s·a as a new matrix.
func scaled(s float64, a mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Scale(s, a)
	return &d
}

// StateBytes returns the size of g's state in bytes: Adam's two moments
// (of the projected shape for projected matrices) and the projectors, as
// float64. It grows as Step first meets each tensor.
func (g *GaLore) StateBytes() int {
	n := 0
	for _, st := range g.state {
		for _, d := range []*mat.Dense{st.m, st.v, st.pq} {
			if d != nil {
				r, c := d.Dims()
				n += 8 * r * c
			}
		}
	}
	return n
}

// Projector returns the current projector of p: P (m×r) with left true, or
// Q (r×n) with left false; nil if p is not projected or not yet stepped.
// The projected gradient is Pᵀ·G or G·Qᵀ.
func (g *GaLore) Projector(p *peft.Tensor) (pq *mat.Dense, left bool) {
	st := g.state[p]
	if st == nil || !st.proj {
		return nil, false
	}
	return st.pq, st.left
}

var (
	_ peft.Optimizer        = (*GaLore)(nil)
	_ peft.ContextOptimizer = (*GaLore)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "GaLore",
		Kind:    peft.OptimizerMethod,
		Paper:   "Zhao et al. 2024, GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, arXiv:2403.03507",
		Package: "github.com/gopeft/gopeft/peft/galore",
		Summary: "Adam on rank-r projections Pᵀ·G of each weight's gradient, the projector refreshed from G's SVD every T steps",
	})
}
