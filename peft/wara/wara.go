// Package wara is WaRA: a low-rank update written in the Haar wavelet
// domain, with one low-rank factor pair per subband, mapped back to the
// weight by the inverse transform.
package wara

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// WaRA adapts a frozen weight W₀ (d×k) of a Linear layer with an update
// whose wavelet coefficients are low rank subband by subband (Heidari et
// al., 2025, "WaRA: Wavelet Low Rank Adaptation", arXiv:2506.24092):
//
//	C = [B_LL·A_LL  B_LH·A_LH]      (d′×k′), each block (d′/2 × k′/2)
//	    [B_HL·A_HL  B_HH·A_HH]
//	ΔW = s·IDWT(C)[0:d, 0:k]        (d×k), IDWT = peft.IDWT, one Haar level
//	h  = x·W₀ᵀ + b + x·ΔWᵀ          x (n×k), h (n×d)
//	B_s: d′/2 × r, init 0;  A_s: r × k′/2, Kaiming-uniform U(−1/√(k′/2), 1/√(k′/2))
//	s = α/r,  d′ = d + (d mod 2),  k′ = k + (k mod 2)
//
// for the four subbands s ∈ {LL, LH, HL, HH} of peft.DWT's quadrant layout.
// So ΔW = 0 at init (B = 0) and the adapted model starts as the base model
// exactly. A layer trains 4·r·(d′/2 + k′/2) = 2r·(d′ + k′) numbers, what a
// LoRA of rank 2r trains (for even d, k), and rank(ΔW) ≤ min(4r, d, k),
// reached for generic factors: twice the rank LoRA reaches on the same
// budget (measured in TestRank).
//
// Which form, and why. The paper's code could not be read (gopeft's
// reference notes, methods-a.md §9) and its exact form is not confirmed.
// The abstract says WaRA "leverages wavelet transforms to decompose the
// weight update matrix into a multi-resolution representation. By
// performing low-rank factorization in the wavelet domain and
// reconstructing updates through an inverse transform, WaRA obtains
// compressed adaptation parameters", and its v1 figure caption applies a
// low-rank adapter A_w ∈ ℝ^{r×d₁/2}, B_w ∈ ℝ^{d₂/2×r} (half-size factors)
// to the subband coefficients {C_LL, C_LH, C_HL, C_HH} before X̂ =
// IDWT(B_w·A_w·C). gopeft reads this as half-size low-rank factors in the
// wavelet domain, one pair for each subband. The two readings that share
// factors are LoRA in disguise, because the 2-D DWT of a matrix is
// separable, IDWT(C) = P_dᵀ·C·P_k with P_d, P_k orthogonal (see
// peft.DWT), so rank(IDWT(C)) = rank(C):
//
//   - one full-size pair, C = B·A (d×k): ΔW = (P_dᵀ·B)·(A·P_k), a rank-r
//     LoRA with rotated factors and the same r·(d + k) numbers;
//   - one half-size pair shared by the four subbands (the caption read
//     literally), C = [M M; M M] with M = B·A: ΔW = B′·A′ with B′ =
//     P_dᵀ·[B; B], A′ = [A A]·P_k, a rank-r LoRA whose factors are
//     nonzero only on even rows and columns (TestIdenticalSubbandsIsLoRA
//     checks this against peft/lora, as a regression guard).
//
// With a pair per subband, ΔW = B′·A′ with B′ = P_dᵀ·[B_LL B_LH 0 0; 0 0
// B_HL B_HH] (d×4r) and A′ = [A_LL 0; 0 A_LH; A_HL 0; 0 A_HH]·P_k (4r×k):
// a rank-4r LoRA whose output factors each live in the low- or the
// high-pass half of the output space, and whose input factors read only
// the low- or the high-pass half of the input, for half of a rank-4r
// LoRA's numbers. That structure, a coarse and a fine part of the update
// adapted separately, is the "multi-resolution" effect the abstract
// describes, and is what differs from LoRA.
//
// Odd sizes. The suite's layers (and many real ones) have odd d or k, and
// the Haar transform needs even sizes. WaRA works on the zero-padded
// (d′×k′) grid and crops the rebuilt update back to (d×k). This keeps
// every property above: B = 0 still gives ΔW = 0, C ↦ ΔW is still onto
// all d×k matrices (C = DWT of the zero-padded target), and rank(ΔW) ≤
// min(4r, d, k). The cost is that the coefficients that rebuild the
// cropped row or column are wasted. gopeft does not refuse odd layers:
// padding is exact and general, refusing would make WaRA unusable on them.
//
// Defaults: the paper's were not confirmed, so r has no default, α = r
// (s = 1) when Alpha is 0 as in gopeft's LoRA, A is LoRA's Kaiming-uniform
// init for an input of k′/2 numbers (the length of the half of P_k·x that
// each A_s reads), there is no dropout, and one Haar level (the paper's
// wavelet family and number of levels are not confirmed either; more
// levels would split LL further into subbands of their own).
//
// R is checked against min(d, k), LoRA's range, so that one rank fits
// WaRA and LoRA alike; from r = ⌈min(d, k)/2⌉ on each subband's product
// is already unconstrained and larger r only adds redundant numbers.
//
// Cost. Forward forms ΔW, about d′·k′·r multiply-adds for C and O(d·k) for
// the transform, and applies it to the input in n·d·k, as HUT's mask form
// does. A factored path (Haar along the input's rows, four rank-r
// products, Haar back) would cost O(n·r·(d + k)) on large layers; gopeft
// has not written it.
type WaRA struct {
	A     *peft.Tensor // (4r × k′/2): [A_LL; A_LH; A_HL; A_HH], stacked by rows
	B     *peft.Tensor // (d′/2 × 4r): [B_LL B_LH B_HL B_HH], side by side
	R     int          // rank r of each subband's B_s·A_s
	Alpha float64      // α; s = α/r

	d, k int // the layer's weight is (d×k)
}

var _ peft.Adapter = (*WaRA)(nil)

// The subbands, in the order of their factors in A and B; the quadrants
// of peft.DWT's layout [LL LH; HL HH].
const (
	LL = iota // top left: low-pass down the columns and along the rows
	LH        // top right: low down the columns, high along the rows
	HL        // bottom left: high down the columns, low along the rows
	HH        // bottom right: high both ways
)

// Config configures Add.
type Config struct {
	R       int      // rank r of each subband's factors, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (s = 1)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's init
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): r outside [1, min(d, k)], or α negative or not
// finite. Odd d or k are not an error (see WaRA).
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: WaRA on %s: rank r = %d out of range for W %s: want 1 ≤ r ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: WaRA on %s: alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	return nil
}

// Padded returns the even sizes (d′, k′) of the wavelet grid of a weight
// (d×k): d and k rounded up to even.
func Padded(d, k int) (dp, kp int) { return d + d%2, k + k%2 }

// New returns the WaRA adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.wara_A.name.weight", …), with A drawn
// from rng and B zero. It is an error if cfg does not fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*WaRA, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	r := cfg.R
	alpha := cfg.Alpha
	if alpha == 0 {
		alpha = float64(r)
	}
	dp, kp := Padded(d, k)
	return &WaRA{
		A:     peft.NewParam(module+".wara_A."+name+".weight", peft.RandUniform(rng, 4*r, kp/2, 1/math.Sqrt(float64(kp/2)))),
		B:     peft.NewParam(module+".wara_B."+name+".weight", mat.NewDense(dp/2, 4*r, nil)),
		R:     r,
		Alpha: alpha,
		d:     d,
		k:     k,
	}, nil
}

// Add freezes m's base weights and attaches a WaRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// Each A is drawn from one generator seeded with cfg.Seed, module after
// module in model order.
func Add(m peft.Model, cfg Config) ([]*WaRA, error) {
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

// As returns the WaRA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*WaRA { return adapters.As[*WaRA](ads) }

// Dims returns the layer's weight shape (d×k).
func (w *WaRA) Dims() (d, k int) { return w.d, w.k }

// Scaling returns s = α/r.
func (w *WaRA) Scaling() float64 { return w.Alpha / float64(w.R) }

// Factors returns views of subband sb's factors (LL, LH, HL or HH): B_sb
// (d′/2 × r) and A_sb (r × k′/2). Writing into them changes the adapter.
// It panics with an ArgError if sb is not a subband.
func (w *WaRA) Factors(sb int) (b, a *mat.Dense) {
	if sb < LL || sb > HH {
		panic(peft.ArgError{Op: "WaRA.Factors", Msg: fmt.Sprintf("subband %d; want LL, LH, HL or HH (0 to 3)", sb)})
	}
	h, _ := w.B.Dims()
	_, v := w.A.Dims()
	r := w.R
	return w.B.Value.Slice(0, h, sb*r, (sb+1)*r).(*mat.Dense), w.A.Value.Slice(sb*r, (sb+1)*r, 0, v).(*mat.Dense)
}

// coefficients returns C (d′×k′), the quadrants B_s·A_s, as an op.
func (w *WaRA) coefficients() *peft.Tensor {
	h, _ := w.B.Dims()
	_, v := w.A.Dims()
	r := w.R
	sub := func(sb int) *peft.Tensor {
		b := peft.Slice(w.B, 0, h, sb*r, (sb+1)*r) // (d′/2 × r) B_sb
		a := peft.Slice(w.A, sb*r, (sb+1)*r, 0, v) // (r × k′/2) A_sb
		return peft.MatMul(b, a)                   // (d′/2 × k′/2)
	}
	return peft.ConcatRows(
		peft.ConcatCols(sub(LL), sub(LH)),
		peft.ConcatCols(sub(HL), sub(HH))) // (d′×k′)
}

// Forward returns base + s·x·ΔWᵀ for x (n×k), base (n×d), with ΔW/s =
// IDWT(C) cropped to (d×k).
func (w *WaRA) Forward(_ *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	dw := peft.IDWT(w.coefficients(), 1) // (d′×k′)
	if dp, kp := Padded(w.d, w.k); dp != w.d || kp != w.k {
		dw = peft.Slice(dw, 0, w.d, 0, w.k) // (d×k)
	}
	return peft.Add(base, peft.Scale(peft.MatMulT(x, dw), w.Scaling())) // (n×d)
}

// Params returns A and B.
func (w *WaRA) Params() []*peft.Tensor { return []*peft.Tensor{w.A, w.B} }

// Rank returns r, the rank of each subband's factors (rank(ΔW) may reach
// min(4r, d, k)).
func (w *WaRA) Rank() int { return w.R }

// Coefficients returns C (d′×k′), the wavelet coefficients of ΔW/s on the
// padded grid: quadrant by quadrant B_s·A_s.
func (w *WaRA) Coefficients() *mat.Dense {
	dp, kp := Padded(w.d, w.k)
	c := mat.NewDense(dp, kp, nil)
	for sb, q := range [4][2]int{LL: {0, 0}, LH: {0, 1}, HL: {1, 0}, HH: {1, 1}} {
		b, a := w.Factors(sb)
		c.Slice(q[0]*dp/2, (q[0]+1)*dp/2, q[1]*kp/2, (q[1]+1)*kp/2).(*mat.Dense).Mul(b, a)
	}
	return c
}

// Delta returns ΔW = s·IDWT(C) cropped to (d×k).
func (w *WaRA) Delta() *mat.Dense {
	var full mat.Dense
	peft.HaarIDWT(&full, w.Coefficients(), 1)
	dw := mat.DenseCopyOf(full.Slice(0, w.d, 0, w.k))
	dw.Scale(w.Scaling(), dw)
	return dw
}

// MergedWeight returns w0 + ΔW (d×k). It panics if w0 is not (d×k).
func (w *WaRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, c := w0.Dims(); r != w.d || c != w.k {
		panic(peft.ShapeError{Op: "WaRA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(w.d, w.k) + ", the adapter's W₀"})
	}
	dw := w.Delta()
	dw.Add(w0, dw)
	return dw
}
