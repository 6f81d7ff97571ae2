package lora_test

import (
	"errors"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"math"
	"math/rand"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randomizeB gives every LoRA B random entries, as after some training.
func randomizeB(rng *rand.Rand, ls []*lora.LoRA) {
	for _, l := range ls {
		r, c := l.B.Dims()
		l.B.Value.Copy(adaptertest.RandDense(rng, r, c))
	}
}

var attnNames = []string{"blocks.0.attn.q", "blocks.0.attn.qq", "blocks.0.mlp.fc", "head"}

func TestTargets(t *testing.T) {
	m := adaptertest.NewChain(1, attnNames, 3, 4, 5, 6, 2)
	cases := []struct {
		patterns []string
		want     string
	}{
		{[]string{"q"}, "blocks.0.attn.q"},
		{[]string{"attn.q", "head"}, "blocks.0.attn.q head"},
		{[]string{"qq", "fc"}, "blocks.0.attn.qq blocks.0.mlp.fc"},
		{[]string{`^blocks\.0\.attn\..*$`}, "blocks.0.attn.q blocks.0.attn.qq"},
		{[]string{"head", "blocks.0.attn.q"}, "blocks.0.attn.q head"},
	}
	for _, c := range cases {
		got, err := peft.Targets(m, c.patterns...)
		if err != nil {
			t.Fatalf("peft.Targets(%q): %v", c.patterns, err)
		}
		if s := strings.Join(names(got), " "); s != c.want {
			t.Errorf("peft.Targets(%q) = %s, want %s", c.patterns, s, c.want)
		}
	}
	for _, bad := range []string{"attn", "0.attn.", "mlp", "^q$", "Q"} {
		_, err := peft.Targets(m, bad)
		if err == nil {
			t.Errorf("peft.Targets(%q) matched something", bad)
			continue
		}
		for _, n := range attnNames {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("peft.Targets(%q) error %q does not list %s", bad, err, n)
			}
		}
	}
}

func TestLoRAInitIsBaseExactly(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	m := adaptertest.NewChain(1, attnNames, 3, 4, 5, 6, 2)
	x := peft.NewConst(adaptertest.RandDense(rng, 7, 3))
	before := mat.DenseCopyOf(m.Forward(x).Value)
	ls, err := lora.Add(m, lora.Config{R: 2, Alpha: 4, Targets: []string{"q", "fc", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 {
		t.Fatalf("attached %d adapters, want 3", len(ls))
	}
	if !mat.Equal(m.Forward(x).Value, before) {
		t.Error("output at init differs from the base")
	}
	// A is Kaiming-uniform within ±1/√k, B zero.
	for _, l := range ls {
		_, k := l.A.Dims()
		if mat.Max(l.A.Value) > 1/math.Sqrt(float64(k)) || mat.Min(l.A.Value) < -1/math.Sqrt(float64(k)) || mat.Max(l.A.Value) == 0 {
			t.Errorf("A outside ±1/√k or zero")
		}
	}
	// Base frozen, adapters trainable: r(d+k) per module.
	n, total, pct := peft.TrainableParams(m)
	if want := 2*(4+3) + 2*(6+5) + 2*(2+6); n != want {
		t.Errorf("trainable = %d, want %d", n, want)
	}
	if want := 4*3 + 4 + 5*4 + 5 + 6*5 + 6 + 2*6 + 2 + n; total != want || math.Abs(pct-100*float64(n)/float64(total)) > 1e-12 {
		t.Errorf("total = %d (%.2f%%), want %d", total, pct, want)
	}
	if got := peft.Ranks(m); len(got) != 3 || got["blocks.0.attn.q"] != 2 {
		t.Errorf("Ranks = %v", got)
	}
}
func TestRSLoRADelta(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, r := range []int{1, 2, 3} {
		std, _ := lora.New("m", "default", 5, 4, lora.Config{R: r, Alpha: 7}, rand.New(rand.NewSource(1)))
		rs, _ := lora.New("m", "default", 5, 4, lora.Config{R: r, Alpha: 7, RSLoRA: true}, rand.New(rand.NewSource(1)))
		b := adaptertest.RandDense(rng, 5, r)
		std.B.Value.Copy(b)
		rs.B.Value.Copy(b)
		var want mat.Dense
		want.Scale(math.Sqrt(float64(r)), std.Delta())
		if !mat.EqualApprox(rs.Delta(), &want, 1e-13) {
			t.Errorf("r=%d: rsLoRA delta ≠ √r × standard delta", r)
		}
		if math.Abs(std.Scaling()-7/float64(r)) > 1e-15 || math.Abs(rs.Scaling()-7/math.Sqrt(float64(r))) > 1e-15 {
			t.Errorf("r=%d: scalings %g, %g", r, std.Scaling(), rs.Scaling())
		}
	}
}
func TestLoRADropoutOnlyInTraining(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	m := adaptertest.NewChain(1, []string{"fc1"}, 6, 4)
	ls, _ := lora.Add(m, lora.Config{R: 3, Dropout: 0.5, Targets: []string{"fc1"}})
	randomizeB(rng, ls)
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 6))
	e1 := mat.DenseCopyOf(m.Forward(x).Value)
	if !mat.Equal(m.Forward(x).Value, e1) {
		t.Error("evaluation output is not deterministic")
	}
	m.SetTraining(true)
	if mat.EqualApprox(m.Forward(x).Value, e1, 1e-9) {
		t.Error("dropout changed nothing in training")
	}
	// Merge ignores dropout: merged eval output = unmerged eval output.
	m.SetTraining(false)
	_ = peft.MergeAdapters(m)
	if !mat.EqualApprox(m.Forward(x).Value, e1, 1e-12) {
		t.Error("merged output differs")
	}
}
func TestSeveralNamedAdapters(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	m := adaptertest.NewChain(1, attnNames, 3, 4, 5, 6, 2)
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 3))
	base := mat.DenseCopyOf(m.Forward(x).Value)
	one, err := lora.Add(m, lora.Config{R: 1, Name: "one", Targets: []string{"q", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, one)
	yOne := mat.DenseCopyOf(m.Forward(x).Value)
	two, err := lora.Add(m, lora.Config{R: 2, Name: "two", Targets: []string{"q", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, two)
	yTwo := mat.DenseCopyOf(m.Forward(x).Value)
	if mat.EqualApprox(yOne, yTwo, 1e-9) {
		t.Fatal("the two adapters give the same output")
	}
	if err := peft.SetAdapter(m, "one"); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(m.Forward(x).Value, yOne) {
		t.Error("switching back to \"one\" does not give its output")
	}
	if got := peft.Ranks(m)["head"]; got != 1 {
		t.Errorf("rank of head with \"one\" active = %d", got)
	}
	peft.DisableAdapters(m)
	if !mat.Equal(m.Forward(x).Value, base) {
		t.Error("disabled: not the base")
	}
	peft.EnableAdapters(m)
	if err := peft.SetAdapter(m, "three"); err == nil {
		t.Error("SetAdapter of an unknown adapter succeeded")
	}
	if _, err := lora.Add(m, lora.Config{R: 1, Name: "one", Targets: []string{"q"}}); err == nil {
		t.Error("a second adapter named \"one\" was accepted")
	}
	if n := len(m.Params()); n != 8+4*2 {
		t.Errorf("Params has %d tensors, want 16", n)
	}
}

// TestProbeMergedWeight checks the identity probe against LoRA's own merge,
// and a CustomAdapter merged by probing against its forward.
func TestProbeMergedWeight(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	l, _ := lora.New("m", "default", 5, 4, lora.Config{R: 2, Alpha: 3}, rng)
	l.B.Value.Copy(adaptertest.RandDense(rng, 5, 2))
	w0 := adaptertest.RandDense(rng, 5, 4)
	if !mat.EqualApprox(peft.ProbeMergedWeight(l, w0), l.MergedWeight(w0), 1e-13) {
		t.Error("probe ≠ W₀ + s·B·A")
	}
	m := adaptertest.NewChain(1, []string{"fc1"}, 4, 5)
	c := &peft.CustomAdapter{Tensors: l.Params(), ForwardFunc: l.Forward}
	if err := m.Mods[0].Attach("c", c); err != nil {
		t.Fatal(err)
	}
	x := peft.NewConst(adaptertest.RandDense(rng, 3, 4))
	y := mat.DenseCopyOf(m.Forward(x).Value)
	if err := m.Mods[0].Merge(); err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(m.Forward(x).Value, y, 1e-12) {
		t.Error("custom adapter merged by probing differs from its forward")
	}
}

func TestLinearShapeError(t *testing.T) {
	m := adaptertest.NewChain(1, attnNames, 3, 4, 5, 6, 2)
	x := peft.NewConst(mat.NewDense(2, 7, nil))
	for _, merged := range []bool{false, true} {
		if merged {
			if _, err := lora.Add(m, lora.Config{R: 1, Targets: []string{"q"}}); err != nil {
				t.Fatal(err)
			}
			if err := peft.MergeAdapters(m); err != nil {
				t.Fatal(err)
			}
		}
		err := peft.Maybe(func() { m.Mods[0].Forward(x) })
		var se peft.ShapeError
		if !errors.As(err, &se) {
			t.Fatalf("got %v, want a ShapeError", err)
		}
		for _, w := range []string{"blocks.0.attn.q", "(2×7)", "(4×3)", "(n×3)"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %s", err, w)
			}
		}
	}
}

func TestBakeAndDetach(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	m := adaptertest.NewChain(1, attnNames, 3, 4, 5, 6, 2)
	ls, _ := lora.Add(m, lora.Config{R: 2, Targets: []string{"q", "head"}})
	randomizeB(rng, ls)
	x := peft.NewConst(adaptertest.RandDense(rng, 4, 3))
	y := mat.DenseCopyOf(m.Forward(x).Value)
	q := m.Mods[0]
	if err := q.Bake(); err != nil {
		t.Fatal(err)
	}
	if len(q.Adapters) != 0 || q.Active != "" || q.Merged() != "" {
		t.Errorf("after Bake: adapters %v, active %q, merged %q", q.AdapterNames(), q.Active, q.Merged())
	}
	if !mat.EqualApprox(m.Forward(x).Value, y, 1e-12) {
		t.Error("baked output differs")
	}
	head := m.Mods[3]
	if err := head.Detach("default"); err != nil || head.Active != "" {
		t.Fatalf("Detach: %v, active %q", err, head.Active)
	}
	if err := head.Detach("default"); err == nil {
		t.Error("detaching twice succeeded")
	}
}

func names(ls []*peft.Linear) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}

// TestSuite runs the shared adapter suite on LoRA and on rsLoRA.
func TestSuite(t *testing.T) {
	for _, rs := range []bool{false, true} {
		t.Run(map[bool]string{false: "LoRA", true: "rsLoRA"}[rs], func(t *testing.T) {
			adaptertest.Run(t, adaptertest.Case{
				Add: func(m peft.Model, o adaptertest.Options) ([]peft.Adapter, error) {
					ls, err := lora.Add(m, lora.Config{R: o.R, Alpha: o.Alpha, RSLoRA: rs, Targets: o.Targets, Seed: o.Seed})
					return adapters(ls), err
				},
				ZeroAtInit: true,
			})
		})
	}
}

func adapters(ls []*lora.LoRA) []peft.Adapter {
	out := make([]peft.Adapter, len(ls))
	for i, l := range ls {
		out[i] = l
	}
	return out
}
