package salt_test

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
	"github.com/gopeft/gopeft/peft/salt"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. The suite's rank is SALT's r;
// r_L = 1 so that both modules (fc1 4×5 and fc2 3×4, m = 4 and 3) have a
// residual block with a LoRA at r = 2. At init δ = 0 and X·Y = 0 exactly,
// so the output is the base model's bit for bit (InitTol 0).
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			ss, err := salt.Add(m, salt.Config{R: o.R, RLoRA: 1, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(ss), err
		},
		ZeroAtInit: true,
		NoAlpha:    true, // α and β are trained; X·Y has no LoRA scale
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("salt")
	if !ok {
		t.Fatal("SALT is not registered")
	}
	if m.Name != "SALT" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_SALT" ||
		m.Package != "github.com/gopeft/gopeft/peft/salt" || !strings.Contains(m.Paper, "arXiv:2503.16055") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
	ss, err := salt.Add(newModel(), salt.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := peft.MethodOf(ss[0]); !ok || owner.Name != "SALT" {
		t.Errorf("a SALT adapter's method is %q (found %v)", owner.Name, ok)
	}
}

// The test model: a tall, a wide and a square-ish layer, so that m = min(d,
// k) comes from either side. a: W (7×5), m = 5; b: W (4×7), m = 4; c: W
// (6×4), m = 4.
var (
	names  = []string{"a", "b", "c"}
	widths = []int{5, 7, 4, 6}
)

func newModel() *adaptertest.Chain { return adaptertest.NewChain(1, names, widths...) }

// randomize gives every trained tensor random entries, as after training.
func randomize(rng *rand.Rand, ss []*salt.SALT) {
	for _, s := range ss {
		for _, p := range s.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

// TestInit checks the paper's init (α = 1, β = 0, Y = 0, X Kaiming-uniform),
// that the output is then the frozen model's exactly, r_L's cap at m − r,
// and the count of 2r + 2(m − r)·r_L trained numbers per layer.
func TestInit(t *testing.T) {
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(3)), 6, 5))
	for _, c := range []struct {
		r, rlora int
		wantRL   []int // per layer: min(r_L, m − r)
	}{
		{2, 0, []int{3, 2, 2}}, // default r_L = 4, capped
		{2, 1, []int{1, 1, 1}},
		{4, 3, []int{1, 0, 0}}, // b and c: r = m, no residual block
	} {
		m := newModel()
		before := mat.DenseCopyOf(m.Forward(x).Value)
		ss, err := salt.Add(m, salt.Config{R: c.r, RLoRA: c.rlora, Targets: names, Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("r=%d r_L=%d: output at init differs from the frozen model's", c.r, c.rlora)
		}
		want := 0
		for i, s := range ss {
			d, k := widths[i+1], widths[i]
			mm := min(d, k)
			if s.Rank() != c.r || s.LoRARank() != c.wantRL[i] {
				t.Errorf("r=%d r_L=%d: %s: Rank %d, LoRARank %d; want %d, %d", c.r, c.rlora, names[i], s.Rank(), s.LoRARank(), c.r, c.wantRL[i])
			}
			for j := 0; j < c.r; j++ {
				if s.Scale.Value.At(0, j) != 1 || s.Shift.Value.At(0, j) != 0 {
					t.Errorf("%s: α = %v, β = %v at init, want 1s and 0s", names[i], s.Scale.Value.RawMatrix().Data, s.Shift.Value.RawMatrix().Data)
					break
				}
			}
			if rl := c.wantRL[i]; rl > 0 {
				if xr, xc := s.X.Dims(); xr != mm-c.r || xc != rl {
					t.Errorf("%s: X is %s, want %s", names[i], peft.ShapeOf(xr, xc), peft.ShapeOf(mm-c.r, rl))
				}
				if yr, yc := s.Y.Dims(); yr != rl || yc != mm-c.r || adaptertest.MaxAbs(s.Y.Value) != 0 {
					t.Errorf("%s: Y is %s with max |Y| = %g at init, want %s zeros", names[i], peft.ShapeOf(yr, yc), adaptertest.MaxAbs(s.Y.Value), peft.ShapeOf(rl, mm-c.r))
				}
				bound := 1 / math.Sqrt(float64(rl))
				if big := adaptertest.MaxAbs(s.X.Value); big > bound || big == 0 {
					t.Errorf("%s: max |X| = %g, want in (0, 1/√r_L = %g]", names[i], big, bound)
				}
			} else if s.X != nil || s.Y != nil || len(s.Params()) != 2 {
				t.Errorf("%s: r = m = %d, but the adapter has X or Y", names[i], mm)
			}
			want += 2*c.r + 2*(mm-c.r)*c.wantRL[i]
		}
		if n, _, _ := peft.TrainableParams(m); n != want {
			t.Errorf("r=%d r_L=%d: %d trainable parameters, want Σ 2r + 2(m−r)·r_L = %d", c.r, c.rlora, n, want)
		}
	}
}

// blocks returns Uᵀ·ΔW·V (m×m) of s in its frozen basis.
func blocks(s *salt.SALT) *mat.Dense {
	u, _, vt := s.Basis()
	var t, b mat.Dense
	t.Mul(u.T(), s.Delta())
	b.Mul(&t, vt.T())
	return &b
}

// TestBlockStructure checks the invariant of the paper's Σ': in W₀'s
// singular basis, ΔW is block-diagonal, with diag(α⊙σ_r + β − σ_r) on top
// and X·Y of rank ≤ r_L in the residual block, for random trained values.
// Tolerances are 1e-14 relative to max |ΔW| (the basis is orthonormal to
// about 1e-16).
func TestBlockStructure(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	// d: W (12×9), so that the residual block (m − r = 6) is wider than
	// r_L = 2 and its rank bound says something.
	m := adaptertest.NewChain(2, []string{"a", "b", "c", "d"}, 5, 7, 4, 9, 12)
	ss, err := salt.Add(m, salt.Config{R: 3, RLoRA: 2, Targets: []string{"a", "b", "c", "d"}, Seed: 6})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rng, ss)
	var worstCross, worstTop, worstRes, worstRank float64
	for i, s := range ss {
		name := m.Mods[i].Name
		scale := adaptertest.MaxAbs(s.Delta())
		b := blocks(s)
		mm, _ := b.Dims()
		r := s.R
		_, sigma, _ := s.Basis()
		for p := 0; p < mm; p++ {
			for q := 0; q < mm; q++ {
				v := math.Abs(b.At(p, q)) / scale
				switch {
				case (p < r) != (q < r): // cross-blocks: zero
					worstCross = math.Max(worstCross, v)
				case p < r && p != q: // top block: diagonal
					worstTop = math.Max(worstTop, v)
				case p < r: // its diagonal: δ_p
					want := s.Scale.Value.At(0, p)*sigma[p] - sigma[p] + s.Shift.Value.At(0, p)
					worstTop = math.Max(worstTop, math.Abs(b.At(p, p)-want)/scale)
				}
			}
		}
		if s.X == nil {
			continue
		}
		var xy mat.Dense
		xy.Mul(s.X.Value, s.Y.Value)
		res := b.Slice(r, mm, r, mm)
		worstRes = math.Max(worstRes, adaptertest.RelDiffMax(res, &xy)*adaptertest.MaxAbs(&xy)/scale)
		sv, err := accel.SingularValues(context.Background(), res)
		if err != nil {
			t.Fatal(err)
		}
		for j := s.LoRARank(); j < len(sv); j++ {
			worstRank = math.Max(worstRank, sv[j]/sv[0])
		}
		t.Logf("%s: m = %d, r = %d, r_L = %d, σ(residual block) = %.3g", name, mm, r, s.LoRARank(), sv)
	}
	t.Logf("max over layers, relative to max |ΔW|: cross-blocks %.3g, top block off δ %.3g, residual block off X·Y %.3g; σ_{r_L+1}/σ_1 of the residual block %.3g",
		worstCross, worstTop, worstRes, worstRank)
	for _, c := range []struct {
		what string
		v    float64
	}{{"cross-blocks of Uᵀ·ΔW·V", worstCross}, {"top block − diag(δ)", worstTop}, {"residual block − X·Y", worstRes}, {"residual block's σ_{r_L+1}/σ_1", worstRank}} {
		if c.v > 1e-14 {
			t.Errorf("%s: %.3g, want ≤ 1e-14", c.what, c.v)
		}
	}
}

// TestDeltaNaive checks Delta, MergedWeight and the layer's output against
// the paper's W' = U·Σ'·Vᵀ built entry by entry (without SALT code's ReLU).
func TestDeltaNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, c := range []struct{ r, rlora int }{{1, 1}, {2, 3}, {4, 2}} {
		m := newModel()
		ss, err := salt.Add(m, salt.Config{R: c.r, RLoRA: c.rlora, Targets: names, Seed: 8})
		if err != nil {
			t.Fatal(err)
		}
		randomize(rng, ss)
		for i, s := range ss {
			l := m.Mods[i]
			u, sigma, vt := s.Basis()
			mm := len(sigma)
			sp := mat.NewDense(mm, mm, nil) // Σ'
			for p := 0; p < c.r; p++ {
				sp.Set(p, p, s.Scale.Value.At(0, p)*sigma[p]+s.Shift.Value.At(0, p))
			}
			for p := c.r; p < mm; p++ {
				for q := c.r; q < mm; q++ {
					v := 0.0
					if p == q {
						v = sigma[p]
					}
					for t := 0; t < s.LoRARank(); t++ {
						v += s.X.Value.At(p-c.r, t) * s.Y.Value.At(t, q-c.r)
					}
					sp.Set(p, q, v)
				}
			}
			d, k := s.Dims()
			wp := mat.NewDense(d, k, nil) // U·Σ'·Vᵀ
			for a := 0; a < d; a++ {
				for b := 0; b < k; b++ {
					v := 0.0
					for p := 0; p < mm; p++ {
						for q := 0; q < mm; q++ {
							v += u.At(a, p) * sp.At(p, q) * vt.At(q, b)
						}
					}
					wp.Set(a, b, v)
				}
			}
			if diff := adaptertest.RelDiffMax(s.MergedWeight(l.W.Value), wp); diff > 1e-12 {
				t.Errorf("r=%d %s: W₀ + ΔW differs from U·Σ'·Vᵀ by %.3g relative", c.r, l.Name, diff)
			}
			x := adaptertest.RandDense(rng, 4, k)
			var h mat.Dense
			h.Mul(x, wp.T())
			for row := 0; row < 4; row++ {
				for j := 0; j < d; j++ {
					h.Set(row, j, h.At(row, j)+l.B.Value.At(0, j))
				}
			}
			if diff := adaptertest.RelDiffMax(l.Forward(peft.NewConst(x)).Value, &h); diff > 1e-12 {
				t.Errorf("r=%d %s: output differs from x·(U·Σ'·Vᵀ)ᵀ + b by %.3g relative", c.r, l.Name, diff)
			}
		}
	}
}

// TestBasis checks that the frozen basis is W₀'s thin SVD and stays out of
// the trained parameters.
func TestBasis(t *testing.T) {
	m := newModel()
	ss, err := salt.Add(m, salt.Config{R: 2, Targets: names, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range ss {
		u, sigma, vt := s.Basis()
		var us, w mat.Dense
		us.Apply(func(_, j int, v float64) float64 { return v * sigma[j] }, u)
		w.Mul(&us, vt)
		if d := adaptertest.RelDiffMax(&w, m.Mods[i].W.Value); d > 1e-14 {
			t.Errorf("%s: U·diag(σ)·Vᵀ differs from W₀ by %.3g relative", names[i], d)
		}
		if len(s.Params()) != 4 {
			t.Errorf("%s: %d parameters, want α, β, X, Y", names[i], len(s.Params()))
		}
	}
	if got, want := len(peft.TrainableOf(m)), 4*len(ss); got != want {
		t.Errorf("TrainableOf gives %d tensors, want %d", got, want)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  salt.Config
		want []string
	}{
		{salt.Config{R: 0, Targets: []string{"b"}}, []string{"SALT", "b", "R = 0", "(4×7)"}},
		{salt.Config{R: 5, Targets: []string{"a", "b"}}, []string{"SALT on b", "R = 5", "(4×7)", "min(d, k) = 4"}},
		{salt.Config{R: 2, RLoRA: -1, Targets: []string{"c"}}, []string{"SALT on c", "RLoRA = -1"}},
		{salt.Config{R: 2, Targets: []string{"z"}}, []string{`"z"`, `"a"`}},
	} {
		m := newModel()
		_, err := salt.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
		for _, l := range m.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%+v: %s kept an adapter", c.cfg, l.Name)
			}
		}
	}
	// A weight the SVD cannot take.
	m := newModel()
	m.Mods[1].W.Value.Set(2, 3, math.NaN())
	_, err := salt.Add(m, salt.Config{R: 1, Targets: names})
	if e := adaptertest.ErrorMentions(err, "SALT on b", "SVD", "(4×7)", "NaN"); e != nil {
		t.Error(e)
	}
	if len(m.Mods[0].Adapters) != 0 {
		t.Error("a failed Add left an adapter on a")
	}
	// A cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := salt.AddContext(ctx, newModel(), salt.Config{R: 1, Targets: names}); !errors.Is(err, context.Canceled) {
		t.Errorf("AddContext with a cancelled context: %v, want context.Canceled", err)
	}
	// The penalty's weight.
	for _, reg := range []float64{-1, math.NaN(), math.Inf(1)} {
		_, err := salt.NewPenalty(nil, reg)
		if e := adaptertest.ErrorMentions(err, "SALT penalty", "Reg = "); e != nil {
			t.Errorf("Reg = %v: %v", reg, e)
		}
	}
	// MergedWeight of the wrong shape is a programmer error naming both.
	ss, err := salt.Add(newModel(), salt.Config{R: 1, Targets: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	err = peft.Maybe(func() { ss[0].MergedWeight(mat.NewDense(5, 7, nil)) })
	var se peft.ShapeError
	if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "SALT.MergedWeight", "(5×7)", "(7×5)") != nil {
		t.Errorf("MergedWeight((5×7)) on W (7×5): %v, want a ShapeError naming both", err)
	}
}

// TestPenalty checks Penalty's value against Reg·Σ(‖δ‖₂ + ‖X·Y‖_F), its
// gradient against central differences, that it is zero at init, and that
// peft.Train runs with it.
func TestPenalty(t *testing.T) {
	m := newModel()
	ss, err := salt.Add(m, salt.Config{R: 2, RLoRA: 2, Targets: names, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	p, err := salt.NewPenalty(ss, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Regularizer(1).Scalar(); v != 0 {
		t.Errorf("penalty at init = %g, want 0", v)
	}
	randomize(rand.New(rand.NewSource(10)), ss)
	want := 0.0
	for _, s := range ss {
		_, sigma, _ := s.Basis()
		n2 := 0.0
		for j := 0; j < s.R; j++ {
			dj := s.Scale.Value.At(0, j)*sigma[j] - sigma[j] + s.Shift.Value.At(0, j)
			n2 += dj * dj
		}
		var xy mat.Dense
		xy.Mul(s.X.Value, s.Y.Value)
		want += math.Sqrt(n2) + mat.Norm(&xy, 2)
	}
	want *= 0.3
	if got := p.Regularizer(1).Scalar(); math.Abs(got-want) > 1e-13*want {
		t.Errorf("penalty = %.17g, want %.17g", got, want)
	}
	var worst float64
	for _, s := range ss {
		for _, q := range s.Params() {
			q.ZeroGrad()
		}
	}
	p.Regularizer(1).Backward()
	for _, s := range ss {
		for _, q := range s.Params() {
			_, cols := q.Dims()
			x0 := append([]float64(nil), q.Value.RawMatrix().Data...)
			set := func(v []float64) {
				for j, e := range v {
					q.Value.Set(j/cols, j%cols, e)
				}
			}
			num := fd.Gradient(nil, func(v []float64) float64 { set(v); return p.Regularizer(1).Scalar() },
				append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
			set(x0)
			for j, n := range num {
				a := q.Grad.RawMatrix().Data[j]
				worst = math.Max(worst, math.Abs(a-n)/math.Max(math.Max(math.Abs(a), math.Abs(n)), 1e-3))
			}
		}
	}
	t.Logf("penalty gradient: max relative error against central differences %.3g", worst)
	if worst > 1e-6 {
		t.Errorf("penalty gradient off by %.3g relative", worst)
	}
	if zero, _ := salt.NewPenalty(ss, 0); zero.Regularizer(1) != nil {
		t.Error("Reg = 0 gives a regularizer")
	}
	rng := rand.New(rand.NewSource(11))
	data := regression{adaptertest.RandDense(rng, 32, 5), adaptertest.RandDense(rng, 32, 6)}
	if _, err := peft.Train(context.Background(), m, data, peft.TrainConfig{Steps: 5, BatchSize: 8, LR: 1e-2, Seed: 1, Hooks: []peft.Hook{p}}); err != nil {
		t.Fatal(err)
	}
}

// regression is a Dataset of fixed inputs and targets.
type regression struct{ x, y *mat.Dense }

func (d regression) Sample(rng *rand.Rand, size int) peft.Batch {
	n, k := d.x.Dims()
	_, o := d.y.Dims()
	bx, by := mat.NewDense(size, k, nil), mat.NewDense(size, o, nil)
	for i := 0; i < size; i++ {
		j := rng.Intn(n)
		bx.SetRow(i, d.x.RawRowView(j))
		by.SetRow(i, d.y.RawRowView(j))
	}
	return peft.Batch{X: bx, Y: by}
}

func (d regression) EvalBatches() []peft.Batch { return nil }

// saved returns a model with a trained-looking SALT adapter (r = 2, r_L =
// 2; c then has m − r = 2) and the directory it was saved to.
func saved(t *testing.T) (*adaptertest.Chain, []*salt.SALT, string) {
	t.Helper()
	m := newModel()
	ss, err := salt.Add(m, salt.Config{R: 2, RLoRA: 2, Targets: names, Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(13)), ss)
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	return m, ss, dir
}

// TestFile checks the saved layout (tensor names and shapes, config fields
// with W₀'s singular values kept exactly) and the round trip: the loaded
// adapter gives the saved model's output bit for bit and keeps r and r_L.
func TestFile(t *testing.T) {
	m, ss, dir := saved(t)
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for i, n := range names {
		mm := min(widths[i], widths[i+1])
		p := "base_model.model." + n
		want[p+".salt_scale"], want[p+".salt_shift"] = []int{2}, []int{2}
		want[p+".salt_X"], want[p+".salt_Y"] = []int{mm - 2, 2}, []int{2, mm - 2}
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
	var cfg struct {
		PEFTType string               `json:"peft_type"`
		R        int                  `json:"r"`
		RLoRA    int                  `json:"r_lora"`
		Targets  []string             `json:"target_modules"`
		Sigma    map[string][]float64 `json:"singular_values"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.PEFTType != "GOPEFT_SALT" || cfg.R != 2 || cfg.RLoRA != 2 || !reflect.DeepEqual(cfg.Targets, names) {
		t.Errorf("config %+v", cfg)
	}
	for i, s := range ss {
		if _, sigma, _ := s.Basis(); !reflect.DeepEqual(cfg.Sigma[names[i]], sigma) {
			t.Errorf("%s: saved σ %v, want %v exactly", names[i], cfg.Sigma[names[i]], sigma)
		}
	}

	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(14)), 6, 5))
	y := m.Forward(x).Value
	fresh := newModel()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, y) {
		t.Errorf("loaded output differs from the saved model's by %.3g relative", adaptertest.RelDiffMax(fresh.Forward(x).Value, y))
	}
	for i, l := range fresh.Mods {
		s := l.ActiveAdapter().(*salt.SALT)
		if s.R != 2 || s.RLoRA != 2 || s.LoRARank() != ss[i].LoRARank() {
			t.Errorf("%s: loaded r %d, r_L %d (layer %d)", l.Name, s.R, s.RLoRA, s.LoRARank())
		}
		for j, p := range s.Params() {
			if !p.Trainable || !mat.Equal(p.Value, ss[i].Params()[j].Value) {
				t.Errorf("%s: loaded %s differs or is frozen", l.Name, p.Name)
			}
		}
	}
}

// TestFileFullRank: a module with r = m has no X and Y in the file, and
// loads back.
func TestFileFullRank(t *testing.T) {
	m := adaptertest.NewChain(1, []string{"fc"}, 4, 3)
	ss, err := salt.Add(m, salt.Config{R: 3, Targets: []string{"fc"}})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(15)), ss)
	fresh := adaptertest.NewChain(1, []string{"fc"}, 4, 3)
	adaptertest.SaveLoad(t, m, fresh)
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(16)), 3, 4))
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded output differs")
	}
}

// TestLoadRefuses: another base weight, missing or inconsistent fields and
// tensors that do not fit are errors naming what is wrong, and attach
// nothing.
func TestLoadRefuses(t *testing.T) {
	_, _, orig := saved(t)
	adaptertest.RefusesLoad(t, orig, newModel, []adaptertest.Refusal{
		{What: "another base", Model: func() *adaptertest.Chain { return adaptertest.NewChain(2, names, widths...) },
			Want: []string{"singular_values", "module a", "σ_1", "another weight"}},
		{What: "no singular_values", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg, "singular_values")
		}, Want: []string{"singular_values", "missing"}},
		{What: "no σ for c", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg["singular_values"].(map[string]any), "c")
		}, Want: []string{"singular_values", "module c"}},
		{What: "σ of another length", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["singular_values"].(map[string]any)["b"] = []float64{1, 2}
		}, Want: []string{"singular_values", "module b", "2 values", "min(d, k) = 4"}},
		{What: "no r", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			delete(cfg, "r")
		}, Want: []string{`"r"`, "missing"}},
		{What: "r too large", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["r"] = 6
		}, Want: []string{`"r"`, "R = 6", "SALT on a", "(7×5)"}},
		{What: "r of another value", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["r"] = 1
		}, Want: []string{"salt_scale", "[2]", "r = 1"}},
		{What: "r_lora of another value", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["r_lora"] = 1
		}, Want: []string{"salt_X", "[3 2]", "r_lora = 1", "(3×1)"}},
		{What: "no salt_Y", Edit: func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			delete(ts, "base_model.model.a.salt_Y")
		}, Want: []string{"salt_Y", "module a"}},
		{What: "unknown field", Edit: func(cfg map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			cfg["relu"] = true
		}, Want: []string{"relu", "SALT"}},
	})
}

// TestSaveRefusesMixed: one adapter name on layers of two Add calls with
// different r cannot go into one config.
func TestSaveRefusesMixed(t *testing.T) {
	m := newModel()
	if _, err := salt.Add(m, salt.Config{R: 1, Targets: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := salt.Add(m, salt.Config{R: 2, Targets: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	err := peft.SaveAdapter(filepath.Join(t.TempDir(), "x"), m, "")
	if e := adaptertest.ErrorMentions(err, "differ in r", "a", "b"); e != nil {
		t.Error(e)
	}
}
