// Package trp is Trained Rank Pruning: full training of every weight with a
// nuclear-norm penalty and a periodic projection of each weight onto its
// leading singular directions, so that the trained network is low rank and
// can be split into two thin layers without fine-tuning.
package trp

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// TRP is the training hook of Trained Rank Pruning (Xu, Li, Zhang, Wen,
// Wang, Qi, Chen, Lin and Xiong, 2018, "Trained Rank Pruning for Efficient
// Deep Neural Networks", arXiv:1812.02402). It trains every weight in full
// (peft.FullFineTune) and acts on each targeted weight W (d×k) of the
// model in two ways:
//
//	loss  = task loss + λ·Σ_W ‖W‖_*            nuclear-norm regularizer
//	∂‖W‖_* ∋ U_r·V_rᵀ                         W = U·Σ·Vᵀ, r = rank W (d×k)
//	every m steps, after the optimizer's update:
//	  W = U·diag(σ)·Vᵀ (thin SVD, σ descending, p = min(d,k) values)
//	  k = min{ j : Σ_{i≤j} σ_i² ≥ e·Σ_{i≤p} σ_i² }   energy rule (EnergyRank)
//	  W ← U_k·diag(σ_1…σ_k)·V_kᵀ                      best rank-k approximation
//
// so that training continues from the low-rank weight (the paper's "trained
// rank pruning": approximation and training alternate) and the penalty
// keeps shrinking the small singular values the projection then drops. A
// weight projected to rank k can be stored as two factors of k·(d+k)
// numbers instead of d·k.
//
// The regularizer is the scalar λ·Σ_W ⟨W, G_W⟩ with G_W = U_r·V_rᵀ held
// constant (peft.Mul of W with a constant, summed): its value is exactly
// λ·Σ‖W‖_* and its gradient is exactly λ·G_W, the sub-gradient the paper's
// stochastic sub-gradient descent adds, so the training loss in the
// History includes the penalty. Right after a projection W = U_k·Σ_k·V_kᵀ,
// so G_W = U_k·V_kᵀ comes from the projection's SVD and costs nothing more.
//
// Defaults: e = 0.99 (DefaultEnergy) and m = 1 (DefaultPeriod), the values
// of the training loop of the reference code (cifar-TRP.py, which projects
// before every iteration); λ has no default, since 0 turns the penalty off:
// DefaultLambda = 3e-4 is the reference's nuclear weight.
//
// Where gopeft departs from the reference code and why:
//
//   - The reference reshapes a convolution's kernel (N, C, h, w) into the
//     (C·h) × (N·w) "VH" matrix; gopeft projects the weight as the Linear
//     holds it, (out × in), which for a convolution (Linear.Kernel) is the
//     (C_out × C_in·kh·kw) "NC" form, the reference's channel_decompose.
//   - The reference's penalty is added to the gradient after the backward
//     pass, so its logged loss omits it; gopeft puts it in the loss (same
//     gradient).
//   - The reference skips a layer whose SVD fails; gopeft stops training
//     with an error naming the layer and the step (a NaN weight or a
//     cancelled context, both data-dependent).
//   - Which layers: the reference leaves out the first convolution and 1×1
//     ones; gopeft takes Config.Targets, every Linear of the model if empty.
//
// TRP implements peft.Hook and SetContext: peft.Train gives it the run's
// context, so that cancelling the run stops its SVDs (outside Train they
// run under the context given to SetContext, context.Background() until
// then).
type TRP struct {
	Config Config
	Layers []*peft.Linear // the targeted layers, in model order

	ctx   context.Context
	err   error          // an SVD failure of Regularizer, returned by the next AfterStep
	last  []*mat.Dense   // each layer's weight as the last projection left it
	sub   []*mat.Dense   // U_k·V_kᵀ of that projection
	trace peft.RankTrace // ranks after each projection
}

var _ peft.Hook = (*TRP)(nil)

// Defaults of Config.
const (
	// DefaultEnergy is e when Config.Energy is 0: the share of Σσ² the
	// reference training loop keeps at each projection.
	DefaultEnergy = 0.99
	// DefaultPeriod is m when Config.Period is 0: the reference projects
	// at every iteration.
	DefaultPeriod = 1
	// DefaultLambda is the reference's nuclear-norm weight λ
	// (decompose.py's lambda_), for Config.Lambda.
	DefaultLambda = 3e-4
)

// Config configures New. Zero fields select the defaults noted.
type Config struct {
	// Energy e in (0, 1]: each projection keeps the smallest rank k whose
	// singular values hold a share e of Σσ². 0 selects DefaultEnergy.
	Energy float64
	// Lambda λ ≥ 0 weighs the nuclear-norm penalty λ·Σ‖W‖_*; 0 turns it
	// off (DefaultLambda is the paper's value).
	Lambda float64
	// Period m ≥ 1: the weights are projected after steps m, 2m, …
	// 0 selects DefaultPeriod.
	Period int
	// Targets names the layers to act on, as peft.Targets: a module's
	// name, a dotted suffix of it, or a regular expression ^…$. Empty: every
	// Linear of the model.
	Targets []string
}

// withDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Energy == 0 {
		cfg.Energy = DefaultEnergy
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	return cfg
}

// Check returns an error naming the field and its value if cfg is out of
// range: e outside (0, 1], λ negative or not finite, m negative.
func (cfg Config) Check() error {
	c := cfg.withDefaults()
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: TRP: Config.%s = %v; want %s", field, v, want)
	}
	switch {
	case !(c.Energy > 0 && c.Energy <= 1):
		return bad("Energy", cfg.Energy, "e in (0, 1] (0 selects 0.99)")
	case !(c.Lambda >= 0) || math.IsInf(c.Lambda, 0):
		return bad("Lambda", cfg.Lambda, "a finite λ ≥ 0")
	case c.Period < 1:
		return bad("Period", cfg.Period, "m ≥ 1 (0 selects 1)")
	}
	return nil
}

// New returns the TRP hook for m's layers matching cfg.Targets (every
// Linear if empty), with cfg's zero fields set to the defaults. It is an
// error, naming the field and its value, if cfg is out of range; naming
// the module, if a targeted layer has an adapter (TRP trains the weights
// themselves: use peft.FullFineTune) or a target matches nothing.
func New(m peft.Model, cfg Config) (*TRP, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	layers := m.Modules()
	if len(cfg.Targets) > 0 {
		var err error
		if layers, err = peft.Targets(m, cfg.Targets...); err != nil {
			return nil, err
		}
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("peft: TRP: the model has no Linear layer")
	}
	h := &TRP{Config: cfg, Layers: layers}
	for _, l := range layers {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: TRP on %s: the layer has adapters %v; TRP trains the weights themselves (peft.FullFineTune)", l.Name, l.AdapterNames())
		}
		h.trace.Modules = append(h.trace.Modules, l.Name)
		h.trace.Ranks = append(h.trace.Ranks, nil)
	}
	h.last = make([]*mat.Dense, len(layers))
	h.sub = make([]*mat.Dense, len(layers))
	return h, nil
}

// SetContext sets the context of the following SVDs (nil means
// context.Background()).
func (h *TRP) SetContext(ctx context.Context) { h.ctx = ctx }

func (h *TRP) context() context.Context {
	if h.ctx == nil {
		return context.Background()
	}
	return h.ctx
}

// EnergyRank returns the smallest k with Σ_{i≤k} σ_i² ≥ e·Σ_i σ_i² for
// singular values sigma in descending order: the rank that keeps a share e
// of the energy. It is 0 when every σ is 0. It panics with a peft.ArgError
// if e is outside (0, 1] or a σ is negative or NaN.
func EnergyRank(sigma []float64, e float64) int {
	if !(e > 0 && e <= 1) {
		panic(peft.ArgError{Op: "trp.EnergyRank", Msg: fmt.Sprintf("energy e = %v; want e in (0, 1]", e)})
	}
	total := 0.0
	for i, s := range sigma {
		if !(s >= 0) {
			panic(peft.ArgError{Op: "trp.EnergyRank", Msg: fmt.Sprintf("σ[%d] = %v; want singular values ≥ 0", i, s)})
		}
		total += s * s
	}
	if total == 0 {
		return 0
	}
	// The cumulative sums are added in the same order as total, so the
	// last one equals total exactly and e = 1 keeps every nonzero σ.
	cum := 0.0
	for k, s := range sigma {
		cum += s * s
		if cum >= e*total {
			return k + 1
		}
	}
	return len(sigma)
}

// Projection is the result of Project: the best rank-K approximation of a
// matrix W (d×k) under the energy rule.
type Projection struct {
	W  *mat.Dense // U_K·diag(S[:K])·VT_K (d×k)
	K  int        // the rank kept, EnergyRank(S, e)
	S  []float64  // every singular value of the input, descending
	U  *mat.Dense // (d×K): the kept left singular vectors
	VT *mat.Dense // (K×k): the kept right singular vectors, as rows
}

// Project returns the projection of w (d×k) onto its K leading singular
// directions, K = EnergyRank(σ(w), e): by Eckart–Young the closest matrix of
// rank ≤ K to w in the Frobenius (and spectral) norm, with
// ‖w − W‖²_F = Σ_{i>K} σ_i². It returns the SVD's error: ctx's if ctx is
// cancelled, an *accel.NonFiniteError if w holds NaN or Inf. It panics
// with a peft.ArgError if e is outside (0, 1].
func Project(ctx context.Context, w mat.Matrix, e float64) (Projection, error) {
	if !(e > 0 && e <= 1) {
		panic(peft.ArgError{Op: "trp.Project", Msg: fmt.Sprintf("energy e = %v; want e in (0, 1]", e)})
	}
	svd, err := accel.ThinSVD(ctx, w)
	if err != nil {
		return Projection{}, err
	}
	d, n := w.Dims()
	k := EnergyRank(svd.S, e)
	p := Projection{W: mat.NewDense(d, n, nil), K: k, S: svd.S}
	if k == 0 {
		p.U, p.VT = &mat.Dense{}, &mat.Dense{}
		return p, nil
	}
	p.U = mat.DenseCopyOf(svd.U.Slice(0, d, 0, k))   // (d×K)
	p.VT = mat.DenseCopyOf(svd.VT.Slice(0, k, 0, n)) // (K×k)
	us := mat.DenseCopyOf(p.U)                       // U_K·diag(σ) (d×K)
	for j := 0; j < k; j++ {
		col := us.ColView(j).(*mat.VecDense)
		col.ScaleVec(svd.S[j], col)
	}
	p.W.Mul(us, p.VT)
	return p, nil
}

// NuclearSubgradient returns ‖w‖_* = Σσ_i and the sub-gradient
// G = U_r·V_rᵀ (d×k) of the nuclear norm at w (d×k), r the numerical rank
// of w (σ_i > max(d,k)·ε·σ_1, as numpy's matrix_rank): ⟨G, w⟩ = ‖w‖_*,
// ‖G‖₂ = 1 if w ≠ 0, and ‖w + Δ‖_* ≥ ‖w‖_* + ⟨G, Δ⟩ for every Δ. Where
// w has full rank and distinct singular values, the norm is differentiable
// and G is its gradient. Errors are the SVD's (see Project).
func NuclearSubgradient(ctx context.Context, w mat.Matrix) (g *mat.Dense, norm float64, err error) {
	svd, err := accel.ThinSVD(ctx, w)
	if err != nil {
		return nil, 0, err
	}
	d, n := w.Dims()
	g = mat.NewDense(d, n, nil)
	r := numericalRank(svd.S, d, n)
	for _, s := range svd.S {
		norm += s
	}
	if r > 0 {
		g.Mul(svd.U.Slice(0, d, 0, r), svd.VT.Slice(0, r, 0, n))
	}
	return g, norm, nil
}

// numericalRank returns the number of σ above max(d,k)·ε·σ_1.
func numericalRank(sigma []float64, d, k int) int {
	if len(sigma) == 0 || sigma[0] == 0 {
		return 0
	}
	tol := float64(max(d, k)) * 0x1p-52 * sigma[0]
	r := 0
	for r < len(sigma) && sigma[r] > tol {
		r++
	}
	return r
}

// Regularizer returns λ·Σ_W ⟨W, G_W⟩ = λ·Σ_W ‖W‖_* with G_W the
// nuclear-norm sub-gradient held constant (see NuclearSubgradient), so
// that backpropagation adds λ·G_W to each weight's gradient; nil if λ = 0.
// A weight the last projection left as it is reuses that projection's
// U_k·V_kᵀ; any other is decomposed afresh. If an SVD fails (the context
// is cancelled, a weight holds NaN) it returns nil and the step's
// AfterStep returns the error, so Train stops after that step.
func (h *TRP) Regularizer(step int) *peft.Tensor {
	if h.Config.Lambda == 0 {
		return nil
	}
	var reg *peft.Tensor
	for i, l := range h.Layers {
		g := h.sub[i]
		if g == nil || !mat.Equal(l.W.Value, h.last[i]) {
			var err error
			if g, _, err = NuclearSubgradient(h.context(), l.W.Value); err != nil {
				h.err = fmt.Errorf("peft: TRP on %s: nuclear-norm sub-gradient at step %d: %w", l.Name, step, err)
				return nil
			}
		}
		t := peft.SumAll(peft.Mul(l.W, peft.NewConst(g))) // ⟨W, G⟩ = ‖W‖_*
		if reg == nil {
			reg = t
		} else {
			reg = peft.Add(reg, t)
		}
	}
	return peft.Scale(reg, h.Config.Lambda)
}

// AfterBackward does nothing: the penalty's gradient comes through the
// loss.
func (h *TRP) AfterBackward(int) {}

// AfterStep projects every targeted weight (see Project) after steps m,
// 2m, …, and records the ranks. It returns the error of a failed SVD,
// naming the layer and the step: then no weight has changed. It first
// returns the error of a failed SVD in this step's Regularizer, if any.
func (h *TRP) AfterStep(step int) error {
	if err := h.err; err != nil {
		h.err = nil
		return err
	}
	if step%h.Config.Period != 0 {
		return nil
	}
	return h.project(step)
}

// Truncate projects every targeted weight now, as AfterStep does at a
// multiple of the period: after a run whose last step was not one, it
// leaves the weights low rank. The ranks are recorded at step 0.
func (h *TRP) Truncate(ctx context.Context) error {
	old := h.ctx
	h.ctx = ctx
	defer func() { h.ctx = old }()
	return h.project(0)
}

// project projects every layer's weight, all SVDs first so that a failure
// changes nothing, and records the ranks at step.
func (h *TRP) project(step int) error {
	ps := make([]Projection, len(h.Layers))
	for i, l := range h.Layers {
		p, err := Project(h.context(), l.W.Value, h.Config.Energy)
		if err != nil {
			d, k := l.W.Dims()
			return fmt.Errorf("peft: TRP on %s: SVD of the %s weight at step %d: %w", l.Name, peft.ShapeOf(d, k), step, err)
		}
		ps[i] = p
	}
	total := 0
	for i, l := range h.Layers {
		p := ps[i]
		l.W.Value.Copy(p.W)
		h.last[i] = p.W
		d, k := p.W.Dims()
		h.sub[i] = mat.NewDense(d, k, nil) // 0 for a zero weight
		if p.K > 0 {
			h.sub[i].Mul(p.U, p.VT) // U_K·V_Kᵀ, the sub-gradient at W_K
		}
		h.trace.Ranks[i] = append(h.trace.Ranks[i], p.K)
		total += p.K
	}
	h.trace.Steps = append(h.trace.Steps, step)
	h.trace.Budget = append(h.trace.Budget, total)
	return nil
}

// Trace returns each layer's rank after every projection so far (Budget
// is their sum), for viz's rank heatmap.
func (h *TRP) Trace() *peft.RankTrace { return h.trace.Clone() }

// Ranks returns each targeted layer's rank after the last projection, by
// module name (the full min(d,k) before any).
func (h *TRP) Ranks() map[string]int {
	out := map[string]int{}
	for i, l := range h.Layers {
		if rs := h.trace.Ranks[i]; len(rs) > 0 {
			out[l.Name] = rs[len(rs)-1]
		} else {
			d, k := l.W.Dims()
			out[l.Name] = min(d, k)
		}
	}
	return out
}

// FactoredParams returns the numbers the targeted weights take when each is
// stored as two factors of its rank k after the last projection,
// Σ k·(d+k), and as dense matrices, Σ d·k.
func (h *TRP) FactoredParams() (factored, dense int) {
	rs := h.Ranks()
	for _, l := range h.Layers {
		d, k := l.W.Dims()
		factored += rs[l.Name] * (d + k)
		dense += d * k
	}
	return factored, dense
}

func init() {
	peft.Register(peft.Method{
		Name:    "TRP",
		Kind:    peft.HookMethod,
		Paper:   "Xu et al. 2018, Trained Rank Pruning for Efficient Deep Neural Networks, arXiv:1812.02402",
		Package: "github.com/gopeft/gopeft/peft/trp",
		Summary: "full training with a nuclear-norm penalty λ‖W‖_* and, every m steps, each weight projected by SVD onto the rank that keeps a share e of Σσ²",
	})
}
