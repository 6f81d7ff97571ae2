// Package codyra is CoDyRA: LoRA whose rank-one components each carry a
// trained gate, driven to exact zeros by a proximal (soft-thresholding)
// step, so that every layer's rank is chosen by the data; tasks are learned
// one after another, each task's surviving components merged into the
// frozen weight before the next begins.
package codyra

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/internal/adapters"
	"gonum.org/v1/gonum/mat"
)

// CoDyRA adapts a frozen weight W₀ (d×k) of a Linear layer with a LoRA
// update whose rank-one components are gated (Lu, Zhao, Xue, Yao, Moore and
// Gong, 2024, "Adaptive Rank, Reduced Forgetting: Knowledge Retention in
// Continual Learning Vision-Language Models with Dynamic Rank-Selective
// LoRA", arXiv:2412.01004):
//
//	h  = x·W₀ᵀ + b + s·((x·Aᵀ) ⊙ g)·Bᵀ      x (n×k), h (n×d)
//	ΔW = s·B·diag(g)·A = s·Σ_i g_i·B_i·A_i   (d×k), B_i column i of B, A_i row i of A
//	A: r×k, Kaiming-uniform U(−1/√k, 1/√k);  B: d×r, init 0;  g: 1×r, init N(0, 1)
//	s = α/r (α = r by default: s = 1, as the reference code)
//
// so ΔW = 0 at init, and the adapter trains r·(d + k + 1) numbers. After
// every optimizer step past a dense phase, the hook Prox applies the
// proximal operator of κ·‖g‖₁ to every gate,
//
//	g_i ← sign(g_i)·max(|g_i| − κ, 0)
//
// which sets exactly the gates with |g_i| ≤ κ to zero. A zero gate switches
// its component B_i·A_i off, so the layer's rank, Rank, is the number of
// nonzero gates: it falls from r to what the task needs, layer by layer.
//
// Continual learning. Tasks are trained one after another. At a task
// boundary NextTask, as the reference code's increment_task, merges each
// layer's ΔW (its surviving components) into W₀, which stays frozen, and
// starts a fresh adapter of rank r with a new random A and g and B = 0.
// What is kept between tasks is thus only the merged weight; no data,
// old adapter or task identity is stored, and the model has its original
// architecture and inference cost.
//
// Departures from the reference code (github.com/Artificer-AI-Lab/CoDyRA):
//   - the proximal step is the soft threshold above. The reference code
//     shrinks |g| > κ by κ first and then zeroes |g| < κ, so that gates
//     that started in (κ, 2κ) are zeroed too and a gate equal to κ is kept;
//     gopeft applies the operator the paper states.
//   - the threshold κ is applied as is, not multiplied by the learning
//     rate, as the reference code does (a textbook ISTA step would use η·λ).
//   - no dropout (the reference's default is none).
type CoDyRA struct {
	A     *peft.Tensor // (r'×k)
	B     *peft.Tensor // (d×r')
	G     *peft.Tensor // (1×r') gates g
	R     int          // the rank r each task starts with; r' = r until Prune
	Alpha float64      // α; s = α/r

	module string
	name   string
	d, k   int
	rng    *rand.Rand // draws the next task's A and g
}

var _ peft.Adapter = (*CoDyRA)(nil)

// Config configures Add.
type Config struct {
	R       int      // rank r each task starts with, 1 ≤ r ≤ min(d, k) of every target
	Alpha   float64  // α; 0 means α = r (scaling 1, the reference's)
	Targets []string // target modules, by name or pattern (see peft.Targets)
	Name    string   // adapter name, "default" if empty
	Seed    int64    // seeds A's and g's init, this task's and the next ones'
}

// Check returns an error naming module, the field and its value if cfg does
// not fit a weight (d×k): R outside [1, min(d, k)] or α negative or not
// finite.
func (cfg Config) Check(module string, d, k int) error {
	if m := min(d, k); cfg.R < 1 || cfg.R > m {
		return fmt.Errorf("peft: CoDyRA on %s: R = %d out of range for W %s: want 1 ≤ R ≤ min(d, k) = %d", module, cfg.R, peft.ShapeOf(d, k), m)
	}
	if cfg.Alpha < 0 || math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) {
		return fmt.Errorf("peft: CoDyRA on %s: Alpha = %v; want a finite α ≥ 0", module, cfg.Alpha)
	}
	return nil
}

// New returns the CoDyRA adapter of a layer with weight (d×k) named module
// (for its parameters' names "module.lora_A.name.weight", …), with A and g
// drawn from rng and B zero. It is an error if cfg does not fit (see Check).
func New(module, name string, d, k int, cfg Config, rng *rand.Rand) (*CoDyRA, error) {
	if err := cfg.Check(module, d, k); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.R)
	}
	c := &CoDyRA{R: cfg.R, Alpha: cfg.Alpha, module: module, name: name, d: d, k: k,
		rng: rand.New(rand.NewSource(rng.Int63()))}
	c.reset()
	return c, nil
}

// reset starts a fresh task: A Kaiming-uniform, B = 0, g ~ N(0, 1), all of
// rank r.
func (c *CoDyRA) reset() {
	r := c.R
	g := mat.NewDense(1, r, nil)
	for i := 0; i < r; i++ {
		g.Set(0, i, c.rng.NormFloat64())
	}
	c.setFactors(peft.RandUniform(c.rng, r, c.k, 1/math.Sqrt(float64(c.k))), mat.NewDense(c.d, r, nil), g)
}

// setFactors makes a (r'×k), b (d×r') and g (1×r') the adapter's
// parameters (not copied).
func (c *CoDyRA) setFactors(a, b, g *mat.Dense) {
	c.A = peft.NewParam(c.module+".lora_A."+c.name+".weight", a)
	c.B = peft.NewParam(c.module+".lora_B."+c.name+".weight", b)
	c.G = peft.NewParam(c.module+".lora_gate."+c.name, g)
}

// Add freezes m's base weights and attaches a CoDyRA adapter, named
// cfg.Name, to every module matching cfg.Targets, making it the active one.
// Each adapter's A and g are drawn from a generator seeded from one seeded
// with cfg.Seed, module after module in model order.
func Add(m peft.Model, cfg Config) ([]*CoDyRA, error) {
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

// As returns the CoDyRA adapters among ads (those that are not are
// skipped).
func As(ads []peft.Adapter) []*CoDyRA { return adapters.As[*CoDyRA](ads) }

// Of returns the active CoDyRA adapter of every module of m that has one,
// in model order: what Prox and NextTask act on.
func Of(m peft.Model) []*CoDyRA {
	var out []*CoDyRA
	for _, l := range m.Modules() {
		if c, ok := l.ActiveAdapter().(*CoDyRA); ok {
			out = append(out, c)
		}
	}
	return out
}

// Module returns the name of the module the adapter is on.
func (c *CoDyRA) Module() string { return c.module }

// Dims returns the layer's weight shape (d×k).
func (c *CoDyRA) Dims() (d, k int) { return c.d, c.k }

// Scaling returns s = α/r.
func (c *CoDyRA) Scaling() float64 { return c.Alpha / float64(c.R) }

// Forward returns base + s·((x·Aᵀ) ⊙ g)·Bᵀ for x (n×k), base (n×d).
func (c *CoDyRA) Forward(_ *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
	if _, k := x.Dims(); k != c.k {
		n, _ := x.Dims()
		panic(peft.ShapeError{Op: c.module + ".CoDyRA.Forward", Got: "x " + peft.ShapeOf(n, k), Want: fmt.Sprintf("x (n×%d)", c.k)})
	}
	ax := peft.MatMulT(x, c.A)   // (n×r') = x·Aᵀ
	axg := peft.MulRow(ax, c.G)  // (n×r') = (x·Aᵀ) ⊙ g, row by row
	up := peft.MatMulT(axg, c.B) // (n×d)
	return peft.Add(base, peft.Scale(up, c.Scaling()))
}

// Params returns A, B and g.
func (c *CoDyRA) Params() []*peft.Tensor { return []*peft.Tensor{c.A, c.B, c.G} }

// Rank returns the number of nonzero gates: the rank of ΔW's gated sum.
func (c *CoDyRA) Rank() int {
	n := 0
	for _, g := range c.G.Value.RawRowView(0) {
		if g != 0 {
			n++
		}
	}
	return n
}

// Gates returns a copy of g.
func (c *CoDyRA) Gates() []float64 { return append([]float64(nil), c.G.Value.RawRowView(0)...) }

// Delta returns ΔW = s·B·diag(g)·A (d×k).
func (c *CoDyRA) Delta() *mat.Dense {
	var bg mat.Dense // (d×r') = B·diag(g)
	bg.Apply(func(_, j int, v float64) float64 { return v * c.G.Value.At(0, j) }, c.B.Value)
	dw := mat.NewDense(c.d, c.k, nil)
	dw.Mul(&bg, c.A.Value)
	dw.Scale(c.Scaling(), dw)
	return dw
}

// MergedWeight returns w0 + ΔW (d×k). It panics if w0 is not (d×k).
func (c *CoDyRA) MergedWeight(w0 *mat.Dense) *mat.Dense {
	if r, k := w0.Dims(); r != c.d || k != c.k {
		panic(peft.ShapeError{Op: c.module + ".CoDyRA.MergedWeight", Got: peft.ShapeOf(r, k), Want: peft.ShapeOf(c.d, c.k) + ", the adapter's W₀"})
	}
	dw := c.Delta()
	dw.Add(w0, dw)
	return dw
}

// Prune drops the components whose gate is zero from A, B and g, which
// changes neither ΔW nor the output, and returns how many it dropped. If
// every gate is zero one component is kept (its gate zero), because a
// matrix cannot have a zero dimension. The pruned parameters are new
// tensors: an optimizer's state for the old ones no longer applies.
func (c *CoDyRA) Prune() int {
	g := c.G.Value.RawRowView(0)
	var keep []int
	for i, v := range g {
		if v != 0 {
			keep = append(keep, i)
		}
	}
	if len(keep) == len(g) {
		return 0
	}
	if len(keep) == 0 {
		keep = []int{0}
	}
	a := mat.NewDense(len(keep), c.k, nil)
	b := mat.NewDense(c.d, len(keep), nil)
	gn := mat.NewDense(1, len(keep), nil)
	for t, i := range keep {
		a.SetRow(t, c.A.Value.RawRowView(i))
		b.SetCol(t, mat.Col(nil, i, c.B.Value))
		gn.Set(0, t, g[i])
	}
	dropped := len(g) - len(keep)
	c.setFactors(a, b, gn)
	return dropped
}

// NextTask ends the current task of every CoDyRA adapter of m named name
// ("" for "default"), as the reference's increment_task: it adds each
// layer's ΔW into its frozen W₀ and starts a fresh adapter of rank r (A and
// g redrawn, B = 0), so the model's output is unchanged and the next task
// trains new parameters on the merged weight. It returns the rank (nonzero
// gates) each adapted module had, by module name. It is an error if m has
// no such adapter or one is merged.
func NextTask(m peft.Model, name string) (map[string]int, error) {
	name = peft.AdapterName(name)
	var mods []*peft.Linear
	for _, l := range m.Modules() {
		if _, ok := l.Adapters[name].(*CoDyRA); !ok {
			continue
		}
		if l.Merged() != "" {
			return nil, fmt.Errorf("peft: CoDyRA.NextTask: %s: adapter %q is merged; unmerge it first", l.Name, l.Merged())
		}
		mods = append(mods, l)
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("peft: CoDyRA.NextTask: the model has no CoDyRA adapter named %q", name)
	}
	ranks := map[string]int{}
	for _, l := range mods {
		c := l.Adapters[name].(*CoDyRA)
		ranks[l.Name] = c.Rank()
		l.W.Value.Copy(c.MergedWeight(l.W.Value))
		c.reset()
	}
	return ranks, nil
}
