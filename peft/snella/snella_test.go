package snella_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/snella"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite at q = R = 2 and initial
// sparsity 0.3, so that the mask drops entries. ΔW′ is not zero at init
// (random A and B, as the released code; the softmax term is α/d), so the
// output at init is not the base model's: ZeroAtInit is false. q is not
// bounded by the layer's shape (AnyRank), and there is no α in the config
// (α is a trained scalar).
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := snella.Add(m, snella.Config{Q: o.R, Sparsity: 0.3, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(as), err
		},
		AnyRank: true,
		NoAlpha: true,
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("snella")
	if !ok {
		t.Fatal("SNELLA is not registered")
	}
	if m.Name != "SNELLA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_SNELLA" ||
		m.Package != "github.com/gopeft/gopeft/peft/snella" || !strings.Contains(m.Paper, "arXiv:2510.24037") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	as, err := snella.Add(newModel(), snella.Config{Q: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(as[0]); !ok || owner.Name != "SNELLA" {
		t.Errorf("a SNELLA adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// The test model. a: W (7×5), b: W (4×7), c: W (6×4).
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 7, 4, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every parameter random entries, as after training (γ
// kept near 1).
func randomize(rng *rand.Rand, as []*snella.SNELLA) {
	for _, a := range as {
		a.A.Value.Copy(adaptertest.RandDense(rng, a.A.Value.RawMatrix().Rows, a.Q))
		a.B.Value.Copy(adaptertest.RandDense(rng, a.B.Value.RawMatrix().Rows, a.Q))
		a.Alpha.Value.Set(0, 0, 1+0.3*rng.NormFloat64())
		a.Gamma.Value.Set(0, 0, 1+0.2*rng.Float64())
		a.Beta.Value.Set(0, 0, 0.1*rng.NormFloat64())
	}
}

// explicit returns ΔW′ formed entry by entry from the formula: the tests'
// reference.
func explicit(a *snella.SNELLA) *mat.Dense {
	d, k := a.Dims()
	h := a.Q / 2
	dist := func(i, j, head int) float64 {
		var s float64
		for t := 0; t < h; t++ {
			e := a.B.Value.At(i, head*h+t) - a.A.Value.At(j, head*h+t)
			s += e * e
		}
		return math.Sqrt(s)
	}
	kern := mat.NewDense(d, k, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			kern.Set(i, j, 0.1*dist(i, j, 0)-0.1*dist(i, j, 1))
		}
	}
	alpha, gamma, beta := a.Alpha.Value.At(0, 0), a.Gamma.Value.At(0, 0), a.Beta.Value.At(0, 0)
	out := mat.NewDense(d, k, nil)
	for j := 0; j < k; j++ {
		var z float64
		for i := 0; i < d; i++ {
			z += math.Exp(kern.At(i, j) / gamma)
		}
		for i := 0; i < d; i++ {
			out.Set(i, j, kern.At(i, j)+alpha*math.Exp(kern.At(i, j)/gamma)/z+beta)
		}
	}
	return out
}

// TestForward checks ΔW′ against the formula formed entry by entry, the
// layer's output against x·(W₀ + ΔW′ ⊙ M)ᵀ + b, and that the mask keeps
// the largest |ΔW′|.
func TestForward(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	m := newModel()
	as, err := snella.Add(m, snella.Config{Q: 4, Sparsity: 0.4, Targets: names, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rng, as)
	var worst float64
	for i, a := range as {
		a.Refresh()
		l := m.Mods[i]
		want := explicit(a)
		worst = math.Max(worst, adaptertest.RelDiffMax(a.Dense(), want))
		var dw mat.Dense
		dw.MulElem(want, a.Mask())
		x := adaptertest.RandDense(rng, 3, widths[i])
		var y mat.Dense
		w := mat.DenseCopyOf(l.W.Value)
		w.Add(w, &dw)
		y.Mul(x, w.T())
		y.Apply(func(_, c int, v float64) float64 { return v + l.B.Value.At(0, c) }, &y)
		if diff := adaptertest.RelDiffMax(l.Forward(peft.NewConst(x)).Value, &y); diff > 1e-13 {
			t.Errorf("%s: Forward differs from x·(W₀ + ΔW′ ⊙ M)ᵀ + b by %.3g relative", l.Name, diff)
		}
		checkTop(t, l.Name, a.Dense(), a.Mask(), a.Kept())
	}
	t.Logf("max relative difference of ΔW′ from the entrywise formula: %.3g", worst)
	if worst > 1e-13 {
		t.Errorf("ΔW′ differs from the formula by %.3g relative", worst)
	}
}

// checkTop checks that mask (0/1) has n ones, on entries of |w| no smaller
// than any it drops.
func checkTop(t *testing.T, what string, w, mask *mat.Dense, n int) {
	t.Helper()
	r, c := w.Dims()
	ones, minKept, maxDropped := 0, math.Inf(1), math.Inf(-1)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			v := math.Abs(w.At(i, j))
			switch mask.At(i, j) {
			case 1:
				ones++
				minKept = math.Min(minKept, v)
			case 0:
				maxDropped = math.Max(maxDropped, v)
			default:
				t.Fatalf("%s: mask entry %v", what, mask.At(i, j))
			}
		}
	}
	if ones != n || minKept < maxDropped {
		t.Errorf("%s: mask keeps %d entries (want %d), smallest kept |ΔW′| %g, largest dropped %g", what, ones, n, minKept, maxDropped)
	}
}

// TestKeptCount: nnz after sparsifying is ⌈(1−s)·d·k⌉, for the shapes and
// ratios of the table (known answers worked by hand), and the mask keeps
// the largest |ΔW′|.
func TestKeptCount(t *testing.T) {
	for _, c := range []struct {
		d, k int
		s    float64
		want int
	}{
		{16, 16, 0.3, 180}, // 0.7·256 = 179.2
		{16, 16, 0, 256},
		{5, 2, 0.3, 7}, // 0.7·10 = 7 exactly, not 8
		{7, 5, 0.5, 18},
		{3, 3, 0.99, 1},
		{4, 6, 0.25, 18},
	} {
		if got := snella.KeptCount(c.s, c.d*c.k); got != c.want {
			t.Errorf("KeptCount(%v, %d·%d) = %d, want %d", c.s, c.d, c.k, got, c.want)
		}
		m := adaptertest.NewChain(1, []string{"fc"}, c.k, c.d)
		as, err := snella.Add(m, snella.Config{Q: 4, Sparsity: c.s, Targets: []string{"fc"}, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := as[0]
		if a.Kept() != c.want {
			t.Errorf("%d×%d at s = %v: κ = %d, want %d", c.d, c.k, c.s, a.Kept(), c.want)
		}
		delta := a.Delta()
		nnz := 0
		for _, v := range delta.RawMatrix().Data {
			if v != 0 {
				nnz++
			}
		}
		if nnz != c.want {
			t.Errorf("%d×%d at s = %v: nnz(ΔW) = %d, want %d", c.d, c.k, c.s, nnz, c.want)
		}
		checkTop(t, "init", a.Dense(), a.Mask(), c.want)
	}
}

// rankOf returns the number of singular values of a above 1e-10·σ_1.
func rankOf(t *testing.T, a mat.Matrix) int {
	t.Helper()
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range s {
		if v > 1e-10*s[0] {
			n++
		}
	}
	return n
}

// TestRank checks the kernel's point: for W 16×16 at q = 4, the kernel K
// merged from A (16×4) and B (16×4) has full rank 16, while the linear
// kernel B·Aᵀ of the same factors has rank 4 = q; ΔW′ has rank 16 too.
func TestRank(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	m := adaptertest.NewChain(1, []string{"fc"}, 16, 16)
	as, err := snella.Add(m, snella.Config{Q: 4, Targets: []string{"fc"}, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	for trial := 0; trial < 2; trial++ {
		if trial == 1 {
			randomize(rng, as)
		}
		var lin mat.Dense
		lin.Mul(a.B.Value, a.A.Value.T())
		rk, rl, rd := rankOf(t, a.Kernel()), rankOf(t, &lin), rankOf(t, a.Dense())
		t.Logf("%s: rank(K) = %d, rank(B·Aᵀ) = %d, rank(ΔW′) = %d", map[int]string{0: "at init", 1: "random"}[trial], rk, rl, rd)
		if rk != 16 || rl != 4 || rd != 16 {
			t.Errorf("rank(K) = %d, rank(B·Aᵀ) = %d, rank(ΔW′) = %d; want 16, 4, 16", rk, rl, rd)
		}
	}
}

// TestParams: a layer trains q·(d + k) + 3 numbers.
func TestParams(t *testing.T) {
	for _, q := range []int{2, 4, 32} {
		m := newModel()
		if _, err := snella.Add(m, snella.Config{Q: q, Targets: names}); err != nil {
			t.Fatal(err)
		}
		want := 0
		for i := range names {
			want += q*(widths[i]+widths[i+1]) + 3
		}
		got, _, _ := peft.TrainableParams(m)
		t.Logf("q = %d: %d trainable numbers over layers 7×5, 4×7, 6×4", q, got)
		if got != want {
			t.Errorf("q = %d: %d trainable parameters, want Σ q·(d + k) + 3 = %d", q, got, want)
		}
	}
}

// TestTrainingMask: in training mode Forward recomputes the mask from the
// current ΔW′; in evaluation it uses the stored one.
func TestTrainingMask(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	m := newModel()
	as, err := snella.Add(m, snella.Config{Q: 4, Sparsity: 0.5, Targets: []string{"a"}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	before := a.Mask()
	randomize(rng, as)
	x := peft.NewConst(adaptertest.RandDense(rng, 2, 5))
	m.Forward(x)
	if !mat.Equal(a.Mask(), before) {
		t.Fatal("evaluation-mode Forward changed the mask")
	}
	m.SetTraining(true)
	m.Forward(x)
	m.SetTraining(false)
	if mat.Equal(a.Mask(), before) {
		t.Fatal("training-mode Forward kept the init mask after the parameters changed")
	}
	checkTop(t, "after a training forward", a.Dense(), a.Mask(), a.Kept())
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  snella.Config
		want []string
	}{
		{snella.Config{Q: 0, Targets: []string{"b"}}, []string{"SNELLA on b", "Q = 0", "(4×7)"}},
		{snella.Config{Q: 3, Targets: []string{"a"}}, []string{"SNELLA on a", "Q = 3", "even"}},
		{snella.Config{Q: 2, Sparsity: 1, Targets: []string{"a", "b"}}, []string{"SNELLA on a", "Sparsity = 1"}},
		{snella.Config{Q: 2, Sparsity: -0.1, Targets: []string{"c"}}, []string{"SNELLA on c", "Sparsity = -0.1"}},
		{snella.Config{Q: 2, Targets: []string{"z"}}, []string{`"z"`, `"a"`}},
	} {
		m := newModel()
		_, err := snella.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	as, err := snella.Add(newModel(), snella.Config{Q: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	err = peft.Maybe(func() { as[0].MergedWeight(mat.NewDense(5, 7, nil)) })
	var se peft.ShapeError
	if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "SNELLA", "(5×7)", "(7×5)") != nil {
		t.Errorf("W₀ (5×7) for a (7×5) layer: %v, want a ShapeError naming both", err)
	}
	err = peft.Maybe(func() { as[0].SetKept(36) })
	if adaptertest.ErrorMentions(err, "a", "36", "35") != nil {
		t.Errorf("SetKept(36) on 7×5: %v", err)
	}
}
