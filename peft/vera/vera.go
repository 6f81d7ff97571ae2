// Package vera is VeRA: one pair of frozen random matrices shared by every
// adapted layer, and two small trained scaling vectors per layer.
package vera

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// VeRA adapts a frozen weight W₀ (d×k) of a Linear layer through a pair of
// frozen random matrices A and B that all the layers of one adapter share,
// scaled by two vectors trained per layer (Kopiczko et al., 2023, "VeRA:
// Vector-based Random Matrix Adaptation", ICLR 2024, arXiv:2310.11454):
//
//	h = x·W₀ᵀ + b₀ + ((dropout(x)·A_kᵀ) ⊙ λ_d)·B_dᵀ ⊙ λ_b     x (n×k), h (n×d)
//	ΔW = Λ_b·B_d·Λ_d·A_k (d×k),  Λ_b = diag(λ_b), Λ_d = diag(λ_d)
//	A: r×k_max, B: d_max×r, shared and frozen, Kaiming-uniform U(−√(6/fan_in), √(6/fan_in))
//	A_k = A[:, :k] (r×k), B_d = B[:d, :] (d×r): the layer's slices
//	λ_b: d, init 0;  λ_d: r, init d_initial (0.1)
//
// k_max and d_max are the largest input and output widths among the adapted
// layers, so one pair serves them all, as in HuggingFace PEFT's VeraModel.
// ΔW is zero at init (λ_b = 0: the adapted model starts as the base model
// exactly) and each layer trains d + r parameters instead of LoRA's r·(d+k).
// r may exceed min(d, k): A and B are random, not learned, and only λ_d's
// r entries are trained. There is no α: λ_b and λ_d carry the scale. Dropout
// acts on the adapter's input only. Merging folds ΔW into W₀.
//
// A and B are constants, never trained: Params returns only λ_b and λ_d,
// so optimizers, Train and peft.TrainableParams see those alone.
type VeRA struct {
	A       *peft.Tensor // (r×k_max), frozen, shared by every layer of the adapter
	B       *peft.Tensor // (d_max×r), frozen, shared by every layer of the adapter
	LambdaB *peft.Tensor // λ_b (1×d), trained
	LambdaD *peft.Tensor // λ_d (1×r), trained
	R       int          // rank r: the rows of A and the columns of B
	Dropout float64      // dropout probability on the adapter's input, in [0, 1)
	// DInitial is λ_d's initial value; Seed the seed A and B were drawn
	// with. Both are recorded in a saved adapter's config (d_initial,
	// projection_prng_key).
	DInitial float64
	Seed     int64

	d, k int        // the layer's weight is (d×k)
	rng  *rand.Rand // draws the dropout masks
}

var _ peft.Adapter = (*VeRA)(nil)

// DefaultDInitial is λ_d's initial value when Config.DInitial is 0, as in
// PEFT's VeraConfig: the paper recommends small values (its Table 6c).
const DefaultDInitial = 0.1

// Config configures Add, after PEFT's VeraConfig.
type Config struct {
	R        int      // rank r ≥ 1; it may exceed a layer's min(d, k)
	DInitial float64  // λ_d's initial value; 0 means DefaultDInitial
	Dropout  float64  // dropout on the adapter's input, in [0, 1)
	Targets  []string // target modules, by name or pattern (see peft.Targets)
	Name     string   // adapter name, "default" if empty
	Seed     int64    // seeds A, B and the dropout masks
}

// Check returns an error naming module and the value if cfg is not valid:
// r < 1, λ_d's initial value not finite, or dropout outside [0, 1).
func (cfg Config) Check(module string) error {
	switch {
	case cfg.R < 1:
		return fmt.Errorf("peft: VeRA on %s: rank r = %d; want r ≥ 1", module, cfg.R)
	case math.IsNaN(cfg.DInitial) || math.IsInf(cfg.DInitial, 0):
		return fmt.Errorf("peft: VeRA on %s: d_initial = %v; want a finite value", module, cfg.DInitial)
	case cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout):
		return fmt.Errorf("peft: VeRA on %s: dropout = %v outside [0, 1)", module, cfg.Dropout)
	}
	return nil
}

// NewProjections returns VeRA's shared frozen matrices for rank r and layers
// of at most kMax inputs and dMax outputs, drawn from rng in this order as
// PEFT's VeraModel does: A (r×kMax), then B (dMax×r), each Kaiming-uniform
// with a = 0 (PyTorch's gain √2), U(−√(6/fan_in), √(6/fan_in)) with fan_in
// kMax for A and r for B. It panics if a size is below 1.
func NewProjections(rng *rand.Rand, r, kMax, dMax int) (a, b *peft.Tensor) {
	if r < 1 || kMax < 1 || dMax < 1 {
		panic(peft.ArgError{Op: "vera.NewProjections", Msg: fmt.Sprintf("r = %d, kMax = %d, dMax = %d; all must be ≥ 1", r, kMax, dMax)})
	}
	a = peft.NewConst(peft.RandUniform(rng, r, kMax, math.Sqrt(6/float64(kMax))))
	b = peft.NewConst(peft.RandUniform(rng, dMax, r, math.Sqrt(6/float64(r))))
	a.Name, b.Name = "vera_A", "vera_B"
	return a, b
}

// New returns the VeRA adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.vera_lambda_b.name", …) on the shared
// projections a (r×k_max) and b (d_max×r), which it keeps, not copies; λ_b
// starts at 0 and λ_d at cfg.DInitial, and rng draws the dropout masks.
// cfg.R must be a's rows. It is an error if cfg is not valid (see Check), if
// a and b do not chain, or if they are too small for the layer: k_max < k
// or d_max < d.
func New(module, name string, d, k int, a, b *peft.Tensor, cfg Config, rng *rand.Rand) (*VeRA, error) {
	if err := cfg.Check(module); err != nil {
		return nil, err
	}
	r := cfg.R
	ar, kMax := a.Dims()
	dMax, br := b.Dims()
	switch {
	case ar != r || br != r:
		return nil, fmt.Errorf("peft: VeRA on %s: projections A %s and B %s do not fit rank r = %d: want A (%d×k_max) and B (d_max×%d)",
			module, peft.ShapeOf(ar, kMax), peft.ShapeOf(dMax, br), r, r, r)
	case kMax < k || dMax < d:
		return nil, fmt.Errorf("peft: VeRA on %s: projections A %s and B %s are too small for W %s: want k_max ≥ %d and d_max ≥ %d",
			module, peft.ShapeOf(ar, kMax), peft.ShapeOf(dMax, br), peft.ShapeOf(d, k), k, d)
	}
	if cfg.DInitial == 0 {
		cfg.DInitial = DefaultDInitial
	}
	lambdaD := mat.NewDense(1, r, nil)
	for j := 0; j < r; j++ {
		lambdaD.Set(0, j, cfg.DInitial)
	}
	return &VeRA{
		A:        a,
		B:        b,
		LambdaB:  peft.NewParam(module+".vera_lambda_b."+name, mat.NewDense(1, d, nil)),
		LambdaD:  peft.NewParam(module+".vera_lambda_d."+name, lambdaD),
		R:        r,
		Dropout:  cfg.Dropout,
		DInitial: cfg.DInitial,
		Seed:     cfg.Seed,
		d:        d,
		k:        k,
		rng:      rng,
	}, nil
}

// Add freezes m's base weights and attaches a VeRA adapter, named cfg.Name,
// to every module matching cfg.Targets, making it the active one. It draws
// one pair of projections (see NewProjections) from a generator seeded with
// cfg.Seed, sized to the largest input and output widths among the targets,
// and builds every layer on it with New.
func Add(m peft.Model, cfg Config) ([]*VeRA, error) {
	name := peft.AdapterName(cfg.Name)
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	kMax, dMax := 0, 0
	for _, l := range mods {
		if err := cfg.Check(l.Name); err != nil {
			return nil, err
		}
		d, k := l.W.Dims()
		kMax, dMax = max(kMax, k), max(dMax, d)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	a, b := NewProjections(rng, cfg.R, kMax, dMax)
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		return New(l.Name, name, d, k, a, b, cfg, rand.New(rand.NewSource(rng.Int63())))
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the VeRA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*VeRA { return adapters.As[*VeRA](ads) }

// Dims returns the layer's weight shape (d×k).
func (v *VeRA) Dims() (d, k int) { return v.d, v.k }

// SliceA returns A_k = A[:, :k] (r×k), a view of the shared A.
func (v *VeRA) SliceA() *mat.Dense { return v.A.Value.Slice(0, v.R, 0, v.k).(*mat.Dense) }

// SliceB returns B_d = B[:d, :] (d×r), a view of the shared B.
func (v *VeRA) SliceB() *mat.Dense { return v.B.Value.Slice(0, v.d, 0, v.R).(*mat.Dense) }

// Forward returns base + ((dropout(x)·A_kᵀ) ⊙ λ_d)·B_dᵀ ⊙ λ_b for x (n×k),
// base (n×d).
func (v *VeRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xd := peft.Dropout(x, v.Dropout, v.rng, l.Training)  // (n×k)
	ax := peft.MatMulT(xd, peft.NewConst(v.SliceA()))    // (n×r) = x·A_kᵀ
	dax := peft.MulRow(ax, v.LambdaD)                    // (n×r), column j scaled by λ_d[j]
	bdax := peft.MatMulT(dax, peft.NewConst(v.SliceB())) // (n×d)
	return peft.Add(base, peft.MulRow(bdax, v.LambdaB))  // (n×d), column i scaled by λ_b[i]
}

// Params returns the trained vectors λ_b and λ_d (not the frozen A and B).
func (v *VeRA) Params() []*peft.Tensor { return []*peft.Tensor{v.LambdaB, v.LambdaD} }

// Rank returns r.
func (v *VeRA) Rank() int { return v.R }

// Delta returns ΔW = Λ_b·B_d·Λ_d·A_k (d×k).
func (v *VeRA) Delta() *mat.Dense {
	var bd mat.Dense // (d×r) = Λ_b·B_d·Λ_d
	bd.CloneFrom(v.SliceB())
	lb, ld := v.LambdaB.Value, v.LambdaD.Value
	for i := 0; i < v.d; i++ {
		for j := 0; j < v.R; j++ {
			bd.Set(i, j, lb.At(0, i)*bd.At(i, j)*ld.At(0, j))
		}
	}
	var dw mat.Dense
	dw.Mul(&bd, v.SliceA())
	return &dw
}

// MergedWeight returns W₀ + Λ_b·B_d·Λ_d·A_k (d×k).
func (v *VeRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	dw := v.Delta()
	dw.Add(w0, dw)
	return dw
}
