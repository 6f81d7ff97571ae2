// Package flora is FLoRA (Si, Wang, Yang et al., ICLR 2025, "FLoRA:
// Low-Rank Core Space for N-dimension", arXiv:2405.14739): a Tucker-form
// update of an N-dimensional weight, a small core tensor G and one factor
// matrix per mode, so that the update of a convolution kernel keeps the
// kernel's structure instead of being flattened into a matrix first. The
// math, shapes, defaults and departures from the reference code are on
// the FLoRA type; file.go gives the saved layout (peft_type
// "GOPEFT_FLORA").
package flora

import (
	"fmt"
	"math"
	"math/rand"
	"strings"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// FLoRA adapts a frozen N-d weight W₀ of dims (d_1, …, d_N) by a Tucker
// update (Si, Wang, Yang et al., ICLR 2025, "FLoRA: Low-Rank Core Space for
// N-dimension", arXiv:2405.14739):
//
//	ΔW = s · G ×₁ U_1 ×₂ U_2 ⋯ ×_N U_N                     (d_1 × ⋯ × d_N)
//	ΔW[i_1,…,i_N] = s · Σ_{a_1…a_N} G[a_1,…,a_N] · Π_k U_k[i_k, a_k]
//	G: r_1 × ⋯ × r_N (init 0),  U_k: d_k × r_k (Kaiming-normal init)
//
// so that ΔW = 0 at init and every mode-k unfolding of ΔW has rank ≤ r_k. A
// layer trains Π_k r_k + Σ_k d_k·r_k numbers.
//
// The modes are those of the Linear: for a plain layer, W₀ (out×in) is 2-D
// and (d_1, d_2) = (out, in), so ΔW = s·U_1·G·U_2ᵀ, LoRA with an r_1×r_2
// core between the factors. For a layer with a Kernel (a convolution,
// Kernel = (C_out, C_in, kh, kw), W₀ its flattening C_out × C_in·kh·kw) the
// modes are the Kernel's, in its order. Flattened the same way, row-major,
//
//	ΔW = s · U_1 · G_(1) · (U_2 ⊗ U_3 ⊗ ⋯ ⊗ U_N)ᵀ          (d_1 × d_2⋯d_N)
//
// with G_(1) the mode-1 unfolding of G (r_1 × r_2⋯r_N, row-major in the
// other modes), which is how G is stored, and ⊗ the Kronecker product. The
// layer's output is h = x·W₀ᵀ + b + dropout(x)·ΔWᵀ for x (n × d_2⋯d_N).
//
// Defaults and init, from the reference code (flora/layers.py): the scale s
// multiplies ΔW directly (no α/r), 1 if Config.Scale is 0; the paper's
// ConvNeXt example is r = (16, 16, 2, 2), s = 4 with dropout 0.01. U_k is
// drawn as PyTorch's kaiming_normal_ with a = √3 on a (d_k × r_k) matrix:
// N(0, σ²) with σ = √(2/(1 + a²))/√r_k = 1/√(2·r_k). G is zero.
//
// Where it departs from the reference code. (1) Mode order: the reference
// lists the dims of a weight as (in, out, k_1, …), builds ΔW in that order
// by successive tensordots and swaps the first two axes at the end; gopeft
// lists them in W's own order (out, in, k_1, …), so U_1 is the output
// factor and Ranks[0] the output rank. The two are the same update with G's
// first two axes swapped; a reference r = (r_in, r_out, …) is gopeft's
// Ranks (r_out, r_in, …). (2) Computation: gopeft's autograd is
// matrix-only and exports no way to define an op with its own backward
// outside package peft, so the mode products are written as the Kronecker
// form above, each ⊗ built
// from MatMuls with constant 0/1 selection matrices and one elementwise
// product (see kron); gradients then reach G and every U_k through those
// ops with no backward pass of this package's own. (3) Forward takes
// whichever of two equal forms costs fewer multiply-adds for the batch:
// s·((x·K)·G_(1)ᵀ)·U_1ᵀ with K = U_2 ⊗ ⋯ ⊗ U_N (no d_1 × d_2⋯d_N
// temporary; LoRA's x·Aᵀ·Bᵀ at N = 2), or x·ΔWᵀ with ΔW formed as the
// reference does. The choice counts multiply-adds (see factored); a sweep
// of n from 1 to 4096 on a Linear (64×64) and (256×256) at r = 8 and
// kernels (64, 64, 3, 3) at ranks (16, 16, 2, 2) and (4, 4, 2, 2) and
// (16, 8, 3, 3) at (4, 4, 2, 2) (2 shared cores) found the chosen form the
// faster, or within 1.6× of it. (4) The reference's N = 1 embedding form
// is not offered: a Linear has at least two modes.
type FLoRA struct {
	G     *peft.Tensor   // (r_1 × r_2⋯r_N), the core's mode-1 unfolding
	U     []*peft.Tensor // U[k] is U_{k+1} (d_{k+1} × r_{k+1})
	Scale float64        // s

	Dropout float64 // dropout on the adapter's input, in [0, 1)

	dims, ranks []int
	steps       []kronStep // the Kronecker products of K, outermost first
	rng         *rand.Rand // dropout masks
}

var _ peft.Adapter = (*FLoRA)(nil)

// MaxModes is the largest number of modes N a FLoRA adapter takes (a 3-D
// convolution has 5).
const MaxModes = 8

// Config configures Add. Give either R, one rank for every mode of every
// target, or Ranks, one rank per mode.
type Config struct {
	R int // one rank r for all modes, 1 ≤ r ≤ every d_k; used if Ranks is nil
	// Ranks are (r_1, …, r_N) in the order of W's modes: (out, in) for a
	// plain Linear, the Kernel's order (C_out, C_in, kh, kw) for a
	// convolution; 1 ≤ r_k ≤ d_k. Every target must have N = len(Ranks)
	// modes.
	Ranks   []int
	Scale   float64  // s, multiplying ΔW; 0 means 1; must be finite and ≥ 0
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds the factors' init and the dropout masks
}

// configError is a Config that does not fit a module; Field is the
// Config field at fault.
type configError struct {
	Field string
	Msg   string
}

func (e *configError) Error() string { return e.Msg }

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight of mode dims dims (see Dims): both or neither of R and
// Ranks set, len(Ranks) ≠ N, a rank outside [1, d_k], s negative or not
// finite, or dropout outside [0, 1).
func (cfg Config) Check(module string, dims []int) error {
	if err := cfg.check(module, dims); err != nil {
		return err
	}
	return nil
}

func (cfg Config) check(module string, dims []int) *configError {
	bad := func(field, format string, args ...any) *configError {
		return &configError{Field: field, Msg: fmt.Sprintf("peft: FLoRA on %s: ", module) + fmt.Sprintf(format, args...)}
	}
	n := len(dims)
	switch {
	case n < 2 || n > MaxModes:
		return bad("Kernel", "%d modes %v: want 2 to %d", n, dims, MaxModes)
	case cfg.Ranks != nil && cfg.R != 0:
		return bad("R", "R = %d and Ranks = %v both set: give one", cfg.R, cfg.Ranks)
	case cfg.Ranks != nil && len(cfg.Ranks) != n:
		return bad("Ranks", "Ranks = %v has %d entries, but the weight has N = %d modes %s", cfg.Ranks, len(cfg.Ranks), n, modeStr(dims))
	}
	for k, d := range dims {
		r, field, what := cfg.R, "R", "R"
		if cfg.Ranks != nil {
			r, field, what = cfg.Ranks[k], "Ranks", fmt.Sprintf("Ranks[%d]", k)
		}
		if r < 1 || r > d {
			return bad(field, "%s = %d out of range for mode %d of %s: want 1 ≤ r_%d ≤ d_%d = %d", what, r, k+1, modeStr(dims), k+1, k+1, d)
		}
	}
	if cfg.Scale < 0 || math.IsNaN(cfg.Scale) || math.IsInf(cfg.Scale, 0) {
		return bad("Scale", "Scale = %v; want a finite s ≥ 0", cfg.Scale)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout) {
		return bad("Dropout", "Dropout = %v outside [0, 1)", cfg.Dropout)
	}
	return nil
}

// modeStr writes dims as "(d_1×…×d_N)".
func modeStr(dims []int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
	}
	return "(" + strings.Join(s, "×") + ")"
}

// Dims returns the mode dims (d_1, …, d_N) FLoRA sees in layer l: l.Kernel
// if set, else W's (out, in). It is an error, naming the module and the
// Kernel, if the Kernel is not a shape W (out × in) flattens: out ≠ d_1,
// in ≠ d_2⋯d_N, or a dim < 1.
func Dims(l *peft.Linear) ([]int, error) {
	out, in := l.W.Dims()
	if l.Kernel == nil {
		return []int{out, in}, nil
	}
	p := 1
	for _, d := range l.Kernel[1:] {
		p *= d
	}
	if len(l.Kernel) < 2 || l.Kernel[0] != out || p != in || slicesMin(l.Kernel) < 1 {
		return nil, fmt.Errorf("peft: FLoRA on %s: Kernel = %v does not flatten to W %s: want (out, d_2, …) with out = %d and d_2⋯d_N = %d", l.Name, l.Kernel, peft.ShapeOf(out, in), out, in)
	}
	return append([]int(nil), l.Kernel...), nil
}

func slicesMin(s []int) int {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

// New returns the FLoRA adapter of a layer named module with mode dims
// dims (see Dims), its parameters named "module.flora_G.name.weight" and
// "module.flora_U<k>.name.weight" (k from 1), with G zero and the U_k drawn
// from rng. It is an error if cfg does not fit (see Check).
func New(module, name string, dims []int, cfg Config, rng *rand.Rand) (*FLoRA, error) {
	if err := cfg.check(module, dims); err != nil {
		return nil, err
	}
	ranks := cfg.Ranks
	if ranks == nil {
		ranks = make([]int, len(dims))
		for k := range ranks {
			ranks[k] = cfg.R
		}
	}
	ranks = append([]int(nil), ranks...)
	dims = append([]int(nil), dims...)
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	rest := 1 // r_2⋯r_N
	for _, r := range ranks[1:] {
		rest *= r
	}
	f := &FLoRA{
		G:       peft.NewParam(fmt.Sprintf("%s.flora_G.%s.weight", module, name), mat.NewDense(ranks[0], rest, nil)),
		Scale:   cfg.Scale,
		Dropout: cfg.Dropout,
		dims:    dims,
		ranks:   ranks,
	}
	for k, d := range dims {
		r := ranks[k]
		std := 1 / math.Sqrt(2*float64(r)) // kaiming_normal_(a = √3), fan_in r
		u := mat.NewDense(d, r, nil)
		for i := 0; i < d; i++ {
			for j := 0; j < r; j++ {
				u.Set(i, j, std*rng.NormFloat64())
			}
		}
		f.U = append(f.U, peft.NewParam(fmt.Sprintf("%s.flora_U%d.%s.weight", module, k+1, name), u))
	}
	// K = U_2 ⊗ (U_3 ⊗ (⋯ ⊗ U_N)): the step for U_k pairs (d_k × r_k) with
	// the product of the modes after it.
	dIn, rIn := dims[len(dims)-1], ranks[len(ranks)-1]
	for k := len(dims) - 2; k >= 1; k-- {
		f.steps = append([]kronStep{newKronStep(dims[k], ranks[k], dIn, rIn)}, f.steps...)
		dIn, rIn = dIn*dims[k], rIn*ranks[k]
	}
	f.rng = rand.New(rand.NewSource(rng.Int63()))
	return f, nil
}

// Add freezes m's base weights and attaches a FLoRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active
// one. Each module's modes are Dims(l). The factors are drawn from one
// generator seeded with cfg.Seed, module after module in model order.
func Add(m peft.Model, cfg Config) ([]*FLoRA, error) {
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		dims, err := Dims(l)
		if err != nil {
			return nil, err
		}
		return New(l.Name, name, dims, cfg, rng)
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the FLoRA adapters among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*FLoRA { return adapters.As[*FLoRA](ads) }

// Dims returns the mode dims (d_1, …, d_N).
func (f *FLoRA) Dims() []int { return append([]int(nil), f.dims...) }

// Ranks returns the mode ranks (r_1, …, r_N).
func (f *FLoRA) Ranks() []int { return append([]int(nil), f.ranks...) }

// Rank returns min(r_1, r_2⋯r_N), the largest rank ΔW can have as the
// matrix W holds (d_1 × d_2⋯d_N): at N = 2, min(r_1, r_2).
func (f *FLoRA) Rank() int {
	rest := 1
	for _, r := range f.ranks[1:] {
		rest *= r
	}
	return min(f.ranks[0], rest)
}

// NumParams returns Π_k r_k + Σ_k d_k·r_k, the number of trained values.
func (f *FLoRA) NumParams() int {
	n, core := 0, 1
	for k, d := range f.dims {
		core *= f.ranks[k]
		n += d * f.ranks[k]
	}
	return n + core
}

// Params returns G, then U_1, …, U_N.
func (f *FLoRA) Params() []*peft.Tensor { return append([]*peft.Tensor{f.G}, f.U...) }

// shape returns (d_1, d_2⋯d_N, r_2⋯r_N).
func (f *FLoRA) shape() (d1, dRest, rRest int) {
	dRest, rRest = 1, 1
	for k := 1; k < len(f.dims); k++ {
		dRest *= f.dims[k]
		rRest *= f.ranks[k]
	}
	return f.dims[0], dRest, rRest
}

// Forward returns base + dropout(x)·ΔWᵀ for x (n × d_2⋯d_N), base (n × d_1),
// in whichever form costs fewer multiply-adds for n rows (see FLoRA).
func (f *FLoRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xd := peft.Dropout(x, f.Dropout, f.rng, l.Training) // (n × d_2⋯d_N)
	if n, _ := x.Dims(); f.factored(n) {
		h := peft.MatMul(xd, f.kron())                   // (n × r_2⋯r_N) = x·K
		h = peft.MatMulT(h, f.G)                         // (n × r_1) = x·K·G_(1)ᵀ
		h = peft.Scale(peft.MatMulT(h, f.U[0]), f.Scale) // (n × d_1)
		return peft.Add(base, h)
	}
	return peft.Add(base, peft.MatMulT(xd, f.delta())) // (n × d_1)
}

// The forms Forward may take; forceForm, formAuto except in tests, makes
// it take one whatever the cost, so that every check runs on both.
const (
	formAuto = iota
	formFactored
	formDelta
)

var forceForm = formAuto

// factored reports whether Forward takes the factored form for n rows: if
// n·(D·R + R·r_1 + r_1·d_1) ≤ d_1·r_1·R + d_1·R·D + n·D·d_1, with D =
// d_2⋯d_N and R = r_2⋯r_N (building K costs the same in both).
func (f *FLoRA) factored(n int) bool {
	switch forceForm {
	case formFactored:
		return true
	case formDelta:
		return false
	}
	d1, D, R := f.shape()
	r1 := f.ranks[0]
	return n*(D*R+R*r1+r1*d1) <= d1*r1*R+d1*R*D+n*D*d1
}

// kron returns K = U_2 ⊗ U_3 ⊗ ⋯ ⊗ U_N (d_2⋯d_N × r_2⋯r_N) in the graph.
func (f *FLoRA) kron() *peft.Tensor {
	k := f.U[len(f.U)-1]
	for i := len(f.steps) - 1; i >= 0; i-- {
		k = f.steps[i].apply(f.U[i+1], k)
	}
	return k
}

// delta returns ΔW = s·U_1·G_(1)·Kᵀ (d_1 × d_2⋯d_N) in the graph.
func (f *FLoRA) delta() *peft.Tensor {
	ug := peft.MatMul(f.U[0], f.G)                         // (d_1 × r_2⋯r_N)
	return peft.Scale(peft.MatMulT(ug, f.kron()), f.Scale) // (d_1 × d_2⋯d_N)
}

// Delta returns ΔW (d_1 × d_2⋯d_N), flattened as W is.
func (f *FLoRA) Delta() *mat.Dense { return mat.DenseCopyOf(f.delta().Value) }

// MergedWeight returns W₀ + ΔW (d_1 × d_2⋯d_N). It panics if w0 is not of
// that shape.
func (f *FLoRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	d1, D, _ := f.shape()
	if r, c := w0.Dims(); r != d1 || c != D {
		panic(peft.ShapeError{Op: "FLoRA.MergedWeight", Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(d1, D) + ", the flattening of " + modeStr(f.dims)})
	}
	dw := f.Delta()
	dw.Add(w0, dw)
	return dw
}

// kronStep holds the constant 0/1 matrices that build A ⊗ B for A (m×p),
// B (q×t) from peft's ops:
//
//	A ⊗ B = (E_m·A·E_pᵀ) ⊙ (F_q·B·F_tᵀ)                   (mq × pt)
//	E_m (mq × m): E_m[i·q+j, i] = 1   (repeats each row of A q times)
//	F_q (mq × q): F_q[i·q+j, j] = 1   (tiles B's rows m times)
//
// and E_p, F_t alike for the columns. Each factor's entry at row (i, j),
// column (a, b) is then A[i, a] and B[j, b], their product the Kronecker
// product's; the gradients of A and B follow from MatMul's and Mul's.
type kronStep struct {
	em, ep, fq, ft *peft.Tensor
}

func newKronStep(m, p, q, t int) kronStep {
	rep := func(n, inner int) *peft.Tensor { // (n·inner × n): row i·inner+j has a 1 at i
		e := mat.NewDense(n*inner, n, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < inner; j++ {
				e.Set(i*inner+j, i, 1)
			}
		}
		return peft.NewConst(e)
	}
	tile := func(outer, n int) *peft.Tensor { // (outer·n × n): row i·n+j has a 1 at j
		e := mat.NewDense(outer*n, n, nil)
		for i := 0; i < outer; i++ {
			for j := 0; j < n; j++ {
				e.Set(i*n+j, j, 1)
			}
		}
		return peft.NewConst(e)
	}
	return kronStep{em: rep(m, q), ep: rep(p, t), fq: tile(m, q), ft: tile(p, t)}
}

// apply returns a ⊗ b for a (m×p), b (q×t).
func (s kronStep) apply(a, b *peft.Tensor) *peft.Tensor {
	ar := peft.MatMulT(peft.MatMul(s.em, a), s.ep) // (mq × pt): A[i, a]
	bt := peft.MatMulT(peft.MatMul(s.fq, b), s.ft) // (mq × pt): B[j, b]
	return peft.Mul(ar, bt)
}
