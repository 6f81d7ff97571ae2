// Package adaptertest is the conformance suite every gopeft method passes,
// as gonum's testlapack is for LAPACK implementations: Run checks an
// adapter method, RunOptimizer an optimizer. A method's test file calls
// the suite once and adds only the invariant its paper states:
//
//	func TestSuite(t *testing.T) {
//		adaptertest.Run(t, adaptertest.Case{
//			Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
//				ls, err := lora.Add(m, lora.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
//				return adapters(ls), err
//			},
//			ZeroAtInit: true,
//		})
//	}
package adaptertest

import (
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// Options are the settings the suite asks a method for; Case.Add maps them
// onto the method's own config.
type Options struct {
	Targets []string // target modules
	R       int      // rank (methods with no rank ignore it)
	Alpha   float64  // α (methods with no α ignore it)
	Seed    int64    // the seed of the method's random init
}

// Case is one adapter method under test.
type Case struct {
	// Add attaches the method to m with o and returns the adapters made,
	// one per targeted module, in model order.
	Add func(m peft.Model, o Options) ([]peft.Adapter, error)
	// ZeroAtInit says the method's output equals the base model's at init
	// (to InitTol relative; exactly if InitTol is 0).
	ZeroAtInit bool
	InitTol    float64
	// NoRank says the method has no rank: Rank reports 0 and no rank is
	// checked. NoAlpha says it has no α.
	NoRank, NoAlpha bool
	// AnyRank says ranks above min(d, k) are valid for the method (VeRA's
	// shared projections may be wider than a layer): the suite then does
	// not expect them to be refused.
	AnyRank bool
	// NoFile says the method has no adapter file format.
	NoFile bool
	// GradTol is the largest relative error of a gradient against central
	// differences; 1e-6 if 0.
	GradTol float64
	// HoldDetached, if set, is called before the finite differences: it
	// fixes quantities the method detaches from the graph (DoRA's norm) at
	// their current values, so that the numerical gradient differentiates
	// what the backward pass does. It returns the undo.
	HoldDetached func(ads []peft.Adapter) (undo func())
	// ChangesBase says the method rewrites the base weights when it is
	// added (PiSSA's residual W_res): the suite then takes the base model to
	// be the adapted model with its adapters disabled, and copies the base
	// weights to the fresh model it loads a saved adapter into.
	ChangesBase bool
	// ChangeRank, if set, changes the adapters' ranks as the method does
	// during training (AdaLoRA's allocation) and returns the ranks Rank
	// must then report.
	ChangeRank func(ads []peft.Adapter) []int
}

// Run runs every check of the suite on c, each a subtest.
func Run(t *testing.T, c Case) {
	if c.GradTol == 0 {
		c.GradTol = 1e-6
	}
	t.Run("Gradients", func(t *testing.T) { check(t, checkGradients(c)) })
	t.Run("InitAndDisable", func(t *testing.T) { check(t, checkInitAndDisable(c)) })
	t.Run("MergeUnmerge", func(t *testing.T) { check(t, checkMerge(c)) })
	t.Run("Rank", func(t *testing.T) { check(t, checkRank(c)) })
	t.Run("BadConfig", func(t *testing.T) { check(t, checkBadConfig(c)) })
	if !c.NoFile {
		t.Run("SaveLoad", func(t *testing.T) { check(t, checkSaveLoad(c, t.TempDir())) })
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

var suiteTargets = []string{"fc1", "fc2"}

// adapted returns the test model with c's adapters on fc1 and fc2 (rank 2,
// α 3), moved away from their init so that every part of the update is
// nonzero, as after some training.
func adapted(c Case) (*Chain, []peft.Adapter, error) {
	m := NewChain(1, suiteTargets, 5, 4, 3)
	ads, err := c.Add(m, Options{Targets: suiteTargets, R: 2, Alpha: 3, Seed: 2})
	if err != nil {
		return nil, nil, fmt.Errorf("Add: %w", err)
	}
	if len(ads) != 2 {
		return nil, nil, fmt.Errorf("Add on fc1 and fc2 returned %d adapters", len(ads))
	}
	perturb(ads, 3)
	return m, ads, nil
}

// perturb adds Gaussian noise (σ 0.3) to every trainable adapter parameter.
func perturb(ads []peft.Adapter, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	for _, a := range ads {
		for _, p := range a.Params() {
			if !p.Trainable {
				continue
			}
			r, c := p.Dims()
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					p.Value.Set(i, j, p.Value.At(i, j)+0.3*rng.NormFloat64())
				}
			}
		}
	}
}

// input is the suite's fixed batch x (6×5).
func input() *peft.Tensor {
	rng := rand.New(rand.NewSource(5))
	return peft.NewConst(RandDense(rng, 6, 5))
}

// checkGradients compares the gradient of a weighted sum of the outputs
// with respect to every trainable adapter parameter against central
// differences, and checks that base weights get none and that a second
// backward pass doubles the gradients.
func checkGradients(c Case) error {
	m, ads, err := adapted(c)
	if err != nil {
		return err
	}
	x := input()
	var params []*peft.Tensor
	for _, a := range ads {
		for _, p := range a.Params() {
			if p.Trainable {
				params = append(params, p)
			}
		}
	}
	if len(params) == 0 {
		return fmt.Errorf("the adapters have no trainable parameters")
	}
	if c.HoldDetached != nil {
		defer c.HoldDetached(ads)()
	}
	rng := rand.New(rand.NewSource(7))
	wts := RandDense(rng, 6, 3)
	loss := func() *peft.Tensor { return peft.SumAll(peft.Mul(m.Forward(x), peft.NewConst(wts))) }
	for _, p := range m.Params() {
		p.ZeroGrad()
	}
	loss().Backward()
	grads := make([][]float64, len(params))
	for i, p := range params {
		if p.Grad == nil {
			return fmt.Errorf("%s got no gradient", p.Name)
		}
		grads[i] = mat.DenseCopyOf(p.Grad).RawMatrix().Data
	}
	for _, p := range peft.BaseParams(m) {
		if p.Grad != nil && mat.Norm(p.Grad, math.Inf(1)) != 0 {
			return fmt.Errorf("frozen base parameter %s got a gradient", p.Name)
		}
	}
	// Backward adds into gradients: a second pass doubles them.
	loss().Backward()
	for i, p := range params {
		g := mat.DenseCopyOf(p.Grad).RawMatrix().Data
		for j := range g {
			if d := math.Abs(g[j] - 2*grads[i][j]); d > 1e-12*math.Max(1, math.Abs(g[j])) {
				return fmt.Errorf("%s: second backward gives %g at %d, want twice %g", p.Name, g[j], j, grads[i][j])
			}
		}
	}
	var worst float64
	var worstAt string
	for i, p := range params {
		_, cols := p.Dims()
		x0 := mat.DenseCopyOf(p.Value).RawMatrix().Data
		set := func(v []float64) {
			for j, e := range v {
				p.Value.Set(j/cols, j%cols, e)
			}
		}
		num := fd.Gradient(nil, func(v []float64) float64 {
			set(v)
			return loss().Scalar()
		}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		for j := range num {
			a, n := grads[i][j], num[j]
			rel := math.Abs(a-n) / math.Max(math.Max(math.Abs(a), math.Abs(n)), 1e-3)
			if rel > worst {
				worst, worstAt = rel, fmt.Sprintf("%s[%d]: backward %g, central differences %g", p.Name, j, a, n)
			}
		}
	}
	if worst > c.GradTol {
		return fmt.Errorf("gradient off by %.3g relative (tolerance %g) at %s", worst, c.GradTol, worstAt)
	}
	return nil
}

// base returns the output of the un-adapted twin of the test model.
func base(x *peft.Tensor) *mat.Dense {
	return NewChain(1, suiteTargets, 5, 4, 3).Forward(x).Value
}

// checkInit checks that Add changes the base weights exactly when the
// method says so, and the output at init against the base model's.
func checkInit(c Case, x *peft.Tensor, want *mat.Dense) error {
	m := NewChain(1, suiteTargets, 5, 4, 3)
	if _, err := c.Add(m, Options{Targets: suiteTargets, R: 2, Alpha: 3, Seed: 2}); err != nil {
		return fmt.Errorf("Add: %w", err)
	}
	changed := false
	for i, l := range m.Mods {
		changed = changed || !mat.Equal(l.W.Value, NewChain(1, suiteTargets, 5, 4, 3).Mods[i].W.Value)
	}
	if changed != c.ChangesBase {
		return fmt.Errorf("Add changed the base weights: %v, but ChangesBase is %v", changed, c.ChangesBase)
	}
	if !c.ZeroAtInit {
		return nil
	}
	got := m.Forward(x).Value
	if d := relDiff(got, want); d > c.InitTol || (c.InitTol == 0 && !mat.Equal(got, want)) {
		return fmt.Errorf("output at init differs from the base model's by %.3g relative (tolerance %g)", d, c.InitTol)
	}
	return nil
}

// checkInitAndDisable checks the output at init against the base model
// (where the method says they are equal), and that disabling the adapters,
// merged or not, gives the base model exactly.
func checkInitAndDisable(c Case) error {
	x := input()
	want := base(x)
	if err := checkInit(c, x, want); err != nil {
		return err
	}
	m, _, err := adapted(c)
	if err != nil {
		return err
	}
	if c.ChangesBase {
		// The base model is now the twin holding the rewritten weights.
		twin := NewChain(1, suiteTargets, 5, 4, 3)
		for i, l := range twin.Mods {
			l.W.Value.Copy(m.Mods[i].W.Value)
		}
		want = twin.Forward(x).Value
	}
	if relDiff(m.Forward(x).Value, want) < 1e-6 {
		return fmt.Errorf("the trained adapters do not change the output: the check below would prove nothing")
	}
	peft.DisableAdapters(m)
	if !mat.Equal(m.Forward(x).Value, want) {
		return fmt.Errorf("disabled adapters: output differs from the base model's by %.3g", relDiff(m.Forward(x).Value, want))
	}
	peft.EnableAdapters(m)
	if err := peft.MergeAdapters(m); err != nil {
		return fmt.Errorf("MergeAdapters: %w", err)
	}
	peft.DisableAdapters(m)
	if !mat.Equal(m.Forward(x).Value, want) {
		return fmt.Errorf("disabled merged adapters: output differs from the base model's by %.3g", relDiff(m.Forward(x).Value, want))
	}
	return nil
}

// checkMerge checks that the merged weight gives the adapter's output (to
// 1e-12 relative) and that unmerging restores the base weights bit for bit.
func checkMerge(c Case) error {
	m, _, err := adapted(c)
	if err != nil {
		return err
	}
	x := input()
	want := mat.DenseCopyOf(m.Forward(x).Value)
	w0 := make([]*mat.Dense, len(m.Mods))
	for i, l := range m.Mods {
		w0[i] = mat.DenseCopyOf(l.W.Value)
	}
	if err := peft.MergeAdapters(m); err != nil {
		return fmt.Errorf("MergeAdapters: %w", err)
	}
	if d := relDiff(m.Forward(x).Value, want); d > 1e-12 {
		return fmt.Errorf("merged output differs from the adapter's by %.3g relative", d)
	}
	for i, l := range m.Mods {
		if mat.Equal(l.W.Value, w0[i]) {
			return fmt.Errorf("%s: merging left W unchanged", l.Name)
		}
	}
	if err := peft.UnmergeAdapters(m); err != nil {
		return fmt.Errorf("UnmergeAdapters: %w", err)
	}
	for i, l := range m.Mods {
		if !mat.Equal(l.W.Value, w0[i]) {
			return fmt.Errorf("%s: unmerge does not restore W exactly", l.Name)
		}
	}
	if !mat.Equal(m.Forward(x).Value, want) {
		return fmt.Errorf("output after unmerge differs from before the merge")
	}
	return nil
}

// checkRank checks Rank at init, and after ChangeRank.
func checkRank(c Case) error {
	m, ads, err := adapted(c)
	if err != nil {
		return err
	}
	want := 2
	if c.NoRank {
		want = 0
	}
	for i, a := range ads {
		if a.Rank() != want {
			return fmt.Errorf("%s: Rank() = %d, want %d", m.Mods[i].Name, a.Rank(), want)
		}
	}
	if c.ChangeRank == nil {
		return nil
	}
	ranks := c.ChangeRank(ads)
	got := peft.Ranks(m)
	for i, a := range ads {
		if a.Rank() != ranks[i] || got[m.Mods[i].Name] != ranks[i] {
			return fmt.Errorf("%s: after the rank change Rank() = %d and peft.Ranks gives %d, want %d", m.Mods[i].Name, a.Rank(), got[m.Mods[i].Name], ranks[i])
		}
	}
	return nil
}

// checkBadConfig checks that rank 0, a rank above min(d, k), a negative α
// and an unknown target are errors naming the module and the value, and
// leave no adapter behind.
func checkBadConfig(c Case) error {
	type bad struct {
		what string
		o    Options
		want []string // substrings; a leading "re:" is a regular expression
	}
	var cases []bad
	if !c.NoRank {
		cases = append(cases, bad{"rank 0", Options{Targets: []string{"fc1"}, R: 0, Alpha: 1}, []string{"fc1", `re:\b0\b`}})
	}
	if !c.NoRank && !c.AnyRank {
		cases = append(cases,
			bad{"rank above min(d, k) = 3", Options{Targets: []string{"fc2"}, R: 7, Alpha: 1}, []string{"fc2", `re:\b7\b`}},
			bad{"rank above min(d, k) on the second module", Options{Targets: suiteTargets, R: 4, Alpha: 1}, []string{"fc2", `re:\b4\b`}})
	}
	if !c.NoAlpha {
		cases = append(cases, bad{"negative α", Options{Targets: []string{"fc1"}, R: 2, Alpha: -2.5}, []string{"fc1", "-2.5"}})
	}
	cases = append(cases, bad{"unknown target", Options{Targets: []string{"nope"}, R: 2, Alpha: 1}, []string{"nope", "fc1"}})
	for _, b := range cases {
		m := NewChain(1, suiteTargets, 5, 4, 3)
		_, err := c.Add(m, b.o)
		if err == nil {
			return fmt.Errorf("%s: no error", b.what)
		}
		for _, w := range b.want {
			if re, ok := strings.CutPrefix(w, "re:"); ok {
				if !regexp.MustCompile(re).MatchString(err.Error()) {
					return fmt.Errorf("%s: error %q does not give the value (%s)", b.what, err, re)
				}
			} else if !strings.Contains(err.Error(), w) {
				return fmt.Errorf("%s: error %q does not name %q", b.what, err, w)
			}
		}
		fresh := NewChain(1, suiteTargets, 5, 4, 3)
		for i, l := range m.Mods {
			if len(l.Adapters) != 0 {
				return fmt.Errorf("%s: %s kept an adapter from the failed Add", b.what, l.Name)
			}
			if !mat.Equal(l.W.Value, fresh.Mods[i].W.Value) {
				return fmt.Errorf("%s: the failed Add changed %s's base weight", b.what, l.Name)
			}
		}
	}
	return nil
}

// checkSaveLoad saves the adapters and loads them into a fresh model: the
// outputs are identical in F64, and within the precision in F32 and BF16;
// the loaded parameters are trainable and the ranks are kept.
func checkSaveLoad(c Case, dir string) error {
	m, ads, err := adapted(c)
	if err != nil {
		return err
	}
	if c.ChangeRank != nil {
		c.ChangeRank(ads)
	}
	x := input()
	want := mat.DenseCopyOf(m.Forward(x).Value)
	for _, dt := range []struct {
		dtype string
		tol   float64
	}{{"F64", 0}, {"F32", 1e-5}, {"BF16", 3e-2}} {
		d := dir + "/" + dt.dtype
		if err := peft.SaveAdapterWith(d, m, "", peft.AdapterOptions{DType: dt.dtype}); err != nil {
			return fmt.Errorf("SaveAdapter %s: %w", dt.dtype, err)
		}
		fresh := NewChain(1, suiteTargets, 5, 4, 3)
		if c.ChangesBase {
			for i, l := range fresh.Mods {
				l.W.Value.Copy(m.Mods[i].W.Value)
			}
		}
		if err := peft.LoadAdapter(d, fresh, ""); err != nil {
			return fmt.Errorf("LoadAdapter %s: %w", dt.dtype, err)
		}
		got := fresh.Forward(x).Value
		if diff := relDiff(got, want); diff > dt.tol || (dt.tol == 0 && !mat.Equal(got, want)) {
			return fmt.Errorf("%s: loaded adapter's output differs by %.3g relative (tolerance %g)", dt.dtype, diff, dt.tol)
		}
		for _, l := range fresh.Mods {
			a := l.ActiveAdapter()
			if a == nil {
				return fmt.Errorf("%s: %s has no active adapter after LoadAdapter", dt.dtype, l.Name)
			}
			if orig := m.Mods[indexOf(m.Mods, l.Name)].ActiveAdapter(); a.Rank() != orig.Rank() {
				return fmt.Errorf("%s: %s: loaded Rank() = %d, saved %d", dt.dtype, l.Name, a.Rank(), orig.Rank())
			}
			trainable := 0
			for _, p := range a.Params() {
				if p.Trainable {
					trainable++
				}
			}
			if trainable == 0 {
				return fmt.Errorf("%s: %s: the loaded adapter has no trainable parameter", dt.dtype, l.Name)
			}
			if l.W.Trainable {
				return fmt.Errorf("%s: %s: the base weight is trainable after LoadAdapter", dt.dtype, l.Name)
			}
		}
	}
	return nil
}

func indexOf(mods []*peft.Linear, name string) int {
	for i, l := range mods {
		if l.Name == name {
			return i
		}
	}
	return -1
}

// relDiff returns ‖a − b‖_max / max(‖b‖_max, 1e-300).
func relDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, math.Inf(1)) / math.Max(mat.Norm(b, math.Inf(1)), 1e-300)
}

// RandDense returns an r×c matrix of standard normal entries from rng.
func RandDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// Chain is the suite's test model, for methods' own tests too: Linear
// layers one after another with tanh between them, and a mean-squared loss
// against Batch.Y. The suite uses fc1 (5→4) and fc2 (4→3) on seed 1.
type Chain struct{ Mods []*peft.Linear }

// NewChain returns a Chain of layers names[i] (widths[i] → widths[i+1]),
// with biases, drawn from seed.
func NewChain(seed int64, names []string, widths ...int) *Chain {
	if len(widths) != len(names)+1 {
		panic(fmt.Sprintf("adaptertest: NewChain: %d names need %d widths, got %d", len(names), len(names)+1, len(widths)))
	}
	rng := rand.New(rand.NewSource(seed))
	c := &Chain{}
	for i, n := range names {
		c.Mods = append(c.Mods, peft.NewLinear(n, widths[i], widths[i+1], true, rng))
	}
	return c
}

// Forward returns the chain's output for x (n×widths[0]).
func (c *Chain) Forward(x *peft.Tensor) *peft.Tensor {
	for i, l := range c.Mods {
		x = l.Forward(x)
		if i < len(c.Mods)-1 {
			x = peft.Tanh(x)
		}
	}
	return x
}

// Modules returns the layers.
func (c *Chain) Modules() []*peft.Linear { return c.Mods }

// Params returns the layers' weights and biases, then the adapters'.
func (c *Chain) Params() []*peft.Tensor {
	var ps []*peft.Tensor
	for _, l := range c.Mods {
		ps = append(ps, l.W, l.B)
	}
	return append(ps, peft.AdapterParams(c.Mods)...)
}

// Loss returns the mean squared error against b.Y.
func (c *Chain) Loss(b peft.Batch) *peft.Tensor {
	d := peft.Sub(c.Forward(peft.NewConst(b.X)), peft.NewConst(b.Y))
	return peft.Mean(peft.Mul(d, d))
}

// SetTraining switches dropout.
func (c *Chain) SetTraining(t bool) {
	for _, l := range c.Mods {
		l.Training = t
	}
}

// ErrorMentions returns nil if err is an error whose message contains each
// of want, and otherwise an error saying what is missing: for a method's
// own table of bad inputs.
func ErrorMentions(err error, want ...string) error {
	if err == nil {
		return fmt.Errorf("no error")
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			return fmt.Errorf("error %q does not mention %q", err, s)
		}
	}
	return nil
}
