package peft_test

import (
	"math/rand"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// convNet is a test model of two convolutions, "conv1" (2→3 channels, 3×3,
// pad 1, on 5×4) and "conv2" (3→2, 2×2, stride 2), with ReLU between them.
type convNet struct{ c1, c2 *peft.Conv2d }

func newConvNet(seed int64) *convNet {
	rng := rand.New(rand.NewSource(seed))
	c1 := peft.NewConv2d("conv1", peft.ConvGeom{C: 2, H: 5, W: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}, 3, true, rng)
	c2 := peft.NewConv2d("conv2", peft.ConvGeom{C: 3, H: 5, W: 4, KH: 2, KW: 2, Stride: 2, Pad: 0}, 2, true, rng)
	return &convNet{c1, c2}
}

func (m *convNet) Forward(x *peft.Tensor) *peft.Tensor {
	return m.c2.Forward(peft.ReLU(m.c1.Forward(x)))
}
func (m *convNet) Modules() []*peft.Linear { return []*peft.Linear{m.c1.Linear, m.c2.Linear} }
func (m *convNet) Params() []*peft.Tensor {
	ps := []*peft.Tensor{m.c1.Linear.W, m.c1.Linear.B, m.c2.Linear.W, m.c2.Linear.B}
	return append(ps, peft.AdapterParams(m.Modules())...)
}
func (m *convNet) Loss(b peft.Batch) *peft.Tensor {
	d := peft.Sub(m.Forward(peft.NewConst(b.X)), peft.NewConst(b.Y))
	return peft.Mean(peft.Mul(d, d))
}
func (m *convNet) SetTraining(bool) {}

func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// TestConv2dLayer checks the layer's shapes and Kernel, and that its
// Forward is Conv2D with its weight and bias.
func TestConv2dLayer(t *testing.T) {
	m := newConvNet(1)
	if !reflect.DeepEqual(m.c1.Linear.Kernel, []int{3, 2, 3, 3}) || !reflect.DeepEqual(m.c2.Linear.Kernel, []int{2, 3, 2, 2}) {
		t.Errorf("Kernel %v and %v, want [3 2 3 3] and [2 3 2 2]", m.c1.Linear.Kernel, m.c2.Linear.Kernel)
	}
	if r, c := m.c1.Linear.W.Dims(); r != 3 || c != 18 {
		t.Errorf("conv1 W is (%d×%d), want (3×18)", r, c)
	}
	if cout, oh, ow := m.c2.Out(); cout != 2 || oh != 2 || ow != 2 {
		t.Errorf("conv2 output %d×%d×%d, want 2×2×2", cout, oh, ow)
	}
	x := peft.NewConst(randDense(rand.New(rand.NewSource(2)), 3, 40))
	want := peft.Conv2D(x, m.c1.Linear.W, m.c1.Linear.B, m.c1.Geom).Value
	if got := m.c1.Forward(x).Value; !mat.Equal(got, want) {
		t.Error("Conv2d.Forward differs from Conv2D with its weight and bias")
	}
}

// TestConv2dLoRA attaches LoRA (unchanged, through the Linear) to both
// convolutions and checks, with trained-looking A and B, that each layer's
// output is the base convolution plus the convolution whose kernel is
// ΔW = s·B·A reshaped to (C_out, C_in, KH, KW), to 1e-12; that merging
// gives the same network output and unmerging the base weights bit for
// bit; and that the adapter saves and loads.
func TestConv2dLoRA(t *testing.T) {
	m := newConvNet(1)
	ls, err := lora.Add(m, lora.Config{R: 2, Alpha: 3, Targets: []string{"conv1", "conv2"}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r, c := ls[0].A.Dims(); r != 2 || c != 18 {
		t.Errorf("conv1 lora_A is (%d×%d), want (2×18) = (r × C_in·KH·KW)", r, c)
	}
	rng := rand.New(rand.NewSource(4))
	for _, l := range ls {
		r, c := l.B.Dims()
		l.B.Value.Copy(randDense(rng, r, c))
	}
	x := peft.NewConst(randDense(rng, 3, 40))
	h := peft.ReLU(m.c1.Forward(x))
	for i, c := range []*peft.Conv2d{m.c1, m.c2} {
		in := x
		if i == 1 {
			in = h
		}
		w0 := c.Linear.W
		want := peft.Add(peft.Conv2D(in, w0, c.Linear.B, c.Geom), peft.Conv2D(in, peft.NewConst(ls[i].Delta()), nil, c.Geom)).Value
		got := c.Forward(in).Value
		if !mat.EqualApprox(got, want, 1e-12) {
			t.Errorf("%s: LoRA output ≠ base conv + ΔW conv", c.Linear.Name)
		}
		if mat.EqualApprox(got, c.Base(in).Value, 1e-6) {
			t.Errorf("%s: the adapter does not change the output; the check proves nothing", c.Linear.Name)
		}
	}
	out := mat.DenseCopyOf(m.Forward(x).Value)
	w0 := mat.DenseCopyOf(m.c1.Linear.W.Value)
	if err := peft.MergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if got := m.Forward(x).Value; !mat.EqualApprox(got, out, 1e-12) {
		t.Error("merged output differs from the adapter's")
	}
	if err := peft.UnmergeAdapters(m); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(m.c1.Linear.W.Value, w0) {
		t.Error("unmerge does not restore conv1's W exactly")
	}
	dir := filepath.Join(t.TempDir(), "conv-lora")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	fresh := newConvNet(1)
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(x).Value, out) {
		t.Error("loaded conv LoRA gives another output")
	}
}
