package peft

import (
	"fmt"
	"math"
	"math/rand"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// AdaLoRA adapts several layers with SVD-form updates and moves a global
// rank budget between them while training (Zhang et al. 2023, "Adaptive
// Budget Allocation for Parameter-Efficient Fine-Tuning", ICLR,
// arXiv:2303.10512). Each adapted layer with frozen W (out×in) gets an
// AdaLoRALayer:
//
//	ΔW = P·diag(λ)·Q,  P: out×r (lora_B), λ: r×1 (lora_E, init 0), Q: r×in (lora_A)
//	y  = x·Wᵀ + b + α/(r_init + 1e-5) · x̃·(Q ⊙ λ)ᵀ·Pᵀ         x (n×in), y (n×out)
//
// The AdaLoRA value is the controller, a Hook. At every step t it scores
// every entry w of P, λ and Q by its sensitivity, smoothed, times its
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
// Importance is computed in AfterBackward from the weights the gradient was
// taken at (the paper's Algorithm 1); the masking runs in AfterStep, after
// the optimizer's update, as PEFT's update_and_allocate.
type AdaLoRA struct {
	Layers []*AdaLoRALayer // one per adapted module

	cfg    AdaLoRAConfig
	b0, bT int                     // initial and target total budget
	imp    map[*Tensor]*adaLoRAImp // importance EMAs of every P, λ, Q
	fixed  bool                    // the final allocation (step T−t_f) has been made
	trace  RankTrace
}

// AdaLoRAConfig configures AddAdaLoRA. Zero fields select PEFT's defaults
// where noted.
type AdaLoRAConfig struct {
	InitR   int     // r_init, each layer's starting rank (0 selects 12)
	TargetR int     // target_r, the average final rank per layer (0 selects 8); b_T = L·TargetR
	Alpha   float64 // α; the update is scaled by α/(r_init + 1e-5) (0 selects α = r_init, as PEFT)
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
}

// adaLoRAImp holds the importance EMAs Ī and Ū of one parameter, entry by
// entry.
type adaLoRAImp struct {
	ibar, ubar []float64
}

// AdaLoRALayer is AdaLoRA's SVD-form update of one layer (see AdaLoRA):
// ΔW = α/(r_init+1e-5) · P·diag(λ)·Q. It implements Adapter.
type AdaLoRALayer struct {
	P      *Tensor // left singular vectors (out×r_init): PEFT's lora_B
	E      *Tensor // singular values λ (r_init×1): PEFT's lora_E
	Q      *Tensor // right singular vectors (r_init×in): PEFT's lora_A
	Module string  // the adapted module's name
	RInit  int     // r_init
	Alpha  float64 // α (≤ 0 means r_init, as PEFT)

	Dropout float64 // dropout on the adapter's input, in [0, 1)

	kept []bool     // triplets kept at the last allocation
	rng  *rand.Rand // dropout masks
}

// Scaling returns α/(r_init + 1e-5), PEFT's scale (with α = r_init when
// α ≤ 0).
func (a *AdaLoRALayer) Scaling() float64 {
	alpha := a.Alpha
	if alpha <= 0 {
		alpha = float64(a.RInit)
	}
	return alpha / (float64(a.RInit) + 1e-5)
}

// Rank returns the number of triplets kept at the last allocation (r_init
// before the first).
func (a *AdaLoRALayer) Rank() int {
	n := 0
	for _, k := range a.kept {
		if k {
			n++
		}
	}
	return n
}

// Kept returns which triplets the last allocation kept (a copy).
func (a *AdaLoRALayer) Kept() []bool { return slices.Clone(a.kept) }

// Params returns P, λ and Q.
func (a *AdaLoRALayer) Params() []*Tensor { return []*Tensor{a.P, a.E, a.Q} }

func (a *AdaLoRALayer) check(op string, w mat.Matrix) {
	out, in := w.Dims()
	pr, pc := a.P.Dims()
	er, ec := a.E.Dims()
	qr, qc := a.Q.Dims()
	if pr != out || qc != in || pc != er || qr != er || ec != 1 {
		panic(ShapeError{Op: op, Got: fmt.Sprintf("W %s, P %s, λ %s, Q %s", ShapeOf(out, in), ShapeOf(pr, pc), ShapeOf(er, ec), ShapeOf(qr, qc)),
			Want: fmt.Sprintf("P (%d×r), λ (r×1), Q (r×%d)", out, in)})
	}
}

// Forward returns base + s·x̃·(Q ⊙ λ)ᵀ·Pᵀ (n×out) for x (n×in).
func (a *AdaLoRALayer) Forward(l *Linear, x, base *Tensor) *Tensor {
	a.check("AdaLoRA.Forward("+l.Name+")", l.W.Value)
	xd := x
	if a.Dropout > 0 && l.Training {
		xd = Dropout(x, a.Dropout, a.rng, true) // x̃ (n×in)
	}
	ql := MulCol(a.Q, a.E)                  // Q ⊙ λ (r×in), row i scaled by λ_i
	h := MatMulT(MatMulT(xd, ql), a.P)      // x̃·(Q⊙λ)ᵀ is (n×r); ·Pᵀ gives (n×out)
	return Add(base, Scale(h, a.Scaling())) // (n×out)
}

// DeltaWeight returns ΔW = s·P·diag(λ)·Q (out×in).
func (a *AdaLoRALayer) DeltaWeight() *mat.Dense {
	var ql, d mat.Dense
	ql.Apply(func(i, j int, v float64) float64 { return v * a.E.Value.At(i, 0) }, a.Q.Value)
	d.Mul(a.P.Value, &ql)
	d.Scale(a.Scaling(), &d)
	return &d
}

// MergedWeight returns w0 + s·P·diag(λ)·Q.
func (a *AdaLoRALayer) MergedWeight(w0 *mat.Dense) *mat.Dense {
	a.check("AdaLoRA.MergedWeight", w0)
	d := a.DeltaWeight()
	d.Add(w0, d)
	return d
}

var _ Adapter = (*AdaLoRALayer)(nil)

// newAdaLoRALayer returns the adapter for l: P, Q ~ N(0, 0.02²), λ = 0,
// with parameters named "<module>.lora_{A,B,E}.<name>".
func newAdaLoRALayer(l *Linear, name string, cfg AdaLoRAConfig, rng *rand.Rand) *AdaLoRALayer {
	out, in := l.W.Dims()
	r := cfg.InitR
	normal := func(rows, cols int) *mat.Dense {
		d := mat.NewDense(rows, cols, nil)
		raw := d.RawMatrix().Data
		for i := range raw {
			raw[i] = 0.02 * rng.NormFloat64()
		}
		return d
	}
	a := &AdaLoRALayer{
		Q:       NewParam(l.Name+".lora_A."+name, normal(r, in)),
		E:       NewParam(l.Name+".lora_E."+name, mat.NewDense(r, 1, nil)),
		P:       NewParam(l.Name+".lora_B."+name, normal(out, r)),
		Module:  l.Name,
		RInit:   r,
		Alpha:   cfg.Alpha,
		Dropout: cfg.Dropout,
		kept:    make([]bool, r),
		rng:     rand.New(rand.NewSource(rng.Int63())),
	}
	for i := range a.kept {
		a.kept[i] = true
	}
	return a
}

// withDefaults fills cfg's zero fields and checks its ranges against the
// layers to adapt; the error names the module, its shape and the allowed
// range.
func (cfg AdaLoRAConfig) withDefaults(layers []*Linear) (AdaLoRAConfig, error) {
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
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	bad := func(format string, args ...any) (AdaLoRAConfig, error) {
		return cfg, ArgError{Op: "AddAdaLoRA", Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case cfg.InitR < 0:
		return bad("InitR = %d out of range: want r_init ≥ 1", cfg.InitR)
	case cfg.TargetR < 0 || cfg.TargetR > cfg.InitR:
		return bad("TargetR = %d out of range [1, InitR = %d]", cfg.TargetR, cfg.InitR)
	case cfg.TotalStep <= 0:
		return bad("TotalStep = %d: want the number of training steps T ≥ 1", cfg.TotalStep)
	case cfg.TInit < 0 || cfg.TFinal < 0 || cfg.TInit+cfg.TFinal >= cfg.TotalStep:
		return bad("TInit = %d, TFinal = %d out of range: want t_i, t_f ≥ 0 and t_i + t_f < TotalStep = %d", cfg.TInit, cfg.TFinal, cfg.TotalStep)
	case cfg.DeltaT < 0:
		return bad("DeltaT = %d out of range: want ΔT ≥ 1", cfg.DeltaT)
	case cfg.Beta1 < 0 || cfg.Beta1 >= 1 || cfg.Beta2 < 0 || cfg.Beta2 >= 1:
		return bad("Beta1 = %g, Beta2 = %g out of range (0, 1)", cfg.Beta1, cfg.Beta2)
	case cfg.OrthRegWeight < 0:
		return bad("OrthRegWeight = %g out of range: want γ > 0", cfg.OrthRegWeight)
	case cfg.Dropout < 0 || cfg.Dropout >= 1:
		return bad("Dropout = %g out of range [0, 1)", cfg.Dropout)
	case len(layers) == 0:
		return bad("no module to adapt")
	}
	for _, l := range layers {
		out, in := l.W.Dims()
		if cfg.InitR > min(out, in) {
			return cfg, ArgError{Op: "AddAdaLoRA(" + l.Name + ")", Msg: fmt.Sprintf(
				"InitR = %d out of range [1, %d] for the %s weight", cfg.InitR, min(out, in), ShapeOf(out, in))}
		}
	}
	return cfg, nil
}

// newAdaLoRA makes the adapters of layers (already checked by withDefaults)
// and their controller. It does not attach them.
func newAdaLoRA(layers []*Linear, cfg AdaLoRAConfig) *AdaLoRA {
	rng := rand.New(rand.NewSource(cfg.Seed))
	a := &AdaLoRA{cfg: cfg, imp: map[*Tensor]*adaLoRAImp{}}
	for _, l := range layers {
		al := newAdaLoRALayer(l, cfg.Name, cfg, rng)
		a.Layers = append(a.Layers, al)
		a.b0 += al.RInit
		a.trace.Modules = append(a.trace.Modules, l.Name)
	}
	a.trace.Ranks = make([][]int, len(layers))
	a.bT = cfg.TargetR * len(layers)
	return a
}

// Config returns the controller's configuration with defaults filled in.
func (a *AdaLoRA) Config() AdaLoRAConfig { return a.cfg }

// Budget returns the total rank budget b(t) at step t and whether step t
// allocates (masks to the budget).
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

// InitialBudget returns b₀ = Σ r_init; TargetBudget returns b_T = L·target_r.
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

// Trace returns the ranks recorded at every allocation step (a copy).
func (a *AdaLoRA) Trace() *RankTrace {
	t := &RankTrace{
		Modules: slices.Clone(a.trace.Modules),
		Steps:   slices.Clone(a.trace.Steps),
		Budget:  slices.Clone(a.trace.Budget),
		Ranks:   make([][]int, len(a.trace.Ranks)),
	}
	for i, r := range a.trace.Ranks {
		t.Ranks[i] = slices.Clone(r)
	}
	return t
}

// Params returns every layer's P, λ and Q.
func (a *AdaLoRA) Params() []*Tensor {
	var ps []*Tensor
	for _, l := range a.Layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// Regularizer returns γ/(2L)·Σ (‖PᵀP − I‖_F + ‖QQᵀ − I‖_F) (1×1).
func (a *AdaLoRA) Regularizer(step int) *Tensor {
	var sum *Tensor
	for _, l := range a.Layers {
		r := l.RInit
		eye := mat.NewDense(r, r, nil)
		for i := 0; i < r; i++ {
			eye.Set(i, i, 1)
		}
		id := NewConst(eye)
		pp := FrobeniusNorm(Sub(MatMul(Transpose(l.P), l.P), id)) // ‖PᵀP − I‖_F; PᵀP is (r×r)
		qq := FrobeniusNorm(Sub(MatMulT(l.Q, l.Q), id))           // ‖QQᵀ − I‖_F; QQᵀ is (r×r)
		t := Add(pp, qq)
		if sum == nil {
			sum = t
		} else {
			sum = Add(sum, t)
		}
	}
	return Scale(sum, a.cfg.OrthRegWeight/float64(2*len(a.Layers)))
}

// AfterBackward updates the importance EMAs from the step's gradients,
// until step T − t_f.
func (a *AdaLoRA) AfterBackward(step int) {
	if a.fixed || step >= a.cfg.TotalStep-a.cfg.TFinal {
		return
	}
	b1, b2 := a.cfg.Beta1, a.cfg.Beta2
	for _, p := range a.Params() {
		if p.Grad == nil {
			continue
		}
		w, g := vals(p.Value), vals(p.Grad)
		im := a.imp[p]
		if im == nil {
			im = &adaLoRAImp{ibar: make([]float64, len(w)), ubar: make([]float64, len(w))}
			a.imp[p] = im
		}
		for i := range w {
			s := math.Abs(w[i] * g[i])                                 // sensitivity I = |w·∂L/∂w|
			im.ibar[i] = b1*im.ibar[i] + (1-b1)*s                      // smoothed sensitivity Ī
			im.ubar[i] = b2*im.ubar[i] + (1-b2)*math.Abs(s-im.ibar[i]) // uncertainty Ū
		}
	}
}

// AfterStep allocates the budget at step: every ΔT steps until T − t_f it
// zeroes the λ of the lowest-scoring triplets; at T − t_f it fixes the
// allocation; after that it keeps the zeroed λ at zero.
func (a *AdaLoRA) AfterStep(step int) error {
	b, allocate := a.Budget(step)
	switch final := a.cfg.TotalStep - a.cfg.TFinal; {
	case step < final && !a.fixed:
		if allocate {
			a.maskToBudget(step, b)
		}
	case step == final || (step > final && !a.fixed):
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
// ranks.
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

var _ Hook = (*AdaLoRA)(nil)

// AddAdaLoRA freezes m's base weights, attaches an AdaLoRALayer named
// cfg.Name to every module matching cfg.Targets and returns the controller
// to pass to training as a Hook (TrainConfig.Hooks), with TotalStep equal to
// the run's number of steps.
func AddAdaLoRA(m Model, cfg AdaLoRAConfig) (*AdaLoRA, error) {
	mods, err := Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	cfg, err = cfg.withDefaults(mods)
	if err != nil {
		return nil, err
	}
	a := newAdaLoRA(mods, cfg)
	byModule := map[*Linear]*AdaLoRALayer{}
	for i, l := range mods {
		byModule[l] = a.Layers[i]
	}
	if _, err := AddAdapter(m, cfg.Name, cfg.Targets, func(l *Linear) (Adapter, error) {
		return byModule[l], nil
	}); err != nil {
		return nil, err
	}
	return a, nil
}
