package soka_test

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
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/soka"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared suite. The suite's layers are fc1 (4×5) and
// fc2 (3×4), whose default shapes, U_k (4×1) and (3×1), allow 4 and 3
// terms, min(d, k) as a rank. Add replaces W by the residual, so the
// output at init is the base model's to rounding.
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := soka.Add(m, soka.Config{R: o.R, Targets: o.Targets})
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit:  true,
		InitTol:     1e-14,
		ChangesBase: true,
		NoAlpha:     true,
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("soka")
	if !ok {
		t.Fatal("SoKA is not registered")
	}
	if m.Name != "SoKA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_SOKA" ||
		m.Package != "github.com/gopeft/gopeft/peft/soka" || !strings.Contains(m.Paper, "arXiv:2506.15251") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// vec returns a's entries in row-major order as a column (r·c × 1).
func vec(a *mat.Dense) *mat.Dense {
	r, c := a.Dims()
	return mat.NewDense(r*c, 1, append([]float64(nil), a.RawMatrix().Data...))
}

// TestRearrange: R(A⊗B) = vec(A)·vec(B)ᵀ exactly, and Unrearrange undoes R.
func TestRearrange(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, s := range []struct{ m1, n1, m2, n2 int }{{1, 1, 1, 1}, {2, 3, 4, 5}, {3, 1, 1, 4}, {4, 4, 4, 4}, {1, 5, 3, 2}} {
		a := adaptertest.RandDense(rng, s.m1, s.n1)
		b := adaptertest.RandDense(rng, s.m2, s.n2)
		var kr, want mat.Dense
		kr.Kronecker(a, b)
		want.Mul(vec(a), vec(b).T())
		got := soka.Rearrange(&kr, s.m1, s.n1)
		if !mat.Equal(got, &want) {
			t.Errorf("%+v: R(A⊗B) ≠ vec(A)·vec(B)ᵀ", s)
		}
		if back := soka.Unrearrange(got, s.m1, s.n1, s.m2, s.n2); !mat.Equal(back, &kr) {
			t.Errorf("%+v: Unrearrange(R(W)) ≠ W", s)
		}
	}
}

// kronSum returns Σ_t A_t ⊗ B_t for K random pairs of shapes (m1×n1),
// (m2×n2).
func kronSum(rng *rand.Rand, K, m1, n1, m2, n2 int) *mat.Dense {
	w := mat.NewDense(m1*m2, n1*n2, nil)
	var kr mat.Dense
	for t := 0; t < K; t++ {
		kr.Kronecker(adaptertest.RandDense(rng, m1, n1), adaptertest.RandDense(rng, m2, n2))
		w.Add(w, &kr)
	}
	return w
}

// TestKPSVD: a matrix that is a sum of K Kronecker products is rebuilt
// from K terms (to 1e-12 relative) and the rest of its spectrum is zero;
// σ is sorted and Σσ² = ‖W‖_F²; the error² of r terms is the tail Σ_{k>r}
// σ_k² (Eckart–Young on R(W)); every factor has unit norm.
func TestKPSVD(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	ctx := context.Background()
	for _, s := range []struct{ K, m1, n1, m2, n2 int }{{1, 2, 3, 4, 5}, {2, 4, 4, 4, 4}, {3, 3, 2, 2, 5}, {4, 8, 8, 8, 8}, {2, 1, 6, 5, 1}} {
		w := kronSum(rng, s.K, s.m1, s.n1, s.m2, s.n2)
		f, err := soka.Factorize(ctx, w, s.m1, s.n1)
		if err != nil {
			t.Fatal(err)
		}
		if p := min(s.m1*s.n1, s.m2*s.n2); len(f.S) != p {
			t.Errorf("%+v: %d terms, want min(m1·n1, m2·n2) = %d", s, len(f.S), p)
		}
		if d := adaptertest.RelDiffMax(f.Sum(s.K), w); d > 1e-12 {
			t.Errorf("%+v: %d terms rebuild W to %.3g relative, want ≤ 1e-12", s, s.K, d)
		}
		for i := s.K; i < len(f.S); i++ {
			if f.S[i] > 1e-12*f.S[0] {
				t.Errorf("%+v: σ_%d = %.3g, want 0 past K = %d", s, i+1, f.S[i], s.K)
			}
		}
		sq := 0.0
		for i, v := range f.S {
			sq += v * v
			if i > 0 && v > f.S[i-1] {
				t.Errorf("%+v: σ not descending at %d: %v", s, i, f.S)
			}
			if nu, nv := mat.Norm(f.U[i], 2), mat.Norm(f.V[i], 2); math.Abs(nu-1) > 1e-12 || math.Abs(nv-1) > 1e-12 {
				t.Errorf("%+v: ‖U_%d‖_F = %g, ‖V_%d‖_F = %g, want 1", s, i, nu, i, nv)
			}
		}
		fro := mat.Norm(w, 2)
		if math.Abs(sq-fro*fro) > 1e-12*fro*fro {
			t.Errorf("%+v: Σσ² = %.15g, ‖W‖_F² = %.15g", s, sq, fro*fro)
		}
		// Eckart–Young on a general matrix.
		g := adaptertest.RandDense(rng, s.m1*s.m2, s.n1*s.n2)
		fg, err := soka.Factorize(ctx, g, s.m1, s.n1)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r <= len(fg.S); r++ {
			var diff mat.Dense
			diff.Sub(g, fg.Sum(r))
			e := mat.Norm(&diff, 2)
			tail := 0.0
			for _, v := range fg.S[r:] {
				tail += v * v
			}
			if math.Abs(e*e-tail) > 1e-10*math.Max(tail, 1) {
				t.Errorf("%+v r=%d: ‖W − W_r‖_F² = %.12g, tail Σσ² = %.12g", s, r, e*e, tail)
			}
		}
	}
}

// TestRankRules checks the rules on spectra whose ranks are known.
func TestRankRules(t *testing.T) {
	// σ² = 9, 4, 1, 0.25 (total 14.25): E = 0.632, 0.912, 0.982, 1.
	s := []float64{3, 2, 1, 0.5}
	for _, c := range []struct {
		tau  float64
		want int
	}{{0.5, 1}, {0.63, 1}, {0.64, 2}, {0.9, 2}, {0.95, 3}, {0.99, 4}, {1, 4}} {
		if got := soka.EnergyRank(s, c.tau); got != c.want {
			t.Errorf("EnergyRank(%v, τ = %v) = %d, want %d", s, c.tau, got, c.want)
		}
	}
	for _, c := range []struct {
		s    []float64
		want int
	}{
		{s, 2}, // E(i) − i/4 = 0.382, 0.412, 0.232, 0
		{[]float64{math.Sqrt(10), 3, math.Sqrt(8), 1, math.Sqrt(0.9), math.Sqrt(0.8)}, 3}, // σ² 10, 9, 8 | 1, 0.9, 0.8
		{[]float64{10, 1, 1, 1}, 1},
		{[]float64{2, 2, 2, 2, 2}, 5}, // flat: no elbow
		{[]float64{0, 0}, 0},
		{nil, 0},
	} {
		if got := soka.ElbowRank(c.s); got != c.want {
			t.Errorf("ElbowRank(%.3g) = %d, want %d", c.s, got, c.want)
		}
	}
	for _, c := range []struct {
		tau   float64
		rMax  int
		elbow bool
		want  int
	}{{0.95, 4, true, 2}, {0.95, 4, false, 3}, {0.95, 1, false, 1}, {0.5, 4, true, 1}, {1, 10, false, 4}} {
		if got := soka.SelectRank(s, c.tau, c.rMax, c.elbow); got != c.want {
			t.Errorf("SelectRank(τ = %v, rMax = %d, elbow %v) = %d, want %d", c.tau, c.rMax, c.elbow, got, c.want)
		}
	}
}

func TestChooseFactors(t *testing.T) {
	for _, c := range []struct{ d, k, m1, n1 int }{
		{64, 64, 8, 8}, {4, 5, 4, 1}, {3, 4, 3, 1}, {10, 64, 5, 4}, {16, 4, 4, 2}, {6, 6, 2, 3}, {2, 2, 1, 2},
	} {
		m1, n1, err := soka.ChooseFactors(c.d, c.k)
		if err != nil || m1 != c.m1 || n1 != c.n1 {
			t.Errorf("ChooseFactors(%d, %d) = %d, %d, %v; want %d, %d", c.d, c.k, m1, n1, err, c.m1, c.n1)
		}
		// No shape costs fewer numbers per term.
		best := m1*n1 + (c.d/m1)*(c.k/n1)
		for a := 1; a <= c.d; a++ {
			for b := 1; b <= c.k; b++ {
				if c.d%a == 0 && c.k%b == 0 && a*b+(c.d/a)*(c.k/b) < best {
					t.Errorf("ChooseFactors(%d, %d): (%d×%d) is cheaper than (%d×%d)", c.d, c.k, a, b, m1, n1)
				}
			}
		}
	}
	for _, c := range [][2]int{{1, 1}, {7, 1}, {1, 13}} {
		_, _, err := soka.ChooseFactors(c[0], c[1])
		if e := adaptertest.ErrorMentions(err, peft.ShapeOf(c[0], c[1]), "one Kronecker term"); e != nil {
			t.Errorf("%v: %v", c, e)
		}
	}
}

// TestForward checks the reshaping forward pass against x·ΔWᵀ with ΔW
// formed from its Kronecker terms, for random factors of several shapes,
// ranks and row counts, to 1e-13 relative.
func TestForward(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	var worst float64
	for _, s := range []struct{ m1, n1, m2, n2 int }{{2, 3, 4, 5}, {4, 1, 1, 5}, {1, 4, 3, 1}, {3, 2, 2, 3}, {8, 8, 8, 8}} {
		d, k := s.m1*s.m2, s.n1*s.n2
		for _, r := range []int{1, 2, 3} {
			if r > min(s.m1*s.n1, s.m2*s.n2) {
				continue
			}
			m := adaptertest.NewChain(1, []string{"fc"}, k, d)
			as, err := soka.Add(m, soka.Config{R: r, M1: s.m1, N1: s.n1, Targets: []string{"fc"}})
			if err != nil {
				t.Fatalf("%+v r=%d: %v", s, r, err)
			}
			a := as[0]
			for _, p := range a.Params() {
				pr, pc := p.Dims()
				p.Value.Copy(adaptertest.RandDense(rng, pr, pc))
			}
			for _, n := range []int{1, 4} {
				x := adaptertest.RandDense(rng, n, k)
				base := m.Mods[0].Base(peft.NewConst(x))
				var want mat.Dense
				want.Mul(x, a.Delta().T())
				want.Add(&want, base.Value)
				got := a.Forward(m.Mods[0], peft.NewConst(x), base).Value
				worst = math.Max(worst, adaptertest.RelDiffMax(got, &want))
			}
		}
	}
	t.Logf("max relative difference from x·(W + ΔW)ᵀ + b: %.3g", worst)
	if worst > 1e-13 {
		t.Errorf("Forward differs from the dense form by %.3g relative, want ≤ 1e-13", worst)
	}
}

// spectrumWeight returns W (16×16) whose KPSVD with U_k (4×4) has exactly
// the singular values sigma (the rest zero): R(W) = P·diag(σ)·Qᵀ for
// random orthonormal P and Q.
func spectrumWeight(seed int64, sigma []float64) *mat.Dense {
	rng := rand.New(rand.NewSource(seed))
	orth := func() *mat.Dense {
		var qr mat.QR
		qr.Factorize(adaptertest.RandDense(rng, 16, 16))
		var q mat.Dense
		qr.QTo(&q)
		return &q
	}
	p, q := orth(), orth()
	s := mat.NewDense(16, 16, nil)
	for i, v := range sigma {
		s.Set(i, i, v)
	}
	var rw mat.Dense
	rw.Mul(p, s)
	rw.Mul(&rw, q.T())
	return soka.Unrearrange(&rw, 4, 4, 4, 4)
}

// knownSigma has σ² = 36, 25, 16, 0.25, 0.16, 0.09, 0.04, 0.01 (total
// 77.55): E = 0.464, 0.786, 0.993, 0.996, …; the elbow (over 16 terms) is
// 3.
var knownSigma = []float64{6, 5, 4, 0.5, 0.4, 0.3, 0.2, 0.1}

// TestInit checks, on a weight of known Kronecker spectrum: W_res + ΔW = W;
// the adapter holds the first r terms; W_res's spectrum is the tail; the
// spectrum is recorded; the selected ranks are the rules'; and the numbers
// trained are r·(m1·n1 + m2·n2 + 1).
func TestInit(t *testing.T) {
	for _, c := range []struct {
		cfg  soka.Config
		want int
	}{
		{soka.Config{R: 2}, 2},
		{soka.Config{R: 5}, 5},
		{soka.Config{R: 16, Energy: 0.9}, 3},
		{soka.Config{R: 16, Energy: 0.995}, 3}, // energy 4, elbow 3
		{soka.Config{R: 16, Energy: 0.995, NoElbow: true}, 4},
		{soka.Config{R: 2, Energy: 0.995}, 2},
	} {
		w := spectrumWeight(4, knownSigma)
		m := adaptertest.NewChain(1, []string{"fc"}, 16, 16)
		m.Mods[0].W.Value.Copy(w)
		cfg := c.cfg
		cfg.Targets = []string{"fc"}
		as, err := soka.Add(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		a := as[0]
		if a.R != c.want || a.M1 != 4 || a.N1 != 4 {
			t.Errorf("%+v: rank %d, U_k (%d×%d); want rank %d, (4×4)", c.cfg, a.R, a.M1, a.N1, c.want)
		}
		if n, _, _ := peft.TrainableParams(m); n != a.R*(16+16+1) || n != a.NumParams() {
			t.Errorf("%+v: %d trained numbers, want r·(16 + 16 + 1) = %d", c.cfg, n, a.R*33)
		}
		for i, v := range knownSigma {
			if math.Abs(a.Spectrum[i]-v) > 1e-12 || math.Abs(a.S.Value.At(0, min(i, a.R-1))-knownSigma[min(i, a.R-1)]) > 1e-12 {
				t.Errorf("%+v: spectrum %.6g, σ %.6g; want %v", c.cfg, a.Spectrum, a.S.Value.RawRowView(0), knownSigma)
				break
			}
		}
		wres := m.Mods[0].W.Value
		if d := adaptertest.RelDiffMax(a.MergedWeight(wres), w); d > 1e-14 {
			t.Errorf("%+v: W_res + ΔW differs from W by %.3g relative", c.cfg, d)
		}
		f, err := soka.Factorize(context.Background(), wres, 4, 4)
		if err != nil {
			t.Fatal(err)
		}
		tail := append(append([]float64(nil), knownSigma[min(a.R, len(knownSigma)):]...), make([]float64, 16)...)[:16]
		for i, v := range f.S {
			if math.Abs(v-tail[i]) > 1e-12 {
				t.Errorf("%+v: σ(W_res) = %.4g, want the tail %.4g", c.cfg, f.S, tail)
				break
			}
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  soka.Config
		want []string
	}{
		{soka.Config{R: 1, Energy: 1.5, Targets: []string{"a"}}, []string{"Energy", "1.5"}},
		{soka.Config{R: 1, Energy: -0.1, Targets: []string{"a"}}, []string{"Energy", "-0.1"}},
		{soka.Config{R: 1, M1: 2, Targets: []string{"a"}}, []string{"M1 = 2", "N1 = 0"}},
		{soka.Config{R: 1, M1: 3, N1: 2, Targets: []string{"a"}}, []string{"SoKA on a", "M1 = 3", "d = 8", "(8×12)"}},
		{soka.Config{R: 1, M1: 2, N1: 5, Targets: []string{"a"}}, []string{"SoKA on a", "N1 = 5", "k = 12", "(8×12)"}},
		{soka.Config{R: 1, M1: 8, N1: 12, Targets: []string{"a"}}, []string{"SoKA on a", "M1 = 8", "N1 = 12", "one Kronecker term"}},
		{soka.Config{R: 1, Targets: []string{"a", "b"}}, []string{"SoKA on b", "(7×1)", "one Kronecker term", "M1 and N1"}},
		{soka.Config{R: 9, Targets: []string{"a"}}, []string{"SoKA on a", "R = 9", "want 1 ≤ R ≤ 8"}},
		{soka.Config{R: 1, Targets: []string{"z"}}, []string{`"z"`, `"a"`}},
	} {
		// a (8×12); b (7×1), whose only Kronecker term is W itself.
		m := adaptertest.NewChain(1, []string{"a", "b"}, 12, 8, 7)
		m.Mods[1] = peft.NewLinear("b", 1, 7, true, rand.New(rand.NewSource(1)))
		_, err := soka.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	// A module with an adapter already is refused: SoKA rewrites W.
	m := adaptertest.NewChain(1, []string{"a"}, 12, 8)
	if _, err := lora.Add(m, lora.Config{R: 1, Targets: []string{"a"}, Name: "old"}); err != nil {
		t.Fatal(err)
	}
	w := mat.DenseCopyOf(m.Mods[0].W.Value)
	_, err := soka.Add(m, soka.Config{R: 1, Targets: []string{"a"}})
	if e := adaptertest.ErrorMentions(err, "SoKA on a", `"old"`); e != nil {
		t.Error(e)
	}
	if !mat.Equal(m.Mods[0].W.Value, w) {
		t.Error("the refused Add changed W")
	}
}

// saved returns a model with SoKA of ranks 3 (a, 16×16) and 2 (c, 8×16)
// moved off their init, and the directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, string) {
	t.Helper()
	m := adaptertest.NewChain(1, []string{"a", "c"}, 16, 16, 8)
	m.Mods[0].W.Value.Copy(spectrumWeight(5, knownSigma))
	if _, err := soka.Add(m, soka.Config{R: 3, Targets: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := soka.Add(m, soka.Config{R: 2, Targets: []string{"c"}}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(6))
	for _, l := range m.Mods {
		for _, p := range l.ActiveAdapter().Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
	dir := filepath.Join(t.TempDir(), "soka")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// fresh returns the test model holding m's residual weights.
func fresh(m *adaptertest.Chain) func() *adaptertest.Chain {
	return func() *adaptertest.Chain {
		f := adaptertest.NewChain(1, []string{"a", "c"}, 16, 16, 8)
		for i, l := range f.Mods {
			l.W.Value.Copy(m.Mods[i].W.Value)
		}
		return f
	}
}

// TestFile checks the saved layout and config, and the round trip bit for
// bit.
func TestFile(t *testing.T) {
	m, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for _, n := range f.Names() {
		got[n] = f.Shape(n)
	}
	f.Close()
	// a (16×16): U_k (4×4), V_k (4×4); c (8×16): U_k (2×4), V_k (4×4).
	want := map[string][]int{
		"base_model.model.a.soka_U.weight": {12, 4}, "base_model.model.a.soka_V.weight": {12, 4}, "base_model.model.a.soka_S.weight": {3},
		"base_model.model.c.soka_U.weight": {4, 4}, "base_model.model.c.soka_V.weight": {8, 4}, "base_model.model.c.soka_S.weight": {2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v,\nwant %v", got, want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["peft_type"] != "GOPEFT_SOKA" || cfg["r"] != 2.0 || !reflect.DeepEqual(cfg["rank_pattern"], map[string]any{"a": 3.0}) ||
		!reflect.DeepEqual(cfg["target_modules"], []any{"a", "c"}) {
		t.Errorf("adapter_config.json: %s", raw)
	}
	g := fresh(m)()
	if err := peft.LoadAdapter(dir, g, ""); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(7)), 5, 16))
	if !mat.Equal(g.Forward(x).Value, m.Forward(x).Value) {
		t.Error("the loaded adapter's output differs")
	}
	for i, l := range g.Mods {
		a, b := l.ActiveAdapter().(*soka.SoKA), m.Mods[i].ActiveAdapter().(*soka.SoKA)
		if a.R != b.R || a.M1 != b.M1 || a.N1 != b.N1 || !mat.Equal(a.U.Value, b.U.Value) || !mat.Equal(a.V.Value, b.V.Value) || !mat.Equal(a.S.Value, b.S.Value) {
			t.Errorf("%s: loaded adapter differs", l.Name)
		}
	}
}

// TestLoadRefuses: a wrong rank, tensors that do not fit and unknown fields
// are errors naming what is wrong, and attach nothing.
func TestLoadRefuses(t *testing.T) {
	m, dir := saved(t)
	adaptertest.RefusesLoad(t, dir, fresh(m), []adaptertest.Refusal{
		{What: "no r", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "r") },
			Want: []string{`"r"`, "missing"}},
		{What: "r = 4", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 4 },
			Want: []string{"soka_S", "[2]", "r = 4"}},
		{What: "U of 5 columns", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.a.soka_U.weight"] = mat.NewDense(12, 5, nil)
			shapes["base_model.model.a.soka_U.weight"] = []int{12, 5}
		}, Want: []string{"soka_U", "(12×5)", "k = 16"}},
		{What: "V of another shape", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.c.soka_V.weight"] = mat.NewDense(4, 4, nil)
			shapes["base_model.model.c.soka_V.weight"] = []int{4, 4}
		}, Want: []string{"soka_V", "[4 4]", "(8×4)"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["soka_alpha"] = 2 },
			Want: []string{"soka_alpha"}},
	})
}
