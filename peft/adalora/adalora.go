// Package adalora is AdaLoRA (Zhang et al. 2023, "Adaptive Budget Allocation
// for Parameter-Efficient Fine-Tuning", ICLR, arXiv:2303.10512): LoRA-like
// updates in SVD form, P·diag(λ)·Q, whose total rank is a budget that a
// training hook moves towards the layers where the triplets matter most.
//
// Add attaches a Layer to every targeted module and returns the controller,
// an *AdaLoRA, to pass to training as a peft.Hook. The controller scores the
// importance of every triplet and zeroes the λ of the least important ones
// on a cubic budget schedule. When it scores is a Config option (Order):
//
//   - PaperOrder (the default) follows the paper's Algorithm 1: the
//     sensitivity |w ⊙ ∂L/∂w| is taken in AfterBackward, at the weights the
//     gradient was computed at, before the optimizer's update; the schedule
//     counts Train's steps, from 1.
//   - PEFTOrder follows HuggingFace PEFT, whose update_and_allocate is called
//     after optimizer.step() with a step counted from 0 (PEFT's examples):
//     the sensitivity is taken in AfterStep, from the weights after the
//     update, and the schedule's step is Train's minus one.
//
// peft.SaveAdapter and peft.LoadAdapter keep the layers in PEFT's ADALORA
// layout (lora_A = Q, lora_B = P, lora_E = λ; after an allocation whose
// dropped λ are zero, only the kept triplets, with their masks in
// rank_pattern); pass the controller as peft.AdapterOptions.Controller to
// record its schedule. The Order is not saved: PEFT has no such field.
package adalora

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// AdaLoRA adapts several layers with SVD-form updates and moves a global
// rank budget between them while training (Zhang et al. 2023, "Adaptive
// Budget Allocation for Parameter-Efficient Fine-Tuning", ICLR,
// arXiv:2303.10512). Each adapted layer with frozen W (out×in) gets a Layer:
//
//	ΔW = P·diag(λ)·Q,  P: out×r (lora_B), λ: r×1 (lora_E, init 0), Q: r×in (lora_A)
//	y  = x·Wᵀ + b + α/(r_init + 1e-5) · x̃·(Q ⊙ λ)ᵀ·Pᵀ         x (n×in), y (n×out)
//
// The AdaLoRA value is the controller, a peft.Hook. At every step t it
// scores every entry w of P, λ and Q by its sensitivity, smoothed, times its
// uncertainty, and each triplet i of a layer by the sum of its parts:
//
//	I = |w ⊙ ∂L/∂w|,  Ī ← β₁Ī + (1−β₁)I,  Ū ← β₂Ū + (1−β₂)|I − Ī|,  s(w) = Ī·Ū
//	S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji)
//
// Every ΔT steps it zeroes the λ_i of the b₀ − b(t) lowest-scoring triplets
// across all layers, with b₀ = Σ r_init, b_T = L·target_r and the cubic
// budget
//
//	b(t) = b₀                                               t ≤ t_i
//	b(t) = ⌊b_T + (b₀−b_T)·(1 − (t−t_i)/(T−t_i−t_f))³⌋       t_i < t ≤ T−t_f
//	b(t) = b_T                                              t > T−t_f
//
// and after T − t_f it keeps the allocation of step T − t_f. It adds to the
// loss the orthogonality regularizer, the mean over all 2L matrices as PEFT
// computes it:
//
//	R = γ/(2L) · Σ_layers (‖PᵀP − I‖_F + ‖QQᵀ − I‖_F)
//
// A layer's rank is the number of triplets kept at the last allocation; a
// zeroed λ may grow back between allocations, as in the paper and PEFT.
// Config.Order says when I is taken and how t relates to Train's step k:
// with PaperOrder, t = k and I uses the weights the gradient was taken at
// (in AfterBackward); with PEFTOrder, t = k − 1 and I uses the weights after
// the optimizer's update (in AfterStep). Either way the masking runs in
// AfterStep, after the update, as PEFT's update_and_allocate.
type AdaLoRA struct {
	Layers []*Layer // one per adapted module

	cfg    Config
	b0, bT int                   // initial and target total budget
	imp    map[*peft.Tensor]*ema // importance EMAs of every P, λ, Q
	fixed  bool                  // the final allocation (t = T−t_f) has been made
	trace  peft.RankTrace
}

var _ peft.Hook = (*AdaLoRA)(nil)

// Order says when the controller takes the sensitivity I = |w ⊙ ∂L/∂w| of
// a step, and how the budget schedule counts steps.
type Order int

const (
	// PaperOrder follows the paper's Algorithm 1 (Zhang et al. 2023,
	// arXiv:2303.10512): at Train's step k, AfterBackward updates the
	// importance from the gradient and the weights it was computed at, before
	// the optimizer moves them, and AfterStep allocates with schedule step
	// t = k (counted from 1, as Train counts).
	PaperOrder Order = iota
	// PEFTOrder follows HuggingFace PEFT (peft/tuners/adalora/model.py):
	// update_and_allocate is called after optimizer.step() and before
	// zero_grad(), with a step counted from 0 in PEFT's examples. At Train's
	// step k, AfterStep updates the importance from the gradient of step k
	// (clipped, if Train clips) and the weights after the update, then
	// allocates with schedule step t = k − 1. AfterBackward does nothing.
	PEFTOrder
)

// String returns "PaperOrder" or "PEFTOrder".
func (o Order) String() string {
	switch o {
	case PaperOrder:
		return "PaperOrder"
	case PEFTOrder:
		return "PEFTOrder"
	}
	return fmt.Sprintf("Order(%d)", int(o))
}

// Config configures Add, after PEFT's AdaLoraConfig. Zero fields select
// PEFT's defaults where noted.
type Config struct {
	InitR   int     // r_init, each layer's starting rank (0 selects 12)
	TargetR int     // target_r, the average final rank per layer (0 selects 8); b_T = L·TargetR
	Alpha   float64 // α ≥ 0; the update is scaled by α/(r_init + 1e-5) (0 selects α = r_init, as PEFT)
	Dropout float64 // dropout on the adapter's input, in [0, 1)

	Targets []string // module names or patterns, as for LoRA
	Name    string   // adapter name ("" selects "default")
	Seed    int64    // seed of P's and Q's N(0, 0.02²) initialization

	TotalStep int // T, the number of training steps (required)
	TInit     int // t_i: warm-up steps at the full budget b₀
	TFinal    int // t_f: final steps at the fixed budget b_T
	DeltaT    int // ΔT: steps between allocations (0 selects 1)

	Beta1, Beta2  float64 // EMA rates of sensitivity and uncertainty, in (0, 1) (0 selects 0.85)
	OrthRegWeight float64 // γ of the orthogonality regularizer (0 selects PEFT's 0.5)

	// Order is when importance is scored and how the schedule counts steps:
	// PaperOrder (the zero value, the paper's Algorithm 1) or PEFTOrder
	// (HuggingFace PEFT's update_and_allocate after the optimizer step,
	// steps from 0). See Order.
	Order Order
}

// ema holds the importance EMAs Ī and Ū of one parameter, entry by entry.
type ema struct {
	ibar, ubar []float64
}

// Layer is AdaLoRA's SVD-form update of one layer (see AdaLoRA):
// ΔW = α/(r_init+1e-5) · P·diag(λ)·Q. It implements peft.Adapter.
type Layer struct {
	P      *peft.Tensor // left singular vectors (out×r_init): PEFT's lora_B
	E      *peft.Tensor // singular values λ (r_init×1): PEFT's lora_E
	Q      *peft.Tensor // right singular vectors (r_init×in): PEFT's lora_A
	Module string       // the adapted module's name
	RInit  int          // r_init
	Alpha  float64      // α (0 means r_init, as PEFT)

	Dropout float64 // dropout on the adapter's input, in [0, 1)

	kept []bool     // triplets kept at the last allocation
	rng  *rand.Rand // dropout masks
}

var _ peft.Adapter = (*Layer)(nil)

// Scaling returns α/(r_init + 1e-5), PEFT's scale (with α = r_init when
// α ≤ 0).
func (a *Layer) Scaling() float64 {
	alpha := a.Alpha
	if alpha <= 0 {
		alpha = float64(a.RInit)
	}
	return alpha / (float64(a.RInit) + 1e-5)
}

// Rank returns the number of triplets kept at the last allocation (r_init
// before the first).
func (a *Layer) Rank() int {
	n := 0
	for _, k := range a.kept {
		if k {
			n++
		}
	}
	return n
}

// Kept returns which triplets the last allocation kept (a copy).
func (a *Layer) Kept() []bool { return slices.Clone(a.kept) }

// SetKept sets which triplets are kept, as an allocation does, and zeroes
// the λ of the others: a hand-made allocation, or one read from PEFT's
// rank_pattern. It panics with a peft.ArgError if kept does not have r_init
// entries.
func (a *Layer) SetKept(kept []bool) {
	if len(kept) != a.RInit {
		panic(peft.ArgError{Op: "AdaLoRA(" + a.Module + ").SetKept", Msg: fmt.Sprintf("a mask of %d triplets for r_init = %d", len(kept), a.RInit)})
	}
	copy(a.kept, kept)
	for i, k := range kept {
		if !k {
			a.E.Value.Set(i, 0, 0)
		}
	}
}

// Params returns P, λ and Q.
func (a *Layer) Params() []*peft.Tensor { return []*peft.Tensor{a.P, a.E, a.Q} }

func (a *Layer) check(op string, w mat.Matrix) {
	out, in := w.Dims()
	pr, pc := a.P.Dims()
	er, ec := a.E.Dims()
	qr, qc := a.Q.Dims()
	if pr != out || qc != in || pc != er || qr != er || ec != 1 {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("W %s, P %s, λ %s, Q %s", peft.ShapeOf(out, in), peft.ShapeOf(pr, pc), peft.ShapeOf(er, ec), peft.ShapeOf(qr, qc)),
			Want: fmt.Sprintf("P (%d×r), λ (r×1), Q (r×%d)", out, in)})
	}
}

// Forward returns base + s·x̃·(Q ⊙ λ)ᵀ·Pᵀ (n×out) for x (n×in).
func (a *Layer) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	a.check("AdaLoRA.Forward("+l.Name+")", l.W.Value)
	xd := x
	if a.Dropout > 0 && l.Training {
		xd = peft.Dropout(x, a.Dropout, a.rng, true) // x̃ (n×in)
	}
	ql := peft.MulCol(a.Q, a.E)                       // Q ⊙ λ (r×in), row i scaled by λ_i
	h := peft.MatMulT(peft.MatMulT(xd, ql), a.P)      // x̃·(Q⊙λ)ᵀ is (n×r); ·Pᵀ gives (n×out)
	return peft.Add(base, peft.Scale(h, a.Scaling())) // (n×out)
}

// DeltaWeight returns ΔW = s·P·diag(λ)·Q (out×in).
func (a *Layer) DeltaWeight() *mat.Dense {
	var ql, d mat.Dense
	ql.Apply(func(i, j int, v float64) float64 { return v * a.E.Value.At(i, 0) }, a.Q.Value)
	d.Mul(a.P.Value, &ql)
	d.Scale(a.Scaling(), &d)
	return &d
}

// MergedWeight returns w0 + s·P·diag(λ)·Q.
func (a *Layer) MergedWeight(w0 *mat.Dense) *mat.Dense {
	a.check("AdaLoRA.MergedWeight", w0)
	d := a.DeltaWeight()
	d.Add(w0, d)
	return d
}

// newLayer returns the adapter for module (weight out×in): P, Q ~
// N(0, 0.02²) drawn from rng (Q first), λ = 0, every triplet kept, built
// by fromTriplets.
func newLayer(module, name string, out, in int, cfg Config, rng *rand.Rand) (*Layer, error) {
	r := cfg.InitR
	normal := func(rows, cols int) *mat.Dense {
		d := mat.NewDense(rows, cols, nil)
		raw := d.RawMatrix().Data
		for i := range raw {
			raw[i] = 0.02 * rng.NormFloat64()
		}
		return d
	}
	q := normal(r, in)
	p := normal(out, r)
	return fromTriplets(module, name, out, in, p, mat.NewDense(r, 1, nil), q, nil, cfg.Alpha, cfg.Dropout,
		rand.New(rand.NewSource(rng.Int63())))
}

// fromTriplets returns the Layer of module (weight out×in) with P (out×r),
// λ (r×1) and Q (r×in) (not copied), the triplets kept (nil: all), α,
// dropout, and rng for dropout masks, with parameters named
// "<module>.lora_{A,B,E}.<name>". It is what Add and LoadAdapter both build
// layers with: an error names the module if the shapes do not chain, r is
// outside [1, min(out, in)], α is negative or not finite, dropout is outside
// [0, 1), or kept does not have r entries.
func fromTriplets(module, name string, out, in int, p, e, q *mat.Dense, kept []bool, alpha, dropout float64, rng *rand.Rand) (*Layer, error) {
	bad := func(format string, args ...any) (*Layer, error) {
		return nil, peft.ArgError{Op: "AdaLoRA(" + module + ")", Msg: fmt.Sprintf(format, args...)}
	}
	pr, r := p.Dims()
	er, ec := e.Dims()
	qr, qc := q.Dims()
	switch {
	case pr != out || qc != in || er != r || qr != r || ec != 1:
		return bad("P %s, λ %s and Q %s do not fit the %s weight: want P (%d×r), λ (r×1), Q (r×%d)",
			peft.ShapeOf(pr, r), peft.ShapeOf(er, ec), peft.ShapeOf(qr, qc), peft.ShapeOf(out, in), out, in)
	case r < 1 || r > min(out, in):
		return bad("r_init = %d out of range [1, %d] for the %s weight", r, min(out, in), peft.ShapeOf(out, in))
	case alpha < 0 || math.IsNaN(alpha) || math.IsInf(alpha, 0):
		return bad("Alpha = %v; want a finite α ≥ 0", alpha)
	case !(dropout >= 0 && dropout < 1):
		return bad("Dropout = %v out of range [0, 1)", dropout)
	case kept != nil && len(kept) != r:
		return bad("a mask of %d kept triplets for r_init = %d", len(kept), r)
	}
	if kept == nil {
		kept = make([]bool, r)
		for i := range kept {
			kept[i] = true
		}
	}
	return &Layer{
		Q:       peft.NewParam(module+".lora_A."+name, q),
		E:       peft.NewParam(module+".lora_E."+name, e),
		P:       peft.NewParam(module+".lora_B."+name, p),
		Module:  module,
		RInit:   r,
		Alpha:   alpha,
		Dropout: dropout,
		kept:    slices.Clone(kept),
		rng:     rng,
	}, nil
}

// configProblem is what is wrong with a Config: the field and the message.
type configProblem struct{ field, msg string }

// withDefaults fills cfg's zero fields and checks their ranges, returning
// the first problem ("" field if none). It does not look at layers.
func (cfg Config) withDefaults() (Config, configProblem) {
	if cfg.InitR == 0 {
		cfg.InitR = 12
	}
	if cfg.TargetR == 0 {
		cfg.TargetR = 8
	}
	if cfg.DeltaT == 0 {
		cfg.DeltaT = 1
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.85
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.85
	}
	if cfg.OrthRegWeight == 0 {
		cfg.OrthRegWeight = 0.5
	}
	cfg.Name = peft.AdapterName(cfg.Name)
	bad := func(field, format string, args ...any) (Config, configProblem) {
		return cfg, configProblem{field, fmt.Sprintf(format, args...)}
	}
	switch {
	case cfg.InitR < 0:
		return bad("InitR", "InitR = %d out of range: want r_init ≥ 1", cfg.InitR)
	case cfg.TargetR < 0 || cfg.TargetR > cfg.InitR:
		return bad("TargetR", "TargetR = %d out of range [1, InitR = %d]", cfg.TargetR, cfg.InitR)
	case cfg.TotalStep <= 0:
		return bad("TotalStep", "TotalStep = %d: want the number of training steps T ≥ 1", cfg.TotalStep)
	case cfg.TInit < 0 || cfg.TFinal < 0 || cfg.TInit+cfg.TFinal >= cfg.TotalStep:
		f := "TInit"
		if cfg.TInit >= 0 && cfg.TFinal < 0 {
			f = "TFinal"
		}
		return bad(f, "TInit = %d, TFinal = %d out of range: want t_i, t_f ≥ 0 and t_i + t_f < TotalStep = %d", cfg.TInit, cfg.TFinal, cfg.TotalStep)
	case cfg.DeltaT < 0:
		return bad("DeltaT", "DeltaT = %d out of range: want ΔT ≥ 1", cfg.DeltaT)
	case !(cfg.Beta1 > 0 && cfg.Beta1 < 1 && cfg.Beta2 > 0 && cfg.Beta2 < 1):
		f := "Beta1"
		if cfg.Beta1 > 0 && cfg.Beta1 < 1 {
			f = "Beta2"
		}
		return bad(f, "Beta1 = %g, Beta2 = %g out of range (0, 1)", cfg.Beta1, cfg.Beta2)
	case !(cfg.OrthRegWeight > 0) || math.IsInf(cfg.OrthRegWeight, 0):
		return bad("OrthRegWeight", "OrthRegWeight = %g out of range: want a finite γ > 0", cfg.OrthRegWeight)
	case cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0):
		return bad("Alpha", "Alpha = %v out of range: want a finite α ≥ 0 (0 selects α = r_init)", cfg.Alpha)
	case !(cfg.Dropout >= 0 && cfg.Dropout < 1):
		return bad("Dropout", "Dropout = %g out of range [0, 1)", cfg.Dropout)
	case cfg.Order != PaperOrder && cfg.Order != PEFTOrder:
		return bad("Order", "Order = %v: want PaperOrder or PEFTOrder", cfg.Order)
	}
	return cfg, configProblem{}
}

// Config returns the controller's configuration with defaults filled in.
func (a *AdaLoRA) Config() Config { return a.cfg }

// Budget returns the total rank budget b(t) at schedule step t and whether
// step t allocates (masks to the budget). The schedule step is Train's step
// with PaperOrder and Train's step minus one with PEFTOrder.
func (a *AdaLoRA) Budget(t int) (b int, allocate bool) {
	ti, tf, T := a.cfg.TInit, a.cfg.TFinal, a.cfg.TotalStep
	switch {
	case t <= ti: // warm-up at the full budget
		return a.b0, false
	case t > T-tf: // final fine-tuning at the target budget
		return a.bT, true
	default: // cubic decrease from b₀ to b_T
		u := 1 - float64(t-ti)/float64(T-tf-ti)
		return int(float64(a.b0-a.bT)*u*u*u + float64(a.bT)), t%a.cfg.DeltaT == 0
	}
}

// InitialBudget returns b₀ = Σ r_init.
func (a *AdaLoRA) InitialBudget() int { return a.b0 }

// TargetBudget returns b_T = L·target_r.
func (a *AdaLoRA) TargetBudget() int { return a.bT }

// Ranks returns each layer's current rank, in Layers order.
func (a *AdaLoRA) Ranks() []int {
	r := make([]int, len(a.Layers))
	for i, l := range a.Layers {
		r[i] = l.Rank()
	}
	return r
}

// Trace returns the ranks recorded at every allocation (a copy). Its Steps
// are the hook's (Train's) steps, from 1, so that they line up with a
// History; its Budget holds b(t) at the schedule step t of each (see
// Budget).
func (a *AdaLoRA) Trace() *peft.RankTrace {
	return a.trace.Clone()
}

// Params returns every layer's P, λ and Q.
func (a *AdaLoRA) Params() []*peft.Tensor {
	var ps []*peft.Tensor
	for _, l := range a.Layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// Regularizer returns γ/(2L)·Σ (‖PᵀP − I‖_F + ‖QQᵀ − I‖_F) (1×1).
func (a *AdaLoRA) Regularizer(step int) *peft.Tensor {
	var sum *peft.Tensor
	for _, l := range a.Layers {
		r := l.RInit
		eye := mat.NewDense(r, r, nil)
		for i := 0; i < r; i++ {
			eye.Set(i, i, 1)
		}
		id := peft.NewConst(eye)
		pp := peft.FrobeniusNorm(peft.Sub(peft.MatMul(peft.Transpose(l.P), l.P), id)) // ‖PᵀP − I‖_F; PᵀP is (r×r)
		qq := peft.FrobeniusNorm(peft.Sub(peft.MatMulT(l.Q, l.Q), id))                // ‖QQᵀ − I‖_F; QQᵀ is (r×r)
		t := peft.Add(pp, qq)
		if sum == nil {
			sum = t
		} else {
			sum = peft.Add(sum, t)
		}
	}
	return peft.Scale(sum, a.cfg.OrthRegWeight/float64(2*len(a.Layers)))
}

// schedStep returns the schedule step t of the hook's step (Train's, from
// 1): step itself with PaperOrder, step − 1 with PEFTOrder.
func (a *AdaLoRA) schedStep(step int) int {
	if a.cfg.Order == PEFTOrder {
		return step - 1
	}
	return step
}

// AfterBackward updates the importance EMAs from the step's gradients and
// the weights they were taken at, while t < T − t_f (PaperOrder); with
// PEFTOrder it does nothing, AfterStep scores.
func (a *AdaLoRA) AfterBackward(step int) {
	if a.cfg.Order == PEFTOrder {
		return
	}
	if a.fixed || a.schedStep(step) >= a.cfg.TotalStep-a.cfg.TFinal {
		return
	}
	a.updateImportance()
}

// updateImportance updates Ī and Ū of every entry of every P, λ and Q from
// its current value and gradient.
func (a *AdaLoRA) updateImportance() {
	b1, b2 := a.cfg.Beta1, a.cfg.Beta2
	for _, p := range a.Params() {
		if p.Grad == nil {
			continue
		}
		w, g := raw(p.Value), raw(p.Grad)
		im := a.imp[p]
		if im == nil {
			im = &ema{ibar: make([]float64, len(w)), ubar: make([]float64, len(w))}
			a.imp[p] = im
		}
		for i := range w {
			s := math.Abs(w[i] * g[i])                                 // sensitivity I = |w·∂L/∂w|
			im.ibar[i] = b1*im.ibar[i] + (1-b1)*s                      // smoothed sensitivity Ī
			im.ubar[i] = b2*im.ubar[i] + (1-b2)*math.Abs(s-im.ibar[i]) // uncertainty Ū
		}
	}
}

// raw returns m's elements in row-major order (m's own storage when it is
// contiguous).
func raw(m *mat.Dense) []float64 {
	rm := m.RawMatrix()
	if rm.Stride == rm.Cols {
		return rm.Data[:rm.Rows*rm.Cols]
	}
	return mat.DenseCopyOf(m).RawMatrix().Data
}

// AfterStep allocates the budget at the schedule step t of step (with
// PEFTOrder it first updates the importance, while t < T − t_f, from the
// weights after the optimizer's update): every ΔT steps until T − t_f it
// zeroes the λ of the lowest-scoring triplets; at T − t_f it fixes the
// allocation; after that it keeps the zeroed λ at zero.
func (a *AdaLoRA) AfterStep(step int) error {
	t := a.schedStep(step)
	final := a.cfg.TotalStep - a.cfg.TFinal
	if a.cfg.Order == PEFTOrder && !a.fixed && t < final {
		a.updateImportance()
	}
	b, allocate := a.Budget(t)
	switch {
	case t < final && !a.fixed:
		if allocate {
			a.maskToBudget(step, b)
		}
	case t == final || (t > final && !a.fixed):
		a.maskToBudget(step, b)
		a.fixed = true
		clear(a.imp)
	default:
		for _, l := range a.Layers {
			for i, k := range l.kept {
				if !k {
					l.E.Value.Set(i, 0, 0)
				}
			}
		}
	}
	return nil
}

// Scores returns each layer's triplet scores S_i (r_init each) from the
// current importance EMAs.
func (a *AdaLoRA) Scores() [][]float64 {
	out := make([][]float64, len(a.Layers))
	for li, l := range a.Layers {
		r := l.RInit
		s := make([]float64, r)
		if im := a.imp[l.E]; im != nil { // s(λ_i)
			for i := 0; i < r; i++ {
				s[i] += im.ibar[i] * im.ubar[i]
			}
		}
		if im := a.imp[l.Q]; im != nil { // mean_j s(Q_ij), Q is (r×in)
			_, in := l.Q.Dims()
			for i := 0; i < r; i++ {
				var m float64
				for j := 0; j < in; j++ {
					m += im.ibar[i*in+j] * im.ubar[i*in+j]
				}
				s[i] += m / float64(in)
			}
		}
		if im := a.imp[l.P]; im != nil { // mean_j s(P_ji), P is (out×r)
			out, _ := l.P.Dims()
			for i := 0; i < r; i++ {
				var m float64
				for j := 0; j < out; j++ {
					m += im.ibar[j*r+i] * im.ubar[j*r+i]
				}
				s[i] += m / float64(out)
			}
		}
		out[li] = s
	}
	return out
}

// maskToBudget zeroes the λ of the b₀ − b lowest-scoring triplets (every
// triplet scoring at or below the (b₀−b)-th smallest score) and records the
// ranks at step.
func (a *AdaLoRA) maskToBudget(step, b int) {
	scores := a.Scores()
	k := a.b0 - b
	thr := math.Inf(-1)
	if k > 0 {
		all := make([]float64, 0, a.b0)
		for _, s := range scores {
			all = append(all, s...)
		}
		slices.Sort(all)
		thr = all[k-1]
	}
	for li, l := range a.Layers {
		for i, s := range scores[li] {
			l.kept[i] = s > thr
			if !l.kept[i] {
				l.E.Value.Set(i, 0, 0)
			}
		}
	}
	a.trace.Steps = append(a.trace.Steps, step)
	a.trace.Budget = append(a.trace.Budget, b)
	for li, l := range a.Layers {
		a.trace.Ranks[li] = append(a.trace.Ranks[li], l.Rank())
	}
}

// Add freezes m's base weights, attaches a Layer named cfg.Name to every
// module matching cfg.Targets and returns the controller to pass to
// training as a peft.Hook (peft.TrainConfig.Hooks), with TotalStep equal to
// the run's number of steps. P and Q are drawn from one generator seeded
// with cfg.Seed, module after module in model order.
func Add(m peft.Model, cfg Config) (*AdaLoRA, error) {
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(mods))
	for i, l := range mods {
		names[i] = l.Name
	}
	op := "adalora.Add(" + strings.Join(names, ", ") + ")"
	initRDefault := cfg.InitR == 0
	cfg, p := cfg.withDefaults()
	if p.field != "" {
		return nil, peft.ArgError{Op: op, Msg: p.msg}
	}
	for _, l := range mods {
		out, in := l.W.Dims()
		if cfg.InitR > min(out, in) {
			given := ""
			if initRDefault {
				given = " (the default, as InitR is 0)"
			}
			return nil, peft.ArgError{Op: "adalora.Add(" + l.Name + ")", Msg: fmt.Sprintf(
				"InitR = %d%s out of range [1, %d] for the %s weight", cfg.InitR, given, min(out, in), peft.ShapeOf(out, in))}
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	a := &AdaLoRA{cfg: cfg, imp: map[*peft.Tensor]*ema{}}
	byModule := map[*peft.Linear]*Layer{}
	for _, l := range mods {
		out, in := l.W.Dims()
		al, err := newLayer(l.Name, cfg.Name, out, in, cfg, rng)
		if err != nil {
			return nil, err
		}
		byModule[l] = al
		a.Layers = append(a.Layers, al)
		a.b0 += al.RInit
		a.trace.Modules = append(a.trace.Modules, l.Name)
	}
	a.trace.Ranks = make([][]int, len(mods))
	a.bT = cfg.TargetR * len(mods)
	if _, err := peft.AddAdapter(m, cfg.Name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		return byModule[l], nil
	}); err != nil {
		return nil, err
	}
	return a, nil
}
