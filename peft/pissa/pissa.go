package peft

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/mat"
)

// PiSSAConfig configures AddPiSSA. PiSSA initializes LoRA from the
// principal singular values and vectors of the weight it adapts, and
// freezes only the residual (Meng et al. 2024, "PiSSA: Principal Singular
// Values and Singular Vectors Adaptation of Large Language Models",
// arXiv:2404.02948). For W (out×in) with thin SVD W = U·S·Vᵀ and LoRA
// scale s (α/r, or α/√r with rsLoRA):
//
//	B = U[:, :r]·(S_r/s)^{1/2}        (out×r)
//	A = (S_r/s)^{1/2}·V[:, :r]ᵀ       (r×in)
//	W_res = W − s·B·A                  (out×in), replaces W and stays frozen
//
// so s·B·A = U_r·S_r·V_rᵀ is the best rank-r approximation of W whatever α
// is (PEFT divides S_r by s), W_res + s·B·A = W, and the singular values of
// W_res are the tail σ_{r+1}, σ_{r+2}, …. The adapter is a plain LoRA:
// training, merging and saving are LoRA's. Because W itself changes,
// disabling the adapter gives the residual model, as in PEFT.
//
// The fast init (PEFT's "pissa_niter_K") takes the top r triplets from a
// randomized SVD with K subspace iterations (accel.TruncatedSVD) instead of
// the exact one.
//
// Trained factors B_t, A_t can be exported as a plain LoRA of rank 2r
// relative to the original W (see PiSSAToLoRA).
type PiSSAConfig struct {
	R       int      // rank r, 1 ≤ r ≤ min(out, in) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the dropout masks and the randomized SVD
	// NIter > 0 selects the fast init: a randomized SVD with NIter subspace
	// iterations. 0 selects the exact thin SVD.
	NIter int
}

// AddPiSSA attaches to every module of m matching cfg.Targets a LoRA adapter
// with PiSSA's init, and replaces each module's W by W_res = W − s·B·A. On
// error (rank out of range, an unknown module, a module that already has an
// adapter, an SVD failure) no weight is changed.
func AddPiSSA(m Model, cfg PiSSAConfig) ([]*LoRA, error) {
	return AddPiSSAContext(context.Background(), m, cfg)
}

// AddPiSSAContext is AddPiSSA with a context: cancelling ctx stops the SVDs
// and returns its error, with no weight changed.
func AddPiSSAContext(ctx context.Context, m Model, cfg PiSSAConfig) ([]*LoRA, error) {
	name := cfg.Name
	if name == "" {
		name = "default"
	}
	if cfg.NIter < 0 {
		return nil, fmt.Errorf("peft: AddPiSSA: NIter = %d out of range: want 0 (exact SVD) or K ≥ 1 subspace iterations", cfg.NIter)
	}
	lcfg := LoRAConfig{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA, Targets: cfg.Targets, Name: name, Seed: cfg.Seed}
	rng := rand.New(rand.NewSource(cfg.Seed))
	res := map[*Linear]*mat.Dense{} // W_res of each module, applied once all succeed
	added, err := AddAdapter(m, name, cfg.Targets, func(l *Linear) (Adapter, error) {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: AddPiSSA on %s: the module already has adapters %s, and PiSSA changes its base weight", l.Name, quoteList(l.AdapterNames()))
		}
		d, k := l.W.Dims()
		a, err := NewLoRA(l.Name, name, d, k, lcfg, rng)
		if err != nil {
			return nil, err
		}
		wres, err := pissaInit(ctx, l.Name, a, l.W.Value, cfg.NIter, rng.Uint64())
		if err != nil {
			return nil, err
		}
		res[l] = wres
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*LoRA, len(added))
	for i, a := range added {
		out[i] = a.(*LoRA)
	}
	for l, w := range res {
		l.W.Value.Copy(w)
	}
	return out, nil
}

// pissaInit sets a's A and B from the SVD of w (out×in) and returns
// W_res = w − s·B·A. niter > 0 selects the randomized SVD.
func pissaInit(ctx context.Context, module string, a *LoRA, w *mat.Dense, niter int, seed uint64) (*mat.Dense, error) {
	d, k := w.Dims()
	r := a.R
	var svd accel.SVD
	var err error
	if niter > 0 {
		svd, err = accel.TruncatedSVD(ctx, w, r, &accel.TruncatedOptions{PowerIters: niter, Seed: seed})
	} else {
		svd, err = accel.ThinSVD(ctx, w)
	}
	if err != nil {
		return nil, fmt.Errorf("peft: AddPiSSA on %s: SVD of W %s: %w", module, ShapeOf(d, k), err)
	}
	s := a.Scaling()
	b, av := a.B.Value, a.A.Value // B (d×r), A (r×k)
	for i := 0; i < r; i++ {
		q := math.Sqrt(svd.S[i] / s) // (σ_i/s)^{1/2}
		for j := 0; j < d; j++ {
			b.Set(j, i, svd.U.At(j, i)*q) // B = U_r·(S_r/s)^{1/2}
		}
		for j := 0; j < k; j++ {
			av.Set(i, j, q*svd.VT.At(i, j)) // A = (S_r/s)^{1/2}·V_rᵀ
		}
	}
	wres := a.Delta() // s·B·A
	wres.Sub(w, wres) // W_res = W − s·B·A
	return wres, nil
}

// PiSSAToLoRA returns a plain LoRA of rank 2r which, applied to the
// original W, gives the same weight as trained PiSSA adapter a on W_res:
//
//	W + s·B'·A' = W_res + s·B_t·A_t,   B' = [B_t, B_0] (out×2r),  A' = [A_t; −A_0] (2r×in)
//
// since W = W_res + s·B_0·A_0. a0 (r×in) and b0 (out×r) are the factors
// PiSSA initialized (copy them before training). The scale s is kept by
// doubling α (α·√2 with rsLoRA), so PEFT can load the result as LoRA.
func PiSSAToLoRA(a *LoRA, a0, b0 *mat.Dense) *LoRA {
	r, k := a.A.Dims()
	d, _ := a.B.Dims()
	ar, ac := a0.Dims()
	br, bc := b0.Dims()
	if ar != r || ac != k || br != d || bc != r {
		panic(ShapeError{Op: "PiSSAToLoRA", Got: fmt.Sprintf("A0 %s, B0 %s", ShapeOf(ar, ac), ShapeOf(br, bc)),
			Want: fmt.Sprintf("A0 %s, B0 %s, the trained A's and B's shapes", ShapeOf(r, k), ShapeOf(d, r))})
	}
	an := mat.NewDense(2*r, k, nil) // A' = [A_t; −A_0]
	an.Slice(0, r, 0, k).(*mat.Dense).Copy(a.A.Value)
	an.Slice(r, 2*r, 0, k).(*mat.Dense).Scale(-1, a0)
	bn := mat.NewDense(d, 2*r, nil) // B' = [B_t, B_0]
	bn.Slice(0, d, 0, r).(*mat.Dense).Copy(a.B.Value)
	bn.Slice(0, d, r, 2*r).(*mat.Dense).Copy(b0)
	alpha := 2 * a.Alpha
	if a.RSLoRA {
		alpha = math.Sqrt2 * a.Alpha
	}
	return &LoRA{
		A:       NewParam(a.A.Name, an),
		B:       NewParam(a.B.Name, bn),
		R:       2 * r,
		Alpha:   alpha,
		RSLoRA:  a.RSLoRA,
		Dropout: a.Dropout,
		rng:     rand.New(rand.NewSource(1)),
	}
}
