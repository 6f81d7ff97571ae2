// Package coso is CoSO (Continuous Subspace Optimization): continual full
// fine-tuning in a sequence of low-rank gradient subspaces, each kept
// orthogonal to the subspace that earlier tasks used.
package coso

import (
	"context"
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// CoSO is Adam on low-rank projections of the gradients, as GaLore, with
// every projector orthogonal to a history subspace that grows from task to
// task (Cheng, Wan, Wu, Hou & Zhang 2025, "Continuous Subspace Optimization
// for Continual Learning", arXiv:2505.11816, NeurIPS 2025). For a targeted
// weight W (m×n = out×in) with gradient G (m×n) and history M (n×h,
// orthonormal columns):
//
//	G̃ = G·(I − M·Mᵀ)                                  gradient off the history
//	at steps 1, T+1, 2T+1, … of a task:
//	    Q = top-r right singular vectors of G̃ (r×n), re-orthogonalized against M
//	R = G̃·Qᵀ (m×r)                                    projected gradient
//	Mom ← β₁Mom + (1−β₁)R,   V ← β₂V + (1−β₂)R⊙R       Adam in the subspace
//	W ← W·(1 − η·λ) − η·α·√(1−β₂ᵗ)/(1−β₁ᵗ) · (Mom/(√V + ε))·Q
//
// so each update ΔW has rows in span(Q) ⊥ span(M): ΔW·M = 0 exactly (to
// rounding), and the layer's outputs x·Wᵀ on inputs x in span(M) do not
// move. During a task a Frequent-Directions sketch (FrequentDirections, ℓ
// rows of width n) accumulates the rows of every G̃, the task's "task
// -specific component"; at the task's end (Consolidate) the sketch's top
// right singular vectors holding Threshold of its energy are
// orthonormalized against M and appended to it, and the sketch, the
// projectors and Adam's moments are cleared for the next task.
//
// Every other trainable tensor (biases, matrices not targeted) gets plain
// AdamW with the same β₁, β₂, ε. With M empty, CoSO steps exactly as GaLore
// projecting on the right (galore.New with m ≥ n), plus the sketch.
//
// # Where gopeft departs or decides
//
// The notes gopeft has on the paper (its abstract and secondary summaries;
// no code was found) do not confirm the side M acts on, the rank r, the gap
// T, the threshold or the sketch size. gopeft decides:
//
//   - M lives in the input space (n), acting on the right of G, for every
//     matrix. A linear layer's gradient is Σᵢ δᵢ·xᵢᵀ, so its rows span the
//     task's inputs, and ΔW·M = 0 then keeps the old inputs' outputs, the
//     rationale of gradient-projection memory (GPM, Saha et al. 2021). The
//     projector Q is taken on the same side so that Adam's elementwise
//     steps, which act inside the r-dimensional subspace, cannot leak into
//     M (GaLore picks the side by shape instead).
//   - Defaults: T = 20 steps, α = 1, Threshold = 0.95, ℓ = min(n, 4r).
//   - The history is capped at n − r columns, so that every matrix keeps r
//     directions to learn in; a task's sketch adds directions only up to
//     that cap.
//   - Adam's moments are not rotated when Q changes (as GaLore's code), and
//     are cleared between tasks.
//
// CoSO implements peft.Optimizer, peft.ContextOptimizer (its steps run
// SVDs, of the gradient and of the sketch) and peft.ContinualMethod.
type CoSO struct {
	cfg   Config
	state map[*peft.Tensor]*cosoState
	ctx   context.Context // of the SVDs in Step; nil: context.Background()
	tasks int             // tasks consolidated
}

// Config configures New; zero fields select the defaults noted.
type Config struct {
	// Rank r of each projected gradient, ≥ 1 (required).
	Rank int
	// UpdateProjGap T: the projector is recomputed every T steps (0: 20).
	UpdateProjGap int
	// Scale α of the projected update (0: 1).
	Scale float64
	// Threshold is the fraction of the sketch's energy (Σσ²) the directions
	// added to the history hold, in (0, 1] (0: 0.95).
	Threshold float64
	// SketchSize ℓ, the rows of each Frequent-Directions sketch (0:
	// min(n, 4r)).
	SketchSize int
	// Targets names the matrices to project, as galore.Config.Targets: a
	// tensor's name, its module's, a dotted suffix, or a path.Match glob.
	// Empty: every trainable 2-D tensor with both sides > 1 and n > Rank.
	Targets []string
	// Beta1, Beta2, Eps are Adam's (0: 0.9, 0.999, 1e-8).
	Beta1, Beta2, Eps float64
	// WeightDecay λ ≥ 0, decoupled, for every tensor.
	WeightDecay float64
}

// cosoState is one tensor's state.
type cosoState struct {
	proj   bool                // projected, or plain AdamW
	hist   *mat.Dense          // M (n×h), nil while empty
	q      *mat.Dense          // Q (r'×n), nil until the task's first step
	m, v   *mat.Dense          // Adam's moments: (m×r') or the tensor's shape
	t      int                 // steps this task
	sketch *FrequentDirections // the task's G̃ rows
}

// New returns a CoSO optimizer. A configuration out of range panics with a
// peft.ArgError naming the field and value; peft.Maybe turns it into an
// error.
func New(cfg Config) *CoSO {
	if cfg.UpdateProjGap == 0 {
		cfg.UpdateProjGap = 20
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = 0.95
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
		panic(peft.ArgError{Op: "coso.New", Msg: fmt.Sprintf(msg, args...)})
	}
	switch {
	case cfg.Rank < 1:
		bad("Config.Rank = %d: want r ≥ 1", cfg.Rank)
	case cfg.UpdateProjGap < 0:
		bad("Config.UpdateProjGap = %d: want T ≥ 1 (0 selects 20)", cfg.UpdateProjGap)
	case math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0):
		bad("Config.Scale = %g: want a finite α", cfg.Scale)
	case !(cfg.Threshold > 0 && cfg.Threshold <= 1):
		bad("Config.Threshold = %g out of range (0, 1]", cfg.Threshold)
	case cfg.SketchSize < 0:
		bad("Config.SketchSize = %d: want ℓ ≥ 1 (0 selects min(n, 4r))", cfg.SketchSize)
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		bad("Config.Beta1 = %g out of range [0, 1)", cfg.Beta1)
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		bad("Config.Beta2 = %g out of range [0, 1)", cfg.Beta2)
	case !(cfg.Eps >= 0):
		bad("Config.Eps = %g: want ε ≥ 0", cfg.Eps)
	case !(cfg.WeightDecay >= 0):
		bad("Config.WeightDecay = %g: want λ ≥ 0", cfg.WeightDecay)
	}
	for _, p := range cfg.Targets {
		if _, err := path.Match(p, ""); err != nil {
			bad("Config.Targets: pattern %q: %v", p, err)
		}
	}
	return &CoSO{cfg: cfg, state: map[*peft.Tensor]*cosoState{}}
}

// Config returns o's configuration with the defaults filled in.
func (o *CoSO) Config() Config { return o.cfg }

// Tasks returns the number of tasks Consolidate has recorded.
func (o *CoSO) Tasks() int { return o.tasks }

// SetContext sets the context of the SVDs of the following steps (Train
// calls it with its own). Until it is called, they run with
// context.Background().
func (o *CoSO) SetContext(ctx context.Context) { o.ctx = ctx }

func (o *CoSO) context() context.Context {
	if o.ctx == nil {
		return context.Background()
	}
	return o.ctx
}

// projects reports whether p is a matrix CoSO projects.
func (o *CoSO) projects(p *peft.Tensor) bool {
	m, n := p.Dims()
	if m < 2 || n < 2 {
		return false
	}
	if len(o.cfg.Targets) == 0 {
		return n > o.cfg.Rank
	}
	cands := []string{p.Name}
	if i := strings.LastIndexByte(p.Name, '.'); i > 0 {
		cands = append(cands, p.Name[:i])
	}
	for _, pat := range o.cfg.Targets {
		for _, c := range cands {
			if ok, _ := path.Match(pat, c); ok || c == pat || strings.HasSuffix(c, "."+pat) {
				return true
			}
		}
	}
	return false
}

// Step updates every trainable tensor in params that has a gradient, at
// learning rate lr. It panics with an error naming the tensor and the step
// if an SVD fails: it does not converge, or the context set by SetContext
// is cancelled (the error then wraps the context's). Tensors before that
// one in params have been updated, that one and the others not;
// peft.Maybe turns the panic into an error.
func (o *CoSO) Step(params []*peft.Tensor, lr float64) {
	for _, p := range params {
		if !p.Trainable || p.Grad == nil {
			continue
		}
		st := o.state[p]
		if st == nil {
			st = &cosoState{proj: o.projects(p)}
			o.state[p] = st
		}
		var upd *mat.Dense
		if st.proj {
			upd = o.stepProjected(p, st, lr)
		} else {
			upd = o.stepFull(p, st, lr)
		}
		if o.cfg.WeightDecay > 0 {
			p.Value.Scale(1-lr*o.cfg.WeightDecay, p.Value) // decoupled weight decay
		}
		if upd != nil {
			p.Value.Sub(p.Value, upd)
		}
	}
}

// stepFull returns plain Adam's update of the whole tensor, lr included.
func (o *CoSO) stepFull(p *peft.Tensor, st *cosoState, lr float64) *mat.Dense {
	r, c := p.Dims()
	if st.m == nil {
		st.m, st.v = mat.NewDense(r, c, nil), mat.NewDense(r, c, nil)
	}
	st.t++
	return scaled(lr, o.adam(st, p.Grad))
}

// stepProjected returns CoSO's update of a targeted matrix (lr and α
// included), or nil if no direction is left to learn in. Its SVDs come
// first, so a step that fails changes no state.
func (o *CoSO) stepProjected(p *peft.Tensor, st *cosoState, lr float64) *mat.Dense {
	ctx := o.context()
	m, n := p.Dims()
	// take the gradient off the history: G̃ = G − (G·M)·Mᵀ
	gt := mat.DenseCopyOf(p.Grad)
	if st.hist != nil {
		var gm, gmm mat.Dense
		gm.Mul(gt, st.hist)       // G·M (m×h)
		gmm.Mul(&gm, st.hist.T()) // G·M·Mᵀ (m×n)
		gt.Sub(gt, &gmm)
	}
	// refresh the projector from G̃'s SVD at steps 1, T+1, 2T+1, …
	var q *mat.Dense
	if st.q == nil || st.t%o.cfg.UpdateProjGap == 0 {
		svd, err := accel.ThinSVD(ctx, gt)
		if err != nil {
			panic(fmt.Errorf("peft: CoSO(%s): SVD of the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.t+1, err))
		}
		h := 0
		if st.hist != nil {
			_, h = st.hist.Dims()
		}
		r := min(o.cfg.Rank, n-h, len(svd.S))
		q = orthoRows(mat.DenseCopyOf(svd.VT.Slice(0, r, 0, n)), st.hist)
	}
	// the task-specific component: sketch G̃'s rows
	if st.sketch == nil {
		l := o.cfg.SketchSize
		if l == 0 {
			l = min(n, 4*o.cfg.Rank)
		}
		st.sketch = NewFrequentDirections(l, n)
	}
	if err := st.sketch.Add(ctx, gt); err != nil {
		panic(fmt.Errorf("peft: CoSO(%s): sketching the %s gradient at step %d: %w", p.Name, peft.ShapeOf(m, n), st.t+1, err))
	}
	if q != nil {
		if st.q != nil && rows(q) != rows(st.q) {
			st.m, st.v = nil, nil // the subspace's dimension changed: fresh moments
		}
		st.q = q
	}
	st.t++
	r := rows(st.q)
	if r == 0 {
		return nil
	}
	var rg mat.Dense
	rg.Mul(gt, st.q.T()) // R = G̃·Qᵀ (m×r)
	if st.m == nil {
		st.m, st.v = mat.NewDense(m, r, nil), mat.NewDense(m, r, nil)
	}
	var back mat.Dense
	back.Mul(o.adam(st, &rg), st.q) // N·Q (m×n)
	return scaled(lr*o.cfg.Scale, &back)
}

// adam updates st's moments with gradient gr (st.t already counts this
// step) and returns the bias-corrected direction √(1−β₂ᵗ)/(1−β₁ᵗ) ·
// M/(√V + ε), as GaLore's code.
func (o *CoSO) adam(st *cosoState, gr *mat.Dense) *mat.Dense {
	return peft.AdamDirection(st.m, st.v, gr, o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps, peft.AdamBiasCorrection(st.t, o.cfg.Beta1, o.cfg.Beta2))
}

func scaled(s float64, a mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Scale(s, a)
	return &d
}

func rows(a *mat.Dense) int {
	if a == nil {
		return 0
	}
	r, _ := a.Dims()
	return r
}

// orthoRows returns the rows of a (k×n) made orthonormal to the columns of
// hist (n×h, orthonormal; nil for none) and to each other by Gram–Schmidt
// run twice; a row left with norm below 1e-10 of its original (it lay in
// the span of hist and the rows before it) is dropped.
func orthoRows(a, hist *mat.Dense) *mat.Dense {
	k, n := a.Dims()
	var basis [][]float64
	if hist != nil {
		_, h := hist.Dims()
		for j := 0; j < h; j++ {
			basis = append(basis, mat.Col(nil, j, hist))
		}
	}
	fixed := len(basis)
	for i := 0; i < k; i++ {
		x := append([]float64(nil), a.RawRowView(i)...)
		n0 := norm(x)
		if n0 == 0 {
			continue
		}
		for pass := 0; pass < 2; pass++ {
			for _, b := range basis {
				d := dot(b, x)
				for j := range x {
					x[j] -= d * b[j]
				}
			}
		}
		nx := norm(x)
		if nx < 1e-10*n0 {
			continue
		}
		for j := range x {
			x[j] /= nx
		}
		basis = append(basis, x)
	}
	out := basis[fixed:]
	if len(out) == 0 {
		return mat.NewDense(1, n, nil).Slice(0, 0, 0, n).(*mat.Dense)
	}
	d := mat.NewDense(len(out), n, nil)
	for i, x := range out {
		d.SetRow(i, x)
	}
	return d
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }

// Consolidate records the end of a task: for each projected matrix the
// task stepped, the top right singular vectors of its sketch holding
// Threshold of the sketch's energy are orthonormalized against the history
// M and appended to it (at most n − r columns in all); then sketches,
// projectors and Adam's moments are cleared for the next task. It returns
// an error naming the tensor if an SVD fails (or ctx is cancelled; the
// error then wraps ctx's), with the tensors before it consolidated.
func (o *CoSO) Consolidate(ctx context.Context, params []*peft.Tensor) error {
	for _, p := range params {
		st := o.state[p]
		if st == nil {
			continue
		}
		if st.proj && st.sketch != nil && st.sketch.Rows > 0 {
			_, n := p.Dims()
			svd, err := accel.ThinSVD(ctx, st.sketch.B)
			if err != nil {
				return fmt.Errorf("peft: CoSO(%s): SVD of the sketch after task %d: %w", p.Name, o.tasks+1, err)
			}
			total := 0.0
			for _, s := range svd.S {
				total += s * s
			}
			k, acc := 0, 0.0
			for k < len(svd.S) && acc < o.cfg.Threshold*total {
				acc += svd.S[k] * svd.S[k]
				k++
			}
			h := 0
			if st.hist != nil {
				_, h = st.hist.Dims()
			}
			k = min(k, n-o.cfg.Rank-h)
			if k > 0 {
				add := orthoRows(mat.DenseCopyOf(svd.VT.Slice(0, k, 0, n)), st.hist)
				st.hist = appendCols(st.hist, add)
			}
		}
		st.q, st.m, st.v, st.t, st.sketch = nil, nil, nil, 0, nil
	}
	o.tasks++
	return nil
}

// appendCols returns [M | Aᵀ] for M (n×h, or nil) and A (a×n).
func appendCols(hist, a *mat.Dense) *mat.Dense {
	ar, n := a.Dims()
	if ar == 0 {
		return hist
	}
	h := 0
	if hist != nil {
		_, h = hist.Dims()
	}
	out := mat.NewDense(n, h+ar, nil)
	if hist != nil {
		out.Slice(0, n, 0, h).(*mat.Dense).Copy(hist)
	}
	out.Slice(0, n, h, h+ar).(*mat.Dense).Copy(a.T())
	return out
}

// History returns the history subspace M (n×h, orthonormal columns) of p,
// or nil if it is empty.
func (o *CoSO) History(p *peft.Tensor) *mat.Dense {
	if st := o.state[p]; st != nil {
		return st.hist
	}
	return nil
}

// Projector returns the current projector Q (r×n) of p, or nil if p is not
// projected or not stepped this task. The projected gradient is G̃·Qᵀ.
func (o *CoSO) Projector(p *peft.Tensor) *mat.Dense {
	if st := o.state[p]; st != nil && st.proj {
		return st.q
	}
	return nil
}

// Sketch returns the Frequent-Directions sketch of p's gradients this task,
// or nil.
func (o *CoSO) Sketch(p *peft.Tensor) *FrequentDirections {
	if st := o.state[p]; st != nil {
		return st.sketch
	}
	return nil
}

// StateBytes returns the size of o's state in bytes, as float64: Adam's
// moments (of the projected shape m×r for projected matrices), the
// projectors Q (r×n), the sketches (ℓ×n) and the histories M (n×h).
func (o *CoSO) StateBytes() int {
	n := 0
	for _, st := range o.state {
		for _, d := range []*mat.Dense{st.m, st.v, st.q, st.hist} {
			if d != nil {
				r, c := d.Dims()
				n += 8 * r * c
			}
		}
		if st.sketch != nil {
			n += 8 * st.sketch.L * st.sketch.N
		}
	}
	return n
}

// BeforeTask sets o as the task's optimizer (peft.ContinualMethod).
func (o *CoSO) BeforeTask(ctx context.Context, m peft.Model, task int, cfg peft.TrainConfig) (peft.TrainConfig, error) {
	cfg.Optimizer = o
	return cfg, nil
}

// AfterTask consolidates the task's sketches into the histories
// (Consolidate).
func (o *CoSO) AfterTask(ctx context.Context, m peft.Model, task int, data peft.Dataset) error {
	return o.Consolidate(ctx, peft.TrainableOf(m))
}

var (
	_ peft.Optimizer        = (*CoSO)(nil)
	_ peft.ContextOptimizer = (*CoSO)(nil)
	_ peft.ContinualMethod  = (*CoSO)(nil)
)

func init() {
	peft.Register(peft.Method{
		Name:    "CoSO",
		Kind:    peft.OptimizerMethod,
		Paper:   "Cheng, Wan, Wu, Hou & Zhang 2025, Continuous Subspace Optimization for Continual Learning, arXiv:2505.11816",
		Package: "github.com/gopeft/gopeft/peft/coso",
		Summary: "continual full fine-tuning: Adam on rank-r gradient projections G̃·Qᵀ, Q from G̃'s SVD every T steps and orthogonal to a history of earlier tasks' directions (Frequent-Directions sketches)",
	})
}
