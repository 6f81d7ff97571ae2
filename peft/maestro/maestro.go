// Package maestro is Maestro (Horváth, Laskaridis, Rajput and Wang, 2024,
// "Maestro: Uncovering Low-Rank Structures via Trainable Decomposition",
// ICML, arXiv:2308.14929): each adapted layer's weight is factored as
// W = U·Vᵀ from its SVD and trained in that form with ordered dropout over
// the inner width, a hierarchical group-lasso penalty and progressive
// truncation, so that the rank each layer needs emerges from training.
//
// Add replaces every targeted module's output by its factored form (a
// Layer) and returns the controller, a *Maestro, to pass to training as a
// peft.Hook: it adds the penalty to the loss and truncates the layers at
// intervals.
package maestro

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

// Maestro trains layers in factored form W = U·Vᵀ and finds their rank
// (Horváth et al. 2024, arXiv:2308.14929). Each adapted layer with weight
// W₀ (out×in) and bias b₀ gets a Layer holding, from the thin SVD
// W₀ = P·diag(σ)·Qᵀ truncated to the first K components,
//
//	U = P_{:K}·diag(√σ_{:K})   (out×K),   column u_i = √σ_i·p_i
//	V = Q_{:K}·diag(√σ_{:K})   (in×K),    column v_i = √σ_i·q_i
//
// so U·Vᵀ is the best rank-K approximation of W₀, and W₀ itself when K =
// min(out, in) (to rounding; the tests assert 1e-12 relative). The layer's
// output, at width p ≤ k (k the current width, K at first), is
//
//	h = x·V_{:p}·U_{:p}ᵀ + b₀        x (n×in), x·V_{:p} (n×p), h (n×out)
//
// with U_{:p} the first p columns. Outside training p = k. While training
// (ordered dropout) p is drawn from U{1, …, k} at every forward pass, from
// the layer's own generator seeded by Config.Seed, so that the leading
// components learn to carry the layer on their own, as the SVD's do.
//
// The controller, a peft.Hook, adds the hierarchical group lasso over the
// current widths to the loss,
//
//	R = λ · Σ_layers Σ_{i<k} ( √(Σ_{i≤j<k} ‖u_j‖²) + √(Σ_{i≤j<k} ‖v_j‖²) )
//
// which charges component i for every component after it, so trailing ones
// shrink first; and every Interval steps, after the optimizer's update,
// it truncates each layer to the components whose importance
//
//	s_i = √(Σ_{i≤j<k} ‖u_j‖²) · √(Σ_{i≤j<k} ‖v_j‖²)
//
// is at least Threshold. s_i does not increase with i, so the kept
// components are a prefix and the rank k only falls; a layer keeps at least
// one. The dropped columns are zeroed and never read again (the tensors
// keep their K columns, so the optimizer's state stays valid; saving writes
// only the first k).
//
// How it fits the Adapter interface. Maestro replaces W rather than adding
// to it: Forward ignores the base output except for the bias, the layer's
// W₀ is left as it was (ChangesBase is false, and disabling the adapter
// gives the base model exactly), MergedWeight returns U_{:k}·V_{:k}ᵀ in place
// of W₀, and Delta returns U_{:k}·V_{:k}ᵀ − W₀ for comparisons with
// additive methods. A layer trains (out + in)·K numbers, more than W₀'s
// out·in at K = min(out, in): Maestro compresses a model as it trains, and
// its saving is the final (out + in)·k.
//
// Defaults are the reference code's (SamuelHorvath/Maestro-LoD): λ = 5e-3
// (--gp-lambda), Threshold = 1e-5 (--importance-threshold), the hierarchical
// penalty and importance (its training script's choice). Departures: the
// reference truncates once per epoch; gopeft counts steps, every Interval
// (default 100). The reference adds a full-width pass to every step and
// distils the partial pass from it, and by default samples one layer's
// width per step; gopeft's peft.Train makes one pass per step, so each
// layer draws its own width independently at every pass (the reference's
// --no-full-pass with a per-layer sampler), the full width among them. The
// reference's penalty also covers the pruned components, which gopeft
// drops entirely.
type Maestro struct {
	Layers []*Layer // one per adapted module, in model order

	cfg   Config
	trace peft.RankTrace
}

var _ peft.Hook = (*Maestro)(nil)

// Layer is Maestro's factored form of one module (see Maestro).
type Layer struct {
	U *peft.Tensor // (out×K), columns u_i
	V *peft.Tensor // (in×K), columns v_i
	K int          // the width at init

	// Sigma holds W₀'s singular values at init, all min(out, in) of them
	// (the starting spectrum; σ_i = ‖u_i‖·‖v_i‖ at init); nil for a loaded
	// layer.
	Sigma []float64

	width int        // current width k
	rng   *rand.Rand // draws the ordered-dropout widths
}

var _ peft.Adapter = (*Layer)(nil)

// Config configures Add.
type Config struct {
	// R is the width K at init, 1 ≤ R ≤ min(out, in) of every target:
	// min(out, in) reproduces W₀, less starts from its best rank-R
	// approximation.
	R int
	// Lambda is the group-lasso weight λ ≥ 0; 0 means the default 5e-3,
	// and a negative value is an error. NoPenalty turns the penalty off.
	Lambda    float64
	NoPenalty bool
	// Threshold is the importance below which trailing components are
	// dropped, ≥ 0; 0 means the default 1e-5.
	Threshold float64
	// Interval is the number of steps between truncations, ≥ 0; 0 means
	// the default 100. NoTruncation turns truncation off.
	Interval     int
	NoTruncation bool
	// NoDropout turns ordered dropout off: training uses the full width.
	NoDropout bool
	Targets   []string // target modules, by name or pattern (see peft.Targets)
	Name      string   // adapter name, "default" if empty
	Seed      int64    // seeds the ordered-dropout widths
}

// Defaults are the reference code's λ and threshold, and gopeft's
// interval.
const (
	DefaultLambda    = 5e-3
	DefaultThreshold = 1e-5
	DefaultInterval  = 100
)

// withDefaults fills in the defaults, or returns an error naming the field
// and its value.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: Maestro: %s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Lambda < 0 || math.IsNaN(cfg.Lambda) || math.IsInf(cfg.Lambda, 0):
		return cfg, bad("Lambda", cfg.Lambda, "a finite λ ≥ 0 (0: the default 5e-3)")
	case cfg.Threshold < 0 || math.IsNaN(cfg.Threshold) || math.IsInf(cfg.Threshold, 0):
		return cfg, bad("Threshold", cfg.Threshold, "a finite threshold ≥ 0 (0: the default 1e-5)")
	case cfg.Interval < 0:
		return cfg, bad("Interval", cfg.Interval, "≥ 0 steps (0: the default 100)")
	}
	if cfg.Lambda == 0 {
		cfg.Lambda = DefaultLambda
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	return cfg, nil
}

// Check returns an error naming module and the value if R does not fit a
// weight (out×in).
func (cfg Config) Check(module string, out, in int) error {
	if m := min(out, in); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: Maestro on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(out, in) = %d", module, cfg.R, peft.ShapeOf(out, in), m)
	}
	return nil
}

// New returns the Maestro layer of a module named module (for its
// parameters' names "module.maestro_U.name.weight", …) with weight w0
// (out×in), from w0's thin SVD, with rng for the ordered dropout. It is an
// error if cfg.R does not fit, if the SVD fails, or if ctx is cancelled.
func New(ctx context.Context, module, name string, w0 *mat.Dense, cfg Config, rng *rand.Rand) (*Layer, error) {
	out, in := w0.Dims()
	if err := cfg.Check(module, out, in); err != nil {
		return nil, err
	}
	svd, err := accel.ThinSVD(ctx, w0)
	if err != nil {
		return nil, fmt.Errorf("peft: Maestro on %s: SVD of W %s: %w", module, peft.ShapeOf(out, in), err)
	}
	k := cfg.R
	u, v := mat.NewDense(out, k, nil), mat.NewDense(in, k, nil)
	for i := 0; i < k; i++ {
		s := math.Sqrt(svd.S[i])
		for j := 0; j < out; j++ {
			u.Set(j, i, svd.U.At(j, i)*s) // u_i = √σ_i·p_i
		}
		for j := 0; j < in; j++ {
			v.Set(j, i, svd.VT.At(i, j)*s) // v_i = √σ_i·q_i
		}
	}
	l := FromFactors(module, name, u, v, rng)
	l.Sigma = append([]float64(nil), svd.S...)
	return l, nil
}

// FromFactors returns a Maestro layer with the given U (out×k) and V (in×k)
// (not copied), at width k, with rng for the ordered dropout. It panics if
// U and V differ in width or have none.
func FromFactors(module, name string, u, v *mat.Dense, rng *rand.Rand) *Layer {
	out, k := u.Dims()
	in, kv := v.Dims()
	if k != kv || k == 0 {
		panic(peft.ShapeError{Op: "maestro.FromFactors(" + module + ")", Got: "U " + peft.ShapeOf(out, k) + ", V " + peft.ShapeOf(in, kv), Want: "U (out×k), V (in×k), k ≥ 1"})
	}
	return &Layer{
		U:     peft.NewParam(module+".maestro_U."+name+".weight", u),
		V:     peft.NewParam(module+".maestro_V."+name+".weight", v),
		K:     k,
		width: k,
		rng:   rng,
	}
}

// Add attaches a Maestro layer named cfg.Name to every module of m
// matching cfg.Targets, freezes the base weights, and returns the
// controller to pass to training as a peft.Hook. The base weights are not
// changed. Each layer's dropout generator is seeded from one generator
// seeded with cfg.Seed, in model order.
func Add(m peft.Model, cfg Config) (*Maestro, error) {
	return AddContext(context.Background(), m, cfg)
}

// AddContext is Add with a context for the SVDs: cancelling ctx stops them
// and returns its error, with no adapter attached.
func AddContext(ctx context.Context, m peft.Model, cfg Config) (*Maestro, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	name := peft.AdapterName(cfg.Name)
	rng := rand.New(rand.NewSource(cfg.Seed))
	var names []string
	added, err := peft.AddAdapter(m, name, cfg.Targets, func(l *peft.Linear) (peft.Adapter, error) {
		names = append(names, l.Name)
		return New(ctx, l.Name, name, l.W.Value, cfg, rand.New(rand.NewSource(rng.Int63())))
	})
	if err != nil {
		return nil, err
	}
	c := &Maestro{Layers: As(added), cfg: cfg}
	c.trace.Modules = names
	c.trace.Ranks = make([][]int, len(names))
	return c, nil
}

// As returns the Maestro layers among ads (those that are not are skipped).
func As(ads []peft.Adapter) []*Layer { return adapters.As[*Layer](ads) }

// Config returns the controller's configuration with defaults filled in.
func (c *Maestro) Config() Config { return c.cfg }

// Ranks returns each layer's current width k, in Layers order.
func (c *Maestro) Ranks() []int {
	r := make([]int, len(c.Layers))
	for i, l := range c.Layers {
		r[i] = l.width
	}
	return r
}

// KeptParams returns Σ (out + in)·k over the layers: the numbers the
// factored layers hold at their current widths (peft.TrainableParams counts
// the K columns being trained).
func (c *Maestro) KeptParams() int {
	n := 0
	for _, l := range c.Layers {
		out, _ := l.U.Dims()
		in, _ := l.V.Dims()
		n += (out + in) * l.width
	}
	return n
}

// Trace returns the widths recorded at every truncation (a copy), with
// Train's steps; Budget holds their sum.
func (c *Maestro) Trace() *peft.RankTrace { return c.trace.Clone() }

// Penalty returns the hierarchical group lasso over the layers' current
// widths, without λ (1×1).
func (c *Maestro) Penalty() *peft.Tensor {
	var sum *peft.Tensor
	for _, l := range c.Layers {
		t := peft.Add(suffixNorms(l.U, l.width), suffixNorms(l.V, l.width)) // (k×1)
		if sum == nil {
			sum = peft.SumAll(t)
		} else {
			sum = peft.Add(sum, peft.SumAll(t))
		}
	}
	return sum
}

// suffixNorms returns, for a (m×K) and width k, the (k×1) column of
// √(Σ_{i≤j<k} ‖a_j‖²), a_j the columns of a: the row norms of the (k×k)
// upper triangle whose row i holds ‖a_j‖ at j ≥ i.
func suffixNorms(a *peft.Tensor, k int) *peft.Tensor {
	m, _ := a.Dims()
	cols := peft.Transpose(peft.RowNorms(peft.Transpose(peft.Slice(a, 0, m, 0, k)))) // (1×k) ‖a_j‖
	upper := mat.NewDense(k, k, nil)
	for i := 0; i < k; i++ {
		for j := i; j < k; j++ {
			upper.Set(i, j, 1)
		}
	}
	return peft.RowNorms(peft.MulRow(peft.NewConst(upper), cols)) // (k×1)
}

// Regularizer returns λ times Penalty (1×1), or nil with NoPenalty.
func (c *Maestro) Regularizer(step int) *peft.Tensor {
	if c.cfg.NoPenalty {
		return nil
	}
	return peft.Scale(c.Penalty(), c.cfg.Lambda)
}

// AfterBackward does nothing.
func (c *Maestro) AfterBackward(step int) {}

// AfterStep truncates every layer to the components of importance ≥
// Threshold every Interval steps (unless NoTruncation), and records the
// widths.
func (c *Maestro) AfterStep(step int) error {
	if c.cfg.NoTruncation || step%c.cfg.Interval != 0 {
		return nil
	}
	c.Truncate(c.cfg.Threshold)
	c.trace.Steps = append(c.trace.Steps, step)
	total := 0
	for i, l := range c.Layers {
		c.trace.Ranks[i] = append(c.trace.Ranks[i], l.width)
		total += l.width
	}
	c.trace.Budget = append(c.trace.Budget, total)
	return nil
}

// Truncate drops from every layer the trailing components of importance
// below threshold (see Layer.TruncateBelow).
func (c *Maestro) Truncate(threshold float64) {
	for _, l := range c.Layers {
		l.TruncateBelow(threshold)
	}
}

// Importance returns s_i = √(Σ_{i≤j<k} ‖u_j‖²)·√(Σ_{i≤j<k} ‖v_j‖²) for
// i < k, the current width: non-increasing in i.
func (l *Layer) Importance() []float64 {
	su, sv := suffixSq(l.U.Value, l.width), suffixSq(l.V.Value, l.width)
	s := make([]float64, l.width)
	for i := range s {
		s[i] = math.Sqrt(su[i]) * math.Sqrt(sv[i])
	}
	return s
}

// suffixSq returns Σ_{i≤j<k} ‖a_j‖² for i < k, a_j the columns of a.
func suffixSq(a *mat.Dense, k int) []float64 {
	m, _ := a.Dims()
	s := make([]float64, k+1)
	for j := k - 1; j >= 0; j-- {
		var c float64
		for r := 0; r < m; r++ {
			c += a.At(r, j) * a.At(r, j)
		}
		s[j] = s[j+1] + c
	}
	return s[:k]
}

// TruncateBelow drops the trailing components whose importance is below
// threshold, keeping at least one, and returns the new width.
func (l *Layer) TruncateBelow(threshold float64) int {
	k := 0
	for _, s := range l.Importance() {
		if s >= threshold {
			k++
		}
	}
	l.Truncate(max(k, 1))
	return l.width
}

// Truncate keeps the first k components and zeroes the others. It panics
// unless 1 ≤ k ≤ the current width.
func (l *Layer) Truncate(k int) {
	if k < 1 || k > l.width {
		panic(peft.ArgError{Op: "maestro.Layer.Truncate", Msg: fmt.Sprintf("width %d out of range: want 1 ≤ k ≤ the current width %d", k, l.width)})
	}
	for _, a := range []*mat.Dense{l.U.Value, l.V.Value} {
		m, _ := a.Dims()
		for j := k; j < l.width; j++ {
			for r := 0; r < m; r++ {
				a.Set(r, j, 0)
			}
		}
	}
	l.width = k
}

// Width returns the current width k.
func (l *Layer) Width() int { return l.width }

// Rank returns the current width k, the rank of U_{:k}·V_{:k}ᵀ.
func (l *Layer) Rank() int { return l.width }

// Params returns U and V.
func (l *Layer) Params() []*peft.Tensor { return []*peft.Tensor{l.U, l.V} }

// Forward returns x·V_{:p}·U_{:p}ᵀ + b₀ (n×out) for x (n×in), with p drawn
// from U{1, …, k} while l.Training (ordered dropout) and p = k otherwise.
func (l *Layer) Forward(ln *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	p := l.width
	if ln.Training && l.rng != nil {
		p = 1 + l.rng.Intn(l.width)
	}
	return l.Output(ln, x, p)
}

// Output returns x·V_{:p}·U_{:p}ᵀ + b₀ (n×out) for x (n×in): the layer at
// width p, using exactly its first p components. It panics unless
// 1 ≤ p ≤ k.
func (l *Layer) Output(ln *peft.Linear, x *peft.Tensor, p int) *peft.Tensor {
	if p < 1 || p > l.width {
		panic(peft.ArgError{Op: "maestro.Layer.Output", Msg: fmt.Sprintf("width %d out of range: want 1 ≤ p ≤ k = %d", p, l.width)})
	}
	out, _ := l.U.Dims()
	in, _ := l.V.Dims()
	if n, c := x.Dims(); c != in {
		panic(peft.ShapeError{Op: "maestro.Layer.Output(" + ln.Name + ")", Got: "x " + peft.ShapeOf(n, c), Want: fmt.Sprintf("x (n×%d)", in)})
	}
	u, v := l.U, l.V
	if p < l.K {
		u, v = peft.Slice(u, 0, out, 0, p), peft.Slice(v, 0, in, 0, p)
	}
	h := peft.MatMulT(peft.MatMul(x, v), u) // (n×p)·(out×p)ᵀ → (n×out)
	if ln.B != nil {
		h = peft.AddRow(h, ln.B)
	}
	return h
}

// Product returns U_{:k}·V_{:k}ᵀ (out×in), the layer's weight.
func (l *Layer) Product() *mat.Dense {
	out, _ := l.U.Dims()
	in, _ := l.V.Dims()
	var w mat.Dense
	w.Mul(l.U.Value.Slice(0, out, 0, l.width), l.V.Value.Slice(0, in, 0, l.width).T())
	return &w
}

// Delta returns U_{:k}·V_{:k}ᵀ − w0 (out×in): the layer's change as an
// additive update. It panics if w0 is not (out×in).
func (l *Layer) Delta(w0 *mat.Dense) *mat.Dense {
	l.checkW("maestro.Layer.Delta", w0)
	w := l.Product()
	w.Sub(w, w0)
	return w
}

// MergedWeight returns U_{:k}·V_{:k}ᵀ (out×in), which replaces w0. It
// panics if w0 is not (out×in).
func (l *Layer) MergedWeight(w0 *mat.Dense) *mat.Dense {
	l.checkW("maestro.Layer.MergedWeight", w0)
	return l.Product()
}

func (l *Layer) checkW(op string, w0 *mat.Dense) {
	out, _ := l.U.Dims()
	in, _ := l.V.Dims()
	if r, c := w0.Dims(); r != out || c != in {
		panic(peft.ShapeError{Op: op, Got: peft.ShapeOf(r, c), Want: peft.ShapeOf(out, in) + ", the layer's W₀"})
	}
}
