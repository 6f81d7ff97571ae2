// Package randlora is RandLoRA: a full-rank update made of frozen random
// low-rank bases shared by every adapted layer, mixed by small trained
// diagonal scalings.
package randlora

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// RandLoRA adapts a frozen weight W₀ (d×k) of a Linear layer with a sum of
// n random rank-r bases, each scaled by two trained diagonal matrices
// (Albert et al., 2025, "RandLoRA: Full-rank parameter-efficient fine-tuning
// of large models", arXiv:2502.00987). With m = min(d, k) the
// short side of W₀ and M = max(d, k) the long one:
//
//	ΔW = s·Σ_{i=1..n} B_i·Λ_i·A·Γ_i   (M×m; transposed to d×k when d < k)
//	h  = x·W₀ᵀ + b₀ + dropout(x)·ΔWᵀ  x (N×k), h (N×d)
//	n  = ⌈m/r⌉, so that n·r ≥ m and ΔW can have full rank m
//	A:   r×m, frozen, one for all n bases   B_i: M×r, frozen
//	Λ_i = diag(Λ[:, i]) (r×r), Λ (r×n) trained, init 0
//	Γ_i = diag(Γ[i, :]) (m×m), Γ (n×m) trained, init 1/m
//	s   = α/r;  α defaults to DefaultAlphaPerRank·r (PEFT: r 32, α 640)
//
// The trained scalings always sit on the short side (PEFT's "Λ and Γ on
// A"), so a layer trains n·(r + m) numbers; a larger r means fewer bases
// and fewer trained numbers, the opposite of LoRA's r. ΔW is zero at init
// (Λ = 0: the adapted model starts as the base model exactly). With Γ's
// rows all equal, as at init, ΔW = (Σ_i B_i·Λ_i)·A·Γ₁ has rank ≤ r; once
// they differ, ΔW reaches rank m, which no LoRA of rank r < m can.
//
// Like VeRA's, the random matrices are shared by all layers of one adapter,
// sized for the largest: A (r×m_max) and B̃ (M_max×n_max·r), where d_max
// and k_max are the largest output and input widths among the targets,
// m_max = min(d_max, k_max), M_max = max(d_max, k_max), n_max = ⌈m_max/r⌉.
// A layer uses A_m = A[:, :m] and the first n bases of B̃. B̃ is PEFT's
// randlora_B (M_max, n_max, r) flattened, so column i·r + c of B̃ is column c
// of PEFT's base i; PEFT multiplies its flattened scaled A, whose row c·n + i
// holds Λ[c, i]·(A[c, :] ⊙ Γ[i, :]), with its flattened B, so the paper's
// B_i in the sum above is
//
//	B_i[:, c] = B̃[:M, c·n + i],   c = 0 … r−1
//
// which gopeft follows exactly, so that a saved adapter means what it means
// to PEFT. (B̃'s entries are i.i.d., so this relabelling of its columns is
// the paper's method unchanged.) Each of A and B̃ is drawn Kaiming-uniform
// as in PEFT (a = √5: U(−1/√fan_in, 1/√fan_in), fan_in m_max for A and r for
// each base) and then divided by the standard deviation of its entries, so
// both have unit spread; SparseBasis and VerySparseBasis draw the paper's
// ternary {−1, 0, 1} bases instead.
//
// Where gopeft departs, and why:
//   - The init is PEFT's (Λ = 0, Γ = 1/m, s = α/r), not the authors' code's
//     (Λ = 1/max(n, r), Γ = 0, s = 10·α/r): both start at ΔW = 0, and PEFT's
//     is what PEFT's files assume.
//   - The bases are drawn in float64 with math/rand, not in float16 with
//     PyTorch's generator: a projection_prng_key cannot regenerate them, so
//     gopeft always saves them (see the file format in file.go).
//   - PEFT's memory-saving autograd function for Λ·A·Γ is not needed: Forward
//     composes gopeft's ops, whose gradients are the same numbers.
//
// Dropout acts on the adapter's input only. Merging folds ΔW into W₀. A and
// B̃ are constants, never trained: Params returns only Λ and Γ.
type RandLoRA struct {
	A       *peft.Tensor // (r×m_max), frozen, shared by every layer of the adapter
	B       *peft.Tensor // B̃ (M_max×n_max·r), frozen, shared: PEFT's (M_max, n_max, r) flattened
	Lambda  *peft.Tensor // Λ (r×n), trained; column i is the diagonal of Λ_i
	Gamma   *peft.Tensor // Γ (n×m), trained; row i is the diagonal of Γ_i
	R       int          // rank r of each basis
	N       int          // number of bases n = ⌈m/r⌉
	Alpha   float64      // α; the update is scaled by α/r
	Dropout float64      // dropout probability on the adapter's input, in [0, 1)
	// Basis says how A and B̃ were drawn and Seed with what seed; both are
	// recorded in a saved adapter's config (sparse, very_sparse,
	// projection_prng_key).
	Basis Basis
	Seed  int64

	d, k int        // the layer's weight is (d×k)
	rng  *rand.Rand // draws the dropout masks
}

var _ peft.Adapter = (*RandLoRA)(nil)

// DefaultAlphaPerRank is α/r when Config.Alpha is 0: PEFT's defaults r = 32,
// randlora_alpha = 640, which its documentation gives as "typically 20
// times the rank".
const DefaultAlphaPerRank = 20

// Basis is how the shared random bases are drawn.
type Basis int

const (
	// DenseBasis draws Kaiming-uniform entries (PEFT's default).
	DenseBasis Basis = iota
	// SparseBasis draws −1 and 1 with probability 1/6 each and 0 otherwise
	// (PEFT's sparse = true, the paper's sparse bases).
	SparseBasis
	// VerySparseBasis draws −1 and 1 with probability 1/(2√m_max) each
	// (PEFT's very_sparse = true).
	VerySparseBasis
)

func (b Basis) String() string {
	switch b {
	case DenseBasis:
		return "dense"
	case SparseBasis:
		return "sparse"
	case VerySparseBasis:
		return "very sparse"
	}
	return fmt.Sprintf("Basis(%d)", int(b))
}

// Config configures Add, after PEFT's RandLoraConfig.
type Config struct {
	R       int      // rank r ≥ 1 of each basis; it may exceed a layer's min(d, k) (then n = 1)
	Alpha   float64  // α ≥ 0; 0 means DefaultAlphaPerRank·r
	Dropout float64  // dropout on the adapter's input, in [0, 1)
	Basis   Basis    // how A and B̃ are drawn (DenseBasis by default)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A, B̃ and the dropout masks
}

// Check returns an error naming module and the value if cfg is not valid:
// r < 1, α negative or not finite, dropout outside [0, 1), or an unknown
// Basis.
func (cfg Config) Check(module string) error {
	switch {
	case cfg.R < 1:
		return fmt.Errorf("peft: RandLoRA on %s: rank r = %d; want r ≥ 1", module, cfg.R)
	case cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0):
		return fmt.Errorf("peft: RandLoRA on %s: randlora_alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	case cfg.Dropout < 0 || cfg.Dropout >= 1 || math.IsNaN(cfg.Dropout):
		return fmt.Errorf("peft: RandLoRA on %s: randlora_dropout = %v outside [0, 1)", module, cfg.Dropout)
	case cfg.Basis < DenseBasis || cfg.Basis > VerySparseBasis:
		return fmt.Errorf("peft: RandLoRA on %s: basis = %v; want DenseBasis, SparseBasis or VerySparseBasis", module, cfg.Basis)
	}
	return nil
}

// NumBases returns n = ⌈m/r⌉, the number of bases RandLoRA of rank r needs
// for full rank on a weight whose short side is m. It panics if r or m is
// below 1.
func NumBases(m, r int) int {
	if m < 1 || r < 1 {
		panic(peft.ArgError{Op: "randlora.NumBases", Msg: fmt.Sprintf("m = %d, r = %d; both must be ≥ 1", m, r)})
	}
	return (m + r - 1) / r
}

// NewBases returns RandLoRA's shared frozen bases for rank r and layers of
// at most dMax outputs and kMax inputs: A (r×m_max) and B̃ (M_max×n_max·r),
// with m_max = min(dMax, kMax), M_max = max(dMax, kMax) and n_max =
// NumBases(m_max, r), drawn from rng in PEFT's order (A, then B̃ base by
// base) as kind says. Each is then divided by the sample standard deviation
// of its entries (by the absolute value of a single entry); a draw whose
// entries are all zero, which only tiny sparse bases can give, is drawn
// again. It panics if a size is below 1 or kind is unknown.
func NewBases(rng *rand.Rand, r, dMax, kMax int, kind Basis) (a, b *peft.Tensor) {
	if r < 1 || dMax < 1 || kMax < 1 || kind < DenseBasis || kind > VerySparseBasis {
		panic(peft.ArgError{Op: "randlora.NewBases", Msg: fmt.Sprintf("r = %d, dMax = %d, kMax = %d, kind = %v; sizes must be ≥ 1", r, dMax, kMax, kind)})
	}
	mMax, bigMax := min(dMax, kMax), max(dMax, kMax)
	nMax := NumBases(mMax, r)
	av := mat.NewDense(r, mMax, nil)
	bv := mat.NewDense(bigMax, nMax*r, nil)
	for {
		switch kind {
		case DenseBasis:
			av.Copy(peft.RandUniform(rng, r, mMax, 1/math.Sqrt(float64(mMax))))
			for i := 0; i < nMax; i++ { // base i: columns i·r … i·r+r−1
				bi := peft.RandUniform(rng, bigMax, r, 1/math.Sqrt(float64(r)))
				bv.Slice(0, bigMax, i*r, (i+1)*r).(*mat.Dense).Copy(bi)
			}
		default:
			sparsity := 3.0 // P(−1) = P(1) = 1/(2·sparsity)
			if kind == VerySparseBasis {
				sparsity = math.Sqrt(float64(mMax))
			}
			ternary(rng, av, sparsity)
			ternary(rng, bv, sparsity)
		}
		if normalize(av) && normalize(bv) {
			break
		}
	}
	a, b = peft.NewConst(av), peft.NewConst(bv)
	a.Name, b.Name = "randlora_A", "randlora_B"
	return a, b
}

// ternary sets each entry of m to −1 with probability 1/(2s), to 1 with
// probability 1/(2s), and to 0 otherwise, from one uniform draw each.
func ternary(rng *rand.Rand, m *mat.Dense, s float64) {
	p := 1 / (2 * s)
	raw := m.RawMatrix()
	for i := 0; i < raw.Rows; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+raw.Cols]
		for j := range row {
			u := rng.Float64()
			switch {
			case u < p:
				row[j] = -1
			case u > 1-p:
				row[j] = 1
			default:
				row[j] = 0
			}
		}
	}
}

// normalize divides m by the sample standard deviation of its entries (by
// |x| if m has one entry), and reports false, leaving m alone, if that is
// zero.
func normalize(m *mat.Dense) bool {
	data := m.RawMatrix().Data
	sd := math.Abs(data[0])
	if len(data) > 1 {
		mean := 0.0
		for _, v := range data {
			mean += v
		}
		mean /= float64(len(data))
		ss := 0.0
		for _, v := range data {
			ss += (v - mean) * (v - mean)
		}
		sd = math.Sqrt(ss / float64(len(data)-1))
	}
	if sd == 0 {
		return false
	}
	m.Scale(1/sd, m)
	return true
}

// New returns the RandLoRA adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.randlora_lambda.name", …) on the shared
// bases a (r×m_max) and b (M_max×n_max·r), which it keeps, not copies; Λ
// starts at 0 and Γ at 1/m, α is cfg.Alpha (0: DefaultAlphaPerRank·r), and
// rng draws the dropout masks. cfg.R must be a's rows. It is an error if cfg
// is not valid (see Check), or if a and b do not fit rank r or are too small
// for the layer: m_max < m, M_max < M, or fewer than n bases.
func New(module, name string, d, k int, a, b *peft.Tensor, cfg Config, rng *rand.Rand) (*RandLoRA, error) {
	if err := cfg.Check(module); err != nil {
		return nil, err
	}
	r := cfg.R
	ar, mMax := a.Dims()
	bigMax, bc := b.Dims()
	m, big := min(d, k), max(d, k)
	n := NumBases(m, r)
	switch {
	case ar != r || bc%r != 0:
		return nil, fmt.Errorf("peft: RandLoRA on %s: bases A %s and B %s do not fit rank r = %d: want A (%d×m_max) and B (M_max×n_max·%d)",
			module, peft.ShapeOf(ar, mMax), peft.ShapeOf(bigMax, bc), r, r, r)
	case mMax < m || bigMax < big || bc/r < n:
		return nil, fmt.Errorf("peft: RandLoRA on %s: bases A %s and B %s are too small for W %s: want m_max ≥ %d, M_max ≥ %d and n_max·r ≥ %d·%d",
			module, peft.ShapeOf(ar, mMax), peft.ShapeOf(bigMax, bc), peft.ShapeOf(d, k), m, big, n, r)
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = DefaultAlphaPerRank * float64(r)
	}
	gamma := mat.NewDense(n, m, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			gamma.Set(i, j, 1/float64(m)) // PEFT: 1/max(n, m), and n ≤ m
		}
	}
	return &RandLoRA{
		A:       a,
		B:       b,
		Lambda:  peft.NewParam(module+".randlora_lambda."+name, mat.NewDense(r, n, nil)),
		Gamma:   peft.NewParam(module+".randlora_gamma."+name, gamma),
		R:       r,
		N:       n,
		Alpha:   cfg.Alpha,
		Dropout: cfg.Dropout,
		Basis:   cfg.Basis,
		Seed:    cfg.Seed,
		d:       d,
		k:       k,
		rng:     rng,
	}, nil
}

// Add freezes m's base weights and attaches a RandLoRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// It draws one pair of bases (see NewBases) from a generator seeded with
// cfg.Seed, sized to the largest output and input widths among the
// targets, and builds every layer on it with New.
func Add(m peft.Model, cfg Config) ([]*RandLoRA, error) {
	name := peft.AdapterName(cfg.Name)
	mods, err := peft.Targets(m, cfg.Targets...)
	if err != nil {
		return nil, err
	}
	dMax, kMax := 0, 0
	for _, l := range mods {
		if err := cfg.Check(l.Name); err != nil {
			return nil, err
		}
		d, k := l.W.Dims()
		dMax, kMax = max(dMax, d), max(kMax, k)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	a, b := NewBases(rng, cfg.R, dMax, kMax, cfg.Basis)
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		d, k := l.W.Dims()
		return New(l.Name, name, d, k, a, b, cfg, rand.New(rand.NewSource(rng.Int63())))
	})
	if err != nil {
		return nil, err
	}
	return As(added), nil
}

// As returns the RandLoRA adapters among ads (those that are not are
// skipped).
func As(ads []peft.Adapter) []*RandLoRA { return adapters.As[*RandLoRA](ads) }

// Dims returns the layer's weight shape (d×k).
func (a *RandLoRA) Dims() (d, k int) { return a.d, a.k }

// Scaling returns s = α/r.
func (a *RandLoRA) Scaling() float64 { return a.Alpha / float64(a.R) }

// sides returns m = min(d, k) and M = max(d, k).
func (a *RandLoRA) sides() (m, big int) { return min(a.d, a.k), max(a.d, a.k) }

// SliceB returns the layer's bases B̃[:M, :n·r] (M×n·r), a view of the
// shared B̃: column c·n + i is column c of the paper's B_i.
func (a *RandLoRA) SliceB() *mat.Dense {
	_, big := a.sides()
	return a.B.Value.Slice(0, big, 0, a.N*a.R).(*mat.Dense)
}

// repeatedA returns (r·n×m) whose row c·n + i is A[c, :m]: A_m with each
// row repeated n times, in the order of the rows of scaledA.
func (a *RandLoRA) repeatedA() *mat.Dense {
	m, _ := a.sides()
	rep := mat.NewDense(a.R*a.N, m, nil)
	for c := 0; c < a.R; c++ {
		row := a.A.Value.RawRowView(c)[:m]
		for i := 0; i < a.N; i++ {
			rep.SetRow(c*a.N+i, row)
		}
	}
	return rep
}

// scaledA returns Ã (r·n×m), row c·n + i = Λ[c, i]·(A[c, :m] ⊙ Γ[i, :]),
// as a tensor through which gradients reach Λ and Γ.
func (a *RandLoRA) scaledA() *peft.Tensor {
	gammas := make([]*peft.Tensor, a.R) // Γ stacked r times: row c·n + i is Γ[i, :]
	lambdas := make([]*peft.Tensor, a.R)
	for c := 0; c < a.R; c++ {
		gammas[c] = a.Gamma
		lambdas[c] = peft.Transpose(peft.Slice(a.Lambda, c, c+1, 0, a.N)) // (n×1): Λ[c, :]ᵀ
	}
	ag := peft.Mul(peft.NewConst(a.repeatedA()), peft.ConcatRows(gammas...)) // (r·n×m)
	return peft.MulCol(ag, peft.ConcatRows(lambdas...))                      // (r·n×m), row c·n+i scaled by Λ[c, i]
}

// Forward returns base + s·dropout(x)·ΔWᵀ for x (N×k), base (N×d): with Ã
// the scaled A (r·n×m) and B̃ the layer's bases (M×r·n), x·Ãᵀ·B̃ᵀ when
// d ≥ k (ΔW = s·B̃·Ã) and x·B̃·Ã when d < k (ΔW = s·Ãᵀ·B̃ᵀ).
func (a *RandLoRA) Forward(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	xd := peft.Dropout(x, a.Dropout, a.rng, l.Training) // (N×k)
	at := a.scaledA()                                   // Ã (r·n×m)
	bt := peft.NewConst(a.SliceB())                     // B̃ (M×r·n)
	var dx *peft.Tensor                                 // (N×d)
	if a.d >= a.k {
		dx = peft.MatMulT(peft.MatMulT(xd, at), bt) // (N×k)·(k×r·n)·(r·n×d)
	} else {
		dx = peft.MatMul(peft.MatMul(xd, bt), at) // (N×k)·(k×r·n)·(r·n×d)
	}
	return peft.Add(base, peft.Scale(dx, a.Scaling()))
}

// Params returns the trained Λ and Γ (not the frozen A and B̃).
func (a *RandLoRA) Params() []*peft.Tensor { return []*peft.Tensor{a.Lambda, a.Gamma} }

// Rank returns r, the rank of each basis (not of ΔW, which reaches
// min(d, k)).
func (a *RandLoRA) Rank() int { return a.R }

// Delta returns ΔW (d×k): s·B̃·Ã if d ≥ k, else its transpose.
func (a *RandLoRA) Delta() *mat.Dense {
	var p mat.Dense // (M×m)
	p.Mul(a.SliceB(), a.scaledA().Value)
	p.Scale(a.Scaling(), &p)
	if a.d >= a.k {
		return &p
	}
	return mat.DenseCopyOf(p.T())
}

// MergedWeight returns W₀ + ΔW (d×k).
func (a *RandLoRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	dw := a.Delta()
	dw.Add(w0, dw)
	return dw
}
