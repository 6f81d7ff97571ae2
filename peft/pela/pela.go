// Package pela is PELA: every targeted Linear weight replaced by its best
// rank-r approximation, r chosen by a compression ratio, then trained by
// distillation from the original model to win back what the truncation
// lost.
package pela

import (
	"context"
	"fmt"
	"math"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// PELA replaces a Linear layer's weight W (d×k, d outputs, k inputs) by
// low-rank factors (Guo, Wang and Kankanhalli, 2024, "PELA: Learning
// Parameter-Efficient Models with Low-Rank Approximation", CVPR 2024,
// arXiv:2310.10700):
//
//	W = U·S·Vᵀ (thin SVD),  r = ⌊d·k / (c·(d + k))⌋
//	L = U_r·S_r^{1/2}  (d×r),  R = S_r^{1/2}·V_rᵀ  (r×k)
//	h = x·Rᵀ·Lᵀ + b       x (n×k), h (n×d), b the layer's bias
//
// so L·R = U_r·S_r·V_rᵀ is the best rank-r approximation of W
// (Eckart–Young: ‖W − L·R‖²_F = Σ_{i>r} σ_i²) and the layer stores
// r·(d + k) ≤ d·k/c numbers in place of d·k: c is the compression ratio.
// The paper then trains L and R (the "intermediate pre-training") with the
// task loss plus feature distillation from the original model, which
// Distill does.
//
// How it fits peft.Adapter. The adapter holds L and R, both trained, and
// its output ignores W·x: the layer computes x·Rᵀ·Lᵀ + b. W itself is
// left as it was, frozen, so that
//   - disabling the adapters gives the original model exactly: the teacher
//     of Distill needs no copy of the model;
//   - MergedWeight is L·R, and Merge/Unmerge work as for any adapter;
//     peft.Linear.Bake then leaves a plain layer holding L·R.
//
// So the suite's ChangesBase is false, and the output at init is not the
// base model's (the compressed model is what the method starts from).
// What gopeft's Linear still computes is the base product x·Wᵀ, which its
// Forward forms before calling the adapter: the memory and time savings of
// the compressed layer are the deployed model's (L and R alone), not those
// of training in gopeft.
//
// Departures from the reference code (github.com/guoyang9/PELA,
// DeiT/low_rank.py): the bias stays the layer's, frozen (the reference
// copies it into the second factor, where it is trained); the rank may
// also be given directly (Config.R); layers are compressed only where
// targeted (the reference compresses every Linear with at least 10
// outputs).
type PELA struct {
	L *peft.Tensor // (d×r) U_r·S_r^{1/2} at init
	R *peft.Tensor // (r×k) S_r^{1/2}·V_rᵀ at init

	// Sigma holds W's singular values σ_1 ≥ … ≥ σ_min(d,k) at
	// compression: the spectrum the truncation cut, for plots.
	Sigma []float64
	// C is the compression ratio the rank came from, 0 if it was given.
	C float64

	module string
	d, k   int
	rank   int

	recording bool         // Forward keeps its output in last (Distill)
	last      *peft.Tensor // the last output, while recording
	teach     bool         // Forward returns the base output (Distill's teacher pass)
}

var _ peft.Adapter = (*PELA)(nil)

// Config configures Add. Exactly one of C and R is set.
type Config struct {
	// C is the compression ratio c ≥ 1: every target's rank is
	// r = ⌊d·k/(c·(d + k))⌋ (RankFor), which must be ≥ 1.
	C float64
	// R, if C is 0, is the rank of every target, 1 ≤ R ≤ min(d, k).
	R       int
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
}

// RankFor returns PELA's rank for a weight (d×k) and compression ratio c:
// r = ⌊d·k/(c·(d + k))⌋, the largest r with r·(d + k) ≤ d·k/c. It panics
// if d or k is below 1 or c is not a finite positive number.
func RankFor(d, k int, c float64) int {
	if d < 1 || k < 1 || !(c > 0) || math.IsInf(c, 0) {
		panic(peft.ArgError{Op: "pela.RankFor", Msg: fmt.Sprintf("W %s, c = %v: want d, k ≥ 1 and a finite c > 0", peft.ShapeOf(d, k), c)})
	}
	mn, s := float64(d)*float64(k), float64(d+k)
	r := int(math.Floor(mn / (c * s)))
	// Guard the rounding of the division: keep r·(d+k)·c ≤ d·k.
	for r > 0 && float64(r)*s*c > mn {
		r--
	}
	return r
}

// Rank returns the rank cfg gives a weight (d×k), or an error naming
// module, the field and its value if it does not fit: C below 1 or not
// finite, a C that leaves rank 0, R outside [1, min(d, k)], or both or
// neither set.
func (cfg Config) Rank(module string, d, k int) (int, error) {
	switch {
	case cfg.C != 0 && cfg.R != 0:
		return 0, fmt.Errorf("peft: PELA on %s: both C = %v and R = %d set; want one", module, cfg.C, cfg.R)
	case cfg.C != 0:
		if !(cfg.C >= 1) || math.IsInf(cfg.C, 0) {
			return 0, fmt.Errorf("peft: PELA on %s: C = %v; want a finite compression ratio c ≥ 1", module, cfg.C)
		}
		r := RankFor(d, k, cfg.C)
		if r < 1 {
			return 0, fmt.Errorf("peft: PELA on %s: C = %v gives rank r = ⌊d·k/(c·(d+k))⌋ = 0 for W %s; want c ≤ %g", module, cfg.C, peft.ShapeOf(d, k), float64(d*k)/float64(d+k))
		}
		return r, nil
	}
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return 0, fmt.Errorf("peft: PELA on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d (or a compression ratio C)", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	return cfg.R, nil
}

// New returns the PELA adapter of a layer named module with weight w
// (d×k), its factors from w's thin SVD truncated to cfg's rank. It is an
// error if cfg does not fit (see Config.Rank), or the SVD fails (w holds
// NaN or Inf, ctx is cancelled).
func New(ctx context.Context, module, name string, w *mat.Dense, cfg Config) (*PELA, error) {
	d, k := w.Dims()
	r, err := cfg.Rank(module, d, k)
	if err != nil {
		return nil, err
	}
	svd, err := accel.ThinSVD(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("peft: PELA on %s: SVD of W %s: %w", module, peft.ShapeOf(d, k), err)
	}
	l := mat.NewDense(d, r, nil)
	rt := mat.NewDense(r, k, nil)
	for i := 0; i < r; i++ {
		q := math.Sqrt(svd.S[i]) // σ_i^{1/2}
		for j := 0; j < d; j++ {
			l.Set(j, i, svd.U.At(j, i)*q) // L = U_r·S_r^{1/2}
		}
		for j := 0; j < k; j++ {
			rt.Set(i, j, q*svd.VT.At(i, j)) // R = S_r^{1/2}·V_rᵀ
		}
	}
	p := fromFactors(module, name, l, rt)
	p.Sigma, p.C = svd.S, cfg.C
	return p, nil
}

// fromFactors returns the adapter with factors l (d×r) and r (r×k), not
// copied.
func fromFactors(module, name string, l, r *mat.Dense) *PELA {
	d, rank := l.Dims()
	_, k := r.Dims()
	return &PELA{
		L:      peft.NewParam(module+".pela_L."+name+".weight", l),
		R:      peft.NewParam(module+".pela_R."+name+".weight", r),
		module: module, d: d, k: k, rank: rank,
	}
}

// Add freezes m's base weights and attaches a PELA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one:
// the model is then the compressed model. On error no adapter is left.
func Add(m peft.Model, cfg Config) ([]*PELA, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context, which stops the SVDs.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*PELA, error) {
	name := peft.AdapterName(cfg.Name)
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		w := l.W.Value
		if l.Merged() != "" {
			return nil, fmt.Errorf("peft: PELA on %s: adapter %q is merged", l.Name, l.Merged())
		}
		return New(ctx, l.Name, name, w, cfg)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the PELA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*PELA { return adapters.As[*PELA](ads) }

// Of returns the active PELA adapter of every module of m that has one, in
// model order.
func Of(m peft.Model) []*PELA {
	var out []*PELA
	for _, l := range m.Modules() {
		if p, ok := l.ActiveAdapter().(*PELA); ok {
			out = append(out, p)
		}
	}
	return out
}

// Module returns the name of the module the adapter is on.
func (p *PELA) Module() string { return p.module }

// Dims returns the layer's weight shape (d×k).
func (p *PELA) Dims() (d, k int) { return p.d, p.k }

// Forward returns x·Rᵀ·Lᵀ + b for x (n×k), with b the layer's bias; base
// (x·Wᵀ + b) is not used, except in Distill's teacher pass.
func (p *PELA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	if _, k := x.Dims(); k != p.k {
		n, _ := x.Dims()
		panic(peft.ShapeError{Op: p.module + ".PELA.Forward", Got: "x " + peft.ShapeOf(n, k), Want: fmt.Sprintf("x (n×%d)", p.k)})
	}
	var out *peft.Tensor
	if p.teach {
		out = peft.Detach(base)
	} else {
		xr := peft.MatMulT(x, p.R)      // (n×r) = x·Rᵀ
		out = peft.Affine(xr, p.L, l.B) // (n×d) = x·Rᵀ·Lᵀ + b
	}
	if p.recording {
		p.last = out
	}
	return out
}

// Params returns L and R.
func (p *PELA) Params() []*peft.Tensor { return []*peft.Tensor{p.L, p.R} }

// Rank returns r.
func (p *PELA) Rank() int { return p.rank }

// Weight returns L·R (d×k), the layer's compressed weight.
func (p *PELA) Weight() *mat.Dense {
	w := mat.NewDense(p.d, p.k, nil)
	w.Mul(p.L.Value, p.R.Value)
	return w
}

// MergedWeight returns L·R (d×k): the compressed layer ignores w0, whose
// shape it checks. It panics if w0 is not (d×k).
func (p *PELA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != p.d || c != p.k {
		panic(peft.ShapeError{Op: p.module + ".PELA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(p.d, p.k) + ", the layer's W"})
	}
	return p.Weight()
}

// Error returns ‖W − L·R‖_F / ‖W‖_F for the layer's original weight w
// (d×k): at init √(Σ_{i>r} σ_i²/Σ σ_i²).
func (p *PELA) Error(w *mat.Dense) float64 {
	var diff mat.Dense
	diff.Sub(w, p.MergedWeight(w))
	return mat.Norm(&diff, 2) / mat.Norm(w, 2)
}

// Counts returns the numbers of weight entries the compressed layers of m
// hold (Σ r·(d + k) over its PELA adapters) and the original weights held
// (Σ d·k): biases, which both keep, are not counted.
func Counts(m peft.Model) (compressed, original int) {
	for _, p := range Of(m) {
		compressed += p.rank * (p.d + p.k)
		original += p.d * p.k
	}
	return compressed, original
}
