// Package loldu is LoLDU: the LU factorization of a weight, with only the
// diagonal of its first r steps trained.
package loldu

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// LoLDU adapts a weight W (d×k) of a Linear layer through the first r
// steps of its LU factorization with partial pivoting (Shi et al., 2024,
// "LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition for
// Parameter-Efficient Fine-Tuning", arXiv:2410.13618). With W = P·L·diag(D)·U
// (see LDU and Factorize):
//
//	L_r = L[:, :r] (d×r), U_r = U[:r, :] (r×k), both frozen; P (d×d) frozen
//	z (1×r) trained, init z = D[:r], the first r pivots
//	W_res = W − s·P·L_r·diag(D[:r])·U_r   (d×k), replaces W, frozen
//	W' = W_res + s·P·L_r·diag(z)·U_r      so W' = W at init
//	h = x·W_resᵀ + b + s·((x·U_rᵀ) ⊙ z)·(P·L_r)ᵀ     x (n×k), h (n×d)
//	s = α/r
//
// A layer trains r numbers (r + 1 if TrainScale also trains s). The r
// directions are the first r pivot steps of the factorization, not the
// largest ones: partial pivoting orders rows, not the importance of the
// rank-one terms. At s = 1, Pᵀ·W_res is the Schur complement left after r
// elimination steps, zero in its first r rows and columns.
//
// Defaults and departures from the reference code (SKDDJ/LoLDU,
// minloldu/loldu.py):
//   - α defaults to r (s = 1), as gopeft's LoRA does; the reference's
//     from_linear defaults to lora_alpha = 1, so s = 1/r there.
//   - The reference registers s as an nn.Parameter but its
//     get_loldu_params collects only vector_z, so s is not trained; gopeft
//     follows that by default and trains s only with TrainScale.
//   - A zero pivot among the first r is an error (*PivotError) where the
//     reference divides by it and gets inf/NaN.
//   - gonum's mat.LU factorizes only square matrices, so Factorize is
//     gopeft's own, for any d×k, with the same pivoting rule and the same
//     permutation convention (tests check it against mat.LU).
//   - Only the reference's default "lu" init of z is offered; its
//     alternatives (uniform, normal, constant, ones, zeros) would not give
//     W' = W at init.
//   - No dropout (the reference's is unused in its forward).
//
// Disabling the adapter gives the residual model x·W_resᵀ + b, as with
// PiSSA: W itself is changed by Add.
type LoLDU struct {
	L     *mat.Dense   // (d×r) L_r, unit lower-trapezoidal, frozen
	U     *mat.Dense   // (r×k) U_r, unit upper-trapezoidal, frozen
	Perm  []int        // (d) P: row i of P·M is row Perm[i] of M (see LDU)
	Z     *peft.Tensor // (1×r) z, trained
	S     *peft.Tensor // (1×1) s, trained only if TrainScale
	R     int          // rank r
	Alpha float64      // α, with s = α/r at init

	pl, u *peft.Tensor // constants P·L_r (d×r) and U_r (r×k) for Forward
}

var _ peft.Adapter = (*LoLDU)(nil)

// Config configures Add.
type Config struct {
	R          int      // rank r: the LU steps kept, 1 ≤ r ≤ min(d, k) of every target
	Alpha      float64  // α; 0 means α = r (s = 1)
	TrainScale bool     // also train s (r + 1 numbers per layer)
	Targets    []string // target modules, by name or pattern (see peft.Targets)
	Name       string   // adapter name, "default" if empty
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)] or α negative or not
// finite.
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: LoLDU on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: LoLDU on %s: Alpha = %v; want a finite α ≥ 0 (0: α = r)", module, cfg.Alpha)
	}
	return nil
}

func (cfg Config) alpha() float64 {
	if cfg.Alpha == 0 {
		return float64(cfg.R)
	}
	return cfg.Alpha
}

// New factorizes w (d×k), the weight of module, and returns its LoLDU
// adapter (parameters named "module.loldu_z.name", "module.loldu_s.name")
// and W_res, which the caller puts in place of w. It is an error if cfg
// does not fit w, or if one of the first r pivots is zero (a *PivotError,
// wrapped).
func New(module, name string, w *mat.Dense, cfg Config) (*LoLDU, *mat.Dense, error) {
	d, k := w.Dims()
	if err := cfg.Check(module, d, k); err != nil {
		return nil, nil, err
	}
	f, err := Factorize(w, cfg.R)
	if err != nil {
		return nil, nil, fmt.Errorf("peft: LoLDU on %s with R = %d: %w", module, cfg.R, err)
	}
	z := mat.NewDense(1, cfg.R, append([]float64(nil), f.D...))
	cfg.Alpha = cfg.alpha()
	a, err := FromFactors(module, name, f.L, f.U, f.Perm, z, cfg.Alpha/float64(cfg.R), cfg)
	if err != nil {
		return nil, nil, err
	}
	wres := a.Delta() // s·P·L_r·diag(z)·U_r
	wres.Sub(w, wres)
	return a, wres, nil
}

// FromFactors returns a LoLDU adapter with the given frozen factors L (d×r)
// and U (r×k), permutation perm (d), z (1×r) and s (not copied): what
// loading a saved adapter uses. cfg.R is taken from L, cfg.Alpha is
// recorded as α, and cfg.TrainScale says whether s is trained. It is an
// error if the shapes do not chain, perm is not a permutation, or cfg does
// not fit.
func FromFactors(module, name string, l, u *mat.Dense, perm []int, z *mat.Dense, s float64, cfg Config) (*LoLDU, error) {
	d, r := l.Dims()
	ur, k := u.Dims()
	zr, zc := z.Dims()
	if ur != r || zr != 1 || zc != r {
		return nil, fmt.Errorf("peft: LoLDU on %s: L %s, U %s and z %s do not chain: want L (d×r), U (r×k), z (1×r)",
			module, peft.ShapeOf(d, r), peft.ShapeOf(ur, k), peft.ShapeOf(zr, zc))
	}
	cfg.R = r
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	if err := checkPerm(perm, d); err != nil {
		return nil, fmt.Errorf("peft: LoLDU on %s: the permutation %s", module, err)
	}
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("peft: LoLDU on %s: s = %v; want a finite scale", module, s)
	}
	st := peft.NewParam(module+".loldu_s."+peft.AdapterName(name), mat.NewDense(1, 1, []float64{s}))
	if !cfg.TrainScale {
		st.Freeze()
	}
	return &LoLDU{
		L:     l,
		U:     u,
		Perm:  append([]int(nil), perm...),
		Z:     peft.NewParam(module+".loldu_z."+peft.AdapterName(name), z),
		S:     st,
		R:     r,
		Alpha: cfg.Alpha,
		pl:    peft.NewConst(Permute(perm, l)),
		u:     peft.NewConst(u),
	}, nil
}

// Add attaches a LoLDU adapter, named cfg.Name, to every module of m
// matching cfg.Targets and replaces each module's W by W_res, freezing the
// base. On error (a bad config, an unknown module, a module that already
// has adapters, a zero pivot) no weight is changed and no adapter stays.
func Add(m peft.Model, cfg Config) ([]*LoLDU, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context, checked before each module's
// factorization (O(r·d·k) each): cancelling ctx returns its error, with no
// weight changed and no adapter attached.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*LoLDU, error) {
	name := peft.AdapterName(cfg.Name)
	res := map[*peft.Linear]*mat.Dense{} // W_res, applied once every module succeeded
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("peft: LoLDU on %s: %w", l.Name, err)
		}
		if len(l.Adapters) > 0 {
			return nil, fmt.Errorf("peft: LoLDU on %s: the module already has adapters %s, and LoLDU changes its base weight", l.Name, quoteList(l.AdapterNames()))
		}
		a, wres, err := New(l.Name, name, l.W.Value, cfg)
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
	return As(added), nil
}

// As returns the LoLDU adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*LoLDU { return adapters.As[*LoLDU](ads) }

// Scale returns s.
func (a *LoLDU) Scale() float64 { return a.S.Value.At(0, 0) }

// Forward returns base + s·((x·U_rᵀ) ⊙ z)·(P·L_r)ᵀ for x (n×k), base (n×d).
func (a *LoLDU) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xu := peft.MatMulT(x, a.u)    // (n×r) = x·U_rᵀ
	sz := peft.MatMul(a.S, a.Z)   // (1×r) = s·z
	xz := peft.MulRow(xu, sz)     // (n×r) = (x·U_rᵀ)·diag(s·z)
	out := peft.MatMulT(xz, a.pl) // (n×d) = …·(P·L_r)ᵀ
	return peft.Add(base, out)
}

// Params returns z, and s if it is trained.
func (a *LoLDU) Params() []*peft.Tensor {
	if a.S.Trainable {
		return []*peft.Tensor{a.Z, a.S}
	}
	return []*peft.Tensor{a.Z}
}

// Rank returns r.
func (a *LoLDU) Rank() int { return a.R }

// Diagonal returns z (a copy): the r trained scalars, which are the
// pivots D[:r] at init.
func (a *LoLDU) Diagonal() []float64 { return append([]float64(nil), a.Z.Value.RawRowView(0)...) }

// Delta returns ΔW = s·P·L_r·diag(z)·U_r (d×k): what the adapter adds to
// W_res.
func (a *LoLDU) Delta() *mat.Dense {
	d, r := a.L.Dims()
	lz := mat.NewDense(d, r, nil) // (P·L_r)·diag(s·z)
	s := a.Scale()
	lz.Apply(func(_, j int, v float64) float64 { return v * s * a.Z.Value.At(0, j) }, a.pl.Value)
	var dw mat.Dense
	dw.Mul(lz, a.U)
	return &dw
}

// MergedWeight returns w0 + s·P·L_r·diag(z)·U_r (d×k). It panics if w0 is
// not (d×k).
func (a *LoLDU) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d, _ := a.L.Dims()
	_, k := a.U.Dims()
	if r, c := w0.Dims(); r != d || c != k {
		panic(peft.ShapeError{Op: "LoLDU.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d, k) + ", the adapter's W"})
	}
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
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
