package hut_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/hut"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite three times: with Forward's own
// choice of form (the mask form, for the suite's 6 rows at r = 2 on its
// small layers), and
// with each form forced, so that both pass every check, gradients
// included. At init B = 0, so the output is the base model's bit for bit
// (InitTol 0).
func TestSuite(t *testing.T) {
	for _, f := range []struct {
		name string
		form int
	}{{"auto", hut.FormAuto}, {"hadamard", hut.FormHadamard}, {"mask", hut.FormMask}} {
		t.Run(f.name, func(t *testing.T) {
			hut.SetForm(t, f.form)
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					hs, err := hut.Add(m, hut.Config{R: o.R, Targets: o.Targets, Seed: o.Seed})
					return adaptertest.Adapters(hs), err
				},
				ZeroAtInit: true,
				NoAlpha:    true, // B·A carries the scale
			})
		})
	}
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("hut")
	if !ok {
		t.Fatal("HUT is not registered")
	}
	if m.Name != "HUT" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_HUT" ||
		m.Package != "github.com/gopeft/gopeft/peft/hut" || !strings.Contains(m.Paper, "arXiv:2409.13501") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	hs, err := hut.Add(newModel(), hut.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(hs[0]); !ok || owner.Name != "HUT" {
		t.Errorf("a HUT adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// The test model. a: W (7×5), b: W (4×7), c: W (6×4).
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 7, 4, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every A and B random entries, as after training.
func randomize(rng *rand.Rand, hs []*hut.HUT) {
	for _, h := range hs {
		for _, p := range h.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

// TestHadamardIdentity checks the identity the Hadamard form rests on,
// (W ⊙ (b·aᵀ))·x = b ⊙ (W·(a ⊙ x)), for random W (d×k), b (d), a (k), x
// (k), against the left side formed entry by entry, to 1e-14 relative.
func TestHadamardIdentity(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var worst float64
	for _, s := range []struct{ d, k int }{{1, 1}, {5, 3}, {3, 5}, {7, 9}, {16, 16}, {33, 31}} {
		for trial := 0; trial < 10; trial++ {
			w := adaptertest.RandDense(rng, s.d, s.k)
			b := adaptertest.RandDense(rng, s.d, 1)
			a := adaptertest.RandDense(rng, s.k, 1)
			x := adaptertest.RandDense(rng, s.k, 1)
			m := mat.NewDense(s.d, s.k, nil) // W ⊙ (b·aᵀ)
			m.Apply(func(i, j int, v float64) float64 { return v * b.At(i, 0) * a.At(j, 0) }, w)
			var lhs mat.Dense
			lhs.Mul(m, x)
			var ax, wax, rhs mat.Dense
			ax.MulElem(a, x)
			wax.Mul(w, &ax)
			rhs.MulElem(b, &wax)
			worst = math.Max(worst, adaptertest.RelDiffMax(&rhs, &lhs))
		}
	}
	t.Logf("max relative difference of the two sides over 60 random cases: %.3g", worst)
	if worst > 1e-14 {
		t.Errorf("(W ⊙ (b·aᵀ))·x and b ⊙ (W·(a ⊙ x)) differ by %.3g relative, want ≤ 1e-14", worst)
	}
}

// explicit returns x·(W ⊙ (J + B·A))ᵀ + b formed entry by entry: the
// tests' reference.
func explicit(h *hut.HUT, l *peft.Linear, x *mat.Dense) *mat.Dense {
	d, k := h.Dims()
	n, _ := x.Dims()
	wp := mat.NewDense(d, k, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			m := 1.0
			for t := 0; t < h.R; t++ {
				m += h.B.Value.At(i, t) * h.A.Value.At(t, j)
			}
			wp.Set(i, j, l.W.Value.At(i, j)*m)
		}
	}
	out := mat.NewDense(n, d, nil)
	for r := 0; r < n; r++ {
		for i := 0; i < d; i++ {
			v := l.B.Value.At(0, i)
			for j := 0; j < k; j++ {
				v += x.At(r, j) * wp.At(i, j)
			}
			out.Set(r, i, v)
		}
	}
	return out
}

// TestForms checks the two forms of Forward against each other and
// against the explicit x·(W₀ ⊙ (J + B·A))ᵀ + b, values to 1e-14 and the
// gradients of A and B to 1e-12, and MergedWeight against W₀ ⊙ (J + B·A).
func TestForms(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	var worstVal, worstGrad float64
	for _, r := range []int{1, 2, 4} {
		m := newModel()
		hs, err := hut.Add(m, hut.Config{R: r, Targets: names, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, hs)
		for i, h := range hs {
			l := m.Mods[i]
			d, k := h.Dims()
			var wp mat.Dense
			wp.MulElem(l.W.Value, h.Mask())
			if diff := adaptertest.RelDiffMax(h.MergedWeight(l.W.Value), &wp); diff > 1e-14 {
				t.Errorf("r=%d %s: MergedWeight differs from W₀ ⊙ (J + B·A) by %.3g relative", r, l.Name, diff)
			}
			for _, n := range []int{1, 2, 5} {
				x := adaptertest.RandDense(rng, n, k)
				want := explicit(h, l, x)
				wts := peft.NewConst(adaptertest.RandDense(rng, n, d))
				var grads [2][]*mat.Dense
				for f, fwd := range []func(*hut.HUT, *peft.Linear, *peft.Tensor) *peft.Tensor{hut.ForwardHadamard, hut.ForwardMask} {
					h.A.ZeroGrad()
					h.B.ZeroGrad()
					out := fwd(h, l, peft.NewConst(x))
					worstVal = math.Max(worstVal, adaptertest.RelDiffMax(out.Value, want))
					peft.SumAll(peft.Mul(out, wts)).Backward()
					grads[f] = []*mat.Dense{mat.DenseCopyOf(h.A.Grad), mat.DenseCopyOf(h.B.Grad)}
				}
				for j := range grads[0] {
					worstGrad = math.Max(worstGrad, adaptertest.RelDiffMax(grads[0][j], grads[1][j]))
				}
				// Forward is one of the two.
				if diff := adaptertest.RelDiffMax(l.Forward(peft.NewConst(x)).Value, want); diff > 1e-14 {
					t.Errorf("r=%d %s n=%d: Forward differs from the explicit output by %.3g relative", r, l.Name, n, diff)
				}
			}
		}
	}
	t.Logf("max relative difference from the explicit output %.3g; between the forms' gradients %.3g", worstVal, worstGrad)
	if worstVal > 1e-14 || worstGrad > 1e-12 {
		t.Errorf("forms disagree: outputs %.3g (want ≤ 1e-14), gradients %.3g (want ≤ 1e-12)", worstVal, worstGrad)
	}
}

// TestFormChoice: Forward takes the Hadamard form at r = 1, where it does
// fewer multiply-adds for any n, and at r·n ≤ T = d·k/1024 within [2, 32],
// the threshold measured by BenchmarkForward's sweep.
func TestFormChoice(t *testing.T) {
	for _, c := range []struct {
		dk    int
		r, n  int
		hadam bool
	}{
		{64 * 64, 1, 64, true}, {64 * 64, 2, 2, true}, {64 * 64, 2, 3, false}, {64 * 64, 4, 1, true}, {64 * 64, 16, 1, false},
		{256 * 256, 1, 1000, true}, {256 * 256, 2, 16, true}, {256 * 256, 2, 17, false}, {256 * 256, 8, 4, true}, {256 * 256, 16, 4, false},
		{4096 * 4096, 4, 8, true}, {4096 * 4096, 4, 9, false}, // T capped at 32
		{5 * 4, 2, 1, true}, {5 * 4, 2, 2, false}, // T at least 2
	} {
		if got := hut.UseHadamard(c.r, c.n, c.dk); got != c.hadam {
			t.Errorf("d·k = %d, r = %d, n = %d: Hadamard form %v, want %v", c.dk, c.r, c.n, got, c.hadam)
		}
	}
}

// TestInit checks the init (B = 0, A Kaiming-uniform) and that the output
// is the frozen model's exactly in both forms, with r·(d + k) trained
// numbers per layer.
func TestInit(t *testing.T) {
	for _, n := range []int{1, 6} { // the Hadamard form at n = 1, r = 1; the mask form at n = 6, r = 3 (T = 2)
		r := map[int]int{1: 1, 6: 3}[n]
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), n, 5))
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		hs, err := hut.Add(m, hut.Config{R: r, Targets: names, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("n=%d r=%d: output at init differs from the frozen model's", n, r)
		}
		want := 0
		for i, h := range hs {
			d, k := widths[i+1], widths[i]
			if adaptertest.MaxAbs(h.B.Value) != 0 {
				t.Errorf("%s: B is not zero at init", names[i])
			}
			if big, bound := adaptertest.MaxAbs(h.A.Value), 1/math.Sqrt(float64(k)); big > bound || big == 0 {
				t.Errorf("%s: max |A| = %g, want in (0, 1/√k = %g]", names[i], big, bound)
			}
			if !mat.Equal(h.MergedWeight(m.Mods[i].W.Value), m.Mods[i].W.Value) {
				t.Errorf("%s: merged weight at init is not W₀", names[i])
			}
			want += r * (d + k)
		}
		if got, _, _ := peft.TrainableParams(m); got != want {
			t.Errorf("r=%d: %d trainable parameters, want Σ r·(d + k) = %d", r, got, want)
		}
	}
}

// rankOf returns the number of singular values of a above tol·σ_1, and σ.
func rankOf(t *testing.T, a mat.Matrix, tol float64) (int, []float64) {
	t.Helper()
	s, err := accel.SingularValues(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range s {
		if v > tol*s[0] {
			n++
		}
	}
	return n, s
}

// TestRankBound checks rank(ΔW) ≤ rank(W₀)·r: with W₀ of rank q the
// singular values of ΔW past q·r vanish (to 1e-14 of σ_1), and with a
// full-rank W₀ even r = 1 gives ΔW of full rank min(d, k), unlike LoRA.
func TestRankBound(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	const d, k = 12, 10
	var worst float64
	for _, c := range []struct{ q, r int }{{1, 1}, {2, 2}, {1, 4}, {3, 3}} {
		m := adaptertest.NewChain(1, []string{"fc"}, k, d)
		var w0 mat.Dense // rank q
		w0.Mul(adaptertest.RandDense(rng, d, c.q), adaptertest.RandDense(rng, c.q, k))
		m.Mods[0].W.Value.Copy(&w0)
		hs, err := hut.Add(m, hut.Config{R: c.r, Targets: []string{"fc"}, Seed: 6})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, hs)
		s, err := accel.SingularValues(context.Background(), hs[0].Delta(&w0))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range s[c.q*c.r:] {
			worst = math.Max(worst, v/s[0])
		}
		t.Logf("rank(W₀) = %d, r = %d: σ(ΔW)/σ_1 = %.2g", c.q, c.r, scaled(s))
	}
	if worst > 1e-14 {
		t.Errorf("σ_{q·r+1}(ΔW)/σ_1 = %.3g, want ≤ 1e-14", worst)
	}
	// A full-rank W₀ at r = 1.
	m := adaptertest.NewChain(1, []string{"fc"}, k, d)
	hs, err := hut.Add(m, hut.Config{R: 1, Targets: []string{"fc"}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rng, hs)
	if n, s := rankOf(t, hs[0].Delta(m.Mods[0].W.Value), 1e-10); n != min(d, k) {
		t.Errorf("r = 1 on a full-rank W₀ (12×10): rank(ΔW) = %d (σ %.3g), want 10", n, s)
	}
}

func scaled(s []float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = v / s[0]
	}
	return out
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  hut.Config
		want []string
	}{
		{hut.Config{R: 0, Targets: []string{"b"}}, []string{"HUT on b", "R = 0", "(4×7)"}},
		{hut.Config{R: -3, Targets: []string{"a"}}, []string{"HUT on a", "R = -3"}},
		{hut.Config{R: 5, Targets: []string{"a", "b"}}, []string{"HUT on b", "R = 5", "(4×7)", "min(d, k) = 4"}},
		{hut.Config{R: 1, Targets: []string{"z"}}, []string{`"z"`, `"a"`}},
	} {
		m := newModel()
		_, err := hut.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	hs, err := hut.Add(newModel(), hut.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(){
		func() { hs[0].MergedWeight(mat.NewDense(5, 7, nil)) },
		func() { hs[0].Delta(mat.NewDense(5, 7, nil)) },
	} {
		err := peft.Maybe(f)
		var se peft.ShapeError
		if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "HUT.", "(5×7)", "(7×5)") != nil {
			t.Errorf("W₀ (5×7) for a (7×5) layer: %v, want a ShapeError naming both", err)
		}
	}
}

// saved returns a model with a trained-looking HUT adapter (r = 2) and the
// directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*hut.HUT, string) {
	t.Helper()
	m := newModel()
	hs, err := hut.Add(m, hut.Config{R: 2, Targets: names, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(9)), hs)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, hs, dir
}

// TestFile checks the saved layout and the round trip, bit for bit.
func TestFile(t *testing.T) {
	m, hs, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for i, n := range names {
		want["base_model.model."+n+".hut_A.weight"] = []int{2, widths[i]}
		want["base_model.model."+n+".hut_B.weight"] = []int{widths[i+1], 2}
	}
	got := map[string][]int{}
	for _, n := range f.Names() {
		got[n] = f.Shape(n)
	}
	f.Close()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	wantCfg := map[string]any{
		"peft_type": "GOPEFT_HUT", "r": 2.0, "target_modules": []any{"a", "b", "c"},
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}
	for _, n := range []int{1, 6} {
		x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(10)), n, 5))
		fresh := newModel()
		if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
			t.Errorf("n=%d: loaded output differs", n)
		}
		for i, l := range fresh.Mods {
			h := l.ActiveAdapter().(*hut.HUT)
			if h.R != 2 || !mat.Equal(h.A.Value, hs[i].A.Value) || !mat.Equal(h.B.Value, hs[i].B.Value) || !h.A.Trainable || !h.B.Trainable {
				t.Errorf("%s: loaded adapter differs or is frozen", l.Name)
			}
		}
	}
}

// TestLoadRefuses: a missing or wrong r, tensors that do not fit and
// unknown fields are errors naming what is wrong, and attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "no r", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { delete(cfg, "r") },
			Want: []string{`"r"`, "missing"}},
		{What: "r = 3", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 3 },
			Want: []string{"hut_A", "[2 5]", "r = 3", "(3×5)"}},
		{What: "r = 6", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["r"] = 6 },
			Want: []string{`"r"`, "HUT on a", "R = 6", "(7×5)", "min(d, k) = 5"}},
		{What: "B of another width", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.c.hut_B.weight"] = mat.NewDense(5, 2, nil)
			shapes["base_model.model.c.hut_B.weight"] = []int{5, 2}
		}, Want: []string{"hut_B", "[5 2]", "(6×4)", "(6×2)"}},
		{What: "no hut_B", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.a.hut_B.weight")
		}, Want: []string{"hut_B", "module a"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { cfg["hut_alpha"] = 16 },
			Want: []string{"hut_alpha", "HUT"}},
	})
}

// BenchmarkForward times a forward and backward pass of one HUT layer
// (W₀ 256×256) in each form, for the rank and row counts around the
// choice Forward makes.
func BenchmarkForward(b *testing.B) {
	const d, k = 256, 256
	for _, form := range []struct {
		name string
		f    func(*hut.HUT, *peft.Linear, *peft.Tensor) *peft.Tensor
	}{{"hadamard", hut.ForwardHadamard}, {"mask", hut.ForwardMask}} {
		for _, r := range []int{1, 4} {
			for _, n := range []int{1, 4, 64} {
				b.Run(fmt.Sprintf("%s/r=%d/n=%d", form.name, r, n), func(b *testing.B) {
					rng := rand.New(rand.NewSource(1))
					m := adaptertest.NewChain(1, []string{"fc"}, k, d)
					hs, err := hut.Add(m, hut.Config{R: r, Targets: []string{"fc"}})
					if err != nil {
						b.Fatal(err)
					}
					randomize(rng, hs)
					x := peft.NewConst(adaptertest.RandDense(rng, n, k))
					b.ReportAllocs()
					b.SetBytes(int64(8 * d * k))
					for b.Loop() {
						peft.SumAll(form.f(hs[0], m.Mods[0], x)).Backward()
					}
				})
			}
		}
	}
}
