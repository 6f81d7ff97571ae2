package dsclora_test

import (
	"context"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/dsclora"
	"gonum.org/v1/gonum/mat"
)

// TestSuite runs the shared adapter suite. Its layers are plain Linears,
// which ConvLoRA takes as 1×1 convolutions (k = 1): plain LoRA. At init
// B = 0, so the output is the base model's bit for bit (InitTol 0).
func TestSuite(t *testing.T) {
	adaptertest.Run(t, adaptertest.Case{
		Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
			as, err := dsclora.Add(m, dsclora.Config{R: o.R, Alpha: o.Alpha, Targets: o.Targets, Seed: o.Seed})
			return adaptertest.Adapters(as), err
		},
		ZeroAtInit: true,
	})
}

func TestRegistered(t *testing.T) {
	m, ok := peft.LookupMethod("dsclora")
	if !ok {
		t.Fatal("DSCLoRA is not registered")
	}
	if m.Name != "DSCLoRA" || m.Kind != peft.AdapterMethod || m.Format == nil || m.Format.PEFTType != "GOPEFT_DSCLORA" ||
		m.Package != "github.com/gopeft/gopeft/peft/dsclora" || !strings.Contains(m.Paper, "arXiv:2504.11271") || m.Summary == "" {
		t.Errorf("registered %+v", m)
	}
}

// convNet is a test model of two convolutions with square kernels, "c3"
// (3→5 channels, 3×3, pad 1, on 5×4) and "c2" (5→4, 2×2, stride 2), and
// one with a 3×2 kernel, "odd" (4→2): its Modules are the three Linears.
type convNet struct{ c3, c2, odd *peft.Conv2d }

func newConvNet() *convNet {
	rng := rand.New(rand.NewSource(1))
	return &convNet{
		c3:  peft.NewConv2d("c3", peft.ConvGeom{C: 3, H: 5, W: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}, 5, true, rng),
		c2:  peft.NewConv2d("c2", peft.ConvGeom{C: 5, H: 5, W: 4, KH: 2, KW: 2, Stride: 2, Pad: 0}, 4, true, rng),
		odd: peft.NewConv2d("odd", peft.ConvGeom{C: 4, H: 2, W: 2, KH: 3, KW: 2, Stride: 1, Pad: 1}, 2, true, rng),
	}
}

func (m *convNet) Forward(x *peft.Tensor) *peft.Tensor {
	return m.odd.Forward(peft.ReLU(m.c2.Forward(peft.ReLU(m.c3.Forward(x)))))
}
func (m *convNet) Modules() []*peft.Linear {
	return []*peft.Linear{m.c3.Linear, m.c2.Linear, m.odd.Linear}
}
func (m *convNet) Params() []*peft.Tensor {
	var ps []*peft.Tensor
	for _, l := range m.Modules() {
		ps = append(ps, l.W, l.B)
	}
	return append(ps, peft.AdapterParams(m.Modules())...)
}
func (m *convNet) Loss(b peft.Batch) *peft.Tensor {
	return peft.MSE(m.Forward(peft.NewConst(b.X)), peft.NewConst(b.Y))
}
func (m *convNet) SetTraining(bool) {}

// randomize gives every B (and A) random entries, as after training.
func randomize(rng *rand.Rand, as []*dsclora.ConvLoRA) {
	for _, a := range as {
		for _, p := range a.Params() {
			r, c := p.Dims()
			p.Value.Copy(adaptertest.RandDense(rng, r, c))
		}
	}
}

// TestConvLoRAInvariants checks the paper's invariants on convolutions
// with k = 3 and k = 2: B = 0 gives the base convolution exactly; A and B
// have loralib's shapes and r·k²·(C_in + C_out) numbers; with random
// factors the adapted conv equals the base conv plus the conv whose
// kernel is ΔW = s·reshape(B·A), and so does the merged conv, to 1e-12;
// and the reshaped (C_out·k) × (C_in·k) product B·A has rank exactly r·k
// (≤ r·k always: σ_{r·k+1} < 1e-12·σ₁).
func TestConvLoRAInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, r := range []int{1, 2} {
		m := newConvNet()
		x := peft.NewConst(adaptertest.RandDense(rng, 3, 60))
		before := mat.DenseCopyOf(m.Forward(x).Value)
		as, err := dsclora.Add(m, dsclora.Config{R: r, Alpha: 2 * float64(r), Targets: []string{"c3", "c2"}, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if !mat.Equal(m.Forward(x).Value, before) {
			t.Errorf("r=%d: output with B = 0 differs from the base network's", r)
		}
		want := 0
		for i, c := range []*peft.Conv2d{m.c3, m.c2} {
			a := as[i]
			k, cin, cout := c.Geom.KH, c.Geom.C, c.Linear.Kernel[0]
			if ar, ac := a.A.Dims(); ar != r*k || ac != cin*k {
				t.Errorf("%s: A is (%d×%d), want (r·k × C_in·k) = (%d×%d)", c.Linear.Name, ar, ac, r*k, cin*k)
			}
			if br, bc := a.B.Dims(); br != cout*k || bc != r*k {
				t.Errorf("%s: B is (%d×%d), want (C_out·k × r·k) = (%d×%d)", c.Linear.Name, br, bc, cout*k, r*k)
			}
			want += r * k * k * (cin + cout)
		}
		if got, _, _ := peft.TrainableParams(m); got != want {
			t.Errorf("r=%d: %d trainable parameters, want Σ r·k²·(C_in + C_out) = %d", r, got, want)
		}

		randomize(rng, as)
		h := peft.ReLU(m.c3.Forward(x))
		for i, c := range []*peft.Conv2d{m.c3, m.c2} {
			in := x
			if i == 1 {
				in = h
			}
			a := as[i]
			base := peft.Conv2D(in, c.Linear.W, c.Linear.B, c.Geom)
			want := peft.Add(base, peft.Conv2D(in, peft.NewConst(a.Delta()), nil, c.Geom)).Value
			got := c.Forward(in).Value
			if d := adaptertest.RelDiffMax(got, want); d > 1e-12 {
				t.Errorf("r=%d %s: adapted conv differs from base conv + ΔW conv by %.3g", r, c.Linear.Name, d)
			}
			merged := peft.Conv2D(in, peft.NewConst(a.MergedWeight(c.Linear.W.Value)), c.Linear.B, c.Geom).Value
			if d := adaptertest.RelDiffMax(merged, want); d > 1e-12 {
				t.Errorf("r=%d %s: merged conv differs from base conv + ΔW conv by %.3g", r, c.Linear.Name, d)
			}
			s, err := accel.SingularValues(context.Background(), a.Product())
			if err != nil {
				t.Fatal(err)
			}
			k := a.K
			if len(s) <= r*k {
				t.Fatalf("r=%d %s: B·A has only %d singular values; the rank check needs more than r·k = %d", r, c.Linear.Name, len(s), r*k)
			}
			if tail := s[r*k]; tail > 1e-12*s[0] {
				t.Errorf("r=%d %s: σ_{r·k+1}(B·A)/σ₁ = %.3g, want rank ≤ r·k = %d", r, c.Linear.Name, tail/s[0], r*k)
			}
			if s[r*k-1] < 1e-8*s[0] {
				t.Errorf("r=%d %s: σ_{r·k}(B·A)/σ₁ = %.3g: rank below r·k with random factors", r, c.Linear.Name, s[r*k-1]/s[0])
			}
			t.Logf("r=%d %s: B·A (%d×%d) σ/σ₁ = %.2g", r, c.Linear.Name, a.Cout*k, a.Cin*k, scaled(s))
		}
		// The network merges and unmerges through peft.
		out := mat.DenseCopyOf(m.Forward(x).Value)
		if err := peft.MergeAdapters(m); err != nil {
			t.Fatal(err)
		}
		if d := adaptertest.RelDiffMax(m.Forward(x).Value, out); d > 1e-12 {
			t.Errorf("r=%d: merged network differs by %.3g", r, d)
		}
	}
}

func scaled(s []float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = v / s[0]
	}
	return out
}

// TestKernelRefused: a 3×2 kernel, a Kernel that does not match W, and bad
// ranks and α are errors naming the module and the value, leaving no
// adapter behind.
func TestKernelRefused(t *testing.T) {
	for _, c := range []struct {
		what string
		cfg  dsclora.Config
		edit func(m *convNet)
		want []string
	}{
		{"non-square kernel", dsclora.Config{R: 1, Targets: []string{"c3", "odd"}}, nil, []string{"odd", "[2 4 3 2]", "3×2", "square"}},
		{"kernel not matching W", dsclora.Config{R: 1, Targets: []string{"c2"}}, func(m *convNet) { m.c2.Linear.Kernel = []int{4, 5, 3, 3} }, []string{"c2", "[4 5 3 3]", "(4×20)"}},
		{"rank above min(C_in, C_out)", dsclora.Config{R: 4, Targets: []string{"c3"}}, nil, []string{"c3", "R = 4", "(5, 3, 3, 3)", "= 3"}},
		{"negative α", dsclora.Config{R: 1, Alpha: -1.5, Targets: []string{"c2"}}, nil, []string{"c2", "Alpha = -1.5"}},
	} {
		m := newConvNet()
		if c.edit != nil {
			c.edit(m)
		}
		_, err := dsclora.Add(m, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		}
		for _, l := range m.Modules() {
			if len(l.Adapters) != 0 {
				t.Errorf("%s: %s kept an adapter", c.what, l.Name)
			}
		}
	}
}

// TestFileConv saves ConvLoRA on convolutions and loads it into a fresh
// network: loralib's 2-D shapes in the file, the same output bit for bit.
func TestFileConv(t *testing.T) {
	m := newConvNet()
	as, err := dsclora.Add(m, dsclora.Config{R: 2, Alpha: 4, Targets: []string{"c3", "c2"}, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	randomize(rand.New(rand.NewSource(5)), as)
	dir := filepath.Join(t.TempDir(), "dsclora")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]int{
		"base_model.model.c3.lora_A.weight": {6, 9}, "base_model.model.c3.lora_B.weight": {15, 6},
		"base_model.model.c2.lora_A.weight": {4, 10}, "base_model.model.c2.lora_B.weight": {8, 4},
	} {
		if s := f.Shape(name); len(s) != 2 || s[0] != want[0] || s[1] != want[1] {
			t.Errorf("%s has shape %v, want %v", name, s, want)
		}
	}
	f.Close()
	x := peft.NewConst(adaptertest.RandDense(rand.New(rand.NewSource(6)), 2, 60))
	fresh := newConvNet()
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, m.Forward(x).Value) {
		t.Error("loaded ConvLoRA gives another output")
	}
	// A network whose c2 has another kernel size refuses the file.
	other := newConvNet()
	rng := rand.New(rand.NewSource(1))
	other.c2 = peft.NewConv2d("c2", peft.ConvGeom{C: 5, H: 5, W: 4, KH: 1, KW: 1, Stride: 1, Pad: 0}, 4, true, rng)
	if err := peft.LoadAdapter(dir, other, ""); adaptertest.ErrorMentions(err, "lora_A", "c2") != nil {
		t.Errorf("loading into a 1×1 c2: %v, want an error naming lora_A and c2", err)
	}
}
