// Package lora is LoRA and rank-stabilized LoRA: the low-rank update every
// other method of gopeft is measured against.
package lora

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// LoRA adapts a frozen weight W₀ (d×k) of a Linear layer with a rank-r update
// (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
// arXiv:2106.09685):
//
//	h = x·W₀ᵀ + b + s·dropout(x)·Aᵀ·Bᵀ     x (n×k), h (n×d)
//	A: r×k, Kaiming-uniform init U(−1/√k, 1/√k);  B: d×r, init 0
//	s = α/r, or α/√r with rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732)
//
// so ΔW = s·B·A (d×k) has rank ≤ r, is zero at init (the adapted model starts
// as the base model exactly), and trains r·(d+k) parameters instead of d·k.
// Dropout acts on the adapter's input only. Merging folds ΔW into W₀.
type LoRA struct {
	A       *peft.Tensor // (r×k)
	B       *peft.Tensor // (d×r)
	R       int          // rank r
	Alpha   float64      // α
	RSLoRA  bool         // scale by α/√r instead of α/r
	Dropout float64      // dropout probability on the adapter's input, in [0, 1)

	rng *rand.Rand // draws the dropout masks
}

var _ peft.Adapter = (*LoRA)(nil)

// Config configures Add, after PEFT's LoraConfig.
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r (rank-stabilized LoRA)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init and the dropout masks
}

// Check returns an error naming module and the value if cfg does not fit a
// weight (d×k): r outside [1, min(d, k)], α negative or not finite, or
// dropout outside [0, 1). what names the method in the message ("LoRA").
func (cfg Config) Check(what, module string, d, k int) error {
	r := cfg.R
	if r <= 0 || r > min(d, k) {
		return fmt.Errorf("peft: %s on %s: rank r = %d out of range for W %s: want 1 ≤ r ≤ min(d, k) = %d", what, module, r, peft.ShapeOf(d, k), min(d, k))
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: %s on %s: alpha = %v; want a finite α ≥ 0", what, module, cfg.Alpha)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout) {
		return fmt.Errorf("peft: %s on %s: dropout = %v outside [0, 1)", what, module, cfg.Dropout)
	}
	return nil
}

// New returns a LoRA adapter for a layer with weight (d×k) named module
// (for its parameters' names "module.lora_A.name.weight", …), with A drawn
// from rng. It is an error if r is outside [1, min(d, k)], α is negative or
// dropout outside [0, 1).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*LoRA, error) {
	if err := cfg.Check("LoRA", module, d, k); err != nil {
		return nil, err
	}
	r := cfg.R
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(r)
	}
	return FromFactors(module, name, RandomA(rng, r, k), mat.NewDense(d, r, nil), cfg, rand.New(rand.NewSource(rng.Int63())))
}

// RandomA returns LoRA's init of A (r×k): Kaiming-uniform, U(−1/√k, 1/√k).
func RandomA(rng *rand.Rand, r, k int) *mat.Dense {
	return peft.RandUniform(rng, r, k, 1/math.Sqrt(float64(k)))
}

// FromFactors returns a LoRA adapter with the given A (r×k) and B (d×r) (not
// copied), cfg's α, rsLoRA and dropout, and rng for dropout masks: what
// loading a saved adapter and PiSSA's init use. cfg.R is taken from A, and
// cfg.Alpha is α as it is (0 gives s = 0; New's default α = r is not
// applied).
func FromFactors(module, name string, a, b *mat.Dense, cfg Config, rng *rand.Rand) (*LoRA, error) {
	r, k := a.Dims()
	d, rb := b.Dims()
	if rb != r {
		return nil, fmt.Errorf("peft: LoRA on %s: A %s and B %s do not chain", module, peft.ShapeOf(r, k), peft.ShapeOf(d, rb))
	}
	cfg.R = r
	if err := cfg.Check("LoRA", module, d, k); err != nil {
		return nil, err
	}
	return &LoRA{
		A:       peft.NewParam(module+".lora_A."+name+".weight", a),
		B:       peft.NewParam(module+".lora_B."+name+".weight", b),
		R:       r,
		Alpha:   cfg.Alpha,
		RSLoRA:  cfg.RSLoRA,
		Dropout: cfg.Dropout,
		rng:     rng,
	}, nil
}

// Add freezes m's base weights and attaches a LoRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// Each A is drawn from one generator seeded with cfg.Seed, module after
// module in model order.
func Add(m peft.Model, cfg Config) ([]*LoRA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		return New(l.Name, name, d, k, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the LoRA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*LoRA { return adapters.As[*LoRA](ads) }

// Scaling returns s: α/r, or α/√r with rsLoRA.
func (a *LoRA) Scaling() float64 {
	if a.RSLoRA {
		return a.Alpha / math.Sqrt(float64(a.R))
	}
	return a.Alpha / float64(a.R)
}

// Forward returns base + s·dropout(x)·Aᵀ·Bᵀ for x (n×k), base (n×d).
func (a *LoRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xd := peft.Dropout(x, a.Dropout, a.rng, l.Training)  // (n×k)
	ax := peft.Scale(peft.MatMulT(xd, a.A), a.Scaling()) // (n×r) = s·x·Aᵀ
	return peft.Add(base, peft.MatMulT(ax, a.B))         // (n×d)
}

// Params returns A and B.
func (a *LoRA) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B} }

// Rank returns r.
func (a *LoRA) Rank() int { return a.R }

// Delta returns ΔW = s·B·A (d×k).
func (a *LoRA) Delta() *mat.Dense {
	var dw mat.Dense
	dw.Mul(a.B.Value, a.A.Value)
	dw.Scale(a.Scaling(), &dw)
	return &dw
}

// MergedWeight returns W₀ + s·B·A (d×k).
func (a *LoRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}
