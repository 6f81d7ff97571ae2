// Package lorasb is LoRA-SB: LoRA-XS's frozen B and A around a trained
// r×r matrix R, all three initialized from the truncated SVD of an
// estimate of full fine-tuning's first update.
package lorasb

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"regexp"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// LoRASB adapts a frozen weight W₀ (d×k) of a Linear layer with LoRA-XS's
// update, initialized as LoRA-SB prescribes (Ponkshe, Singhal, Gorbunov,
// Tumanov, Horváth and Vepakomma, 2024, "Initialization using update
// approximation is a silver bullet for extremely efficient low-rank
// fine-tuning", arXiv:2411.19557):
//
//	h = x·W₀ᵀ + b + s·x·Aᵀ·Rᵀ·Bᵀ     x (n×k), h (n×d)
//	B: d×r frozen, R: r×r trained, A: r×k frozen;  s = α/r
//	ΔW = s·B·R·A (d×k), rank ≤ r, r² trained numbers per layer
//
// The init (Add) estimates the first update of full fine-tuning with Adam
// from N minibatch gradients G_i = ∇_W L_i at W₀,
//
//	ΔW₁ = −η·sign(Σ_{i≤N} G_i)    (d×k)
//
// Adam's first step, whose bias-corrected m/√v is sign(g) (ε aside), at the
// first step's learning rate η (for a linear warm-up, lr/warmup_steps:
// peft.LRAt(trainCfg, 1)); then with ΔW₁'s thin SVD U·Σ·Vᵀ
//
//	B = U_r (d×r),  R = Σ_r/s (r×r, diagonal),  A = V_rᵀ (r×k)
//
// so s·B·R·A is the best rank-r approximation of ΔW₁ (Eckart–Young), and
// BᵀB = A·Aᵀ = I. W₀ is not changed: training starts from W₀ + that
// approximation of the first step, as in the reference code. With B and A
// orthonormal, a gradient step on R moves ΔW by s²·B·Bᵀ·G·Aᵀ·A, the full
// gradient G projected onto the two subspaces: the paper's claim that
// LoRA-SB follows the projected full fine-tuning trajectory.
//
// Defaults and departures from the reference code (RaghavSinghal10/lora-sb,
// utils/gradient_utils.py and initialization_utils.py):
//   - α defaults to r (s = 1), the reference's setting. For other α, gopeft
//     divides Σ_r by s so that the initial update does not depend on α (as
//     PEFT's PiSSA does); α then only scales R's effective step, by s².
//   - N defaults to 50 minibatches (DefaultBatches) of BatchSize examples,
//     1 by default, the paper's Σ_{i≤50}: the reference sums per-sample
//     gradients over a fixed number of samples (its function default is
//     170). The sign of a sum does not change if every term is scaled by
//     the same positive factor, so summing equal-sized minibatch means is
//     the same estimate.
//   - The SVD is gopeft's exact thin SVD (accel.ThinSVD); the reference
//     uses torch.svd_lowrank in float32 and stores bfloat16 factors.
//   - FirstStep "sgd" replaces sign(ΣG) by the mean gradient, the first
//     step of plain SGD: then B and A span the top singular subspaces of
//     the full gradient exactly (a known answer for tests and lessons).
//   - No dropout.
//
// HuggingFace PEFT has no LoRA-SB (its closest relatives are LoRA-GA's
// gradient init and TinyLoRA/LoRA-XS), so the adapter is saved in gopeft's
// own format "GOPEFT_LORASB" (see file.go).
type LoRASB struct {
	A     *peft.Tensor // (r×k), frozen
	B     *peft.Tensor // (d×r), frozen
	R     *peft.Tensor // (r×r), trained
	Alpha float64      // α, s = α/r
	// Spectrum holds the singular values of the estimated ΔW₁ (all
	// min(d, k) of them, descending) when the adapter was made from an
	// update; nil when it was made from given factors.
	Spectrum []float64

	r int // rank
}

var _ peft.Adapter = (*LoRASB)(nil)

// DefaultBatches is the number N of minibatch gradients summed by default.
const DefaultBatches = 50

// Config configures Add.
type Config struct {
	R     int     // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha float64 // α; 0 means α = r (s = 1)
	// LR is η, the learning rate of full fine-tuning's first step that ΔW₁
	// estimates (peft.LRAt(trainCfg, 1)); it must be > 0.
	LR        float64
	Batches   int    // N, the minibatches whose gradients are summed; 0 means DefaultBatches
	BatchSize int    // examples per minibatch; 0 means 1
	FirstStep string // "adam" (or ""): ΔW₁ = −η·sign(ΣG); "sgd": ΔW₁ = −η·ΣG/N
	Targets   []string
	Name      string // adapter name, "default" if empty
	Seed      int64  // seeds the minibatch sampling
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)] or α negative or not
// finite.
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: LoRA-SB on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: LoRA-SB on %s: Alpha = %v; want a finite α ≥ 0 (0: α = r)", module, cfg.Alpha)
	}
	return nil
}

// checkEstimate returns an error naming the field and its value if the
// settings of the estimate are out of range.
func (cfg Config) checkEstimate() error {
	switch {
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return fmt.Errorf("peft: LoRA-SB: LR = %v; want the finite learning rate > 0 of the first training step (peft.LRAt(trainCfg, 1))", cfg.LR)
	case cfg.Batches < 0:
		return fmt.Errorf("peft: LoRA-SB: Batches = %d; want N ≥ 1 (0: %d)", cfg.Batches, DefaultBatches)
	case cfg.BatchSize < 0:
		return fmt.Errorf("peft: LoRA-SB: BatchSize = %d; want ≥ 1 (0: 1)", cfg.BatchSize)
	case cfg.FirstStep != "" && cfg.FirstStep != "adam" && cfg.FirstStep != "sgd":
		return fmt.Errorf("peft: LoRA-SB: FirstStep = %q; want \"adam\" (the default) or \"sgd\"", cfg.FirstStep)
	}
	return nil
}

func (cfg Config) withDefaults() Config {
	if cfg.Batches == 0 {
		cfg.Batches = DefaultBatches
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1
	}
	if cfg.FirstStep == "" {
		cfg.FirstStep = "adam"
	}
	return cfg
}

// New returns a LoRA-SB adapter with the given factors B (d×r), R (r×r)
// and A (r×k) (not copied), for a layer named module: the constructor from
// given factors (loading a file, LoRA-XS's inits, a notebook's own). Its
// parameters are named "module.lorasb_B.name.weight", …; only R is
// trainable. cfg.R is taken from R and cfg.Alpha is α (0: α = r). It is an
// error if the shapes do not chain or cfg does not fit.
func New(module, name string, b, r, a *mat.Dense, cfg Config) (*LoRASB, error) {
	d, rb := b.Dims()
	rr, rc := r.Dims()
	ra, k := a.Dims()
	if rb != rr || rr != rc || rc != ra {
		return nil, fmt.Errorf("peft: LoRA-SB on %s: B %s, R %s and A %s do not chain: want B (d×r), R (r×r), A (r×k)",
			module, peft.ShapeOf(d, rb), peft.ShapeOf(rr, rc), peft.ShapeOf(ra, k))
	}
	cfg.R = rr
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(rr)
	}
	name = peft.AdapterName(name)
	bt := peft.NewParam(module+".lorasb_B."+name+".weight", b)
	at := peft.NewParam(module+".lorasb_A."+name+".weight", a)
	bt.Freeze()
	at.Freeze()
	return &LoRASB{
		A:     at,
		B:     bt,
		R:     peft.NewParam(module+".lorasb_R."+name+".weight", r),
		Alpha: cfg.Alpha,
		r:     rr,
	}, nil
}

// FromUpdate returns the LoRA-SB adapter of module initialized from an
// update dw (d×k): with dw = U·Σ·Vᵀ, B = U_r, R = Σ_r/s, A = V_rᵀ, so that
// s·B·R·A is dw's best rank-r approximation. It is an error if cfg does
// not fit dw, if dw holds a NaN or an infinity, or if ctx is cancelled
// during the SVD.
func FromUpdate(ctx context.Context, module, name string, dw *mat.Dense, cfg Config) (*LoRASB, error) {
	d, k := dw.Dims()
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	svd, err := accel.ThinSVD(ctx, dw)
	if err != nil {
		return nil, fmt.Errorf("peft: LoRA-SB on %s: SVD of the update %s: %w", module, peft.ShapeOf(d, k), err)
	}
	r := cfg.R
	alpha := cfg.Alpha
	if alpha == 0 {
		alpha = float64(r)
	}
	s := alpha / float64(r)
	rm := mat.NewDense(r, r, nil)
	for i := 0; i < r; i++ {
		rm.Set(i, i, svd.S[i]/s)
	}
	b := mat.DenseCopyOf(svd.U.Slice(0, d, 0, r))
	a := mat.DenseCopyOf(svd.VT.Slice(0, r, 0, k))
	ad, err := New(module, name, b, rm, a, cfg)
	if err != nil {
		return nil, err
	}
	ad.Spectrum = append([]float64(nil), svd.S...)
	return ad, nil
}

// Update is the estimated first update ΔW₁ (d×k) of one module.
type Update struct {
	Module string
	Delta  *mat.Dense
}

// EstimateUpdates returns ΔW₁ for every module of m matching cfg.Targets,
// in model order, from the gradients of m.Loss on cfg.Batches minibatches
// of cfg.BatchSize examples drawn from data (seeded by cfg.Seed), taken at
// m's current weights with m in training mode (dropout on, as in the
// reference; m is left in evaluation mode). The targets' weights are made
// to need gradients for the estimate only: every parameter's trainability
// and gradient are restored afterwards. Cancelling ctx stops before the
// next minibatch; a non-finite loss or gradient is an error naming the
// minibatch or module.
func EstimateUpdates(ctx context.Context, m peft.Model, data peft.Dataset, cfg Config) ([]Update, error) {
	if err := cfg.checkEstimate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	for _, l := range mods {
		if l.Merged() != "" {
			return nil, fmt.Errorf("peft: LoRA-SB on %s: adapter %q is merged into W; unmerge it first", l.Name, l.Merged())
		}
	}
	grads, err := sumGradients(ctx, m, data, mods, cfg)
	if err != nil {
		return nil, err
	}
	out := make([]Update, len(mods))
	for i, l := range mods {
		g := grads[i]
		d, k := g.Dims()
		dw := mat.NewDense(d, k, nil)
		for p := 0; p < d; p++ {
			for q := 0; q < k; q++ {
				v := g.At(p, q)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, fmt.Errorf("peft: LoRA-SB on %s: the summed gradient is %v at (%d, %d)", l.Name, v, p, q)
				}
				if cfg.FirstStep == "sgd" {
					dw.Set(p, q, -cfg.LR*v/float64(cfg.Batches)) // −η·mean G
				} else {
					dw.Set(p, q, -cfg.LR*sign(v)) // −η·sign(ΣG)
				}
			}
		}
		out[i] = Update{Module: l.Name, Delta: dw}
	}
	return out, nil
}

func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// sumGradients returns Σ_i ∇_W L_i for each of mods' weights, over
// cfg.Batches minibatches, restoring every parameter's state afterwards.
func sumGradients(ctx context.Context, m peft.Model, data peft.Dataset, mods []*peft.Linear, cfg Config) ([]*mat.Dense, error) {
	type state struct {
		p         *peft.Tensor
		trainable bool
		grad      *mat.Dense
	}
	var saved []state
	seen := map[*peft.Tensor]bool{}
	for _, p := range m.Params() {
		if !seen[p] {
			seen[p] = true
			saved = append(saved, state{p, p.Trainable, p.Grad})
			p.Freeze()
			p.Grad = nil
		}
	}
	for _, l := range mods {
		if !seen[l.W] { // a model whose Params leaves out a module's weight
			seen[l.W] = true
			saved = append(saved, state{l.W, l.W.Trainable, l.W.Grad})
		}
		l.W.Unfreeze()
		l.W.Grad = nil
	}
	defer func() {
		for _, s := range saved {
			if s.trainable {
				s.p.Unfreeze()
			} else {
				s.p.Freeze()
			}
			s.p.Grad = s.grad
		}
	}()
	m.SetTraining(true)
	defer m.SetTraining(false)
	rng := rand.New(rand.NewSource(cfg.Seed))
	for i := 1; i <= cfg.Batches; i++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("peft: LoRA-SB: gradient estimate stopped before minibatch %d of %d: %w", i, cfg.Batches, err)
		}
		loss := m.Loss(data.Sample(rng, cfg.BatchSize))
		if v := loss.Scalar(); math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("peft: LoRA-SB: gradient estimate, minibatch %d of %d: the loss is %v", i, cfg.Batches, v)
		}
		loss.Backward()
	}
	out := make([]*mat.Dense, len(mods))
	for i, l := range mods {
		if l.W.Grad == nil {
			d, k := l.W.Dims()
			return nil, fmt.Errorf("peft: LoRA-SB on %s: the loss does not depend on its weight %s: no gradient to estimate the update from", l.Name, peft.ShapeOf(d, k))
		}
		out[i] = mat.DenseCopyOf(l.W.Grad)
	}
	return out, nil
}

// Add estimates ΔW₁ for every module of m matching cfg.Targets from data
// (see EstimateUpdates), freezes m's base and attaches to each a LoRA-SB
// adapter named cfg.Name initialized from its ΔW₁ (see FromUpdate), making
// it the active one. The config is checked against every target before
// any gradient is computed; on error no adapter stays.
func Add(ctx context.Context, m peft.Model, data peft.Dataset, cfg Config) ([]*LoRASB, error) {
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	for _, l := range mods {
		d, k := l.W.Dims()
		if err := cfg.Check(l.Name, d, k); err != nil {
			return nil, err
		}
	}
	ups, err := EstimateUpdates(ctx, m, data, cfg)
	if err != nil {
		return nil, err
	}
	return AddUpdates(ctx, m, ups, cfg)
}

// AddUpdates attaches to each module named in ups a LoRA-SB adapter
// initialized from its update (see FromUpdate), without computing any
// gradient: for updates estimated once and reused, or made by hand.
// cfg.Targets is ignored; the LR and minibatch settings are not used.
func AddUpdates(ctx context.Context, m peft.Model, ups []Update, cfg Config) ([]*LoRASB, error) {
	name := peft.AdapterName(cfg.Name)
	byModule := map[string]*mat.Dense{}
	targets := make([]string, len(ups))
	for i, u := range ups {
		byModule[u.Module] = u.Delta
		targets[i] = "^" + regexp.QuoteMeta(u.Module) + "$" // this module alone
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("peft: LoRA-SB: no update given")
	}
	added, err := peft.AddAdapter(m, name, targets, func(l *peft.Linear) (peft.Adapter, error) {
		dw := byModule[l.Name]
		d, k := l.W.Dims()
		if r, c := dw.Dims(); r != d || c != k {
			return nil, fmt.Errorf("peft: LoRA-SB on %s: the update is %s, want %s, the weight's shape", l.Name, peft.ShapeOf(r, c), peft.ShapeOf(d, k))
		}
		return FromUpdate(ctx, l.Name, name, dw, cfg)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the LoRA-SB adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*LoRASB { return adapters.As[*LoRASB](ads) }

// Scaling returns s = α/r.
func (a *LoRASB) Scaling() float64 { return a.Alpha / float64(a.r) }

// Forward returns base + s·x·Aᵀ·Rᵀ·Bᵀ for x (n×k), base (n×d).
func (a *LoRASB) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	ax := peft.MatMulT(x, a.A)                            // (n×r) = x·Aᵀ
	rax := peft.Scale(peft.MatMulT(ax, a.R), a.Scaling()) // (n×r) = s·x·Aᵀ·Rᵀ
	return peft.Add(base, peft.MatMulT(rax, a.B))         // (n×d)
}

// Params returns R, the only trained tensor.
func (a *LoRASB) Params() []*peft.Tensor { return []*peft.Tensor{a.R} }

// Rank returns r.
func (a *LoRASB) Rank() int { return a.r }

// Delta returns ΔW = s·B·R·A (d×k).
func (a *LoRASB) Delta() *mat.Dense {
	var br, dw mat.Dense
	br.Mul(a.B.Value, a.R.Value)
	dw.Mul(&br, a.A.Value)
	dw.Scale(a.Scaling(), &dw)
	return &dw
}

// MergedWeight returns W₀ + s·B·R·A (d×k). It panics if w0 is not (d×k).
func (a *LoRASB) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d, _ := a.B.Dims()
	_, k := a.A.Dims()
	if r, c := w0.Dims(); r != d || c != k {
		panic(peft.ShapeError{Op: "LoRASB.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d, k) + ", the adapter's W₀"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}
