// Package moram is MoRAM: each rank-r update split into r rank-1 experts
// that route themselves, with new experts added and old ones frozen task
// by task, for continual learning.
//
// The paper calls the method MoRA; gopeft registers it as "MoRAM", the name
// of its reference repository (Artificer-AI-Lab/MoRAM), because "MoRA" is
// already the name of another PEFT method, "MoRA: High-Rank Updating for
// Parameter-Efficient Fine-Tuning" (Jiang et al., 2024, arXiv:2405.12130),
// a square-matrix update that has nothing to do with this one. HuggingFace
// PEFT has neither, so MoRAM files are gopeft's own (peft_type
// "GOPEFT_MORAM", see file.go).
package moram

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// Defaults of the reference code (XTAIL/runner_moram.sh, moram.py).
const (
	DefaultR     = 16   // atoms added per task
	DefaultTau   = 0.01 // softmax temperature τ
	DefaultDelta = 0.2  // eval-time pruning threshold δ ("prune_thre")
)

// MoRAM adapts a frozen weight W₀ (d×k) of a Linear layer with a sparse,
// input-dependent mixture of rank-1 experts (Lu et al., 2025, "Little By
// Little: Continual Learning via Self-Activated Sparse Mixture-of-Rank
// Adaptive Learning", arXiv:2506.21035). Expert i is an atom: a key a_i
// (row i of A) and a value b_i (column i of B). For input rows x (n×k):
//
//	A = [A_old; A_t]      (R×k), R = T·r atoms after T tasks
//	B = [B_old, B_t]      (d×R)
//	p = x·Aᵀ              (n×R), p_ij = a_j·x_i: each atom's activation
//	p̂ = p_i / ‖p_i‖₂      (n×R), row by row
//	K_i = top-k of p̂_i    the k largest normalised activations of row i
//	w_ij = softmax_{K_i}(p̂_i/τ)_j for j ∈ K_i, 0 otherwise    (n×R)
//	eval only: w_ij = 0 where p̂_ij < δ (not renormalised)
//	h = x·W₀ᵀ + b + (p ⊙ w)·Bᵀ                                (n×d)
//
// so each expert "infers its own relevance" from its own activation, with
// no router: in training every row of w has exactly k nonzeros summing to
// 1, and since w depends on x only through p̂, the adapter's delta is
// positively homogeneous, (p ⊙ w)(c·x) = c·(p ⊙ w)(x) for c > 0.
//
// Tasks. Add makes task 1: r atoms, A_t Kaiming-uniform U(−1/√k, 1/√k),
// B_t zero, so the output at init is the base model's. IncrementTask moves
// the current atoms into A_old, B_old, frozen for good (they are no
// longer in Params and get no gradient), and adds r fresh atoms as at
// init. The new atoms do not leave the output unchanged even though their
// B_t is zero: they join the norm ‖p_i‖ and the top-k, and may take weight
// from old atoms. Each task trains r·(d + k) numbers; the old atoms are
// saved too, so a reloaded adapter gives the same outputs.
//
// Gradients. Every step is one of peft's ops (normalizeRows, maskedSoftmax
// in ops.go), so no backward is written here. The top-k set K_i and the
// eval pruning are piecewise constant in x and A: their backward passes
// gradient through the kept entries only, and none through the choice of
// which entries are kept.
//
// What it buys, measured by continual_test.go on two tasks in sequence
// (task 2's inputs on other coordinates than task 1's, rank-2 teachers, r =
// 4): LoRA's task 1 MSE rose by 0.60–2.26, MoRAM's by 0.007–0.019, but
// MoRAM fit each task less closely (MSE 0.14–0.72 against LoRA's 0.02): at
// τ = 0.01 the weights are nearly one-hot, about one rank-1 expert per
// input. On the digits MLP (5–6, then 7–9) MoRAM kept task 1 whole where
// LoRA lost it, and did not learn task 2 at all: trained old atoms win
// every row's softmax over the new atoms, whose weights and gradients are
// then ≈ e^{−Δp̂/τ} ≈ 0.
//
// Defaults, from the reference code: r = 16 per task, k = r, τ = 0.01,
// δ = 0.2, scaling 1, no dropout.
//
// Where gopeft departs from the reference code (XTAIL/loralib/moram.py):
//   - k is used as given; the code takes max(k, 2). While fewer than k atoms
//     exist (k > r on the first tasks), all of them are kept, where
//     torch.topk would fail.
//   - Ties in the top-k go to the lower atom index (torch.topk does not say).
//   - τ = +Inf is allowed: the limit in which w is 1/k on the top-k, a
//     mixture with hard self-selection and no soft weighting. With k ≥ R
//     and no pruning (δ < 0) w is then the constant 1/R and MoRAM is LoRA
//     with B·A scaled by 1/R: the one case MergedWeight can merge. Any
//     other setting makes w depend on x, and MergedWeight panics.
//   - δ < 0 turns pruning off (the code prunes only if its threshold is
//     positive; δ = 0 in Config means the default 0.2).
//   - Below ‖p_i‖ = 1e-12 the norm is floored at 1e-12 as F.normalize does,
//     but its gradient is not cut there.
//   - The code's commented-out load-balancing loss r·Σ P_i² is not
//     implemented. How the paper defines its "rank pruning" beyond the
//     code's threshold δ could not be confirmed; gopeft does what the code
//     does.
type MoRAM struct {
	A     *peft.Tensor // (r×k) the current task's keys, trainable
	B     *peft.Tensor // (d×r) the current task's values, trainable
	OldA  *peft.Tensor // ((T−1)·r × k) earlier tasks' keys, frozen; nil on task 1
	OldB  *peft.Tensor // (d × (T−1)·r) earlier tasks' values, frozen; nil on task 1
	R     int          // atoms per task r
	Tasks int          // T, the current task, from 1
	TopK  int          // k, atoms kept per input row
	Tau   float64      // softmax temperature τ > 0, +Inf for the uniform limit
	Delta float64      // eval pruning threshold δ ≤ 1; negative: no pruning

	module, name string
	d, k         int
	rng          *rand.Rand // draws the keys of later tasks
}

var _ peft.Adapter = (*MoRAM)(nil)

// Config configures Add. Zero values take the defaults.
type Config struct {
	R       int      // atoms per task r, 1 ≤ r ≤ min(d, k) of every target (no default: set it, DefaultR is the code's)
	TopK    int      // k ≥ 1 atoms kept per input row; 0 means k = r
	Tau     float64  // softmax temperature τ > 0 (+Inf allowed); 0 means DefaultTau
	Delta   float64  // eval pruning threshold δ ≤ 1, negative for none; 0 means DefaultDelta
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds every task's keys
}

// withDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.TopK == 0 {
		cfg.TopK = cfg.R
	}
	if cfg.Tau == 0 {
		cfg.Tau = DefaultTau
	}
	if cfg.Delta == 0 {
		cfg.Delta = DefaultDelta
	}
	return cfg
}

// Check returns an error naming module, the field and its value if cfg
// (after defaults) does not fit a weight (d×k): R outside [1, min(d, k)],
// TopK negative, Tau negative or NaN, Delta above 1 (it would prune every
// atom) or NaN.
func (cfg Config) Check(module string, d, k int) error {
	c := cfg.withDefaults()
	switch {
	case c.R < 1 || c.R > min(d, k):
		return fmt.Errorf("peft: MoRAM on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, c.R, peft.ShapeOf(d, k), min(d, k))
	case c.TopK < 1:
		return fmt.Errorf("peft: MoRAM on %s: TopK = %d; want k ≥ 1 (0 for k = R)", module, cfg.TopK)
	case !(c.Tau > 0):
		return fmt.Errorf("peft: MoRAM on %s: Tau = %v; want τ > 0 (0 for %v, +Inf for uniform weights)", module, cfg.Tau, DefaultTau)
	case math.IsNaN(c.Delta) || c.Delta > 1:
		return fmt.Errorf("peft: MoRAM on %s: Delta = %v; want δ ≤ 1 (negative: no pruning; 0 for %v)", module, cfg.Delta, DefaultDelta)
	}
	return nil
}

// New returns the MoRAM adapter, at task 1, of a layer with weight (d×k)
// named module (for its parameters' names "module.moram_A.name.weight",
// …), with A drawn from rng and B zero. rng also seeds the generator of
// later tasks' keys. It is an error if cfg does not fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*MoRAM, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	a := &MoRAM{
		R:      c.R,
		Tasks:  1,
		TopK:   c.TopK,
		Tau:    c.Tau,
		Delta:  c.Delta,
		module: module,
		name:   name,
		d:      d,
		k:      k,
	}
	a.A, a.B = a.freshAtoms(rng)
	a.rng = rand.New(rand.NewSource(rng.Int63()))
	return a, nil
}

// freshAtoms returns r new atoms: A (r×k) Kaiming-uniform from rng, B
// (d×r) zero.
func (a *MoRAM) freshAtoms(rng *rand.Rand) (*peft.Tensor, *peft.Tensor) {
	A := peft.RandUniform(rng, a.R, a.k, 1/math.Sqrt(float64(a.k)))
	return peft.NewParam(a.module+".moram_A."+a.name+".weight", A),
		peft.NewParam(a.module+".moram_B."+a.name+".weight", mat.NewDense(a.d, a.R, nil))
}

// Add freezes m's base weights and attaches a MoRAM adapter at task 1,
// named cfg.Name, to every module matching cfg.Targets, making it the
// active one. The keys are drawn from one generator seeded with cfg.Seed,
// module after module in model order.
func Add(m peft.Model, cfg Config) ([]*MoRAM, error) {
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

// As returns the MoRAM adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*MoRAM { return adapters.As[*MoRAM](ads) }

// IncrementTask starts the next task on every adapter of as (see
// MoRAM.IncrementTask).
func IncrementTask(as []*MoRAM) {
	for _, a := range as {
		a.IncrementTask()
	}
}

// IncrementTask starts task T+1: the current atoms join the frozen old
// ones (copied, so they can never change again) and r new atoms are added,
// A Kaiming-uniform and B zero. Afterwards Params returns the new atoms
// only. An optimizer's state for the old A and B tensors is no longer used.
func (a *MoRAM) IncrementTask() {
	oldA, oldB := mat.DenseCopyOf(a.A.Value), mat.DenseCopyOf(a.B.Value)
	if a.OldA != nil {
		var ca, cb mat.Dense
		ca.Stack(a.OldA.Value, oldA)
		cb.Augment(a.OldB.Value, oldB)
		oldA, oldB = &ca, &cb
	}
	a.OldA = peft.NewConst(oldA)
	a.OldA.Name = a.module + ".moram_A_old." + a.name + ".weight"
	a.OldB = peft.NewConst(oldB)
	a.OldB.Name = a.module + ".moram_B_old." + a.name + ".weight"
	a.Tasks++
	a.A, a.B = a.freshAtoms(a.rng)
}

// Dims returns the layer's weight shape (d×k).
func (a *MoRAM) Dims() (d, k int) { return a.d, a.k }

// atoms returns A (R×k) and B (d×R), old atoms first, as tensors through
// which gradients reach the current atoms only.
func (a *MoRAM) atoms() (A, B *peft.Tensor) {
	if a.OldA == nil {
		return a.A, a.B
	}
	return peft.ConcatRows(a.OldA, a.A), peft.ConcatCols(a.OldB, a.B)
}

// Forward returns base + (p ⊙ w)·Bᵀ for x (n×k), base (n×d), with the
// eval pruning by δ unless l.Training.
func (a *MoRAM) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	if _, k := x.Dims(); k != a.k {
		panic(peft.ShapeError{Op: "MoRAM.Forward", Got: "x " + shapeOf(x), Want: fmt.Sprintf("(n×%d), the layer's input width", a.k)})
	}
	A, B := a.atoms()
	p := peft.MatMulT(x, A)                                // (n×R) p_ij = a_j·x_i
	w := a.mixture(p, l.Training)                          // (n×R)
	return peft.Add(base, peft.MatMulT(peft.Mul(p, w), B)) // (n×d)
}

func shapeOf(t *peft.Tensor) string { r, c := t.Dims(); return peft.ShapeOf(r, c) }

// mixture returns the weights w (n×R) for activations p (n×R).
func (a *MoRAM) mixture(p *peft.Tensor, training bool) *peft.Tensor {
	ph := normalizeRows(p)                            // (n×R) p̂
	keep := topK(ph.Value, a.TopK)                    // K_i
	w := maskedSoftmax(peft.Scale(ph, 1/a.Tau), keep) // (n×R)
	if training || a.Delta < 0 {
		return w
	}
	n, R := ph.Dims()
	gate := mat.NewDense(n, R, nil) // 1 where p̂_ij ≥ δ
	gate.Apply(func(i, j int, v float64) float64 {
		if v >= a.Delta {
			return 1
		}
		return 0
	}, ph.Value)
	return peft.Mul(w, peft.NewConst(gate))
}

// Weights returns the mixture weights w (n×R) of input rows x (n×k), in
// training mode (no pruning) or not, over all R atoms, old ones first:
// which experts each input activates.
func (a *MoRAM) Weights(x *mat.Dense, training bool) *mat.Dense {
	xt := peft.NewConst(x)
	if _, k := x.Dims(); k != a.k {
		panic(peft.ShapeError{Op: "MoRAM.Weights", Got: "x " + shapeOf(xt), Want: fmt.Sprintf("(n×%d), the layer's input width", a.k)})
	}
	A, _ := a.atoms()
	return a.mixture(peft.MatMulT(xt, peft.NewConst(A.Value)), training).Value
}

// Params returns the current task's A and B; the old atoms are frozen and
// not among them.
func (a *MoRAM) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B} }

// Rank returns R = T·r, the number of rank-1 experts, old ones included.
func (a *MoRAM) Rank() int { return a.Tasks * a.R }

// Mergeable reports whether the mixture weights are the same for every
// input, so that the adapter is a fixed weight: τ = +Inf, k ≥ R and no
// pruning (δ < 0), where w = 1/R.
func (a *MoRAM) Mergeable() bool {
	return math.IsInf(a.Tau, 1) && a.TopK >= a.Rank() && a.Delta < 0
}

// MergedWeight returns w0 + (1/R)·B·A (d×k) when Mergeable. Otherwise the
// weights depend on the input and no single weight gives the adapter's
// output: it panics with a peft.ArgError saying so (peft.Maybe turns it
// into an error). It panics too if w0 is not (d×k).
func (a *MoRAM) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != a.d || c != a.k {
		panic(peft.ShapeError{Op: "MoRAM.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(a.d, a.k) + ", the adapter's W₀"})
	}
	if !a.Mergeable() {
		panic(peft.ArgError{Op: "MoRAM.MergedWeight(" + a.module + ")", Msg: fmt.Sprintf(
			"cannot merge: the mixture weights depend on the input (τ = %v, k = %d, R = %d, δ = %v); only τ = +Inf with k ≥ R and δ < 0 merges",
			a.Tau, a.TopK, a.Rank(), a.Delta)})
	}
	A, B := a.atoms()
	var dw mat.Dense
	dw.Mul(B.Value, A.Value)
	dw.Scale(1/float64(a.Rank()), &dw)
	dw.Add(w0, &dw)
	return &dw
}
