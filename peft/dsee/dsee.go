// Package dsee is DSEE: a LoRA update plus a sparse update on a fixed
// support picked from the pre-trained weight, and optional magnitude pruning
// of the merged weight, so that both the update and the final model are
// sparse.
package dsee

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// DSEE adapts a frozen weight W₀ (d×k) of a Linear layer with a low-rank
// update plus a sparse one whose support is fixed, and can then prune the
// merged weight (Chen et al., 2021, "DSEE: Dually Sparsity-embedded
// Efficient Tuning of Pre-trained Language Models", arXiv:2111.00160):
//
//	h = x·W₀ᵀ + b + dropout(x)·ΔWᵀ      x (n×k), h (n×d)
//	ΔW = s·(B·A + S₂) (d×k),  s = α/r
//	A: r×k, Kaiming-uniform U(−1/√k, 1/√k);  B: d×r, init 0
//	S₂: d×k, 0 off a support Ω of N entries fixed at init; its N values
//	    s₂ (1×N) are the trained parameter, init 0
//
// so ΔW is zero at init (the adapted model starts as the base model
// exactly) and a layer trains r·(d+k) + N numbers. Ω is picked once, from
// W₀, by Config.Selection:
//
//	Decomposition  W₀ ≈ L + S split as GreBsmo does (see Decompose),
//	               Ω = the N largest |S|: what DSEE's code does (default)
//	Magnitude      Ω = the N largest |W₀|
//
// and never moves: S₂ is stored as its N values, in the order of Ω's flat
// indices i·k + j, so no optimizer step can make an entry off Ω nonzero.
//
// Pruning, the paper's second stage (Prune), fixes a 0/1 mask M (d×k) that
// keeps the d·k − ⌊p·d·k⌋ entries of W₀ + ΔW largest in magnitude, after
// which
//
//	h = x·(M ⊙ W₀)ᵀ + b + dropout(x)·(M ⊙ ΔW)ᵀ
//
// so the merged weight M ⊙ (W₀ + ΔW) keeps its ⌊p·d·k⌋ zeros through any
// further training, the fine-tuning the paper runs after pruning.
//
// Defaults are those of DSEE's README: N = 64 per matrix, and p = 0.5 for
// pruning (DefaultPruneRatio); the paper uses r = 16. Where gopeft departs
// from DSEE's code:
//
//   - The Decomposition split fits L by an exact truncated SVD each round
//     where GreBsmo uses bilateral random projections (see Decompose).
//   - S₂ is its N values plus Ω, not a dense matrix multiplied by a mask, so
//     the support cannot drift and peft.TrainableParams counts N, not d·k.
//   - Only unstructured magnitude pruning is implemented; the paper's
//     structured pruning of attention heads is not. The mask lives in the
//     adapter, so disabling it gives the unpruned base model exactly.
//   - Dropout acts on the adapter's input, for B·A and S₂ alike, as LoRA's.
//
// Merging folds ΔW (and M, once pruned) into W₀.
type DSEE struct {
	A         *peft.Tensor // (r×k)
	B         *peft.Tensor // (d×r)
	S2        *peft.Tensor // s₂ (1×N): S₂'s values on Ω, in the order of Support
	R         int          // rank r
	Alpha     float64      // α
	Dropout   float64      // dropout probability on the adapter's input, in [0, 1)
	Selection Selection    // how Ω was picked (recorded in a saved adapter's config)

	module     string
	d, k       int        // the layer's weight is (d×k)
	omega      []int      // Ω: N flat indices i·k + j, strictly increasing (peft.CheckSupport)
	mask       *mat.Dense // M (d×k) of 0s and 1s; nil until Prune
	pruneRatio float64    // p of the Prune that set mask
	rng        *rand.Rand // draws the dropout masks
}

var _ peft.Adapter = (*DSEE)(nil)

// Selection says how DSEE picks the support Ω of S₂ from W₀.
type Selection int

const (
	// Decomposition splits W₀ ≈ L + S (Decompose) and takes the N largest
	// |S|: the entries that stand out from W₀'s low-rank part. DSEE's code
	// does this.
	Decomposition Selection = iota
	// Magnitude takes the N largest |W₀|.
	Magnitude
)

// String returns "decomposition" or "magnitude", the names a saved
// adapter's config records.
func (s Selection) String() string {
	switch s {
	case Decomposition:
		return "decomposition"
	case Magnitude:
		return "magnitude"
	}
	return fmt.Sprintf("Selection(%d)", int(s))
}

// DefaultN is the size of Ω when Config.N is 0: DSEE's README uses 64
// entries per adapted matrix.
const DefaultN = 64

// DefaultPruneRatio is the pruning ratio p of DSEE's README.
const DefaultPruneRatio = 0.5

// Config configures Add.
type Config struct {
	R     int     // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha float64 // α; 0 means α = r (scaling 1)
	N     int     // entries of Ω per layer, 1 ≤ N ≤ d·k; 0 means DefaultN
	// Selection picks Ω: Decomposition (the zero value, as DSEE's code)
	// or Magnitude.
	Selection Selection
	Decomp    DecompConfig // the split Decomposition ranks entries by
	Dropout   float64      // dropout on the adapter's input, in [0, 1)
	Targets   []string     // target modules, by name or pattern (see peft.Targets)
	Name      string       // adapter name, "default" if empty
	Seed      int64        // seeds A's init and the dropout masks
}

// n returns N with the default applied.
func (cfg Config) n() int {
	if cfg.N == 0 {
		return DefaultN
	}
	return cfg.N
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): r outside [1, min(d, k)], α negative or not
// finite, dropout outside [0, 1), N outside [1, d·k], an unknown Selection,
// or (for Decomposition) a Decomp field out of range.
func (cfg Config) Check(module string, d, k int) error {
	r, n := cfg.R, cfg.n()
	switch {
	case r < 1 || r > min(d, k):
		return fmt.Errorf("peft: DSEE on %s: rank r = %d out of range for W %s: want 1 ≤ r ≤ min(d, k) = %d", module, r, peft.ShapeOf(d, k), min(d, k))
	case cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0):
		return fmt.Errorf("peft: DSEE on %s: alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	case cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout):
		return fmt.Errorf("peft: DSEE on %s: dropout = %v outside [0, 1)", module, cfg.Dropout)
	case cfg.N < 0 || n > d*k:
		dflt := ""
		if cfg.N == 0 {
			dflt = " (N = 0 selects the default)"
		}
		return fmt.Errorf("peft: DSEE on %s: N = %d sparse entries out of range for W %s%s: want 1 ≤ N ≤ d·k = %d", module, n, peft.ShapeOf(d, k), dflt, d*k)
	case cfg.Selection != Decomposition && cfg.Selection != Magnitude:
		return fmt.Errorf("peft: DSEE on %s: Selection = %v; want Decomposition or Magnitude", module, cfg.Selection)
	case cfg.Selection == Decomposition:
		return cfg.Decomp.Check(module, d, k)
	}
	return nil
}

// SelectSupport returns Ω, the flat indices i·k + j (increasing) of the n
// entries of w0 (d×k) that sel picks (see Selection), with dc configuring
// the Decomposition split. Among entries of equal magnitude the one with the
// lower index is taken. It returns an error if n is outside [1, d·k], if sel
// is unknown, or from Decompose.
func SelectSupport(ctx context.Context, w0 mat.Matrix, n int, sel Selection, dc DecompConfig) ([]int, error) {
	return selectSupport(ctx, "W", w0, n, sel, dc)
}

func selectSupport(ctx context.Context, module string, w0 mat.Matrix, n int, sel Selection, dc DecompConfig) ([]int, error) {
	d, k := w0.Dims()
	if n < 1 || n > d*k {
		return nil, fmt.Errorf("peft: DSEE on %s: N = %d sparse entries out of range for W %s: want 1 ≤ N ≤ d·k = %d", module, n, peft.ShapeOf(d, k), d*k)
	}
	switch sel {
	case Magnitude:
		return topN(w0, n), nil
	case Decomposition:
		_, s, err := decompose(ctx, module, w0, dc)
		if err != nil {
			return nil, err
		}
		return topN(s, n), nil
	}
	return nil, fmt.Errorf("peft: DSEE on %s: Selection = %v; want Decomposition or Magnitude", module, sel)
}

// New returns a DSEE adapter for a layer with weight (d×k) named module (for
// its parameters' names "module.lora_A.name.weight", …) on the support omega
// (flat indices i·k + j, strictly increasing; copied), with A drawn from rng,
// B and s₂ zero, and cfg's α, dropout and Selection (cfg.N is taken from
// omega). It is an error if cfg does not fit the layer (see Check) or omega
// is not a support of it.
func New(module, name string, d, k int, omega []int, cfg Config, rng *rand.Rand) (*DSEE, error) {
	cfg.N = len(omega)
	if err := peft.CheckSupport(omega, d, k); err != nil {
		return nil, fmt.Errorf("peft: DSEE on %s: %v", module, err)
	}
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	r := cfg.R
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(r)
	}
	return &DSEE{
		A:         peft.NewParam(module+".lora_A."+name+".weight", peft.RandUniform(rng, r, k, 1/math.Sqrt(float64(k)))),
		B:         peft.NewParam(module+".lora_B."+name+".weight", mat.NewDense(d, r, nil)),
		S2:        peft.NewParam(module+".dsee_S2."+name, mat.NewDense(1, len(omega), nil)),
		R:         r,
		Alpha:     cfg.Alpha,
		Dropout:   cfg.Dropout,
		Selection: cfg.Selection,
		module:    module,
		d:         d,
		k:         k,
		omega:     append([]int(nil), omega...),
		rng:       rand.New(rand.NewSource(rng.Int63())),
	}, nil
}

// Add freezes m's base weights and attaches a DSEE adapter, named cfg.Name,
// to every module matching cfg.Targets, making it the active one. Each
// module's Ω is picked from its W₀ by cfg.Selection; each A is drawn from
// one generator seeded with cfg.Seed, module after module in model order.
func Add(m peft.Model, cfg Config) ([]*DSEE, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the Decomposition
// splits and returns its error, with no adapter attached.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*DSEE, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		if err := cfg.Check(l.Name, d, k); err != nil {
			return nil, err
		}
		omega, err := selectSupport(ctx, l.Name, l.W.Value, cfg.n(), cfg.Selection, cfg.Decomp)
		if err != nil {
			return nil, err
		}
		return New(l.Name, name, d, k, omega, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the DSEE adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*DSEE { return adapters.As[*DSEE](ads) }

// Dims returns the layer's weight shape (d×k).
func (a *DSEE) Dims() (d, k int) { return a.d, a.k }

// Module returns the name of the module the adapter was made for.
func (a *DSEE) Module() string { return a.module }

// Scaling returns s = α/r.
func (a *DSEE) Scaling() float64 { return a.Alpha / float64(a.R) }

// N returns the number of entries of Ω.
func (a *DSEE) N() int { return len(a.omega) }

// Support returns Ω: the flat indices i·k + j of S₂'s entries, increasing
// (a copy).
func (a *DSEE) Support() []int { return append([]int(nil), a.omega...) }

// Sparse returns S₂ (d×k): s₂ scattered onto Ω, zero elsewhere.
func (a *DSEE) Sparse() *mat.Dense {
	return peft.Scatter(peft.NewConst(a.S2.Value), a.omega, a.d, a.k).Value
}

// Forward returns base + dropout(x)·(s·(B·A + S₂))ᵀ for x (n×k), base (n×d),
// computed as s·(x·Aᵀ)·Bᵀ + x·(s·S₂)ᵀ; once pruned,
// x·(M ⊙ W₀)ᵀ + b + dropout(x)·(M ⊙ ΔW)ᵀ.
func (a *DSEE) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xd := peft.Dropout(x, a.Dropout, a.rng, l.Training) // (n×k)
	s := a.Scaling()
	s2 := peft.Scatter(a.S2, a.omega, a.d, a.k) // (d×k) = S₂
	if a.mask == nil {
		ax := peft.Scale(peft.MatMulT(xd, a.A), s)              // (n×r) = s·x·Aᵀ
		h := peft.Add(base, peft.MatMulT(ax, a.B))              // (n×d)
		return peft.Add(h, peft.MatMulT(xd, peft.Scale(s2, s))) // (n×d) += x·(s·S₂)ᵀ
	}
	if d, k := l.W.Dims(); d != a.d || k != a.k {
		panic(peft.ShapeError{Op: "DSEE(" + a.module + ").Forward", Got: "W " + peft.ShapeOf(d, k), Want: "W " + peft.ShapeOf(a.d, a.k) + ", the shape the adapter was made for"})
	}
	var w0m mat.Dense
	w0m.MulElem(l.W.Value, a.mask)                                                 // M ⊙ W₀ (d×k)
	dw := peft.Scale(peft.Add(peft.MatMul(a.B, a.A), s2), s)                       // (d×k) = ΔW
	pruned := peft.Affine(x, peft.NewConst(&w0m), l.B)                             // (n×d) = x·(M ⊙ W₀)ᵀ + b
	return peft.Add(pruned, peft.MatMulT(xd, peft.Mul(dw, peft.NewConst(a.mask)))) // (n×d)
}

// Params returns A, B and s₂.
func (a *DSEE) Params() []*peft.Tensor { return []*peft.Tensor{a.A, a.B, a.S2} }

// Rank returns r.
func (a *DSEE) Rank() int { return a.R }

// Delta returns ΔW = s·(B·A + S₂) (d×k), before any pruning mask.
func (a *DSEE) Delta() *mat.Dense {
	var dw mat.Dense
	dw.Mul(a.B.Value, a.A.Value)
	dw.Add(&dw, a.Sparse())
	dw.Scale(a.Scaling(), &dw)
	return &dw
}

// MergedWeight returns W₀ + ΔW (d×k), or M ⊙ (W₀ + ΔW) once pruned.
func (a *DSEE) MergedWeight(w0 *mat.Dense) *mat.Dense {
	dw := a.Delta()
	dw.Add(w0, dw)
	if a.mask != nil {
		dw.MulElem(dw, a.mask)
	}
	return dw
}

// Mask returns the pruning mask M (d×k) of 0s and 1s and the ratio p that
// set it (copies), or nil and 0 if the adapter is not pruned.
func (a *DSEE) Mask() (*mat.Dense, float64) {
	if a.mask == nil {
		return nil, 0
	}
	return mat.DenseCopyOf(a.mask), a.pruneRatio
}

// Prune is DSEE's second stage on this adapter of a layer with weight w0
// (d×k): it fixes the mask M that keeps the d·k − ⌊p·d·k⌋ entries of the
// merged weight W₀ + ΔW largest in magnitude (the lower flat index first
// among equal magnitudes) and zeroes the other ⌊p·d·k⌋ (p·d·k in floating
// point, as the paper's code counts), for the forward pass and merging from
// then on (see DSEE). w0 is not changed. It is an error if p is outside
// [0, 1) or the adapter is already pruned; it panics if w0 is not (d×k).
func (a *DSEE) Prune(w0 *mat.Dense, p float64) error {
	d, k := w0.Dims()
	if d != a.d || k != a.k {
		panic(peft.ShapeError{Op: "DSEE(" + a.module + ").Prune", Got: "W₀ " + peft.ShapeOf(d, k), Want: "W₀ " + peft.ShapeOf(a.d, a.k)})
	}
	if err := a.checkPrune(p); err != nil {
		return err
	}
	zeros := pruned(p, d, k)
	mask := mat.NewDense(d, k, nil)
	raw := mask.RawMatrix().Data
	for _, f := range topN(a.MergedWeight(w0), d*k-zeros) {
		raw[f] = 1
	}
	a.mask, a.pruneRatio = mask, p
	return nil
}

// pruned returns ⌊p·d·k⌋, the number of entries Prune zeroes, with p·d·k
// computed in floating point as the paper's code does.
func pruned(p float64, d, k int) int { return int(math.Floor(p * float64(d*k))) }

// checkPrune returns an error if the adapter cannot be pruned at ratio p.
func (a *DSEE) checkPrune(p float64) error {
	if !(p >= 0 && p < 1) {
		return fmt.Errorf("peft: DSEE on %s: prune ratio p = %v outside [0, 1)", a.module, p)
	}
	if a.mask != nil {
		return fmt.Errorf("peft: DSEE on %s: already pruned at p = %g; prune once, at the final ratio", a.module, a.pruneRatio)
	}
	return nil
}

// Prune prunes the active DSEE adapter of every module of m that has one at
// ratio p (see DSEE.Prune), from the module's W₀. It is an error, with no
// adapter pruned, if no module has an active DSEE adapter, if one of them
// is merged or already pruned, or if p is outside [0, 1).
func Prune(m peft.Model, p float64) error {
	var ads []*DSEE
	var mods []*peft.Linear
	for _, l := range m.Modules() {
		a, ok := l.Adapters[l.Active].(*DSEE)
		if !ok {
			continue
		}
		if l.Merged() != "" {
			return fmt.Errorf("peft: DSEE on %s: adapter %q is merged, so W holds W₀ + ΔW; unmerge before pruning", l.Name, l.Merged())
		}
		if err := a.checkPrune(p); err != nil {
			return err
		}
		ads, mods = append(ads, a), append(mods, l)
	}
	if len(ads) == 0 {
		return fmt.Errorf("peft: DSEE: Prune: no module of the model has an active DSEE adapter")
	}
	for i, a := range ads {
		if err := a.Prune(mods[i].W.Value, p); err != nil {
			return err // not reached: checked above
		}
	}
	return nil
}
