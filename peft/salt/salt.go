// Package salt is SALT: the top singular values of a frozen weight scaled
// and shifted by trained vectors, and a LoRA acting inside the singular
// basis of the remaining ones.
package salt

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// SALT adapts a frozen weight W₀ (d×k) of a Linear layer in W₀'s own
// singular basis (Elsayed et al., 2025, "SALT: Singular Value Adaptation
// with Low-Rank Transformation", arXiv:2503.16055). With the thin SVD of W₀,
// m = min(d, k), computed once when the adapter is made and then frozen,
//
//	W₀ = U·diag(σ)·Vᵀ                U (d×m), σ (m, descending), V (k×m)
//	U = [U_r, U_⊥], V = [V_r, V_⊥]   U_r (d×r), U_⊥ (d×(m−r)), V_r (k×r), V_⊥ (k×(m−r))
//
// the adapted weight replaces the m×m diagonal Σ = diag(σ) by
//
//	Σ' = [ diag(α⊙σ_r + β)   0         ]   top block (r×r): each of the top r
//	     [ 0                 Σ_⊥ + X·Y ]   singular values scaled and shifted;
//	                                        residual block ((m−r)×(m−r)): LoRA
//	W' = U·Σ'·Vᵀ
//	ΔW = W' − W₀ = U_r·diag(δ)·V_rᵀ + U_⊥·X·Y·V_⊥ᵀ  (d×k),   δ = α⊙σ_r − σ_r + β  (1×r)
//	h  = x·W₀ᵀ + b + ((x·V_r) ⊙ δ)·U_rᵀ + x·V_⊥·Yᵀ·Xᵀ·U_⊥ᵀ     x (n×k), h (n×d)
//
// with the trained parameters
//
//	α (1×r) "scale", init 1;   β (1×r) "shift", init 0
//	X ((m−r)×r_L), Kaiming-uniform as PyTorch inits an (m−r)×r_L weight, U(−1/√r_L, 1/√r_L)
//	Y (r_L×(m−r)), init 0
//
// so δ = 0 and X·Y = 0 at init: the adapted model starts as the base model
// exactly. A layer trains 2r + 2(m−r)·r_L numbers. Uᵀ·ΔW·V is
// block-diagonal: diag(δ) on top, X·Y (rank ≤ r_L) below, zero across, so
// the top-r singular directions of W₀ are kept and only their values move,
// while the rest of the spectrum gets a low-rank change of its own.
//
// Defaults: r_L = 4 (DefaultRLoRA, the r_lora of SALT's configs). r has no
// default: SALT sets it per layer, as a fraction of min(d, k) (gopeft's
// reference notes, methods-a.md §15). The extra loss of SALT's training
// script, Reg·(‖ΔΣ_top‖ + ‖X·Y‖), is Penalty, a peft.Hook for
// peft.TrainConfig.Hooks, with Reg = 0.01 (DefaultReg, the reg_multiplier
// default of SALT's train.py).
//
// Where gopeft departs from SALT's code, and why:
//
//   - The forward pass adds ΔW's two factored terms to the base output
//     instead of rebuilding W' = U·Σ'·Vᵀ: the same weight up to the SVD's
//     rounding (about 1e-15 relative), but init, disabling the adapter and
//     unmerging give the base model bit for bit, and a step costs O(m·(d +
//     k)) per input row instead of rebuilding the d×k weight (O(d·m·k)).
//   - No ReLU. SALT's code, as gopeft's reference notes read it, clips Σ'
//     elementwise with a ReLU over the whole m×m matrix, which zeroes the
//     negative off-diagonal entries of X·Y (and, since X·Y = 0 at init,
//     blocks their gradient there then: ReLU′(0) = 0 in PyTorch) and any
//     α_i·σ_i + β_i < 0. The notes call it a quirk of the code, not part of
//     the method. Without it Σ' is exactly the matrix above, and the block
//     structure holds for every trained value.
//   - X·Y has no LoRA scale α/r_L: the method is Σ_⊥ + X·Y as the notes
//     give it.
//   - r is given directly, one value for every targeted layer (as LoRA's
//     r), rather than as a fraction of each layer's min(d, k).
//   - r_L is capped, layer by layer, at m − r, the size of the residual
//     block: at r_L = m − r, X·Y can already be any (m−r)×(m−r) matrix, so
//     more adds parameters and no expressiveness. A layer with r = m has no
//     residual block and no X, Y.
//   - No dropout: none is described for SALT.
//
// Merging folds ΔW into W₀. A saved adapter holds α, β, X and Y; LoadAdapter
// recomputes the SVD of the base weight (see file.go).
type SALT struct {
	Scale *peft.Tensor // α (1×r), trained, init 1
	Shift *peft.Tensor // β (1×r), trained, init 0
	X     *peft.Tensor // ((m−r)×r_L), trained, Kaiming-uniform; nil if r = m
	Y     *peft.Tensor // (r_L×(m−r)), trained, init 0; nil if r = m
	R     int          // r: the top singular values scaled and shifted
	// RLoRA is r_L as configured; the layer's X and Y have
	// LoRARank() = min(RLoRA, m − r) columns and rows.
	RLoRA int

	d, k, m int
	sigma   []float64    // σ (m), all of W₀'s singular values, descending
	sigmaR  *peft.Tensor // σ_r (1×r), constant
	ur, up  *peft.Tensor // U_r (d×r) and U_⊥ (d×(m−r)), constant; up nil if r = m
	vr, vp  *peft.Tensor // V_rᵀ (r×k) and V_⊥ᵀ ((m−r)×k), constant; vp nil if r = m
}

var _ peft.Adapter = (*SALT)(nil)

// DefaultRLoRA is r_L when Config.RLoRA is 0: the r_lora of SALT's configs.
const DefaultRLoRA = 4

// Config configures Add.
type Config struct {
	R int // r, the top singular values scaled and shifted: 1 ≤ R ≤ min(d, k) of every target
	// RLoRA is r_L, the rank of the LoRA X·Y on the remaining m − r
	// singular directions; 0 means DefaultRLoRA. Each layer caps it at
	// its m − r.
	RLoRA   int
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds X's init
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)] or RLoRA negative.
func (cfg Config) Check(module string, d, k int) error {
	switch m := min(d, k); {
	case cfg.R < 1 || cfg.R > m:
		return fmt.Errorf("peft: SALT on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	case cfg.RLoRA < 0:
		return fmt.Errorf("peft: SALT on %s: RLoRA = %d; want RLoRA ≥ 1, or 0 for the default %d", module, cfg.RLoRA, DefaultRLoRA)
	}
	return nil
}

// New returns the SALT adapter of the layer named module (for its
// parameters' names "module.salt_scale.name", …) with frozen weight w0
// (d×k), which it decomposes with accel.ThinSVD; rng draws X. It is an error
// if cfg does not fit w0 (see Check), if ctx is cancelled, or if the SVD
// fails (w0 not finite, no convergence).
func New(ctx context.Context, module, name string, w0 *mat.Dense, cfg Config, rng *rand.Rand) (*SALT, error) {
	d, k := w0.Dims()
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	svd, err := accel.ThinSVD(ctx, w0)
	if err != nil {
		return nil, fmt.Errorf("peft: SALT on %s: SVD of W %s: %w", module, peft.ShapeOf(d, k), err)
	}
	return fromSVD(module, name, d, k, svd, cfg, rng), nil
}

// fromSVD builds the adapter on the thin SVD of a (d×k) weight; cfg has
// been checked.
func fromSVD(module, name string, d, k int, svd accel.SVD, cfg Config, rng *rand.Rand) *SALT {
	if cfg.RLoRA == 0 {
		cfg.RLoRA = DefaultRLoRA
	}
	m, r := min(d, k), cfg.R
	compact := func(v mat.Matrix) *peft.Tensor { return peft.NewConst(mat.DenseCopyOf(v)) }
	s := &SALT{
		Scale: peft.NewParam(module+".salt_scale."+name, mat.NewDense(1, r, nil)),
		Shift: peft.NewParam(module+".salt_shift."+name, mat.NewDense(1, r, nil)),
		R:     r,
		RLoRA: cfg.RLoRA,
		d:     d, k: k, m: m,
		sigma:  append([]float64(nil), svd.S...),
		sigmaR: peft.NewConst(mat.NewDense(1, r, append([]float64(nil), svd.S[:r]...))),
		ur:     compact(svd.U.Slice(0, d, 0, r)),
		vr:     compact(svd.VT.Slice(0, r, 0, k)),
	}
	for j := 0; j < r; j++ {
		s.Scale.Value.Set(0, j, 1) // α = 1
	}
	if rest := m - r; rest > 0 {
		rl := min(cfg.RLoRA, rest)
		s.up = compact(svd.U.Slice(0, d, r, m))
		s.vp = compact(svd.VT.Slice(r, m, 0, k))
		s.X = peft.NewParam(module+".salt_X."+name, peft.RandUniform(rng, rest, rl, 1/math.Sqrt(float64(rl))))
		s.Y = peft.NewParam(module+".salt_Y."+name, mat.NewDense(rl, rest, nil))
	}
	return s
}

// Add freezes m's base weights and attaches a SALT adapter, named cfg.Name,
// to every module matching cfg.Targets, making it the active one. Each X is
// drawn from one generator seeded with cfg.Seed, module after module in
// model order. On error (a config that does not fit a module, an unknown
// module, an SVD failure) no adapter is left attached.
func Add(m peft.Model, cfg Config) ([]*SALT, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context: cancelling ctx stops the SVDs and
// returns its error, with no adapter attached.
func AddContext(ctx context.Context, m peft.Model, cfg Config) ([]*SALT, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		return New(ctx, l.Name, name, l.W.Value, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the SALT adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*SALT { return adapters.As[*SALT](ads) }

// Dims returns the layer's weight shape (d×k).
func (s *SALT) Dims() (d, k int) { return s.d, s.k }

// LoRARank returns the rank r_L of this layer's X·Y: min(RLoRA, m − r), 0
// if r = m.
func (s *SALT) LoRARank() int {
	if s.X == nil {
		return 0
	}
	_, rl := s.X.Dims()
	return rl
}

// Basis returns copies of the frozen SVD of W₀ the adapter works in:
// U (d×m), σ (m, descending) and Vᵀ (m×k).
func (s *SALT) Basis() (u *mat.Dense, sigma []float64, vt *mat.Dense) {
	u = mat.NewDense(s.d, s.m, nil)
	u.Slice(0, s.d, 0, s.R).(*mat.Dense).Copy(s.ur.Value)
	vt = mat.NewDense(s.m, s.k, nil)
	vt.Slice(0, s.R, 0, s.k).(*mat.Dense).Copy(s.vr.Value)
	if s.up != nil {
		u.Slice(0, s.d, s.R, s.m).(*mat.Dense).Copy(s.up.Value)
		vt.Slice(s.R, s.m, 0, s.k).(*mat.Dense).Copy(s.vp.Value)
	}
	return u, append([]float64(nil), s.sigma...), vt
}

// shift returns δ = α⊙σ_r − σ_r + β (1×r), the change of the top r
// singular values, as a tensor: exactly 0 at init.
func (s *SALT) shift() *peft.Tensor {
	return peft.Add(peft.Sub(peft.MulRow(s.Scale, s.sigmaR), s.sigmaR), s.Shift)
}

// Forward returns base + ((x·V_r) ⊙ δ)·U_rᵀ + x·V_⊥·Yᵀ·Xᵀ·U_⊥ᵀ for x (n×k),
// base (n×d).
func (s *SALT) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	top := peft.MulRow(peft.MatMulT(x, s.vr), s.shift()) // (n×r) = (x·V_r) ⊙ δ
	h := peft.Add(base, peft.MatMulT(top, s.ur))         // (n×d)
	if s.X != nil {
		xv := peft.MatMulT(x, s.vp)                     // (n×(m−r)) = x·V_⊥
		xyx := peft.MatMulT(peft.MatMulT(xv, s.Y), s.X) // (n×(m−r)) = x·V_⊥·Yᵀ·Xᵀ
		h = peft.Add(h, peft.MatMulT(xyx, s.up))        // (n×d)
	}
	return h
}

// Params returns α, β, X and Y (only α and β if r = m).
func (s *SALT) Params() []*peft.Tensor {
	if s.X == nil {
		return []*peft.Tensor{s.Scale, s.Shift}
	}
	return []*peft.Tensor{s.Scale, s.Shift, s.X, s.Y}
}

// Rank returns r, the number of singular values scaled and shifted.
func (s *SALT) Rank() int { return s.R }

// Delta returns ΔW = U_r·diag(δ)·V_rᵀ + U_⊥·X·Y·V_⊥ᵀ (d×k).
func (s *SALT) Delta() *mat.Dense {
	delta := s.shift().Value // (1×r)
	var ud mat.Dense         // (d×r) = U_r·diag(δ)
	ud.Apply(func(_, j int, v float64) float64 { return v * delta.At(0, j) }, s.ur.Value)
	var dw mat.Dense
	dw.Mul(&ud, s.vr.Value)
	if s.X != nil {
		var xy, uxy, res mat.Dense
		xy.Mul(s.X.Value, s.Y.Value) // ((m−r)×(m−r))
		uxy.Mul(s.up.Value, &xy)     // (d×(m−r))
		res.Mul(&uxy, s.vp.Value)    // (d×k)
		dw.Add(&dw, &res)
	}
	return &dw
}

// MergedWeight returns W₀ + ΔW (d×k). It panics if w0 is not (d×k).
func (s *SALT) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != s.d || c != s.k {
		panic(peft.ShapeError{Op: "SALT.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(s.d, s.k) + ", the adapter's W₀"})
	}
	dw := s.Delta()
	dw.Add(w0, dw)
	return dw
}

// DefaultReg is Penalty's weight in SALT's train.py (reg_multiplier).
const DefaultReg = 0.01

// Penalty is SALT's extra loss, a peft.Hook for peft.TrainConfig.Hooks:
//
//	Reg · Σ_layers (‖ΔΣ_top‖_F + ‖X·Y‖_F),   ΔΣ_top = diag(δ), so ‖ΔΣ_top‖_F = ‖δ‖₂
//
// which keeps the change of the spectrum small. Both norms are zero at init,
// where their gradient is taken as zero (peft.FrobeniusNorm). Which norm
// SALT's code takes is not confirmed; gopeft reads the paper's ‖·‖ as
// Frobenius.
type Penalty struct {
	Adapters []*SALT
	Reg      float64
}

var _ peft.Hook = (*Penalty)(nil)

// NewPenalty returns the penalty of weight reg on ads. It is an error if
// reg is negative or not finite.
func NewPenalty(ads []*SALT, reg float64) (*Penalty, error) {
	if !(reg >= 0) || math.IsInf(reg, 0) {
		return nil, fmt.Errorf("peft: SALT penalty: Reg = %v; want a finite Reg ≥ 0", reg)
	}
	return &Penalty{Adapters: ads, Reg: reg}, nil
}

// Regularizer returns the penalty (1×1), or nil if Reg is 0 or there are no
// adapters.
func (p *Penalty) Regularizer(step int) *peft.Tensor {
	if p.Reg == 0 || len(p.Adapters) == 0 {
		return nil
	}
	var sum *peft.Tensor
	add := func(t *peft.Tensor) {
		if sum == nil {
			sum = t
		} else {
			sum = peft.Add(sum, t)
		}
	}
	for _, s := range p.Adapters {
		add(peft.FrobeniusNorm(s.shift())) // ‖δ‖₂
		if s.X != nil {
			add(peft.FrobeniusNorm(peft.MatMul(s.X, s.Y))) // ‖X·Y‖_F
		}
	}
	return peft.Scale(sum, p.Reg)
}

// AfterBackward does nothing.
func (p *Penalty) AfterBackward(step int) {}

// AfterStep does nothing.
func (p *Penalty) AfterStep(step int) error { return nil }
