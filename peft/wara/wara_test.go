package wara_test

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/wara"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. Its layers, fc1 W (4×5) and fc2
// W (3×4), have odd sizes, so it runs WaRA on the zero-padded grid (4×6
// and 4×4) with the crop back. At init B = 0, so the output is the base
// model's bit for bit (InitTol 0).
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ws, err := wara.Add(m, wara.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(ws), err
		},
		ZeroAtInit: true,
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("wara")
	if !ok {
		t.Fatal("WaRA is not registered")
	}
	if m.Name != "WaRA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_WARA" ||
		m.Package != "github.com/gopeft/gopeft/peft/wara" || !strings.Contains(m.Paper, "arXiv:2506.24092") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	ws, err := wara.Add(newModel(), wara.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(ws[0]); !ok || owner.Name != "WaRA" {
		t.Errorf("a WaRA adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// The test model. a: W (7×5), b: W (4×7), c: W (6×4): odd and even sizes
// on both sides.
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 7, 4, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every A and B random entries, as after training.
func randomize(rng *rand.Rand, ws []*wara.WaRA) {
	for _, w := range ws {
		for _, p := range w.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

// haarRef returns P_n (n×n, n even), the 1-D orthonormal Haar matrix from
// its definition: row i < n/2 is (e_2i + e_2i+1)/√2, row n/2 + i is
// (e_2i − e_2i+1)/√2. Used only for testing.
func haarRef(n int) *mat.Dense {
	p := mat.NewDense(n, n, nil)
	s := 1 / math.Sqrt2
	for i := 0; i < n/2; i++ {
		p.Set(i, 2*i, s)
		p.Set(i, 2*i+1, s)
		p.Set(n/2+i, 2*i, s)
		p.Set(n/2+i, 2*i+1, -s)
	}
	return p
}

// deltaRef returns s·(P_d′ᵀ·C·P_k′)[0:d, 0:k] with C built entry by entry
// from the subband factors: the tests' reference for ΔW.
func deltaRef(w *wara.WaRA) *mat.Dense {
	d, k := w.Dims()
	dp, kp := d+d%2, k+k%2
	c := mat.NewDense(dp, kp, nil)
	for sb, q := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} { // LL, LH, HL, HH
		b, a := w.Factors(sb)
		for i := 0; i < dp/2; i++ {
			for j := 0; j < kp/2; j++ {
				var v float64
				for t := 0; t < w.R; t++ {
					v += b.At(i, t) * a.At(t, j)
				}
				c.Set(q[0]*dp/2+i, q[1]*kp/2+j, v)
			}
		}
	}
	var full mat.Dense
	full.Product(haarRef(dp).T(), c, haarRef(kp))
	dw := mat.DenseCopyOf(full.Slice(0, d, 0, k))
	dw.Scale(w.Alpha/float64(w.R), dw)
	return dw
}

// TestDeltaAgainstReference checks Delta, MergedWeight and Forward against
// s·P_d′ᵀ·C·P_k′ cropped, on layers of odd and even sizes, to 1e-14
// relative.
func TestDeltaAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1)) // Always the same seed for reproducible results.
	var worst float64
	for _, r := range []int{1, 2, 3} {
		m := newModel()
		ws, err := wara.Add(m, wara.Config{R: r, Alpha: 5, Targets: names, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, ws)
		for i, w := range ws {
			l := m.Mods[i]
			want := deltaRef(w)
			worst = math.Max(worst, adaptertest.RelDiffMax(w.Delta(), want))
			var merged mat.Dense
			merged.Add(l.W.Value, want)
			worst = math.Max(worst, adaptertest.RelDiffMax(w.MergedWeight(l.W.Value), &merged))
			x := adaptertest.RandDense(rng, 3, widths[i])
			var out mat.Dense
			out.Mul(x, merged.T())
			out.Apply(func(_, j int, v float64) float64 { return v + l.B.Value.At(0, j) }, &out) // + b
			worst = math.Max(worst, adaptertest.RelDiffMax(l.Forward(peft.NewConst(x)).Value, &out))
		}
	}
	t.Logf("max relative difference from the reference: %.3g", worst)
	if worst > 1e-14 {
		t.Errorf("Delta, MergedWeight or Forward differ from s·IDWT(C) cropped by %.3g relative, want ≤ 1e-14", worst)
	}
}

// TestZeroB: with B = 0 and any A, ΔW = 0 exactly and the output is the
// base model's bit for bit, on odd and even layers; and the init has B = 0,
// A within its Kaiming bound, and 2r·(d′ + k′) trained numbers a layer.
func TestZeroB(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 5))
	m := newModel()
	before := mat.DenseCopyOf(m.Forward(x).Value)
	const r = 2
	ws, err := wara.Add(m, wara.Config{R: r, Targets: names, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i, w := range ws {
		d, k := w.Dims()
		dp, kp := wara.Padded(d, k)
		if adaptertest.MaxAbs(w.B.Value) != 0 {
			t.Errorf("%s: B is not zero at init", names[i])
		}
		if big, bound := adaptertest.MaxAbs(w.A.Value), 1/math.Sqrt(float64(kp/2)); big > bound || big == 0 {
			t.Errorf("%s: max |A| = %g, want in (0, 1/√(k′/2) = %g]", names[i], big, bound)
		}
		want += 2 * r * (dp + kp)
	}
	if got, _, _ := peft.TrainableParams(m); got != want {
		t.Errorf("%d trainable parameters, want Σ 2r·(d′ + k′) = %d", got, want)
	}
	for _, w := range ws {
		w.A.Value.Copy(adaptertest.RandDense(rng, 4*r, w.A.Value.RawMatrix().Cols)) // any A
	}
	for i, w := range ws {
		if adaptertest.MaxAbs(w.Delta()) != 0 {
			t.Errorf("%s: ΔW ≠ 0 with B = 0", names[i])
		}
	}
	if !mat.Equal(m.Forward(x).Value, before) {
		t.Error("with B = 0 the output differs from the base model's")
	}
}

// TestIdenticalSubbandsIsLoRA is the regression guard for the reading the
// method must not collapse to: one pair (B₀, A₀) copied into all four
// subbands gives C = [B₀; B₀]·[A₀ A₀], so ΔW = s·B′·A′ with B′ = P_dᵀ·[B₀;
// B₀] = √2·B₀ on the even rows and 0 on the odd ones, and A′ = √2·A₀ on the
// even columns: a rank-r LoRA. The check builds that LoRA with peft/lora
// (B′ and A′ written down from the formula, not computed by a transform)
// and compares outputs and ΔW to 1e-14, odd layers included, and checks
// rank(ΔW) = r.
func TestIdenticalSubbandsIsLoRA(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	const r, alpha = 2, 3.0
	m := newModel()
	ws, err := wara.Add(m, wara.Config{R: r, Alpha: alpha, Targets: names, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i, w := range ws {
		d, k := w.Dims()
		dp, kp := wara.Padded(d, k)
		b0, a0 := adaptertest.RandDense(rng, dp/2, r), adaptertest.RandDense(rng, r, kp/2)
		for sb := wara.LL; sb <= wara.HH; sb++ {
			b, a := w.Factors(sb)
			b.Copy(b0)
			a.Copy(a0)
		}
		bl, al := mat.NewDense(d, r, nil), mat.NewDense(r, k, nil)
		for p := 0; p < d; p += 2 {
			for t := 0; t < r; t++ {
				bl.Set(p, t, math.Sqrt2*b0.At(p/2, t))
			}
		}
		for q := 0; q < k; q += 2 {
			for t := 0; t < r; t++ {
				al.Set(t, q, math.Sqrt2*a0.At(t, q/2))
			}
		}
		lo, err := lora.FromFactors(names[i], "lora", al, bl, lora.Config{Alpha: alpha}, rand.New(rand.NewSource(1)))
		if err != nil {
			t.Fatal(err)
		}
		worst = math.Max(worst, adaptertest.RelDiffMax(w.Delta(), lo.Delta()))
		l := m.Mods[i]
		x := peft.NewConst(adaptertest.RandDense(rng, 5, k))
		base := l.Base(x)
		worst = math.Max(worst, adaptertest.RelDiffMax(w.Forward(l, x, base).Value, lo.Forward(l, x, base).Value))
		if n, s := rankOf(t, w.Delta(), 1e-10); n != r {
			t.Errorf("%s: identical subbands give rank(ΔW) = %d (σ %.3g), want r = %d", names[i], n, s, r)
		}
	}
	t.Logf("max relative difference from the equivalent LoRA: %.3g", worst)
	if worst > 1e-14 {
		t.Errorf("identical subbands differ from the equivalent LoRA by %.3g relative, want ≤ 1e-14", worst)
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

// TestRank measures rank(ΔW) for random factors against the bound
// min(4r, d, k), checks that the singular values past 4r vanish (to 1e-13
// of σ_1) when 4r < min(d, k), and compares with a random LoRA given the
// same number of trained numbers, 2r·(d′ + k′), i.e. rank ⌊2r·(d′ + k′)/(d
// + k)⌋ (2r on even layers).
func TestRank(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, c := range []struct{ d, k, r int }{
		{16, 16, 1}, {16, 16, 2}, {16, 16, 4}, {16, 16, 8}, {12, 20, 2}, {64, 48, 4}, {9, 7, 1}, {9, 7, 2}, {3, 4, 1},
	} {
		m := adaptertest.NewChain(1, []string{"fc"}, c.k, c.d)
		ws, err := wara.Add(m, wara.Config{R: c.r, Targets: []string{"fc"}, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, ws)
		params, _, _ := peft.TrainableParams(m)
		got, s := rankOf(t, ws[0].Delta(), 1e-10)
		bound := min(4*c.r, c.d, c.k)
		if got != bound {
			t.Errorf("W (%d×%d), r = %d: rank(ΔW) = %d, want min(4r, d, k) = %d", c.d, c.k, c.r, got, bound)
		}
		if 4*c.r < len(s) {
			if tail := s[4*c.r] / s[0]; tail > 1e-13 {
				t.Errorf("W (%d×%d), r = %d: σ_{4r+1}/σ_1 = %.3g, want ≤ 1e-13", c.d, c.k, c.r, tail)
			}
		}
		rl := params / (c.d + c.k) // LoRA's rank on the same budget
		var lo mat.Dense
		lo.Mul(adaptertest.RandDense(rng, c.d, rl), adaptertest.RandDense(rng, rl, c.k))
		gotL, _ := rankOf(t, &lo, 1e-10)
		t.Logf("W (%d×%d), r = %d: WaRA %d numbers, rank(ΔW) = %d; LoRA r = %d, %d numbers, rank %d",
			c.d, c.k, c.r, params, got, rl, rl*(c.d+c.k), gotL)
		if 4*c.r <= min(c.d, c.k) && got <= gotL {
			t.Errorf("W (%d×%d), r = %d: WaRA's rank %d is not above LoRA's %d on the same budget", c.d, c.k, c.r, got, gotL)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  wara.Config
		want []string
	}{
		{wara.Config{R: 0, Targets: []string{"b"}}, []string{"WaRA on b", "r = 0", "(4×7)"}},
		{wara.Config{R: -3, Targets: []string{"a"}}, []string{"WaRA on a", "r = -3"}},
		{wara.Config{R: 5, Targets: []string{"a", "b"}}, []string{"WaRA on b", "r = 5", "(4×7)", "min(d, k) = 4"}},
		{wara.Config{R: 1, Alpha: -1.5, Targets: []string{"c"}}, []string{"WaRA on c", "alpha = -1.5"}},
		{wara.Config{R: 1, Alpha: math.Inf(1), Targets: []string{"c"}}, []string{"WaRA on c", "alpha = +Inf"}},
		{wara.Config{R: 1, Targets: []string{"z"}}, []string{`"z"`, `"a"`}},
	} {
		m := newModel()
		_, err := wara.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	ws, err := wara.Add(newModel(), wara.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	err = peft.Maybe(func() { ws[0].MergedWeight(mat.NewDense(5, 7, nil)) })
	var se peft.ShapeError
	if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "WaRA.MergedWeight", "(5×7)", "(7×5)") != nil {
		t.Errorf("W₀ (5×7) for a (7×5) layer: %v, want a ShapeError naming both", err)
	}
	var ae peft.ArgError
	if err := peft.Maybe(func() { ws[0].Factors(4) }); !errors.As(err, &ae) || !strings.Contains(err.Error(), "subband 4") {
		t.Errorf("Factors(4): %v, want an ArgError naming subband 4", err)
	}
}

// saved returns a model with a trained-looking WaRA adapter (r = 2, α = 3)
// and the directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*wara.WaRA, string) {
	t.Helper()
	m := newModel()
	ws, err := wara.Add(m, wara.Config{R: 2, Alpha: 3, Targets: names, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(9)), ws)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, ws, dir
}

// TestFile checks the saved layout and the round trip, bit for bit.
func TestFile(t *testing.T) {
	m, ws, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for i, n := range names {
		dp, kp := wara.Padded(widths[i+1], widths[i])
		want["base_model.model."+n+".wara_A.weight"] = []int{8, kp / 2}
		want["base_model.model."+n+".wara_B.weight"] = []int{dp / 2, 8}
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
		"peft_type": "GOPEFT_WARA", "r": 2.0, "lora_alpha": 3.0, "wavelet": "haar", "target_modules": []any{"a", "b", "c"},
		"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil, "base_model_name_or_path": nil,
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("adapter_config.json is %v,\nwant %v", cfg, wantCfg)
	}
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(10)), 3, 5))
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded output differs")
	}
	for i, l := range fresh.Mods {
		w := l.ActiveAdapter().(*wara.WaRA)
		if w.R != 2 || w.Alpha != 3 || !mat.Equal(w.A.Value, ws[i].A.Value) || !mat.Equal(w.B.Value, ws[i].B.Value) || !w.A.Trainable || !w.B.Trainable {
			t.Errorf("%s: loaded adapter differs or is frozen", l.Name)
		}
	}
}

// TestLoadRefuses: missing or wrong fields, tensors that do not fit,
// another wavelet and unknown fields are errors naming what is wrong, and
// attach nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	edit := func(f func(cfg map[string]any)) adaptertest.Edit {
		return func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { f(cfg) }
	}
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "no r", Edit: edit(func(cfg map[string]any) { delete(cfg, "r") }), Want: []string{`"r"`, "missing"}},
		{What: "no lora_alpha", Edit: edit(func(cfg map[string]any) { delete(cfg, "lora_alpha") }), Want: []string{`"lora_alpha"`, "missing"}},
		{What: "lora_alpha 0", Edit: edit(func(cfg map[string]any) { cfg["lora_alpha"] = 0 }), Want: []string{`"lora_alpha"`, "0"}},
		{What: "r = 1", Edit: edit(func(cfg map[string]any) { cfg["r"] = 1 }), Want: []string{"wara_A", "[8 3]", "r = 1", "(4×3)"}},
		{What: "r = 6", Edit: edit(func(cfg map[string]any) { cfg["r"] = 6 }), Want: []string{`"r"`, "WaRA on a", "r = 6", "(7×5)", "min(d, k) = 5"}},
		{What: "wavelet db2", Edit: edit(func(cfg map[string]any) { cfg["wavelet"] = "db2" }), Want: []string{`"wavelet"`, "db2", "Haar"}},
		{What: "B of another height", Edit: func(_ map[string]any, ts map[string]*mat.Dense, shapes map[string][]int) {
			ts["base_model.model.c.wara_B.weight"] = mat.NewDense(2, 8, nil)
			shapes["base_model.model.c.wara_B.weight"] = []int{2, 8}
		}, Want: []string{"wara_B", "[2 8]", "(6×4)", "(3×8)"}},
		{What: "no wara_B", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.a.wara_B.weight")
		}, Want: []string{"wara_B", "module a"}},
		{What: "unknown field", Edit: edit(func(cfg map[string]any) { cfg["levels"] = 2 }), Want: []string{"levels"}},
	})
}

// BenchmarkForward times a forward and backward pass of one WaRA layer
// (W₀ 256×256, r = 4) on 16 input rows.
func BenchmarkForward(b *testing.B) {
	const d, k, r, n = 256, 256, 4, 16
	rng := rand.New(rand.NewSource(1))
	m := adaptertest.NewChain(1, []string{"fc"}, k, d)
	ws, err := wara.Add(m, wara.Config{R: r, Targets: []string{"fc"}})
	if err != nil {
		b.Fatal(err)
	}
	randomize(rng, ws)
	x := peft.NewConst(adaptertest.RandDense(rng, n, k))
	b.ReportAllocs()
	b.SetBytes(int64(8 * d * k))
	for b.Loop() {
		peft.SumAll(m.Forward(x)).Backward()
	}
}
