// Package soka is SoKA, SVD on Kronecker Adaptation: an update made of a
// few Kronecker products, initialized from the Kronecker-product SVD of the
// weight it adapts, with the rank chosen from that spectrum.
package soka

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// SoKA adapts a frozen weight of a Linear layer with a sum of r Kronecker
// products (Chong and Qu, 2025, "Singular Value Decomposition on Kronecker
// Adaptation for Large Language Model", SoKA, arXiv:2506.15251):
//
//	ΔW = Σ_{k<r} σ_k·U_k ⊗ V_k      (d×k_in), d = m1·m2, k_in = n1·n2
//	U_k: m1×n1,  V_k: m2×n2,  σ: 1×r, all trained
//	h = x·(W_res + ΔW)ᵀ + b         x (n×k_in), h (n×d)
//
// Init (the KPSVD, see Factorize): W = Σ_k σ_k U_k ⊗ V_k, from the SVD of
// the rearranged W (Van Loan–Pitsianis). The adapter takes the first r
// terms, the principal Kronecker part of W, and the layer's weight is
// replaced by the frozen residual W_res = W − Σ_{k<r} σ_k U_k ⊗ V_k, whose
// Kronecker spectrum is the tail σ_r, σ_{r+1}, …. So the adapted model is
// the base model at init (to rounding), as PiSSA's, and W_res + ΔW = W.
//
// Rank: R fixed, or, with Energy τ > 0, chosen per layer from the Kronecker
// spectrum (SelectRank): r_l = min(R, r_τ, r_elbow), where r_τ is the
// smallest rank keeping a share τ of Σσ² (EnergyRank) and r_elbow the
// spectrum's elbow (ElbowRank, the Kneedle point of the cumulative energy).
//
// Shapes: U_k (M1×N1) as set, or by default ChooseFactors' shape, the one
// with the fewest numbers per term (m1·n1 ≈ m2·n2 ≈ √(d·k_in)): 8×8 and
// 8×8 for a 64×64 weight. A layer trains r·(m1·n1 + m2·n2 + 1) numbers: 129
// per term at 64×64, as a rank-1 LoRA trains 128.
//
// The forward pass never forms ΔW. With X_i the i-th input row folded to
// (n1×n2), (U⊗V)·vec(X_i) = vec(U·X_i·Vᵀ), so all rows and terms go through
// two matrix products and a few reshapes and transposes:
//
//	T = X′·[V_1; …; V_r]ᵀ   X′ = x as (n·n1 × n2), T (n·n1 × r·m2)
//	Z = T regrouped as (n1·r × m2·n)
//	Y = Ũ·Z                 Ũ (m1 × n1·r), Ũ[i1, j1·r + k] = σ_k·U_k[i1, j1]
//	out = Y regrouped as (n × m1·m2)
//
// at r·n·(k_in·m2 + d·n1) multiply-adds, against n·d·k_in for a dense ΔW.
// All are peft ops, so the gradients of U, V and σ need no code here.
//
// What the paper leaves open, and gopeft's choices (methods-a.md §3):
//   - The paper's KPSVD "extracts principal components of the full weight
//     update"; whether the update is W itself (PiSSA-style, residual
//     frozen) could not be confirmed. gopeft takes W's principal Kronecker
//     part with W_res frozen, the reading that starts from the base model
//     and that its comparison with PiSSA suggests.
//   - Which factors train: gopeft trains U_k, V_k and σ_k (the σ are r
//     extra numbers that keep each term's scale apart from its shape).
//   - τ and the elbow rule are not given; gopeft's elbow is the Kneedle
//     point of the cumulative energy, and the rules combine by taking the
//     smaller rank, so each prunes what it finds negligible. There is no
//     default τ: set Energy to select ranks.
//   - No α: σ carries the scale.
//
// HuggingFace PEFT has no SoKA (its LoKr is one randomly initialized
// Kronecker product); gopeft saves it as its own type GOPEFT_SOKA (see
// file.go).
type SoKA struct {
	U *peft.Tensor // (r·m1 × n1): rows k·m1 … (k+1)·m1 − 1 are U_k
	V *peft.Tensor // (r·m2 × n2): rows k·m2 … (k+1)·m2 − 1 are V_k
	S *peft.Tensor // (1×r): σ_k
	R int          // r, the number of Kronecker terms

	M1, N1, M2, N2 int // U_k is (M1×N1), V_k (M2×N2)

	// Spectrum holds the Kronecker singular values of the layer's weight
	// at init, all of them, descending: the first R went into the adapter
	// and the rest stayed in W_res. It is nil for a loaded adapter.
	Spectrum []float64
}

var _ peft.Adapter = (*SoKA)(nil)

// Config configures Add.
type Config struct {
	// R is the rank r, the number of Kronecker terms, 1 ≤ r ≤ the number
	// of terms of every target (min(m1·n1, m2·n2)); with Energy > 0 it is
	// the most a layer may get.
	R int
	// Energy is τ in (0, 1]: choose each layer's rank by SelectRank; 0
	// keeps R on every layer.
	Energy float64
	// NoElbow leaves the elbow rule out of the selection.
	NoElbow bool
	// M1 and N1 set the shape of every U_k (M1×N1), so that V_k is
	// (d/M1 × k/N1); 0 and 0 take ChooseFactors' shape for each layer.
	M1, N1  int
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
}

// check returns an error naming the field and value if the fields that do
// not depend on a layer are out of range.
func (cfg Config) check() error {
	switch {
	case cfg.Energy < 0 || cfg.Energy > 1 || math.IsNaN(cfg.Energy):
		return fmt.Errorf("peft: SoKA: Energy = %v; want τ in (0, 1], or 0 for the fixed rank R", cfg.Energy)
	case (cfg.M1 == 0) != (cfg.N1 == 0):
		return fmt.Errorf("peft: SoKA: M1 = %d, N1 = %d; set both (U_k is M1×N1) or neither", cfg.M1, cfg.N1)
	case cfg.M1 < 0 || cfg.N1 < 0:
		return fmt.Errorf("peft: SoKA: M1 = %d, N1 = %d; want positive factors", cfg.M1, cfg.N1)
	}
	return nil
}

// Factors returns the shape of U_k (m1×n1) cfg gives a weight (d×k) named
// module, or an error naming the module, the field and both dimensions if
// it does not fit.
func (cfg Config) Factors(module string, d, k int) (m1, n1 int, err error) {
	if cfg.M1 == 0 {
		m1, n1, err = ChooseFactors(d, k)
		if err != nil {
			return 0, 0, fmt.Errorf("peft: SoKA on %s: %w; set M1 and N1, or leave the module out", module, err)
		}
		return m1, n1, nil
	}
	if d%cfg.M1 != 0 {
		return 0, 0, fmt.Errorf("peft: SoKA on %s: M1 = %d does not divide d = %d of W %s", module, cfg.M1, d, peft.ShapeOf(d, k))
	}
	if k%cfg.N1 != 0 {
		return 0, 0, fmt.Errorf("peft: SoKA on %s: N1 = %d does not divide k = %d of W %s", module, cfg.N1, k, peft.ShapeOf(d, k))
	}
	if Terms(d, k, cfg.M1, cfg.N1) < 2 {
		return 0, 0, fmt.Errorf("peft: SoKA on %s: M1 = %d, N1 = %d give W %s one Kronecker term (W itself)", module, cfg.M1, cfg.N1, peft.ShapeOf(d, k))
	}
	return cfg.M1, cfg.N1, nil
}

// checkRank returns an error naming module and R if R does not fit p terms.
func (cfg Config) checkRank(module string, d, k, m1, n1 int) error {
	if p := Terms(d, k, m1, n1); cfg.R < 1 || cfg.R > p {
		return fmt.Errorf("peft: SoKA on %s: R = %d out of range for W %s with U_k (%d×%d), V_k (%d×%d): want 1 ≤ R ≤ %d, the number of Kronecker terms",
			module, cfg.R, peft.ShapeOf(d, k), m1, n1, d/m1, k/n1, p)
	}
	return nil
}

// New returns a SoKA adapter of the first r terms of f (the KPSVD of a
// layer's weight) for module, with its parameters named
// "module.soka_U.name.weight", …, and f.S as its Spectrum.
func New(module, name string, f *KPSVD, r int) *SoKA {
	if r < 1 || r > len(f.S) {
		panic(peft.ArgError{Op: "soka.New", Msg: fmt.Sprintf("r = %d outside [1, %d], the KPSVD's terms", r, len(f.S))})
	}
	u := mat.NewDense(r*f.M1, f.N1, nil)
	v := mat.NewDense(r*f.M2, f.N2, nil)
	s := mat.NewDense(1, r, nil)
	for t := 0; t < r; t++ {
		u.Slice(t*f.M1, (t+1)*f.M1, 0, f.N1).(*mat.Dense).Copy(f.U[t])
		v.Slice(t*f.M2, (t+1)*f.M2, 0, f.N2).(*mat.Dense).Copy(f.V[t])
		s.Set(0, t, f.S[t])
	}
	a := fromFactors(module, name, u, v, s, f.M1, f.M2)
	a.Spectrum = append([]float64(nil), f.S...)
	return a
}

// fromFactors returns the adapter with stacked factors u (r·m1 × n1), v
// (r·m2 × n2) and σ s (1×r), not copied.
func fromFactors(module, name string, u, v, s *mat.Dense, m1, m2 int) *SoKA {
	_, r := s.Dims()
	_, n1 := u.Dims()
	_, n2 := v.Dims()
	return &SoKA{
		U: peft.NewParam(module+".soka_U."+name+".weight", u),
		V: peft.NewParam(module+".soka_V."+name+".weight", v),
		S: peft.NewParam(module+".soka_S."+name+".weight", s),
		R: r, M1: m1, N1: n1, M2: m2, N2: n2,
	}
}

// Add attaches to every module of m matching cfg.Targets a SoKA adapter
// initialized from the KPSVD of its weight, and replaces each weight by the
// residual W_res (see SoKA). On error (a bad config, factors or rank that
// do not fit a module, an unknown module, a module that already has
// adapters, an SVD failure) no weight is changed.
func Add(m peft.Model, cfg Config) ([]*SoKA, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the SVDs and
// returns its error, with no weight changed.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*SoKA, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	name := peft.AdapterName(cfg.Name)
	// Check every target before the first SVD.
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	for _, l := range mods {
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: SoKA on %s: the module already has adapters %s, and SoKA changes its base weight", l.Name, quoteList(l.AdapterNames()))
		}
		d, k := l.W.Dims()
		m1, n1, err := cfg.Factors(l.Name, d, k)
		if err != nil {
			return nil, err
		}
		if err := cfg.checkRank(l.Name, d, k, m1, n1); err != nil {
			return nil, err
		}
	}
	res := map[*peft.Linear]*mat.Dense{} // W_res of each module, applied once all succeed
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		m1, n1, _ := cfg.Factors(l.Name, d, k)
		f, err := Factorize(ctx, l.W.Value, m1, n1)
		if err != nil {
			return nil, fmt.Errorf("peft: SoKA on %s: KPSVD of W %s: %w", l.Name, peft.ShapeOf(d, k), err)
		}
		r := cfg.R
		if cfg.Energy > 0 {
			r = SelectRank(f.S, cfg.Energy, cfg.R, !cfg.NoElbow)
		}
		a := New(l.Name, name, f, r)
		wres := a.Delta()
		wres.Sub(l.W.Value, wres)
		res[l] = wres
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	for l, w := range res {
		l.W.Value.Copy(w)
	}
	return As(added), nil
}

// As returns the SoKA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*SoKA { return adapters.As[*SoKA](ads) }

// Forward returns base + x·ΔWᵀ for x (n×k), base (n×d), without forming ΔW
// (see SoKA).
func (a *SoKA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	n, k := x.Dims()
	if k != a.N1*a.N2 {
		panic(peft.ShapeError{Op: l.Name + ".SoKA.Forward", Got: "x " + peft.ShapeOf(n, k), Want: fmt.Sprintf("(n×%d), n1·n2 = %d·%d", a.N1*a.N2, a.N1, a.N2)})
	}
	r, m1, n1, m2 := a.R, a.M1, a.N1, a.M2
	// Ũ (m1 × n1·r), Ũ[i1, j1·r + t] = σ_t·U_t[i1, j1].
	us := peft.Reshape(a.U, r, m1*n1)                // (r × m1·n1): row t is vec(U_t)
	us = peft.MulCol(us, peft.Transpose(a.S))        // row t scaled by σ_t
	ut := peft.Reshape(peft.Transpose(us), m1, n1*r) // (m1 × n1·r)
	xs := peft.Reshape(x, n*n1, a.N2)                // (n·n1 × n2): row (i, j1) is row j1 of X_i
	t := peft.MatMulT(xs, a.V)                       // (n·n1 × r·m2): X_i·V_tᵀ
	t = peft.Transpose(peft.Reshape(t, n, n1*r*m2))  // (n1·r·m2 × n)
	z := peft.Reshape(t, n1*r, m2*n)                 // (n1·r × m2·n)
	y := peft.MatMul(ut, z)                          // (m1 × m2·n): Σ_t σ_t·U_t·X_i·V_tᵀ
	out := peft.Transpose(peft.Reshape(y, m1*m2, n)) // (n × d)
	return peft.Add(base, out)
}

// Params returns U, V and σ.
func (a *SoKA) Params() []*peft.Tensor { return []*peft.Tensor{a.U, a.V, a.S} }

// Rank returns r, the number of Kronecker terms.
func (a *SoKA) Rank() int { return a.R }

// Term returns σ_t, U_t (M1×N1) and V_t (M2×N2), copied.
func (a *SoKA) Term(t int) (sigma float64, u, v *mat.Dense) {
	if t < 0 || t >= a.R {
		panic(peft.ArgError{Op: "SoKA.Term", Msg: fmt.Sprintf("term %d outside [0, %d)", t, a.R)})
	}
	u = mat.DenseCopyOf(a.U.Value.Slice(t*a.M1, (t+1)*a.M1, 0, a.N1))
	v = mat.DenseCopyOf(a.V.Value.Slice(t*a.M2, (t+1)*a.M2, 0, a.N2))
	return a.S.Value.At(0, t), u, v
}

// Delta returns ΔW = Σ_t σ_t·U_t ⊗ V_t (d×k).
func (a *SoKA) Delta() *mat.Dense {
	dw := mat.NewDense(a.M1*a.M2, a.N1*a.N2, nil)
	var kr mat.Dense
	for t := 0; t < a.R; t++ {
		s, u, v := a.Term(t)
		kr.Kronecker(u, v)
		kr.Scale(s, &kr)
		dw.Add(dw, &kr)
	}
	return dw
}

// MergedWeight returns w0 + ΔW (d×k). It panics if w0 is not (d×k).
func (a *SoKA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d, k := a.M1*a.M2, a.N1*a.N2
	if r, c := w0.Dims(); r != d || c != k {
		panic(peft.ShapeError{Op: "SoKA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d, k) + ", the adapter's W"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}

// NumParams returns r·(m1·n1 + m2·n2 + 1), the numbers the adapter trains.
func (a *SoKA) NumParams() int { return a.R * (a.M1*a.N1 + a.M2*a.N2 + 1) }

// quoteList returns names quoted and comma-separated.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
