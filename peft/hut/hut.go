// Package hut is HUT: a frozen weight multiplied elementwise by a mask
// built from two low-rank factors, so that the update is a transformation
// of the pre-trained weight rather than an increment added to it.
package hut

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// HUT adapts a frozen weight W₀ (d×k) of a Linear layer by a Hadamard
// (elementwise) product with a mask made of two low-rank matrices (Zhang,
// Zhou and Chen, 2024, "HUT: A More Computation Efficient Fine-Tuning
// Method With Hadamard Updated Transformation", arXiv:2409.13501):
//
//	W' = W₀ ⊙ (J + B·A)            J (d×k) all ones
//	ΔW = W' − W₀ = W₀ ⊙ (B·A)      (d×k), rank(ΔW) ≤ rank(W₀)·r
//	A: r×k, Kaiming-uniform U(−1/√k, 1/√k);  B: d×r, init 0
//	h = x·W₀ᵀ + b + x·ΔWᵀ          x (n×k), h (n×d)
//
// so the mask is J and ΔW = 0 at init: the adapted model starts as the base
// model exactly. A layer trains r·(d+k) numbers, as LoRA of rank r, but ΔW
// is not low rank: W₀ is full rank, so W₀ ⊙ (B·A) generally has rank up to
// min(d, k) even at r = 1.
//
// Which form, and why. The exact mask M(B, A) is not confirmed: gopeft's
// reference notes (methods-a.md §17) could not retrieve the paper's method
// section or any code, and the abstract says only that HUT updates W₀
// "using the Hadamard transformation with two low-rank matrices", an
// "updated transformation" built directly from W₀. gopeft takes the form
// those notes give, M = J + B·A, because it is the one reading of that
// description that (a) is the identity at init with LoRA's B = 0, so
// training starts from the pre-trained model; (b) keeps W' tied to W₀
// entry by entry, the "correlation between the original and updated
// parameters" the abstract stresses; and (c) lets each rank-one term of
// B·A act through one product with W₀, with no d×k mask formed (the
// identity below), one plausible reading of the title's "more computation
// efficient" (where the paper's saving comes from is not confirmed either;
// that form is the cheaper one only at r = 1 or for few input rows, see
// below). The same form is HuggingFace PEFT's HiRA, W₀ + W₀ ⊙ (B·A) (Huang
// et al., ICLR 2025), so the two can be compared. A bare M = B·A would not
// be the identity at init, and would zero W' wherever B·A is zero.
//
// Defaults: none could be confirmed from the paper (its ranks, init and
// learning rates), so R has no default, A's init is LoRA's
// Kaiming-uniform, there is no α (B·A carries the scale) and no dropout.
//
// Two ways to compute x·ΔWᵀ. Row by row of the rank-one terms b_t·a_tᵀ of
// B·A (b_t column t of B, a_t row t of A), the Hadamard identity
//
//	(W₀ ⊙ (b·aᵀ))·x = b ⊙ (W₀·(a ⊙ x))      for any b (d), a (k), x (k)
//
// gives x·ΔWᵀ = Σ_t ((x ⊙ a_t)·W₀ᵀ) ⊙ b_t without ever forming the d×k
// mask: r products with W₀, and no d×k temporary. For n input rows a
// training step (forward and backward) then costs about 2·r·n·d·k
// multiply-adds, against (3r + 2n + 2)·d·k for the mask form, which forms
// B·A and W₀ ⊙ (B·A) (two d×k temporaries, and their gradients) and makes
// one product with the input. Forward takes the Hadamard form when r = 1
// (fewer multiply-adds for any n) or r·n ≤ T, T = d·k/1024 kept within
// [2, 32], and the mask form otherwise. T is measured rather than counted:
// on small layers the per-op cost of the r terms dominates, on larger ones
// the memory traffic of the mask form's d×k temporaries, and multiply-add
// counts see neither. A sweep of r ≤ 16 and n ≤ 64 at W₀ 64×64 and 256×256
// (BenchmarkForward's set-up, 2 cores) found the rule's choice the faster
// form, or within 1.4× of it. Both forms are compositions of peft's ops,
// so their gradients need no code of their own, and the tests run every
// check on each.
//
// Merging folds ΔW into W₀. Because ΔW is tied to W₀, it is computed from
// the weight the layer holds when the adapter runs or merges.
type HUT struct {
	A *peft.Tensor // (r×k)
	B *peft.Tensor // (d×r)
	R int          // rank r of B·A

	d, k int // the layer's weight is (d×k)
}

var _ peft.Adapter = (*HUT)(nil)

// Config configures Add.
type Config struct {
	R       int      // rank r of B·A, 1 ≤ r ≤ min(d, k) of every target
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)] (at r = min(d, k), B·A
// can already be any d×k mask).
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: HUT on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	return nil
}

// New returns the HUT adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.hut_A.name.weight", …), with A drawn
// from rng and B zero. It is an error if cfg does not fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*HUT, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	r := cfg.R
	return &HUT{
		A: peft.NewParam(module+".hut_A."+name+".weight", peft.RandUniform(rng, r, k, 1/math.Sqrt(float64(k)))),
		B: peft.NewParam(module+".hut_B."+name+".weight", mat.NewDense(d, r, nil)),
		R: r,
		d: d,
		k: k,
	}, nil
}

// Add freezes m's base weights and attaches a HUT adapter, named cfg.Name,
// to every module matching cfg.Targets, making it the active one. Each A is
// drawn from one generator seeded with cfg.Seed, module after module in
// model order.
func Add(m peft.Model, cfg Config) ([]*HUT, error) {
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

// As returns the HUT adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*HUT { return adapters.As[*HUT](ads) }

// Dims returns the layer's weight shape (d×k).
func (h *HUT) Dims() (d, k int) { return h.d, h.k }

// The forms Forward may take; forceForm, formAuto except in tests, makes
// it take one whatever the cost, so that every check runs on both.
const (
	formAuto = iota
	formHadamard
	formMask
)

var forceForm = formAuto

// useHadamard reports whether Forward takes the Hadamard form for rank r,
// n input rows and a weight of d·k entries: if r = 1 or r·n ≤ T, with T =
// d·k/1024 kept within [2, 32] (see HUT).
func useHadamard(r, n, dk int) bool {
	switch forceForm {
	case formHadamard:
		return true
	case formMask:
		return false
	}
	return r == 1 || r*n <= min(max(dk/1024, 2), 32)
}

// Forward returns base + x·(W₀ ⊙ (B·A))ᵀ for x (n×k), base (n×d), with W₀
// the layer's weight, in whichever of the two forms is cheaper.
func (h *HUT) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	if n, _ := x.Dims(); useHadamard(h.R, n, h.d*h.k) {
		return peft.Add(base, h.hadamardTerm(l.W, x))
	}
	return peft.Add(base, h.maskTerm(l.W, x))
}

// hadamardTerm returns Σ_t ((x ⊙ a_t)·W₀ᵀ) ⊙ b_t (n×d) for x (n×k), w W₀
// (d×k): x·ΔWᵀ without forming the mask.
func (h *HUT) hadamardTerm(w, x *peft.Tensor) *peft.Tensor {
	bt := peft.Transpose(h.B) // (r×d): row t is b_t
	var sum *peft.Tensor
	for t := 0; t < h.R; t++ {
		at := peft.Slice(h.A, t, t+1, 0, h.k) // (1×k) a_t
		xa := peft.MulRow(x, at)              // (n×k) = x ⊙ a_t, row by row
		wxa := peft.MatMulT(xa, w)            // (n×d) = (x ⊙ a_t)·W₀ᵀ
		term := peft.MulRow(wxa, peft.Slice(bt, t, t+1, 0, h.d))
		if sum == nil {
			sum = term
		} else {
			sum = peft.Add(sum, term)
		}
	}
	return sum // (n×d)
}

// maskTerm returns x·(W₀ ⊙ (B·A))ᵀ (n×d) for x (n×k), w W₀ (d×k), forming
// ΔW.
func (h *HUT) maskTerm(w, x *peft.Tensor) *peft.Tensor {
	dw := peft.Mul(w, peft.MatMul(h.B, h.A)) // (d×k) = W₀ ⊙ (B·A)
	return peft.MatMulT(x, dw)               // (n×d)
}

// Params returns A and B.
func (h *HUT) Params() []*peft.Tensor { return []*peft.Tensor{h.A, h.B} }

// Rank returns r, the rank of B·A (not of ΔW, which may be higher).
func (h *HUT) Rank() int { return h.R }

// Mask returns J + B·A (d×k).
func (h *HUT) Mask() *mat.Dense {
	var m mat.Dense
	m.Mul(h.B.Value, h.A.Value)
	m.Apply(func(_, _ int, v float64) float64 { return 1 + v }, &m)
	return &m
}

// Delta returns ΔW = w0 ⊙ (B·A) (d×k). It panics if w0 is not (d×k).
func (h *HUT) Delta(w0 *mat.Dense) *mat.Dense {
	h.checkW("HUT.Delta", w0)
	var dw mat.Dense
	dw.Mul(h.B.Value, h.A.Value)
	dw.MulElem(w0, &dw)
	return &dw
}

// MergedWeight returns w0 ⊙ (J + B·A) = w0 + w0 ⊙ (B·A) (d×k). It panics
// if w0 is not (d×k).
func (h *HUT) MergedWeight(w0 *mat.Dense) *mat.Dense {
	h.checkW("HUT.MergedWeight", w0)
	dw := h.Delta(w0)
	dw.Add(w0, dw)
	return dw
}

func (h *HUT) checkW(op string, w0 *mat.Dense) {
	if r, c := w0.Dims(); r != h.d || c != h.k {
		panic(peft.ShapeError{Op: op, Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(h.d, h.k) + ", the adapter's W₀"})
	}
}
