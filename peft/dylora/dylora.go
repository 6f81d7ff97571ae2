// Package dylora is DyLoRA (Valipour, Rezagholizadeh, Kobyzev and Ghodsi,
// 2023, "DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using
// Dynamic Search-Free Low-Rank Adaptation", EACL, arXiv:2210.07558): LoRA
// trained at a rank b drawn afresh at every step, so that one set of
// factors works at every rank b ≤ r after training, with no search over r.
//
// Add attaches a Layer to every targeted module and returns the
// controller, a *DyLoRA, to pass to training as a peft.Hook: it draws the
// rank of each step. After training, SetRank picks the rank used for
// inference and merging, and LossByRank evaluates a model at every rank.
package dylora

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// DyLoRA trains LoRA factors of rank r so that every leading block of them
// is a good adapter on its own (Valipour et al. 2023, arXiv:2210.07558).
// Each adapted layer with frozen W₀ (d×k) gets a Layer holding
//
//	A: r×k, Kaiming-uniform U(−1/√k, 1/√k);  B: d×r, init 0  (LoRA's init)
//
// and at rank b (1 ≤ b ≤ r) computes, with A_{:b} the first b rows of A and
// B_{:b} the first b columns of B,
//
//	h = x·W₀ᵀ + b₀ + (α/b)·dropout(x)·A_{:b}ᵀ·B_{:b}ᵀ      x (n×k), h (n×d)
//	  = W₀x + (α/b)·Σ_{i≤b} B_i·A_i·x                      (per example)
//
// so ΔW(b) = (α/b)·B_{:b}·A_{:b}. The scale α/b is the reference code's: it
// multiplies both truncated factors by √(r/b) on top of LoRA's α/r
// (DyLoRA/loralib/DyLoRA.py), which makes the scale follow the rank in use.
//
// FixedScale, gopeft's option, scales by α/r at every b instead. The
// reason is measured (TestNested, on a teacher task whose best rank-b
// updates T_b are nested): with α/b no single B, A can be optimal at every
// rank, since (α/b)·B_{:b}·A_{:b} = T_b for all b would need component
// b+1 to be ((b+1)·T_{b+1} − b·T_b)/α, of rank b+1 rather than one. Trained
// DyLoRA then stays well above a fixed-rank LoRA at the larger ranks (at
// b = r = 6, loss 0.14 against LoRA's 0.00, with a teacher variance of
// 1.42), while with α/r the component b+1 is (r/α)·(T_{b+1} − T_b), of rank
// one, and DyLoRA matches the fixed-rank LoRA at every b to 0.005.
//
// Training. Before every step the controller draws one b ~ Uniform{1, …, r}
// (the paper's p_B) for all layers, from a generator seeded by Config.Seed;
// the first b is drawn by Add, each next one in AfterStep. With Frozen (the
// paper's Algorithm 1 and its GLUE script), the first b−1 components are
// detached, so the step updates only the b-th row of A and column of B; a
// component once trained is then changed only when it is drawn again.
// Without Frozen, all b components get gradient (the reference code's other
// mode, "w/o frozen" in the paper's ablation).
//
// Inference. SetRank(b) sets the rank every Layer uses outside training
// (r at first), which Rank reports and MergedWeight merges. LossByRank
// evaluates a model at every b = 1 … r in one call.
//
// Defaults: α = r when Config.Alpha is 0 (scaling 1 at full rank, as gopeft's
// LoRA); the paper's GLUE runs use r = 8, α = 16. Departures from the
// reference code: the rank is sampled by the Hook rather than by the training
// script, and a Layer keeps two ranks, the one drawn for training and the
// one set for inference, where the reference keeps one.
type DyLoRA struct {
	Layers []*Layer // one per adapted module, in model order

	cfg     Config
	rng     *rand.Rand // draws the training ranks
	next    int        // the rank of the coming step
	sampled []int      // the rank used at each step so far
}

var _ peft.Hook = (*DyLoRA)(nil)

// Layer is DyLoRA's adapter on one module: LoRA factors of rank r used at a
// rank b ≤ r (see DyLoRA).
type Layer struct {
	A       *peft.Tensor // (r×k)
	B       *peft.Tensor // (d×r)
	R       int          // the largest rank r
	Alpha   float64      // α; the update at rank b is scaled by α/b
	Frozen  bool         // while training, only component b gets gradient
	Dropout float64      // dropout on the adapter's input, in [0, 1)
	// FixedScale scales the update by α/r at every rank, not α/b.
	FixedScale bool

	rank  int        // the rank b outside training (SetRank)
	train int        // the rank b of the current training step
	rng   *rand.Rand // draws the dropout masks
}

var _ peft.Adapter = (*Layer)(nil)

// Config configures Add.
type Config struct {
	R       int     // largest rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64 // α, the update at rank b scaled by α/b; 0 means α = r
	Frozen  bool    // train only the sampled component b (the paper's Algorithm 1)
	Dropout float64 // dropout on the adapter's input, in [0, 1)
	// FixedScale scales the update at every rank b by α/r rather than the
	// paper's α/b (see DyLoRA for why).
	FixedScale bool
	Targets    []string // target modules, by name or pattern (see peft.Targets)
	Name       string   // adapter name, "default" if empty
	Seed       int64    // seeds A's init, the dropout masks and the ranks drawn
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)], α negative or not
// finite, or dropout outside [0, 1).
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: DyLoRA on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: DyLoRA on %s: Alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout) {
		return fmt.Errorf("peft: DyLoRA on %s: Dropout = %v outside [0, 1)", module, cfg.Dropout)
	}
	return nil
}

// New returns a DyLoRA layer for a weight (d×k) named module (for its
// parameters' names "module.dylora_A.name.weight", …), with A drawn from rng
// and B zero, at rank r for training and inference. It is an error if cfg
// does not fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*Layer, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	return FromFactors(module, name, lora.RandomA(rng, cfg.R, k), mat.NewDense(d, cfg.R, nil), cfg, rand.New(rand.NewSource(rng.Int63())))
}

// FromFactors returns a DyLoRA layer with the given A (r×k) and B (d×r)
// (not copied), cfg's α (as it is: 0 gives a zero update), Frozen and
// dropout, and rng for the dropout masks; cfg.R is taken from A. Its ranks
// for training and inference are r.
func FromFactors(module, name string, a, b *mat.Dense, cfg Config, rng *rand.Rand) (*Layer, error) {
	r, k := a.Dims()
	d, rb := b.Dims()
	if rb != r {
		return nil, fmt.Errorf("peft: DyLoRA on %s: A %s and B %s do not chain", module, peft.ShapeOf(r, k), peft.ShapeOf(d, rb))
	}
	cfg.R = r
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	return &Layer{
		A:          peft.NewParam(module+".dylora_A."+name+".weight", a),
		B:          peft.NewParam(module+".dylora_B."+name+".weight", b),
		R:          r,
		Alpha:      cfg.Alpha,
		Frozen:     cfg.Frozen,
		Dropout:    cfg.Dropout,
		rank:       r,
		FixedScale: cfg.FixedScale,
		train:      r,
		rng:        rng,
	}, nil
}

// Add freezes m's base weights, attaches a Layer named cfg.Name to every
// module matching cfg.Targets and returns the controller to pass to
// training as a peft.Hook (peft.TrainConfig.Hooks), with the rank of the
// first step drawn. One generator seeded with cfg.Seed draws each A,
// module after module in model order, then seeds the dropout masks and the
// ranks.
func Add(m peft.Model, cfg Config) (*DyLoRA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		return New(l.Name, name, d, k, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	c := &DyLoRA{Layers: As(added), cfg: cfg, rng: rand.New(rand.NewSource(rng.Int63()))}
	c.draw()
	return c, nil
}

// As returns the DyLoRA layers among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*Layer { return adapters.As[*Layer](ads) }

// Config returns the controller's configuration, with α's default filled in.
func (c *DyLoRA) Config() Config { return c.cfg }

// draw draws the rank of the coming step and gives it to every layer.
func (c *DyLoRA) draw() {
	c.next = 1 + c.rng.Intn(c.cfg.R)
	for _, l := range c.Layers {
		l.train = min(c.next, l.R)
	}
}

// Next returns the rank b the coming training step uses.
func (c *DyLoRA) Next() int { return c.next }

// Sampled returns the rank used at each step so far, from step 1 (a copy).
func (c *DyLoRA) Sampled() []int { return append([]int(nil), c.sampled...) }

// SetRank sets the rank every layer uses outside training (and merges) to
// b. It panics unless 1 ≤ b ≤ r.
func (c *DyLoRA) SetRank(b int) {
	for _, l := range c.Layers {
		l.SetRank(b)
	}
}

// Ranks returns each layer's rank outside training, in Layers order.
func (c *DyLoRA) Ranks() []int {
	r := make([]int, len(c.Layers))
	for i, l := range c.Layers {
		r[i] = l.Rank()
	}
	return r
}

// Params returns every layer's A and B.
func (c *DyLoRA) Params() []*peft.Tensor {
	var ps []*peft.Tensor
	for _, l := range c.Layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// Regularizer returns nil: DyLoRA adds nothing to the loss.
func (c *DyLoRA) Regularizer(step int) *peft.Tensor { return nil }

// AfterBackward does nothing.
func (c *DyLoRA) AfterBackward(step int) {}

// AfterStep records the rank step used and draws the next one.
func (c *DyLoRA) AfterStep(step int) error {
	c.sampled = append(c.sampled, c.next)
	c.draw()
	return nil
}

// SetRank sets the rank the layer uses outside training, which Rank
// reports and MergedWeight merges. It panics unless 1 ≤ b ≤ r.
func (a *Layer) SetRank(b int) {
	if b < 1 || b > a.R {
		panic(peft.ArgError{Op: "DyLoRA.SetRank", Msg: fmt.Sprintf("rank %d out of range: want 1 ≤ b ≤ r = %d", b, a.R)})
	}
	a.rank = b
}

// TrainingRank returns the rank b the layer uses while training (the one the
// controller drew for the coming step).
func (a *Layer) TrainingRank() int { return a.train }

// Scaling returns the scale at rank b: α/b, or α/r with FixedScale.
func (a *Layer) Scaling(b int) float64 {
	if a.FixedScale {
		return a.Alpha / float64(a.R)
	}
	return a.Alpha / float64(b)
}

// Forward returns base + (α/b)·dropout(x)·A_{:b}ᵀ·B_{:b}ᵀ for x (n×k), base
// (n×d), at the training rank while l.Training and at the rank SetRank set
// otherwise; with Frozen, while training, only component b gets gradient.
func (a *Layer) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	b := a.rank
	if l.Training {
		b = a.train
	}
	xd := peft.Dropout(x, a.Dropout, a.rng, l.Training) // (n×k)
	return peft.Add(base, a.term(xd, b, l.Training && a.Frozen))
}

// term returns (α/b)·x·A_{:b}ᵀ·B_{:b}ᵀ (n×d) for x (n×k); if frozen, the
// first b−1 components are detached.
func (a *Layer) term(x *peft.Tensor, b int, frozen bool) *peft.Tensor {
	d, _ := a.B.Dims()
	_, k := a.A.Dims()
	var ab, bb *peft.Tensor // (b×k), (d×b)
	switch {
	case b == a.R && !frozen:
		ab, bb = a.A, a.B
	case frozen && b > 1:
		ab = peft.ConcatRows(peft.Detach(peft.Slice(a.A, 0, b-1, 0, k)), peft.Slice(a.A, b-1, b, 0, k))
		bb = peft.ConcatCols(peft.Detach(peft.Slice(a.B, 0, d, 0, b-1)), peft.Slice(a.B, 0, d, b-1, b))
	default:
		ab, bb = peft.Slice(a.A, 0, b, 0, k), peft.Slice(a.B, 0, d, 0, b)
	}
	ax := peft.Scale(peft.MatMulT(x, ab), a.Scaling(b)) // (n×b) = (α/b)·x·A_{:b}ᵀ
	return peft.MatMulT(ax, bb)                         // (n×d)
}

// Params returns A and B.
func (a *Layer) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B} }

// Rank returns the rank b used outside training (r unless SetRank changed
// it).
func (a *Layer) Rank() int { return a.rank }

// DeltaAt returns ΔW(b) = (α/b)·B_{:b}·A_{:b} (d×k), α/r with FixedScale.
// It panics unless
// 1 ≤ b ≤ r.
func (a *Layer) DeltaAt(b int) *mat.Dense {
	if b < 1 || b > a.R {
		panic(peft.ArgError{Op: "DyLoRA.DeltaAt", Msg: fmt.Sprintf("rank %d out of range: want 1 ≤ b ≤ r = %d", b, a.R)})
	}
	d, _ := a.B.Dims()
	_, k := a.A.Dims()
	var dw mat.Dense
	dw.Mul(a.B.Value.Slice(0, d, 0, b), a.A.Value.Slice(0, b, 0, k))
	dw.Scale(a.Scaling(b), &dw)
	return &dw
}

// Delta returns ΔW at the rank Rank reports.
func (a *Layer) Delta() *mat.Dense { return a.DeltaAt(a.rank) }

// MergedWeight returns w0 + ΔW(b) (d×k) at the rank Rank reports. It panics
// if w0 is not (d×k).
func (a *Layer) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d, _ := a.B.Dims()
	_, k := a.A.Dims()
	if r, c := w0.Dims(); r != d || c != k {
		panic(peft.ShapeError{Op: "DyLoRA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d, k) + ", the adapter's W₀"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}

// LossByRank returns m's evaluation loss on data (peft.Evaluate, in
// evaluation mode) with every active DyLoRA layer of m at rank b, for
// b = 1 … r, r the largest rank among them (a layer of smaller r stays at
// its r): losses[b−1] is the loss at rank b, the curve DyLoRA is trained to
// keep low everywhere. The layers' ranks are restored afterwards; m is left
// in evaluation mode (SetTraining(false)). It is an
// error if m has no active DyLoRA layer, or if ctx is cancelled.
func LossByRank(ctx context.Context, m peft.Model, data peft.Dataset) ([]float64, error) {
	var ls []*Layer
	rmax := 0
	for _, l := range m.Modules() {
		if a, ok := l.ActiveAdapter().(*Layer); ok {
			ls = append(ls, a)
			rmax = max(rmax, a.R)
		}
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("peft: dylora.LossByRank: the model has no active DyLoRA layer (modules %v)", peft.ModuleNames(m))
	}
	saved := make([]int, len(ls))
	for i, a := range ls {
		saved[i] = a.rank
	}
	defer func() {
		for i, a := range ls {
			a.rank = saved[i]
		}
	}()
	m.SetTraining(false)
	losses := make([]float64, rmax)
	for b := 1; b <= rmax; b++ {
		for _, a := range ls {
			a.rank = min(b, a.R)
		}
		loss, _, err := peft.Evaluate(ctx, m, data)
		if err != nil {
			return nil, fmt.Errorf("peft: dylora.LossByRank at rank %d: %w", b, err)
		}
		losses[b-1] = loss
	}
	return losses, nil
}
