package eva_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/eva"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// rows is a Dataset of fixed rows X (n×k) and targets Y (n×o), sampled
// with replacement.
type rows struct{ X, Y *mat.Dense }

func (d rows) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := d.X.Dims()
	_, o := d.Y.Dims()
	x, y := mat.NewDense(size, k, nil), mat.NewDense(size, o, nil)
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		x.SetRow(i, d.X.RawRowView(j))
		y.SetRow(i, d.Y.RawRowView(j))
	}
	return peft.Batch{X: x, Y: y}
}

func (d rows) EvalBatches() []peft.Batch { return nil }

// scaledRows returns n rows of k features, feature j drawn from N(0, std[j]²)
// then rotated by a fixed random orthogonal matrix, and o random targets.
func scaledRows(seed int64, n int, std []float64, o int) rows {
	rng := rand.New(rand.NewSource(seed))
	k := len(std)
	z := adaptertest.RandDense(rng, n, k)
	for j, s := range std {
		for i := 0; i < n; i++ {
			z.Set(i, j, z.At(i, j)*s)
		}
	}
	q := orthonormal(adaptertest.RandDense(rng, k, k))
	var x mat.Dense
	x.Mul(z, q.T())
	return rows{X: &x, Y: adaptertest.RandDense(rng, n, o)}
}

// orthonormal returns the Q (r×c) of a's thin QR factorization.
func orthonormal(a *mat.Dense) *mat.Dense {
	var qr mat.QR
	qr.Factorize(a)
	var q mat.Dense
	qr.QTo(&q)
	r, c := a.Dims()
	return mat.DenseCopyOf(q.Slice(0, r, 0, c))
}

// suiteData is the data of the suite's Chain (fc1 5→4, fc2 4→3): inputs
// with well separated variances, so that the PCA converges in a few
// batches.
var suiteData = scaledRows(1, 400, []float64{3, 2, 1.4, 1, 0.6}, 3)

// TestSuite runs the shared suite through EVA's init. ρ = 1 gives every
// layer exactly r (the suite expects the rank it asked for); B = 0, so the
// output at init is the base model's bit for bit.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ls, _, err := eva.Add(context.Background(), m, suiteData, eva.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed, Rho: 1})
			return adaptertest.Adapters(ls), err
		},
		ZeroAtInit: true,
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("eva")
	if !ok {
		t.Fatal("EVA is not registered")
	}
	if m.Name != "EVA" || m.Kind != peft.AdapterMethod || m.Format != nil ||
		m.Package != "github.com/gopeft/gopeft/peft/eva" || !strings.Contains(m.Paper, "arXiv:2410.07170") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// pair is a test model of two layers reading separate parts of the input:
// "a" the first ka columns of X, "b" the rest. Its loss is the mean square
// of both outputs.
type pair struct {
	a, b *peft.Linear
	ka   int
}

func newPair(ka, kb, d int) *pair {
	rng := rand.New(rand.NewSource(3))
	return &pair{a: peft.NewLinear("a", ka, d, true, rng), b: peft.NewLinear("b", kb, d, true, rng), ka: ka}
}

func (p *pair) Modules() []*peft.Linear { return []*peft.Linear{p.a, p.b} }
func (p *pair) Params() []*peft.Tensor {
	return append([]*peft.Tensor{p.a.W, p.a.B, p.b.W, p.b.B}, peft.AdapterParams(p.Modules())...)
}
func (p *pair) SetTraining(bool) {}
func (p *pair) Loss(b peft.Batch) *peft.Tensor {
	n, k := b.X.Dims()
	xa := peft.NewConst(mat.DenseCopyOf(b.X.Slice(0, n, 0, p.ka)))
	xb := peft.NewConst(mat.DenseCopyOf(b.X.Slice(0, n, p.ka, k)))
	ya, yb := p.a.Forward(xa), p.b.Forward(xb)
	return peft.Add(peft.Mean(peft.Mul(ya, ya)), peft.Mean(peft.Mul(yb, yb)))
}

// pairData returns rows whose first 5 columns (layer a's input) lie on one
// line (rank 1: ratios (1, 0, 0, 0, 0)) and whose last 5 (layer b's) have
// standard deviations (4, 3, 2, 1, 0.5) along a rotated basis.
func pairData() rows {
	rng := rand.New(rand.NewSource(4))
	const n = 500
	dir := orthonormal(adaptertest.RandDense(rng, 5, 1)) // (5×1)
	b := scaledRows(5, n, []float64{4, 3, 2, 1, 0.5}, 1)
	x := mat.NewDense(n, 10, nil)
	for i := 0; i < n; i++ {
		t := 2 * rng.NormFloat64()
		for j := 0; j < 5; j++ {
			x.Set(i, j, 1+t*dir.At(j, 0)) // a line, off the origin
			x.Set(i, 5+j, b.X.At(i, j))
		}
	}
	return rows{X: x, Y: mat.NewDense(n, 1, nil)}
}

// TestAllocationKnown: layer a's inputs explain all their variance in one
// direction (ratio 1), layer b's spread as 16 : 9 : 4 : 1 : 0.25. With r = 2
// and ρ = 2 the budget of 4 goes to a's one direction and b's first three:
// (1, 3), whatever a's cap of 4.
func TestAllocationKnown(t *testing.T) {
	m := newPair(5, 5, 6)
	ls, res, err := eva.Add(context.Background(), m, pairData(), eva.Config{R: 2, Targets: []string{"a", "b"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Ranks(); !reflect.DeepEqual(got, map[string]int{"a": 1, "b": 3}) {
		t.Fatalf("ranks %v, want a: 1, b: 3", got)
	}
	a := res.Layer("a")
	t.Logf("a: ratio %.3g; b: ratio %.3g; %d batches", a.Ratio, res.Layer("b").Ratio, res.Batches)
	if a.Ratio[0] < 1-1e-12 || a.Cap != 4 {
		t.Errorf("a: first ratio %v (want 1), cap %d (want 4)", a.Ratio[0], a.Cap)
	}
	// α_l = α·r_l/r with α = r = 2: s = 1 on both layers.
	for _, l := range ls {
		if l.Scaling() != 1 {
			t.Errorf("scaling %v, want α/r = 1", l.Scaling())
		}
	}
	if ls[0].Alpha != 1 || ls[1].Alpha != 3 {
		t.Errorf("α_l = %v, %v; want α·r_l/r = 1, 3", ls[0].Alpha, ls[1].Alpha)
	}
	// FixedAlpha keeps α.
	m2 := newPair(5, 5, 6)
	ls2, _, err := eva.Add(context.Background(), m2, pairData(), eva.Config{R: 2, Targets: []string{"a", "b"}, Seed: 1, FixedAlpha: true})
	if err != nil {
		t.Fatal(err)
	}
	if ls2[0].Alpha != 2 || ls2[1].Alpha != 2 {
		t.Errorf("FixedAlpha: α_l = %v, %v; want 2, 2", ls2[0].Alpha, ls2[1].Alpha)
	}
}

// TestSpansSubspace: inputs x = μ + z·Qᵀ with Q (8×3) orthonormal and z of
// standard deviations (3, 2, 1) lie in an affine plane; with r = 3 the rows
// of A span Q's columns (the principal angles are 0) and are Q's columns in
// order, up to sign.
func TestSpansSubspace(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	const n, k = 300, 8
	q := orthonormal(adaptertest.RandDense(rng, k, 3))
	z := adaptertest.RandDense(rng, n, 3)
	for i := 0; i < n; i++ {
		for j, s := range []float64{3, 2, 1} {
			z.Set(i, j, z.At(i, j)*s)
		}
	}
	var x mat.Dense
	x.Mul(z, q.T())
	mu := adaptertest.RandDense(rng, 1, k)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			x.Set(i, j, x.At(i, j)+mu.At(0, j))
		}
	}
	m := adaptertest.NewChain(1, []string{"fc"}, k, 5)
	ls, _, err := eva.Add(context.Background(), m, rows{X: &x, Y: mat.NewDense(n, 5, nil)}, eva.Config{R: 3, Targets: []string{"fc"}, Rho: 1})
	if err != nil {
		t.Fatal(err)
	}
	a := ls[0].A.Value // (3×8)
	var aq, resid mat.Dense
	aq.Mul(a, q) // (3×3): the cosines of A's rows with Q's columns
	resid.Mul(&aq, q.T())
	resid.Sub(a, &resid) // A − A·Q·Qᵀ: the part of A outside span(Q)
	if v := mat.Norm(&resid, math.Inf(1)); v > 1e-10 {
		t.Errorf("A has %.3g outside span(Q)", v)
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			// Sampled variances are not exactly 9 : 4 : 1, so the directions
			// are Q's columns only up to the sample's rotation within span(Q).
			if got := math.Abs(aq.At(i, j)); math.Abs(got-want) > 0.1 {
				t.Errorf("|cos(A_%d, Q_%d)| = %.3f, want %v", i, j, got, want)
			}
		}
	}
}

// TestInit checks A·Aᵀ = I (1e-12), B = 0 and Σ r_l = L·r with r_l ≤ ρ·r on
// the digits MLP's three-layer twin for several r and ρ, and, with Whiten,
// A·Aᵀ = diag(1/s_i).
func TestInit(t *testing.T) {
	data := scaledRows(7, 300, []float64{5, 4, 3.5, 3, 2.5, 2, 1.7, 1.4, 1.2, 1, 0.8, 0.6}, 4)
	for _, c := range []struct {
		r      int
		rho    float64
		whiten bool
	}{{1, 2, false}, {2, 2, false}, {2, 1.5, false}, {3, 1, false}, {2, 3, true}} {
		m := adaptertest.NewChain(2, []string{"l1", "l2", "l3"}, 12, 9, 7, 4)
		ls, res, err := eva.Add(context.Background(), m, data, eva.Config{R: c.r, Rho: c.rho, Whiten: c.whiten, Targets: []string{"l1", "l2", "l3"}, Seed: 3})
		if err != nil {
			t.Fatalf("r=%d ρ=%g: %v", c.r, c.rho, err)
		}
		sum := 0
		var ranks []int
		for _, ly := range res.Layers {
			sum += ly.Rank
			ranks = append(ranks, ly.Rank)
			if float64(ly.Rank) > c.rho*float64(c.r) || ly.Rank > min(ly.D, ly.K) {
				t.Errorf("r=%d ρ=%g: %s has rank %d > ρ·r or min(d, k)", c.r, c.rho, ly.Module, ly.Rank)
			}
		}
		t.Logf("r=%d ρ=%g whiten=%v: ranks %v after %d batches", c.r, c.rho, c.whiten, ranks, res.Batches)
		if sum != 3*c.r {
			t.Errorf("r=%d ρ=%g: Σ r_l = %d, want L·r = %d", c.r, c.rho, sum, 3*c.r)
		}
		for _, l := range ls {
			ly := res.Layer(strings.TrimSuffix(l.A.Name, ".lora_A.default.weight"))
			if adaptertest.MaxAbs(l.B.Value) != 0 {
				t.Errorf("%s: B ≠ 0", l.A.Name)
			}
			var aat mat.Dense
			aat.Mul(l.A.Value, l.A.Value.T())
			for i := 0; i < l.R; i++ {
				for j := 0; j < l.R; j++ {
					want := 0.0
					if i == j {
						want = 1
						if c.whiten {
							want = 1 / ly.Singular[i]
						}
					}
					if math.Abs(aat.At(i, j)-want) > 1e-12 {
						t.Errorf("%s: (A·Aᵀ)[%d,%d] = %.15g, want %g", l.A.Name, i, j, aat.At(i, j), want)
					}
				}
			}
		}
	}
}

// TestAllocate checks the redistribution on a constructed case and against
// a brute-force search of every allocation, which must explain no more
// variance than the greedy one.
func TestAllocate(t *testing.T) {
	ratios := [][]float64{
		{0.5, 0.3, 0.1, 0.1},
		{0.4, 0.35, 0.2, 0.05},
		{0.9, 0.05, 0.03, 0.02},
	}
	// Sorted: .9 (3), .5 (1), .4 (2), .35 (2), .3 (1), .2 (2) | .1 (1) …
	if got := eva.Allocate(ratios, []int{3, 3, 3}, 6); !reflect.DeepEqual(got, []int{2, 3, 1}) {
		t.Errorf("caps 3: %v, want [2 3 1]", got)
	}
	// Cap 2: layer 2 loses .2, the next largest is layer 1's first .1.
	if got := eva.Allocate(ratios, []int{2, 2, 2}, 6); !reflect.DeepEqual(got, []int{2, 2, 2}) {
		t.Errorf("caps 2: %v, want [2 2 2]", got)
	}
	// A tie goes to the earlier layer.
	if got := eva.Allocate([][]float64{{0.5, 0.5}, {0.5, 0.5}}, []int{2, 2}, 3); !reflect.DeepEqual(got, []int{2, 1}) {
		t.Errorf("tie: %v, want [2 1]", got)
	}
	rng := rand.New(rand.NewSource(8))
	for trial := 0; trial < 200; trial++ {
		L := 1 + rng.Intn(4)
		r := 1 + rng.Intn(3)
		rs := make([][]float64, L)
		caps := make([]int, L)
		for l := range rs {
			rs[l] = descending(rng, 6)
			caps[l] = r + rng.Intn(3)
		}
		got := eva.Allocate(rs, caps, L*r)
		best := bruteBest(rs, caps, L*r)
		if v := explained(rs, got); math.Abs(v-best) > 1e-12 {
			t.Fatalf("ratios %v caps %v budget %d: greedy %v explains %g, the best allocation %g", rs, caps, L*r, got, v, best)
		}
	}
}

func descending(rng *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	sum := 0.0
	for i := range v {
		v[i] = rng.ExpFloat64()
		sum += v[i]
	}
	for i := range v {
		v[i] /= sum
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && v[j] > v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v
}

func explained(rs [][]float64, ranks []int) float64 {
	s := 0.0
	for l, r := range ranks {
		for _, v := range rs[l][:r] {
			s += v
		}
	}
	return s
}

// bruteBest returns the most variance any allocation with r_l ≤ caps[l] and
// Σ r_l = budget explains.
func bruteBest(rs [][]float64, caps []int, budget int) float64 {
	best := math.Inf(-1)
	ranks := make([]int, len(rs))
	var rec func(l, left int)
	rec = func(l, left int) {
		if l == len(rs) {
			if left == 0 {
				best = math.Max(best, explained(rs, ranks))
			}
			return
		}
		for r := 0; r <= min(caps[l], left); r++ {
			ranks[l] = r
			rec(l+1, left-r)
		}
	}
	rec(0, budget)
	return best
}

// TestDeterministic: the same model, data and config give the same ranks
// and the same A, bit for bit.
func TestDeterministic(t *testing.T) {
	var first []*mat.Dense
	for run := 0; run < 2; run++ {
		m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
		ls, _, err := eva.Add(context.Background(), m, suiteData, eva.Config{R: 2, Targets: []string{"fc1", "fc2"}, Seed: 9})
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range ls {
			if run == 0 {
				first = append(first, mat.DenseCopyOf(l.A.Value))
			} else if !mat.Equal(l.A.Value, first[i]) {
				t.Errorf("adapter %d: A differs between two runs", i)
			}
		}
	}
}

// TestCaptureRestores: Fit passes each layer's output through its active
// adapter while it reads the inputs, and leaves the adapters, the active
// one and the disabled switch as they were.
func TestCaptureRestores(t *testing.T) {
	m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	prev, err := lora.Add(m, lora.Config{R: 1, Targets: []string{"fc1", "fc2"}, Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	prev[0].B.Value.Set(0, 0, 5) // fc1's adapter changes fc2's inputs
	m.Mods[1].Disabled = true
	// The inputs fc2 sees through fc1's adapter.
	x := suiteData.X
	h := peft.Tanh(m.Mods[0].Forward(peft.NewConst(x))).Value
	want := mat.NewDense(1, 4, nil)
	n, _ := h.Dims()
	for i := 0; i < n; i++ {
		for j := 0; j < 4; j++ {
			want.Set(0, j, want.At(0, j)+h.At(i, j)/float64(n))
		}
	}
	// One batch of every row, in order: a dataset that ignores rng.
	res, err := eva.Fit(context.Background(), m, fixed{suiteData}, eva.Config{R: 1, Targets: []string{"fc2"}, Name: "eva", Tau: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	for _, l := range m.Mods {
		if len(l.Adapters) != 1 || l.Active != "old" {
			t.Errorf("%s: adapters %v, active %q after Fit", l.Name, l.AdapterNames(), l.Active)
		}
	}
	if m.Mods[0].Disabled || !m.Mods[1].Disabled {
		t.Errorf("Disabled switches changed: fc1 %v, fc2 %v", m.Mods[0].Disabled, m.Mods[1].Disabled)
	}
	// The PCA saw fc1's adapted output: its first direction and singular
	// value are those of h about its mean.
	ly := res.Layer("fc2")
	var c mat.Dense // centred h
	c.Apply(func(_, j int, v float64) float64 { return v - want.At(0, j) }, h)
	var cv mat.VecDense
	cv.MulVec(&c, ly.Components.RowView(0))
	// Every batch is all n rows, so the scatter is Rows/n times one pass's.
	got := mat.Dot(&cv, &cv) * float64(ly.Rows) / float64(n)
	if rel := math.Abs(got-ly.Singular[0]*ly.Singular[0]) / got; rel > 1e-9 {
		t.Errorf("‖(H − μ)·v₁‖² = %g, s₁² = %g: the PCA did not see fc1's adapted output", got, ly.Singular[0]*ly.Singular[0])
	}
}

// fixed samples every row of its data in order, whatever the size asked.
type fixed struct{ rows }

func (f fixed) Sample(*rand.Rand, int) peft.Batch { return peft.Batch{X: f.X, Y: f.Y} }

func TestBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cfg  eva.Config
		data peft.Dataset
		want []string
	}{
		{eva.Config{R: 2, Targets: []string{"fc1"}, Rho: 0.5}, suiteData, []string{"Rho", "0.5"}},
		{eva.Config{R: 2, Targets: []string{"fc1"}, Tau: 1.5}, suiteData, []string{"Tau", "1.5"}},
		{eva.Config{R: 2, Targets: []string{"fc1"}, BatchSize: -1}, suiteData, []string{"BatchSize", "-1"}},
		{eva.Config{R: 2, Targets: []string{"fc1"}, MaxBatches: 1}, suiteData, []string{"MaxBatches", "1"}},
		{eva.Config{R: 2, Targets: []string{"fc1"}, Dropout: 1}, suiteData, []string{"fc1", "dropout", "1"}},
		{eva.Config{R: 4, Targets: []string{"fc1", "fc2"}}, suiteData, []string{"fc2", "r = 4"}},
		{eva.Config{R: 2, Targets: []string{"fc1"}}, nil, []string{"no data"}},
		// Isotropic noise does not settle to τ = 1 in 3 batches.
		{eva.Config{R: 2, Targets: []string{"fc1"}, Tau: 1, MaxBatches: 3}, scaledRows(2, 50, []float64{1, 1, 1, 1, 1}, 3),
			[]string{"not converged", "fc1", "MaxBatches = 3"}},
	} {
		m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
		_, _, err := eva.Add(ctx, m, c.data, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept adapters %v", c.cfg, l.Name, l.AdapterNames())
			}
		}
	}
	// A merged adapter is refused, and the model left as it was.
	m := adaptertest.NewChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	if _, err := lora.Add(m, lora.Config{R: 1, Targets: []string{"fc1"}, Name: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	_, _, err := eva.Add(ctx, m, suiteData, eva.Config{R: 1, Targets: []string{"fc1", "fc2"}})
	if e := adaptertest.ErrorMentions(err, "fc1", `"old"`, "merged"); e != nil {
		t.Error(e)
	}
	// A cancelled context stops Fit.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = eva.Fit(cctx, adaptertest.NewChain(1, []string{"fc1"}, 5, 4), suiteData, eva.Config{R: 1, Targets: []string{"fc1"}})
	if e := adaptertest.ErrorMentions(err, "stopped", "context canceled"); e != nil {
		t.Error(e)
	}
}

// TestFile: the adapters save as PEFT LoRA, with the ranks that differ
// from the most common in rank_pattern and their α in alpha_pattern, and
// load back as LoRA with the same output.
func TestFile(t *testing.T) {
	m := newPair(5, 5, 6)
	ls, _, err := eva.Add(context.Background(), m, pairData(), eva.Config{R: 2, Targets: []string{"a", "b"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		l.B.Value.Copy(adaptertest.RandDense(rand.New(rand.NewSource(2)), 6, l.R))
	}
	dir := filepath.Join(t.TempDir(), "eva")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	// Ranks (1, 3): a tie, so r is the smaller, 1, and b's 3 is a pattern.
	if cfg["peft_type"] != "LORA" || cfg["r"] != 1.0 || cfg["lora_alpha"] != 1.0 ||
		!reflect.DeepEqual(cfg["rank_pattern"], map[string]any{"b": 3.0}) || !reflect.DeepEqual(cfg["alpha_pattern"], map[string]any{"b": 3.0}) {
		t.Errorf("adapter_config.json: %s", raw)
	}
	fresh := newPair(5, 5, 6)
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	b := pairData().Sample(rand.New(rand.NewSource(1)), 7)
	if !mat.Equal(fresh.Loss(b).Value, m.Loss(b).Value) {
		t.Error("the loaded adapter's loss differs")
	}
	if r := fresh.b.ActiveAdapter().Rank(); r != 3 {
		t.Errorf("loaded rank of b %d, want 3", r)
	}
}
