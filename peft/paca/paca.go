// Package paca is PaCA, partial connection adaptation: fine-tuning a random
// subset of the columns of a layer's own weight, with no adapter matrices.
package paca

import (
	"fmt"
	"math"
	"math/rand"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// PaCA fine-tunes r randomly chosen columns of a Linear layer's weight W₀
// (d×k), that is the connections from r of its k inputs, and leaves the
// other columns as they are (Woo et al., 2025, "PaCA: Partial Connection
// Adaptation for Efficient Fine-Tuning", ICLR 2025, arXiv:2503.01905):
//
//	idx = r of the k columns, drawn at random (sorted, as PEFT keeps them)
//	Δ (d×r) trained, init 0;  s = α/r
//	W = W₀ with column idx[c] replaced by W₀[:, idx[c]] + s·Δ[:, c]
//	h = x·Wᵀ + b₀ = x·W₀ᵀ + b₀ + s·x[:, idx]·Δᵀ   x (n×k), h (n×d)
//
// There is no adapter path: the update ΔW = W − W₀ lives in the r selected
// columns, which are trained directly. Its gradient is that of those
// columns, scaled:
//
//	∂L/∂Δ = s·(∂L/∂W)[:, idx] = s·Gᵀ·x[:, idx],   G = ∂L/∂h (n×d)
//
// so only x[:, idx] (n×r) is needed for it. A layer trains r·d numbers
// (as many as LoRA's B of rank r); rank ΔW ≤ min(r, d); r may be anything
// up to k (r = k trains all of W). ΔW is zero at init: the adapted model
// starts as the base model exactly. α defaults to r (s = 1); PEFT's
// defaults are r = 8, paca_alpha = 8, and the authors' README uses r = 8,
// α = 16.
//
// Where gopeft departs, and why:
//   - gopeft follows HuggingFace PEFT's PacaConfig, whose trained tensor
//     paca_delta is Δ, the change of the selected columns divided by s,
//     not the paper's code's P = (the selected columns)/s with P₀ =
//     W₀[:, idx]/s: P = P₀ + Δ, so the gradients and Adam's steps are the
//     same, but weight decay pulls Δ (the change) to 0 instead of the
//     columns. The base weight stays frozen and untouched, as for every
//     adapter, so disabling gives W₀ back exactly and MergedWeight leaves
//     every other column bit-identical to W₀.
//   - PaCA's speed and memory gains (one matrix product per layer instead
//     of two paths, and n×r saved activations instead of n×k) come from
//     swapping the columns into the base weight inside one fused kernel, as
//     PEFT's autograd function does. gopeft computes the same function and
//     gradients with its composed ops, so it shows the method's math, not
//     its speed.
//   - The columns are drawn with math/rand, not with PyTorch's generator
//     and PEFT's per-layer seed (random_seed plus the CRC-32 of the layer's
//     name): a saved adapter keeps its columns (paca_indices), so loading
//     never redraws them.
//
// Merging writes W₀[:, idx] + s·Δ into the selected columns.
type PaCA struct {
	D     *peft.Tensor // Δ (d×r), trained: the change of the selected columns, divided by s; zero at init
	Idx   []int        // the r selected columns of W, in the order of Δ's columns
	R     int          // r, the number of selected columns
	Alpha float64      // α; the columns change by s·Δ with s = α/r
	Seed  int64        // the seed the columns were drawn with (recorded as PEFT's random_seed)

	d, k int // the layer's weight is (d×k)
}

var _ peft.Adapter = (*PaCA)(nil)

// Config configures Add, after PEFT's PacaConfig.
type Config struct {
	R       int      // columns trained per layer, 1 ≤ r ≤ k of every target
	Alpha   float64  // α ≥ 0; 0 means α = r (s = 1)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the choice of columns
}

// Check returns an error naming module and the value if cfg does not fit a
// weight (d×k): r outside [1, k], or α negative or not finite.
func (cfg Config) Check(module string, d, k int) error {
	switch {
	case cfg.R < 1 || cfg.R > k:
		return fmt.Errorf("peft: PaCA on %s: r = %d columns out of range for W %s: want 1 ≤ r ≤ k = %d", module, cfg.R, peft.ShapeOf(d, k), k)
	case cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0):
		return fmt.Errorf("peft: PaCA on %s: paca_alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	return nil
}

// RandomColumns returns r distinct columns of k drawn from rng, in
// increasing order: the first r of a random permutation, sorted, as PEFT's
// randperm(k)[:r]. It panics unless 1 ≤ r ≤ k.
func RandomColumns(rng *rand.Rand, k, r int) []int {
	if r < 1 || r > k {
		panic(peft.ArgError{Op: "paca.RandomColumns", Msg: fmt.Sprintf("r = %d of k = %d columns; want 1 ≤ r ≤ k", r, k)})
	}
	idx := rng.Perm(k)[:r]
	sort.Ints(idx)
	return idx
}

// New returns the PaCA adapter of a layer with weight (d×k) named module
// (for its parameter's name "module.paca_delta.name"), training the columns
// idx (kept, not copied) with Δ = 0. r is len(idx) and α is cfg.Alpha (0:
// α = r); cfg.R is ignored. It is an error if idx is empty, has a column
// outside [0, k) or twice, or α is negative or not finite.
func New(module, name string, d, k int, idx []int, cfg Config) (*PaCA, error) {
	cfg.R = len(idx)
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	seen := make(map[int]bool, len(idx))
	for _, j := range idx {
		switch {
		case j < 0 || j >= k:
			return nil, fmt.Errorf("peft: PaCA on %s: columns %v: %d is outside [0, %d) for W %s", module, idx, j, k, peft.ShapeOf(d, k))
		case seen[j]:
			return nil, fmt.Errorf("peft: PaCA on %s: columns %v: %d is repeated", module, idx, j)
		}
		seen[j] = true
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	return &PaCA{
		D:     peft.NewParam(module+".paca_delta."+name, mat.NewDense(d, cfg.R, nil)),
		Idx:   idx,
		R:     cfg.R,
		Alpha: cfg.Alpha,
		Seed:  cfg.Seed,
		d:     d,
		k:     k,
	}, nil
}

// Add freezes m's base weights and attaches a PaCA adapter, named cfg.Name,
// to every module matching cfg.Targets, making it the active one. Each
// module's columns are drawn with RandomColumns from one generator seeded
// with cfg.Seed, module after module in model order.
func Add(m peft.Model, cfg Config) ([]*PaCA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		if err := cfg.Check(l.Name, d, k); err != nil {
			return nil, err
		}
		return New(l.Name, name, d, k, RandomColumns(rng, k, cfg.R), cfg)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the PaCA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*PaCA { return adapters.As[*PaCA](ads) }

// Dims returns the layer's weight shape (d×k).
func (p *PaCA) Dims() (d, k int) { return p.d, p.k }

// Scaling returns s = α/r.
func (p *PaCA) Scaling() float64 { return p.Alpha / float64(p.R) }

// Forward returns base + s·x[:, idx]·Δᵀ for x (n×k), base (n×d).
func (p *PaCA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	n, _ := x.Dims()
	cols := make([]*peft.Tensor, p.R)
	for c, j := range p.Idx {
		cols[c] = peft.Slice(x, 0, n, j, j+1) // (n×1)
	}
	xs := peft.ConcatCols(cols...)                       // x[:, idx] (n×r)
	dx := peft.Scale(peft.MatMulT(xs, p.D), p.Scaling()) // s·x[:, idx]·Δᵀ (n×d)
	return peft.Add(base, dx)
}

// Params returns Δ.
func (p *PaCA) Params() []*peft.Tensor { return []*peft.Tensor{p.D} }

// Rank returns r, the number of trained columns (rank ΔW ≤ min(r, d)).
func (p *PaCA) Rank() int { return p.R }

// Delta returns ΔW (d×k): s·Δ in the columns idx, zero elsewhere.
func (p *PaCA) Delta() *mat.Dense {
	dw := mat.NewDense(p.d, p.k, nil)
	s := p.Scaling()
	for c, j := range p.Idx {
		for i := 0; i < p.d; i++ {
			dw.Set(i, j, s*p.D.Value.At(i, c))
		}
	}
	return dw
}

// MergedWeight returns w0 (d×k) with s·Δ added to the columns idx; the
// other columns are w0's, bit for bit. It panics if w0 is not (d×k).
func (p *PaCA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d, k := w0.Dims()
	if d != p.d || k != p.k {
		panic(peft.ShapeError{Op: "PaCA.MergedWeight", Got: peft.ShapeOf(d, k), Want: peft.ShapeOf(p.d, p.k)})
	}
	w := mat.DenseCopyOf(w0)
	s := p.Scaling()
	for c, j := range p.Idx {
		for i := 0; i < d; i++ {
			w.Set(i, j, w0.At(i, j)+s*p.D.Value.At(i, c))
		}
	}
	return w
}
