// Package pissa is PiSSA: LoRA initialized from the principal singular
// values and vectors of the weight it adapts, with only the residual frozen.
// Its adapters are plain *lora.LoRA, trained, merged and saved as LoRA.
package pissa

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

func init() {
	peft.Register(peft.Method{
		Name:    "PiSSA",
		Kind:    peft.AdapterMethod,
		Paper:   "Meng et al. 2024, PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large Language Models, arXiv:2404.02948",
		Package: "github.com/gopeft/gopeft/peft/pissa",
		Summary: "LoRA with s·B·A = U_r·S_r·V_rᵀ, W's top-r SVD, at init, and W replaced by the frozen residual W − s·B·A",
		// nil: the adapters are *lora.LoRA, which LoRA's format saves and
		// loads (relative to W_res: save the base model too, or export
		// with ToLoRA).
		Format: nil,
	})
}

// Config configures Add. PiSSA initializes LoRA from the principal singular
// values and vectors of the weight it adapts, and freezes only the residual
// (Meng et al. 2024, "PiSSA: Principal Singular Values and Singular Vectors
// Adaptation of Large Language Models", arXiv:2404.02948). For W (out×in)
// with thin SVD W = U·S·Vᵀ and LoRA scale s (α/r, or α/√r with rsLoRA):
//
//	B = U[:, :r]·(S_r/s)^{1/2}        (out×r)
//	A = (S_r/s)^{1/2}·V[:, :r]ᵀ       (r×in)
//	W_res = W − s·B·A                  (out×in), replaces W and stays frozen
//
// so s·B·A = U_r·S_r·V_rᵀ is the best rank-r approximation of W whatever α
// is (PEFT divides S_r by s), W_res + s·B·A = W, and the singular values of
// W_res are the tail σ_{r+1}, σ_{r+2}, …. The adapter is a plain
// *lora.LoRA: training, merging and saving are LoRA's. Because W itself
// changes, disabling the adapter gives the residual model, as in PEFT.
//
// The fast init (PEFT's "pissa_niter_K") takes the top r triplets from a
// randomized SVD with K subspace iterations (accel.TruncatedSVD) instead of
// the exact one.
//
// Trained factors B_t, A_t can be exported as a plain LoRA of rank 2r
// relative to the original W (see ToLoRA).
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(out, in) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the dropout masks and the randomized SVD
	// NIter > 0 selects the fast init: a randomized SVD with NIter subspace
	// iterations. 0 selects the exact thin SVD.
	NIter int
}

// Add attaches to every module of m matching cfg.Targets a LoRA adapter with
// PiSSA's init, and replaces each module's W by W_res = W − s·B·A. On error
// (rank out of range, an unknown module, a module that already has an
// adapter, an SVD failure) no weight is changed.
func Add(m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the SVDs and
// returns its error, with no weight changed.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	name := peft.AdapterName(cfg.Name)
	if cfg.NIter < 0 {
		return nil, fmt.Errorf("peft: PiSSA: NIter = %d out of range: want 0 (exact SVD) or K ≥ 1 subspace iterations", cfg.NIter)
	}
	lcfg := lora.Config{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA, Targets: cfg.Targets, Name: name, Seed: cfg.Seed}
	if lcfg.Alpha == 0 {
		lcfg.Alpha = float64(cfg.R) // as lora.New: s = 1
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	res := map[*peft.Linear]*mat.Dense{} // W_res of each module, applied once all succeed
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: PiSSA on %s: the module already has adapters %s, and PiSSA changes its base weight", l.Name, quoteList(l.AdapterNames()))
		}
		d, k := l.W.Dims()
		if err := lcfg.Check("PiSSA", l.Name, d, k); err != nil {
			return nil, err
		}
		// A (r×k) and B (d×r) are set by initFactors.
		a, err := lora.FromFactors(l.Name, name, mat.NewDense(cfg.R, k, nil), mat.NewDense(d, cfg.R, nil), lcfg, rand.New(rand.NewSource(rng.Int63())))
		if err != nil {
			return nil, err
		}
		wres, err := initFactors(ctx, l.Name, a, l.W.Value, cfg.NIter, rng.Uint64())
		if err != nil {
			return nil, err
		}
		res[l] = wres
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	for l, w := range res {
		l.W.Value.Copy(w)
	}
	return lora.As(added), nil
}

// initFactors sets a's A and B from the SVD of w (d×k) and returns
// W_res = w − s·B·A. niter > 0 selects the randomized SVD.
func initFactors(ctx context.Context, module string, a *lora.LoRA, w *mat.Dense, niter int, seed uint64) (*mat.Dense, error) {
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
		return nil, fmt.Errorf("peft: PiSSA on %s: SVD of W %s: %w", module, peft.ShapeOf(d, k), err)
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

// ToLoRA returns a plain LoRA of rank 2r which, applied to the original W,
// gives the same weight as trained PiSSA adapter a on W_res:
//
//	W + s·B'·A' = W_res + s·B_t·A_t,   B' = [B_t, B_0] (out×2r),  A' = [A_t; −A_0] (2r×in)
//
// since W = W_res + s·B_0·A_0. a0 (r×in) and b0 (out×r) are the factors
// PiSSA initialized (copy them before training). The scale s is kept by
// doubling α (α·√2 with rsLoRA), so PEFT can load the result as LoRA. If
// 2r > min(out, in), PEFT loads it but gopeft's LoadAdapter refuses its
// rank, as it does for any LoRA.
func ToLoRA(a *lora.LoRA, a0, b0 *mat.Dense) *lora.LoRA {
	r, k := a.A.Dims()
	d, _ := a.B.Dims()
	ar, ac := a0.Dims()
	br, bc := b0.Dims()
	if ar != r || ac != k || br != d || bc != r {
		panic(peft.ShapeError{Op: "pissa.ToLoRA", Got: fmt.Sprintf("A0 %s, B0 %s", peft.ShapeOf(ar, ac), peft.ShapeOf(br, bc)),
			Want: fmt.Sprintf("A0 %s, B0 %s, the trained A's and B's shapes", peft.ShapeOf(r, k), peft.ShapeOf(d, r))})
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
	// lora.FromFactors refuses a rank above min(d, k), which 2r may be:
	// build from rank-r factors, which it accepts as it accepted a's, then
	// widen to A' and B' (keeping a's parameter names).
	exp, err := lora.FromFactors(a.A.Name, "", mat.NewDense(r, k, nil), mat.NewDense(d, r, nil),
		lora.Config{Alpha: alpha, RSLoRA: a.RSLoRA, Dropout: a.Dropout}, rand.New(rand.NewSource(1)))
	if err != nil { // a's α or dropout was set out of range
		panic(peft.ArgError{Op: "pissa.ToLoRA", Msg: strings.TrimPrefix(err.Error(), "peft: ")})
	}
	exp.A, exp.B, exp.R = peft.NewParam(a.A.Name, an), peft.NewParam(a.B.Name, bn), 2*r
	return exp
}

// quoteList returns names quoted and comma-separated, as peft's errors
// list modules.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
