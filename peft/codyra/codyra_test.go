package codyra_test

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/codyra"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. At init B = 0, so the output is
// the base model's bit for bit. The rank change is the proximal step's
// effect: one gate of each adapter set to zero.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			cs, err := codyra.Add(m, codyra.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(cs), err
		},
		ZeroAtInit: true,
		ChangeRank: func(ads []peft.Adapter) []int {
			ranks := make([]int, len(ads))
			for i, c := range codyra.As(ads) {
				c.G.Value.Set(0, 0, 0)
				ranks[i] = c.Rank()
			}
			return ranks
		},
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("codyra")
	if !ok {
		t.Fatal("CoDyRA is not registered")
	}
	if m.Name != "CoDyRA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_CODYRA" ||
		m.Package != "github.com/gopeft/gopeft/peft/codyra" || !strings.Contains(m.Paper, "arXiv:2412.01004") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	cs, err := codyra.Add(newModel(), codyra.Config{R: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(cs[0]); !ok || owner.Name != "CoDyRA" {
		t.Errorf("a CoDyRA adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// The test model. a: W (7×5), b: W (4×7).
var (
	names  = []string{"a", "b"}
	widths = []int{5, 7, 4}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// TestSoftThreshold checks the proximal step on known answers: with κ = 0.1
// exactly the entries with |g| ≤ 0.1 become 0 (±κ itself included), and
// the others move 0.1 towards zero.
func TestSoftThreshold(t *testing.T) {
	g := []float64{0.3, -0.05, 0.1, -0.1, -0.2, 0.1 + 1e-9, 0, 2.5, -1e-12}
	want := []float64{0.3 - 0.1, 0, 0, 0, -0.2 + 0.1, 1e-9 + 0.1 - 0.1, 0, 2.4, 0}
	codyra.SoftThreshold(g, 0.1)
	for i := range g {
		if (want[i] == 0) != (g[i] == 0) || math.Abs(g[i]-want[i]) > 1e-15 {
			t.Errorf("g[%d] = %v, want %v", i, g[i], want[i])
		}
	}
	// κ = 0 changes nothing.
	h := []float64{1, -2, 3e-300}
	codyra.SoftThreshold(h, 0)
	if h[0] != 1 || h[1] != -2 || h[2] != 3e-300 {
		t.Errorf("κ = 0 changed the gates to %v", h)
	}
	// Zeroed gates give rank = number of nonzero gates.
	m := newModel()
	cs, err := codyra.Add(m, codyra.Config{R: 4, Targets: []string{"a"}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	copy(cs[0].G.Value.RawRowView(0), []float64{0.5, -0.05, 0.08, -1})
	codyra.SoftThreshold(cs[0].G.Value.RawRowView(0), 0.08)
	if got := cs[0].Rank(); got != 2 || peft.Ranks(m)["a"] != 2 {
		t.Errorf("after the threshold Rank() = %d, peft.Ranks = %d; want 2 nonzero gates %v", got, peft.Ranks(m)["a"], cs[0].Gates())
	}
}

// TestKappaSchedule checks the κ schedule against the reference loop,
// replayed step by step: κ = 0 and no proximal step through the dense
// phase, then κ climbing in Stages values to MaxKappa.
func TestKappaSchedule(t *testing.T) {
	for _, c := range []struct {
		steps, stages int
		dense, max    float64
	}{{500, 50, 0.5, 0.005}, {100, 4, 0.3, 1}, {37, 5, 0.25, 0.2}, {10, 50, 0.5, 1}} {
		p, err := codyra.NewProx([]*codyra.CoDyRA{mustAdd(t)}, codyra.ProxConfig{Steps: c.steps, Stages: c.stages, DenseFrac: c.dense, MaxKappa: c.max})
		if err != nil {
			t.Fatal(err)
		}
		// The reference loop: threshold_id += 1 at iterations ≥ D that are
		// multiples of L, prune when iteration > D.
		d := c.dense * float64(c.steps)
		l := int((float64(c.steps) - d) / float64(c.stages))
		if l == 0 {
			l = 1 // gopeft's departure, see Kappa
		}
		id := 0
		for i := 0; i < c.steps; i++ {
			if float64(i) >= d && i%l == 0 {
				id++
			}
			want := c.max * float64(min(id, c.stages-1)) / float64(c.stages-1)
			got, on := p.Kappa(i + 1)
			if on != (float64(i) > d) {
				t.Errorf("%+v step %d: proximal step %v, want %v", c, i+1, on, float64(i) > d)
			}
			if on && math.Abs(got-want) > 1e-15 {
				t.Errorf("%+v step %d: κ = %v, want %v", c, i+1, got, want)
			}
			if !on && got != 0 {
				t.Errorf("%+v step %d: κ = %v in the dense phase", c, i+1, got)
			}
		}
		if k, _ := p.Kappa(c.steps); c.steps >= 2*c.stages && k != c.max {
			t.Errorf("%+v: final κ = %v, want κ_max", c, k)
		}
	}
}

func mustAdd(t *testing.T) *codyra.CoDyRA {
	cs, err := codyra.Add(newModel(), codyra.Config{R: 2, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// TestMergePrune: with some gates zero, the merged weight gives the
// adapter's output (to 1e-13), Prune keeps the output and the nonzero
// gates' components, and Rank is the number of nonzero gates throughout.
func TestMergePrune(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	m := newModel()
	cs, err := codyra.Add(m, codyra.Config{R: 4, Alpha: 6, Targets: names, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		d, _ := c.Dims()
		c.B.Value.Copy(adaptertest.RandDense(rng, d, 4))
		c.G.Value.Set(0, 1, 0)
		c.G.Value.Set(0, 3, 0)
	}
	x := peft.NewConst(adaptertest.RandDense(rng, 6, 5))
	want := mat.DenseCopyOf(m.Forward(x).Value)
	for i, c := range cs {
		if c.Rank() != 2 {
			t.Errorf("%s: Rank() = %d with gates %v, want 2", names[i], c.Rank(), c.Gates())
		}
		// The explicit sum s·Σ_i g_i·B_i·A_i.
		d, k := c.Dims()
		dw := mat.NewDense(d, k, nil)
		for j := 0; j < 4; j++ {
			var bj mat.Dense
			bj.Outer(c.Scaling()*c.G.Value.At(0, j), mat.NewVecDense(d, mat.Col(nil, j, c.B.Value)), c.A.Value.RowView(j))
			dw.Add(dw, &bj)
		}
		if diff := adaptertest.RelDiffMax(c.Delta(), dw); diff > 1e-14 {
			t.Errorf("%s: ΔW differs from s·Σ g_i·B_i·A_i by %.3g relative", names[i], diff)
		}
	}
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if diff := adaptertest.RelDiffMax(m.Forward(x).Value, want); diff > 1e-13 {
		t.Errorf("merged output differs from the adapter's by %.3g relative", diff)
	}
	if err := peft.UnmergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		g := c.Gates()
		a1 := mat.DenseCopyOf(c.A.Value.RowView(2).T())
		if n := c.Prune(); n != 2 {
			t.Errorf("%s: Prune dropped %d components, want 2", names[i], n)
		}
		if r, _ := c.A.Dims(); r != 2 || c.Rank() != 2 {
			t.Errorf("%s: after Prune A has %d rows and Rank() = %d, want 2 and 2", names[i], r, c.Rank())
		}
		if c.G.Value.At(0, 1) != g[2] || !mat.Equal(c.A.Value.RowView(1).T(), a1) {
			t.Errorf("%s: Prune did not keep component 2 as the second", names[i])
		}
	}
	if diff := adaptertest.RelDiffMax(m.Forward(x).Value, want); diff > 1e-13 {
		t.Errorf("pruned output differs by %.3g relative", diff)
	}
}

// TestProxBadConfig: out-of-range settings are errors naming the field and
// the value.
func TestProxBadConfig(t *testing.T) {
	c := mustAdd(t)
	for _, b := range []struct {
		cfg  codyra.ProxConfig
		want []string
	}{
		{codyra.ProxConfig{}, []string{"Steps", "0"}},
		{codyra.ProxConfig{Steps: 10, MaxKappa: -0.1}, []string{"MaxKappa", "-0.1"}},
		{codyra.ProxConfig{Steps: 10, Stages: -2}, []string{"Stages", "-2"}},
		{codyra.ProxConfig{Steps: 10, DenseFrac: 1}, []string{"DenseFrac", "1"}},
		{codyra.ProxConfig{Steps: 10, TraceEvery: -1}, []string{"TraceEvery", "-1"}},
	} {
		if _, err := codyra.NewProx([]*codyra.CoDyRA{c}, b.cfg); adaptertest.ErrorMentions(err, b.want...) != nil {
			t.Errorf("%+v: %v", b.cfg, adaptertest.ErrorMentions(err, b.want...))
		}
	}
	if _, err := codyra.NewProx(nil, codyra.ProxConfig{Steps: 10}); err == nil {
		t.Error("no adapters: no error")
	}
	if _, err := codyra.NextTask(newModel(), ""); adaptertest.ErrorMentions(err, "no CoDyRA adapter") != nil {
		t.Errorf("NextTask without adapters: %v", err)
	}
	if _, err := codyra.Add(newModel(), codyra.Config{R: 2, Alpha: math.NaN(), Targets: []string{"b"}}); adaptertest.ErrorMentions(err, "b", "Alpha = NaN") != nil {
		t.Errorf("NaN α: %v", adaptertest.ErrorMentions(err, "b", "Alpha = NaN"))
	}
}
