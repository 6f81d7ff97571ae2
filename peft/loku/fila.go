package loku

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// FisherEps is ε_F in Importance's F_f/(ε_F + F_r), the reference code's.
const FisherEps = 1e-5

// DefaultEps is FILA's default ε in B = diag(1/(w + ε))·…, the reference
// code's.
const DefaultEps = 1e-5

// Fisher returns the diagonal empirical Fisher information of the weight
// W (d×k) of every module of m matching targets (see peft.Targets), by
// module name: the squared gradients of m.Loss on each batch, weighted by
// the batch's items (peft.Batch.Items) and divided by their total,
//
//	F = Σ_b n_b·(∂L_b/∂W)² / Σ_b n_b        (d×k), ⊙ squares
//
// as measure_importance.py accumulates them. It runs m in evaluation mode
// and leaves m as it was: which parameters are trainable, their gradients
// and the training mode are restored. Cancelling ctx stops it between
// batches with ctx's error; an unknown target or no batch is an error.
func Fisher(ctx context.Context, m peft.Model, batches []peft.Batch, targets []string) (map[string]*mat.Dense, error) {
	return fisher(ctx, m, batches, targets, "loku.Fisher")
}

// fisher is Fisher, with what naming the call in errors.
func fisher(ctx context.Context, m peft.Model, batches []peft.Batch, targets []string, what string) (map[string]*mat.Dense, error) {
	mods, err := peft.Targets(m, targets...)
	if err != nil {
		return nil, err
	}
	if len(batches) == 0 {
		return nil, fmt.Errorf("peft: %s: no batches", what)
	}
	// Save what the passes below disturb.
	params := m.Params()
	grads := make([]*mat.Dense, len(params))
	for i, p := range params {
		grads[i] = p.Grad
	}
	wasTrainable := make([]bool, len(mods))
	for i, l := range mods {
		wasTrainable[i] = l.W.Trainable
		l.W.Unfreeze()
	}
	m.SetTraining(false)
	defer func() {
		for i, p := range params {
			p.Grad = grads[i]
		}
		for i, l := range mods {
			if !wasTrainable[i] {
				l.W.Freeze()
			}
		}
	}()

	fs := make(map[string]*mat.Dense, len(mods))
	for _, l := range mods {
		d, k := l.W.Dims()
		fs[l.Name] = mat.NewDense(d, k, nil)
	}
	total := 0
	for bi, b := range batches {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("peft: %s: stopped before batch %d: %w", what, bi, err)
		}
		for _, p := range params {
			p.Grad = nil
		}
		loss := m.Loss(b)
		if v := loss.Scalar(); math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("peft: %s: batch %d: the loss is %v", what, bi, v)
		}
		loss.Backward()
		nb := float64(b.Items())
		for _, l := range mods {
			if l.W.Grad == nil {
				continue // the loss does not depend on W
			}
			f := fs[l.Name]
			f.Apply(func(i, j int, v float64) float64 {
				g := l.W.Grad.At(i, j)
				return v + nb*g*g
			}, f)
		}
		total += b.Items()
	}
	for _, f := range fs {
		f.Scale(1/float64(total), f)
	}
	return fs, nil
}

// Importance returns FILA's relative Fisher of the weight of every module
// of m matching targets, by module name:
//
//	F = F_f / (ε_F + F_r)      (d×k), elementwise, ε_F = FisherEps
//
// F_f the Fisher (see Fisher) on the forget batches, F_r on the retain
// batches: large where a weight matters to the forget set and not to the
// retain set. Errors are Fisher's.
func Importance(ctx context.Context, m peft.Model, forget, retain []peft.Batch, targets []string) (map[string]*mat.Dense, error) {
	ff, err := fisher(ctx, m, forget, targets, "loku.Importance, forget set")
	if err != nil {
		return nil, err
	}
	fr, err := fisher(ctx, m, retain, targets, "loku.Importance, retain set")
	if err != nil {
		return nil, err
	}
	for name, f := range ff {
		r := fr[name]
		f.Apply(func(i, j int, v float64) float64 { return v / (FisherEps + r.At(i, j)) }, f)
	}
	return ff, nil
}

// Config configures Add.
type Config struct {
	R       int      // rank r, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (scaling s = 1)
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	RSLoRA  bool     // scale by α/√r
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the dropout masks
	// Importance is the relative Fisher F (d×k) of each target's weight,
	// by module name (see Importance). Every target needs one.
	Importance map[string]*mat.Dense
	// Eps is ε in B = diag(1/(w + ε))·U_r·(S_r/s)^{1/2}, > 0;
	// DefaultEps if 0.
	Eps float64
}

// Add attaches to every module of m matching cfg.Targets a LoRA adapter
// with FILA's init (Fisher-weighted low-rank approximation) and replaces
// each module's weight W (d×k) by the frozen residual. With F the module's
// relative Fisher (cfg.Importance), s the LoRA scale and ε = cfg.Eps:
//
//	w_i = √(Σ_j F_ij)                        (d) row weights
//	diag(w)·W ≈ U_r·S_r·V_rᵀ                  top-r SVD, U_r (d×r), V_r (k×r)
//	A = (S_r/s)^{1/2}·V_rᵀ                    (r×k)
//	B = diag(1/(w + ε))·U_r·(S_r/s)^{1/2}     (d×r)
//	W_res = W − s·B·A                         (d×k), replaces W, frozen
//
// so W_res + s·B·A = W (the output at init is the model's, to rounding),
// and with ε → 0, s·B·A = diag(w)⁻¹·SVD_r(diag(w)·W) is the best rank-r
// approximation of W in the row-weighted norm ‖diag(w)·(W − L)‖_F (the
// weighted Eckart–Young theorem): the adapter starts on the part of W the
// forget set depends on most, relative to the retain set. The adapters
// are plain *lora.LoRA (training, merging, saving are LoRA's); disabling
// them gives the residual model, as PiSSA's. On error (rank out of range,
// a target with no importance or one of the wrong shape, an unknown
// module, a module that already has adapters, an SVD failure) no weight
// is changed.
func Add(m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the SVDs and
// returns its error, with no weight changed.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*lora.LoRA, error) {
	name := peft.AdapterName(cfg.Name)
	if cfg.Eps < 0 || math.IsNaN(cfg.Eps) || math.IsInf(cfg.Eps, 0) {
		return nil, fmt.Errorf("peft: LoKU: Eps = %v; want a finite ε > 0 (0: %g)", cfg.Eps, DefaultEps)
	}
	eps := cfg.Eps
	if eps == 0 {
		eps = DefaultEps
	}
	lcfg := lora.Config{R: cfg.R, Alpha: cfg.Alpha, Dropout: cfg.Dropout, RSLoRA: cfg.RSLoRA, Targets: cfg.Targets, Name: name, Seed: cfg.Seed}
	if lcfg.Alpha == 0 {
		lcfg.Alpha = float64(cfg.R) // as lora.New: s = 1
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	res := map[*peft.Linear]*mat.Dense{} // W_res of each module, applied once all succeed
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: LoKU on %s: the module already has adapters %v, and FILA changes its base weight", l.Name, l.AdapterNames())
		}
		d, k := l.W.Dims()
		if err := lcfg.Check("LoKU", l.Name, d, k); err != nil {
			return nil, err
		}
		f, ok := cfg.Importance[l.Name]
		if !ok || f == nil {
			return nil, fmt.Errorf("peft: LoKU on %s: Config.Importance has no entry for the module (it has %d); compute it with loku.Importance", l.Name, len(cfg.Importance))
		}
		if r, c := f.Dims(); r != d || c != k {
			return nil, fmt.Errorf("peft: LoKU on %s: Config.Importance is %s, want W's shape %s", l.Name, peft.ShapeOf(r, c), peft.ShapeOf(d, k))
		}
		w, err := rowWeights(l.Name, f)
		if err != nil {
			return nil, err
		}
		// A (r×k) and B (d×r) are set by filaFactors.
		a, err := lora.FromFactors(l.Name, name, mat.NewDense(cfg.R, k, nil), mat.NewDense(d, cfg.R, nil), lcfg, rand.New(rand.NewSource(rng.Int63())))
		if err != nil {
			return nil, err
		}
		if err := filaFactors(ctx, a, l.W.Value, w, eps); err != nil {
			return nil, fmt.Errorf("peft: LoKU on %s: SVD of diag(w)·W %s: %w", l.Name, peft.ShapeOf(d, k), err)
		}
		wres := a.Delta()         // s·B·A
		wres.Sub(l.W.Value, wres) // W_res = W − s·B·A
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

// rowWeights returns w_i = √(Σ_j F_ij) (d), or an error naming module if
// F has a negative or non-finite entry.
func rowWeights(module string, f *mat.Dense) ([]float64, error) {
	d, k := f.Dims()
	w := make([]float64, d)
	for i := 0; i < d; i++ {
		var s float64
		for j := 0; j < k; j++ {
			v := f.At(i, j)
			if !(v >= 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("peft: LoKU on %s: Config.Importance[%d, %d] = %v; want a finite F ≥ 0", module, i, j, v)
			}
			s += v
		}
		w[i] = math.Sqrt(s)
	}
	return w, nil
}

// filaFactors sets a's A and B from the top-r SVD of diag(w)·W (see Add).
func filaFactors(ctx context.Context, a *lora.LoRA, w0 *mat.Dense, w []float64, eps float64) error {
	d, k := w0.Dims()
	r := a.R
	wx := mat.DenseCopyOf(w0) // diag(w)·W (d×k)
	for i := 0; i < d; i++ {
		row := wx.RawRowView(i)
		for j := range row {
			row[j] *= w[i]
		}
	}
	svd, err := accel.ThinSVD(ctx, wx)
	if err != nil {
		return err
	}
	s := a.Scaling()
	b, av := a.B.Value, a.A.Value // B (d×r), A (r×k)
	for t := 0; t < r; t++ {
		q := math.Sqrt(svd.S[t] / s) // (σ_t/s)^{1/2}
		for i := 0; i < d; i++ {
			b.Set(i, t, svd.U.At(i, t)*q/(w[i]+eps)) // B = diag(1/(w+ε))·U_r·(S_r/s)^{1/2}
		}
		for j := 0; j < k; j++ {
			av.Set(t, j, q*svd.VT.At(t, j)) // A = (S_r/s)^{1/2}·V_rᵀ
		}
	}
	return nil
}
