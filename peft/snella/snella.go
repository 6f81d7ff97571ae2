// Package snella is SNELLA (Shen et al. 2025, "Kernelized Sparse
// Fine-Tuning with Bi-level Parameter Competition for Vision Models",
// arXiv:2510.24037), the successor of SNELL (NeurIPS 2024): a sparse
// update of a frozen weight, merged from two small matrices through a
// nonlinear (distance) kernel so that it is not low rank, whose number of
// kept entries an importance-driven allocator moves between layers while
// training.
//
// Add attaches a SNELLA adapter to every targeted layer; NewAllocator
// returns the bi-level sparsity allocator, a peft.Hook to pass to
// peft.TrainConfig.Hooks. Dist is the distance-kernel op the update is made
// of. HuggingFace PEFT has no SNELLA (its nearest is SHiRA, a sparse
// high-rank adapter on a fixed mask), so adapter files use gopeft's own
// type GOPEFT_SNELLA (see file.go).
package snella

import (
	"cmp"
	"fmt"
	"math"
	"math/rand"
	"slices"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// DefaultQ is q in the paper's released runs (scripts/*/snella32).
const DefaultQ = 32

// KernelScale is the fixed weight 0.1 of each head's distance kernel, the
// released code's SCALE_FACTOR_fc.
const KernelScale = 0.1

// SNELLA adapts a frozen weight W₀ (d×k) of a Linear layer with a sparse,
// kernel-merged update (Shen et al. 2025, arXiv:2510.24037):
//
//	A = [A₀ | A₁]  (k×q),  row j holds input j's points a₀ⱼ, a₁ⱼ ∈ ℝ^{q/2}
//	B = [B₀ | B₁]  (d×q),  row i holds output i's points b₀ᵢ, b₁ᵢ ∈ ℝ^{q/2}
//	K_ij   = 0.1·‖b₀ᵢ − a₀ⱼ‖₂ − 0.1·‖b₁ᵢ − a₁ⱼ‖₂                  K (d×k)
//	ΔW′_ij = K_ij + α·softmax_i(K_·j/γ) + β                       ΔW′ (d×k)
//	ΔW     = ΔW′ ⊙ M,   M (d×k) 0/1, ones at the κ largest |ΔW′_ij|
//	h      = x·W₀ᵀ + b + x·ΔWᵀ                                    x (n×k), h (n×d)
//
// with α, γ, β trainable scalars (init 1, 1, 0). K, a difference of two
// distance kernels, is the "merge" of the two low-rank matrices: unlike
// LoRA's B·Aᵀ, whose rank is at most q, K generally has full rank
// min(d, k) (16 for 16×16 at q = 4). The softmax runs over the outputs i of
// each input column j, as the released code's softmax(dim=−1) over its
// (k×d) matrix. A layer trains q·(d + k) + 3 numbers.
//
// Sparsity. The mask M keeps the κ entries of largest |ΔW′| (ties to the
// lower row-major index): the entries compete within the layer by
// magnitude, and κ = ⌈(1−s)·d·k⌉ for a sparsity s (Config.Sparsity at
// Add, then the allocator's share). M is recomputed from the current ΔW′ at
// every forward pass in training mode (l.Training, as Train sets it), and
// after every optimizer step by the Allocator; otherwise (evaluation,
// merging, saving) the stored M is used, so that those are a fixed
// function of the parameters and a saved adapter reloads to the same
// outputs. Call Refresh after training without the Allocator.
//
// Where gopeft departs from the released code (ssfgunner/SNELL,
// model/vision_transformer_timm.py, class SNELLA) and why:
//
//   - The code multiplies the kept entries by |ΔW′| (a detached copy)
//     instead of by 1: its update is ΔW′ ⊙ |ΔW′| on the mask, and the
//     gradient through the mask carries a factor |ΔW′| that the value's
//     derivative does not. gopeft uses the 0/1 mask of the paper's
//     description ("adding it to another sparse matrix"), so that the
//     gradient is the derivative of the value.
//   - The code keeps |ΔW′| > quantile(|ΔW′|, s), which keeps
//     d·k − 1 − ⌊s·(d·k − 1)⌋ entries (one fewer than d·k at s = 0) and any
//     number on ties; gopeft keeps exactly κ = ⌈(1−s)·d·k⌉.
//   - ΔW′ is not zero at init (the code draws A and B at random and the
//     softmax term is α/d per entry), so the adapted model does not start as
//     the base model. gopeft follows the code: A ~ U(±1/√(k·q/2)),
//     B ~ U(±1/√(d·q/2)) (PyTorch's kaiming_uniform_(a=√5) on the code's
//     (2, k, q/2) and (2, d, q/2) tensors).
//   - The code stores each factor as one (2, rows, q/2) tensor; gopeft puts
//     the heads side by side in one matrix, [A₀ | A₁].
type SNELLA struct {
	A     *peft.Tensor // (k×q) [A₀ | A₁]
	B     *peft.Tensor // (d×q) [B₀ | B₁]
	Alpha *peft.Tensor // (1×1) α, the softmax term's weight
	Gamma *peft.Tensor // (1×1) γ, the softmax temperature
	Beta  *peft.Tensor // (1×1) β, the offset
	Q     int          // q, the columns of A and B (q/2 per head)

	Module string // the adapted module's name

	d, k int
	kept int        // κ, entries the mask keeps
	mask *mat.Dense // (d×k) M, 0/1; replaced, never written, once made
}

var _ peft.Adapter = (*SNELLA)(nil)

// Config configures Add.
type Config struct {
	// Q is q, the columns of A (k×q) and B (d×q): an even number ≥ 2, q/2
	// per head. It is not bounded by the layer's shape (the kernel's rank
	// is not q). The paper's runs use DefaultQ = 32.
	Q int
	// Sparsity is the initial sparsity s₀ in [0, 1): each layer keeps
	// ⌈(1−s₀)·d·k⌉ entries until the allocator changes it. 0, the
	// released scripts' init_thres, keeps every entry.
	Sparsity float64
	Targets  []string // target modules, by name or pattern (see peft.Targets)
	Name     string   // adapter name, "default" if empty
	Seed     int64    // seeds A's and B's init
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k).
func (cfg Config) Check(module string, d, k int) error {
	switch {
	case cfg.Q < 2 || cfg.Q%2 != 0:
		return fmt.Errorf("peft: SNELLA on %s: Q = %d out of range for W %s: want an even q ≥ 2 (q/2 per head; the paper uses %d)", module, cfg.Q, peft.ShapeOf(d, k), DefaultQ)
	case !(cfg.Sparsity >= 0 && cfg.Sparsity < 1):
		return fmt.Errorf("peft: SNELLA on %s: Sparsity = %v out of range [0, 1)", module, cfg.Sparsity)
	}
	return nil
}

// KeptCount returns κ = ⌈(1−s)·n⌉, the entries kept of n at sparsity s in
// [0, 1) (a product within 1e-9 of an integer counts as that integer, so
// that s = 0.3 of 10 keeps 7).
func KeptCount(s float64, n int) int {
	v := (1 - s) * float64(n)
	if r := math.Round(v); math.Abs(v-r) <= 1e-9*math.Max(1, v) {
		v = r
	}
	return min(n, max(0, int(math.Ceil(v))))
}

// New returns the SNELLA adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.snella_A.name.weight", …), with A then
// B drawn from rng, α = γ = 1, β = 0, and the mask of the largest
// ⌈(1−s₀)·d·k⌉ entries of the initial ΔW′. It is an error if cfg does not
// fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*SNELLA, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	q := cfg.Q
	scalar := func(part string, v float64) *peft.Tensor {
		return peft.NewParam(module+".snella_"+part+"."+name, mat.NewDense(1, 1, []float64{v}))
	}
	a := &SNELLA{
		A:      peft.NewParam(module+".snella_A."+name+".weight", peft.RandUniform(rng, k, q, 1/math.Sqrt(float64(k*q/2)))),
		B:      peft.NewParam(module+".snella_B."+name+".weight", peft.RandUniform(rng, d, q, 1/math.Sqrt(float64(d*q/2)))),
		Alpha:  scalar("alpha", 1),
		Gamma:  scalar("gamma", 1),
		Beta:   scalar("beta", 0),
		Q:      q,
		Module: module,
		d:      d,
		k:      k,
		kept:   KeptCount(cfg.Sparsity, d*k),
	}
	a.Refresh()
	return a, nil
}

// Add freezes m's base weights and attaches a SNELLA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// A and B are drawn from one generator seeded with cfg.Seed, module after
// module in model order.
func Add(m peft.Model, cfg Config) ([]*SNELLA, error) {
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

// As returns the SNELLA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*SNELLA { return adapters.As[*SNELLA](ads) }

// Dims returns the layer's weight shape (d×k).
func (a *SNELLA) Dims() (d, k int) { return a.d, a.k }

// kernel returns K = 0.1·(D(B₀, A₀) − D(B₁, A₁)) (d×k).
func (a *SNELLA) kernel() *peft.Tensor {
	h := a.Q / 2
	a0, a1 := peft.Slice(a.A, 0, a.k, 0, h), peft.Slice(a.A, 0, a.k, h, a.Q) // (k×q/2) each
	b0, b1 := peft.Slice(a.B, 0, a.d, 0, h), peft.Slice(a.B, 0, a.d, h, a.Q) // (d×q/2) each
	return peft.Scale(peft.Sub(Dist(b0, a0), Dist(b1, a1)), KernelScale)     // (d×k)
}

// dense returns ΔW′ = K + α·softmax_i(K/γ) + β (d×k), before the mask.
func (a *SNELLA) dense() *peft.Tensor {
	kern := a.kernel() // (d×k)
	col := peft.NewConst(ones(a.k, 1))
	// Kᵀ/γ (k×d): row j is input j, so the row softmax runs over outputs.
	invG := peft.Div(peft.NewConst(ones(1, 1)), a.Gamma) // (1×1) 1/γ
	z := peft.MulCol(peft.Transpose(kern), peft.MatMul(col, invG))
	// α·softmax (k×d), each row scaled by α.
	s := peft.MulCol(peft.Softmax(z), peft.MatMul(col, a.Alpha))
	// β in every entry (d×k).
	beta := peft.MatMul(peft.MatMul(peft.NewConst(ones(a.d, 1)), a.Beta), peft.NewConst(ones(1, a.k)))
	return peft.Add(peft.Add(kern, peft.Transpose(s)), beta)
}

// Forward returns base + x·(ΔW′ ⊙ M)ᵀ (n×d) for x (n×k), base (n×d). In
// training mode it first recomputes M from the current ΔW′.
func (a *SNELLA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	dw := a.dense()
	if l.Training {
		a.mask = topMask(dw.Value, a.kept)
	}
	sp := peft.Mul(dw, peft.NewConst(a.mask)) // (d×k) ΔW
	return peft.Add(base, peft.MatMulT(x, sp))
}

// Params returns A, B, α, γ and β.
func (a *SNELLA) Params() []*peft.Tensor {
	return []*peft.Tensor{a.A, a.B, a.Alpha, a.Gamma, a.Beta}
}

// Rank returns q, the width of the factors (not the rank of ΔW, which is
// generally min(d, k) before the mask).
func (a *SNELLA) Rank() int { return a.Q }

// Kernel returns K = 0.1·(D(B₀, A₀) − D(B₁, A₁)) (d×k), the merged
// matrix without the softmax term, the offset and the mask.
func (a *SNELLA) Kernel() *mat.Dense { return mat.DenseCopyOf(a.kernel().Value) }

// Dense returns ΔW′ (d×k), the update before the mask.
func (a *SNELLA) Dense() *mat.Dense { return mat.DenseCopyOf(a.dense().Value) }

// Delta returns ΔW = ΔW′ ⊙ M (d×k) with the stored mask M.
func (a *SNELLA) Delta() *mat.Dense {
	var dw mat.Dense
	dw.MulElem(a.dense().Value, a.mask)
	return &dw
}

// Mask returns the stored mask M (d×k, 0/1; a copy).
func (a *SNELLA) Mask() *mat.Dense { return mat.DenseCopyOf(a.mask) }

// Kept returns κ, the number of entries the mask keeps.
func (a *SNELLA) Kept() int { return a.kept }

// Sparsity returns 1 − κ/(d·k).
func (a *SNELLA) Sparsity() float64 { return 1 - float64(a.kept)/float64(a.d*a.k) }

// SetKept sets κ to n and recomputes the mask, as the allocator does. It
// panics with a peft.ArgError if n is outside [0, d·k].
func (a *SNELLA) SetKept(n int) {
	if n < 0 || n > a.d*a.k {
		panic(peft.ArgError{Op: "SNELLA(" + a.Module + ").SetKept", Msg: fmt.Sprintf("κ = %d out of range [0, d·k = %d]", n, a.d*a.k)})
	}
	a.kept = n
	a.Refresh()
}

// Refresh recomputes the mask from the current ΔW′: its κ largest |ΔW′|.
func (a *SNELLA) Refresh() { a.mask = topMask(a.dense().Value, a.kept) }

// setMask installs m (d×k, 0/1) as the mask, as a loaded file gives it.
func (a *SNELLA) setMask(m *mat.Dense) {
	a.mask = mat.DenseCopyOf(m)
	a.kept = 0
	for _, v := range a.mask.RawMatrix().Data {
		if v != 0 {
			a.kept++
		}
	}
}

// MergedWeight returns w0 + ΔW′ ⊙ M (d×k). It panics if w0 is not (d×k).
func (a *SNELLA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != a.d || c != a.k {
		panic(peft.ShapeError{Op: "SNELLA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(a.d, a.k) + ", the adapter's W₀"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}

// topMask returns the 0/1 matrix (shape of w) with ones at the n entries of
// largest |w|, ties going to the lower row-major index.
func topMask(w *mat.Dense, n int) *mat.Dense {
	r, c := w.Dims()
	idx := make([]int, r*c)
	abs := make([]float64, r*c)
	for i := range idx {
		idx[i] = i
		abs[i] = math.Abs(w.At(i/c, i%c))
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(abs[y], abs[x]) })
	m := mat.NewDense(r, c, nil)
	for _, i := range idx[:n] {
		m.Set(i/c, i%c, 1)
	}
	return m
}
