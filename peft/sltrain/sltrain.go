// Package sltrain is SLTrain: a Linear layer's weight trained as a low-rank
// product plus a sparse matrix on a fixed random support, for pretraining
// from scratch with far fewer trained numbers than d·k.
package sltrain

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// SLTrain replaces the weight of a Linear layer by a low-rank product plus a
// sparse matrix, both trained (Han et al., 2024, "SLTrain: a sparse plus
// low-rank approach for parameter and memory efficient pretraining",
// NeurIPS 2024, arXiv:2406.02214):
//
//	W = s·B·A + S (d×k),  s = α/r
//	h = x·Wᵀ + b                       x (n×k), h (n×d); b the layer's bias
//	A: r×k, Kaiming-uniform U(−1/√k, 1/√k);  B: d×r, init 0
//	S: d×k, 0 off a support Ω of N = ⌊δ·d·k⌋ entries drawn uniformly at
//	   random without replacement and fixed; its N values s (1×N) are the
//	   trained parameter, init U(−1/√k, 1/√k)
//
// so a layer trains r·(d+k) + ⌊δ·d·k⌋ numbers instead of d·k. The low-rank
// part learns the head of W's spectrum and S the tail: rank(s·B·A) ≤ r, but
// s·B·A + S has full rank min(d, k) generically. Ω never moves: S is stored
// as its N values, in the order of Ω's flat indices i·k + j, so no
// optimizer step can make an entry off Ω nonzero. The layer's own weight W₀
// stays in the Linear, frozen and unused while the adapter is active:
// disabling the adapter gives the original layer back, and merging writes
// W into it.
//
// Pretraining (Config.Pretrain) leaves every other parameter of the model
// trainable, the biases, embeddings, norms and untargeted layers, as the
// paper trains them in full; only the targeted weights are reparameterized.
//
// Defaults follow the paper's runs: δ = 0.03 (DefaultDelta). The paper uses
// r = 128 and α = 32 for LLaMA-60M; gopeft's α = 0 means α = r (s = 1), as
// for LoRA. Where gopeft departs from the paper's code (SpLoRaLinear and its
// C++ kernel):
//
//   - The forward pass is s·(x·Aᵀ)·Bᵀ + x·Sᵀ + b through gopeft's ops (S
//     scattered into a dense (d×k) matrix by peft.Scatter), not a fused
//     kernel; the numbers are the same up to rounding.
//   - SpLoRaLinear owns its bias (init U(−1/√d, 1/√d)); SLTrain uses the
//     Linear's bias b, which Pretrain makes trainable.
//   - Ω is drawn by gopeft's generator from Config.Seed (Floyd's sampling),
//     not torch.randperm, so the same seed gives another Ω than PyTorch.
//   - KeepBase is gopeft's extension for fine-tuning, which the paper's
//     layer does not support: W₀ stays and the update is added to it,
//     h = x·(W₀ + s·B·A + S)ᵀ + b, with S's values starting at 0 so that
//     the adapted model starts as the base model exactly.
type SLTrain struct {
	A        *peft.Tensor // (r×k)
	B        *peft.Tensor // (d×r)
	S        *peft.Tensor // s (1×N): S's values on Ω, in the order of Support
	R        int          // rank r
	Alpha    float64      // α
	Delta    float64      // δ: the fraction of W's entries in Ω, N = ⌊δ·d·k⌋
	KeepBase bool         // add s·B·A + S to the frozen W₀ instead of replacing it

	module string
	d, k   int   // the layer's weight is (d×k)
	omega  []int // Ω: N flat indices i·k + j, strictly increasing (peft.CheckSupport)
}

var _ peft.Adapter = (*SLTrain)(nil)

// DefaultDelta is δ when Config.Delta is 0: the sparsity ratio of the
// paper's runs (sp_ratio 0.03).
const DefaultDelta = 0.03

// Config configures Add.
type Config struct {
	R     int     // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha float64 // α; 0 means α = r (scaling 1)
	// Delta is δ in (0, 1), the fraction of each weight's entries that S
	// holds, N = ⌊δ·d·k⌋ ≥ 1; 0 means DefaultDelta.
	Delta float64
	// KeepBase adds s·B·A + S to the frozen W₀ (fine-tuning, gopeft's
	// extension) instead of replacing W₀ (pretraining, the paper's).
	KeepBase bool
	// Pretrain leaves every parameter of the model other than the
	// targeted weights trainable (biases, embeddings, norms, untargeted
	// layers), as pretraining trains them; it needs KeepBase false.
	Pretrain bool
	Targets  []string // target modules, by name or pattern (see peft.Targets)
	Name     string   // adapter name, "default" if empty
	Seed     int64    // seeds Ω, A and S's values
}

// delta returns δ with the default applied.
func (cfg Config) delta() float64 {
	if cfg.Delta == 0 {
		return DefaultDelta
	}
	return cfg.Delta
}

// NonZeros returns N = ⌊δ·d·k⌋, with δ·d·k computed in floating point as
// the paper's code does (int(sp_ratio · d·k)).
func NonZeros(delta float64, d, k int) int { return int(math.Floor(delta * float64(d*k))) }

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): r outside [1, min(d, k)], α negative or not
// finite, δ outside (0, 1) or too small to give one entry, or Pretrain with
// KeepBase.
func (cfg Config) Check(module string, d, k int) error {
	r, delta := cfg.R, cfg.delta()
	switch {
	case r < 1 || r > min(d, k):
		return fmt.Errorf("peft: SLTrain on %s: rank r = %d out of range for W %s: want 1 ≤ r ≤ min(d, k) = %d", module, r, peft.ShapeOf(d, k), min(d, k))
	case cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0):
		return fmt.Errorf("peft: SLTrain on %s: alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	case !(delta > 0 && delta < 1):
		return fmt.Errorf("peft: SLTrain on %s: Delta = %v outside (0, 1)", module, cfg.Delta)
	case NonZeros(delta, d, k) < 1:
		dflt := ""
		if cfg.Delta == 0 {
			dflt = " (Delta = 0 selects the default)"
		}
		return fmt.Errorf("peft: SLTrain on %s: Delta = %v%s gives ⌊δ·d·k⌋ = 0 entries for W %s: want δ ≥ 1/(d·k) = %.3g",
			module, delta, dflt, peft.ShapeOf(d, k), 1/float64(d*k))
	case cfg.Pretrain && cfg.KeepBase:
		return fmt.Errorf("peft: SLTrain on %s: Pretrain = true with KeepBase = true: pretraining replaces W₀, so set one of them", module)
	}
	return nil
}

// RandomSupport returns a support Ω for a weight (d×k): N = ⌊δ·d·k⌋ flat
// indices i·k + j drawn uniformly at random without replacement by rng,
// increasing. It panics if N is outside [1, d·k].
func RandomSupport(rng *rand.Rand, d, k int, delta float64) []int {
	n := NonZeros(delta, d, k)
	if d < 1 || k < 1 || n < 1 || n > d*k {
		panic(peft.ArgError{Op: "sltrain.RandomSupport", Msg: fmt.Sprintf("d = %d, k = %d, δ = %v give N = %d entries; want d, k ≥ 1 and 1 ≤ N ≤ d·k", d, k, delta, n)})
	}
	return randomSupport(rng, d, k, n)
}

// New returns an SLTrain adapter for a layer with weight (d×k) named module
// (for its parameters' names "module.lora_A.name.weight", …) on the support
// omega (flat indices i·k + j, strictly increasing, ⌊δ·d·k⌋ of them;
// copied), with A and then S's values drawn from rng (S's are 0 with
// KeepBase) and B zero. It is an error if cfg does not fit the layer (see
// Check) or omega is not a support of it with ⌊δ·d·k⌋ entries.
func New(module, name string, d, k int, omega []int, cfg Config, rng *rand.Rand) (*SLTrain, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	delta := cfg.delta()
	if err := peft.CheckSupport(omega, d, k); err != nil {
		return nil, fmt.Errorf("peft: SLTrain on %s: %v", module, err)
	}
	if n := NonZeros(delta, d, k); len(omega) != n {
		return nil, fmt.Errorf("peft: SLTrain on %s: Ω has %d entries, but δ = %v gives ⌊δ·d·k⌋ = %d for W %s", module, len(omega), delta, n, peft.ShapeOf(d, k))
	}
	r := cfg.R
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(r)
	}
	bound := 1 / math.Sqrt(float64(k))
	a := peft.RandUniform(rng, r, k, bound)
	s := mat.NewDense(1, len(omega), nil)
	if !cfg.KeepBase {
		s = peft.RandUniform(rng, 1, len(omega), bound)
	}
	return &SLTrain{
		A:        peft.NewParam(module+".lora_A."+name+".weight", a),
		B:        peft.NewParam(module+".lora_B."+name+".weight", mat.NewDense(d, r, nil)),
		S:        peft.NewParam(module+".sparse_value."+name, s),
		R:        r,
		Alpha:    cfg.Alpha,
		Delta:    delta,
		KeepBase: cfg.KeepBase,
		module:   module,
		d:        d,
		k:        k,
		omega:    append([]int(nil), omega...),
	}, nil
}

// Add freezes m's base weights and attaches an SLTrain adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one;
// with cfg.Pretrain it then makes every parameter of m trainable again but
// the targeted modules' W₀. One generator seeded with cfg.Seed draws, module
// after module in model order, Ω (RandomSupport), A and S's values.
func Add(m peft.Model, cfg Config) ([]*SLTrain, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		if err := cfg.Check(l.Name, d, k); err != nil {
			return nil, err
		}
		return New(l.Name, name, d, k, RandomSupport(rng, d, k, cfg.delta()), cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	if cfg.Pretrain {
		ours := map[peft.Adapter]bool{}
		for _, a := range added {
			ours[a] = true
		}
		replaced := map[*peft.Tensor]bool{} // the targeted modules' W₀
		for _, l := range m.Modules() {
			if ours[l.Adapters[name]] {
				replaced[l.W] = true
			}
		}
		for _, p := range peft.BaseParams(m) {
			if !replaced[p] {
				p.Unfreeze()
			}
		}
	}
	return As(added), nil
}

// As returns the SLTrain adapters among ads (those that are not are
// skipped).
func As(ads []peft.Adapter) []*SLTrain { return adapters.As[*SLTrain](ads) }

// Dims returns the layer's weight shape (d×k).
func (a *SLTrain) Dims() (d, k int) { return a.d, a.k }

// Module returns the name of the module the adapter was made for.
func (a *SLTrain) Module() string { return a.module }

// Scaling returns s = α/r.
func (a *SLTrain) Scaling() float64 { return a.Alpha / float64(a.R) }

// N returns the number of entries of Ω, ⌊δ·d·k⌋.
func (a *SLTrain) N() int { return len(a.omega) }

// Support returns Ω: the flat indices i·k + j of S's entries, increasing (a
// copy).
func (a *SLTrain) Support() []int { return append([]int(nil), a.omega...) }

// Sparse returns S (d×k): s scattered onto Ω, zero elsewhere.
func (a *SLTrain) Sparse() *mat.Dense {
	return peft.Scatter(peft.NewConst(a.S.Value), a.omega, a.d, a.k).Value
}

// Weight returns s·B·A + S (d×k): the layer's weight, or with KeepBase its
// update.
func (a *SLTrain) Weight() *mat.Dense {
	var w mat.Dense
	w.Mul(a.B.Value, a.A.Value)
	w.Scale(a.Scaling(), &w)
	w.Add(&w, a.Sparse())
	return &w
}

// Forward returns s·(x·Aᵀ)·Bᵀ + x·Sᵀ + b for x (n×k), with base (n×d) the
// frozen layer's output, unused; with KeepBase, base + s·(x·Aᵀ)·Bᵀ + x·Sᵀ.
func (a *SLTrain) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	ax := peft.Scale(peft.MatMulT(x, a.A), a.Scaling())                                         // (n×r) = s·x·Aᵀ
	h := peft.Add(peft.MatMulT(ax, a.B), peft.MatMulT(x, peft.Scatter(a.S, a.omega, a.d, a.k))) // (n×d) = x·(s·B·A + S)ᵀ
	switch {
	case a.KeepBase:
		return peft.Add(base, h)
	case l.B != nil:
		return peft.AddRow(h, l.B) // (n×d) + b
	}
	return h
}

// Params returns A, B and s.
func (a *SLTrain) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B, a.S} }

// Rank returns r.
func (a *SLTrain) Rank() int { return a.R }

// MergedWeight returns s·B·A + S (d×k), whatever w0; with KeepBase,
// w0 + s·B·A + S.
func (a *SLTrain) MergedWeight(w0 *mat.Dense) *mat.Dense {
	w := a.Weight()
	if a.KeepBase {
		w.Add(w0, w)
	}
	return w
}
