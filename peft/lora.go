package peft

import (
	"fmt"
	"math"
	"math/rand"

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
	A       *Tensor // (r×k)
	B       *Tensor // (d×r)
	R       int     // rank r
	Alpha   float64 // α
	RSLoRA  bool    // scale by α/√r instead of α/r
	Dropout float64 // dropout probability on the adapter's input, in [0, 1)

	rng *rand.Rand // draws the dropout masks
}

var _ Adapter = (*LoRA)(nil)

// LoRAConfig configures AddLoRA, after PEFT's LoraConfig.
type LoRAConfig struct {
	R       int      // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r (rank-stabilized LoRA)
	Targets []string // target modules, by name or pattern (see Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init and the dropout masks
}

// NewLoRA returns a LoRA adapter for a layer with weight (d×k) named module
// (for its parameters' names "module.lora_A.name.weight", …), with A drawn
// from rng. It is an error if r is outside [1, min(d, k)], α is negative or
// dropout outside [0, 1).
func NewLoRA(module, name string, d, k int, cfg LoRAConfig, rng *rand.Rand) (*LoRA, error) {
	r := cfg.R
	if r <= 0 || r > min(d, k) {
		return nil, fmt.Errorf("peft: LoRA on %s: rank r = %d out of range for W %s: want 1 ≤ r ≤ min(d, k) = %d", module, r, shapeOf(d, k), min(d, k))
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return nil, fmt.Errorf("peft: LoRA on %s: alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout) {
		return nil, fmt.Errorf("peft: LoRA on %s: dropout = %v outside [0, 1)", module, cfg.Dropout)
	}
	alpha := cfg.Alpha
	if alpha == 0 {
		alpha = float64(r)
	}
	return &LoRA{
		A:       NewParam(module+".lora_A."+name+".weight", uniform(rng, r, k, 1/math.Sqrt(float64(k)))),
		B:       NewParam(module+".lora_B."+name+".weight", mat.NewDense(d, r, nil)),
		R:       r,
		Alpha:   alpha,
		RSLoRA:  cfg.RSLoRA,
		Dropout: cfg.Dropout,
		rng:     rand.New(rand.NewSource(rng.Int63())),
	}, nil
}

// AddLoRA freezes m's base weights and attaches a LoRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// Each A is drawn from one generator seeded with cfg.Seed, module after
// module in model order.
func AddLoRA(m Model, cfg LoRAConfig) ([]*LoRA, error) {
	name := cfg.Name
	if name == "" {
		name = "default"
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := AddAdapter(m, name, cfg.Targets, func(l *Linear) (Adapter, error) {
		d, k := l.W.Dims()
		return NewLoRA(l.Name, name, d, k, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	out := make([]*LoRA, len(added))
	for i, a := range added {
		out[i] = a.(*LoRA)
	}
	return out, nil
}

// Scaling returns s: α/r, or α/√r with rsLoRA.
func (a *LoRA) Scaling() float64 {
	if a.RSLoRA {
		return a.Alpha / math.Sqrt(float64(a.R))
	}
	return a.Alpha / float64(a.R)
}

// Forward returns base + s·dropout(x)·Aᵀ·Bᵀ for x (n×k), base (n×d).
func (a *LoRA) Forward(l *Linear, x, base *Tensor) *Tensor {
	xd := Dropout(x, a.Dropout, a.rng, l.Training) // (n×k)
	ax := Scale(MatMulT(xd, a.A), a.Scaling())     // (n×r) = s·x·Aᵀ
	return Add(base, MatMulT(ax, a.B))             // (n×d)
}

// Params returns A and B.
func (a *LoRA) Params() []*Tensor { return []*Tensor{a.A, a.B} }

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
