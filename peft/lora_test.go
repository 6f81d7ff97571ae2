package peft

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// chain is a test model: Linear layers applied one after another with tanh
// between them, and a mean-squared loss against Batch.Y.
type chain struct{ mods []*Linear }

func newChain(seed int64, names []string, widths ...int) *chain {
	rng := rand.New(rand.NewSource(seed))
	c := &chain{}
	for i, n := range names {
		c.mods = append(c.mods, NewLinear(n, widths[i], widths[i+1], true, rng))
	}
	return c
}

func (c *chain) forward(x *Tensor) *Tensor {
	for i, l := range c.mods {
		x = l.Forward(x)
		if i < len(c.mods)-1 {
			x = Tanh(x)
		}
	}
	return x
}
func (c *chain) Modules() []*Linear { return c.mods }
func (c *chain) Params() []*Tensor {
	var ps []*Tensor
	for _, l := range c.mods {
		ps = append(ps, l.W, l.B)
	}
	return append(ps, AdapterParams(c.mods)...)
}
func (c *chain) Loss(b Batch) *Tensor {
	d := Sub(c.forward(NewConst(b.X)), NewConst(b.Y))
	return Mean(Mul(d, d))
}
func (c *chain) SetTraining(t bool) {
	for _, l := range c.mods {
		l.Training = t
	}
}

func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// randomizeB gives every LoRA B random entries, as after some training.
func randomizeB(rng *rand.Rand, ls []*LoRA) {
	for _, l := range ls {
		r, c := l.B.Dims()
		l.B.Value.Copy(randDense(rng, r, c))
	}
}

var attnNames = []string{"blocks.0.attn.q", "blocks.0.attn.qq", "blocks.0.mlp.fc", "head"}

func TestTargets(t *testing.T) {
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
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
		got, err := Targets(m, c.patterns...)
		if err != nil {
			t.Fatalf("Targets(%q): %v", c.patterns, err)
		}
		if s := strings.Join(moduleNames(got), " "); s != c.want {
			t.Errorf("Targets(%q) = %s, want %s", c.patterns, s, c.want)
		}
	}
	for _, bad := range []string{"attn", "0.attn.", "mlp", "^q$", "Q"} {
		_, err := Targets(m, bad)
		if err == nil {
			t.Errorf("Targets(%q) matched something", bad)
			continue
		}
		for _, n := range attnNames {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("Targets(%q) error %q does not list %s", bad, err, n)
			}
		}
	}
}

func TestLoRAInitIsBaseExactly(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
	x := NewConst(randDense(rng, 7, 3))
	before := mat.DenseCopyOf(m.forward(x).Value)
	ls, err := AddLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"q", "fc", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 {
		t.Fatalf("attached %d adapters, want 3", len(ls))
	}
	if !mat.Equal(m.forward(x).Value, before) {
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
	n, total, pct := TrainableParams(m)
	if want := 2*(4+3) + 2*(6+5) + 2*(2+6); n != want {
		t.Errorf("trainable = %d, want %d", n, want)
	}
	if want := 4*3 + 4 + 5*4 + 5 + 6*5 + 6 + 2*6 + 2 + n; total != want || math.Abs(pct-100*float64(n)/float64(total)) > 1e-12 {
		t.Errorf("total = %d (%.2f%%), want %d", total, pct, want)
	}
	if got := Ranks(m); len(got) != 3 || got["blocks.0.attn.q"] != 2 {
		t.Errorf("Ranks = %v", got)
	}
}

func TestLoRAMergeUnmergeDisable(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, rs := range []bool{false, true} {
		m := newChain(1, attnNames, 3, 4, 5, 6, 2)
		x := NewConst(randDense(rng, 5, 3))
		base := mat.DenseCopyOf(m.forward(x).Value)
		w0 := make([]*mat.Dense, len(m.mods))
		for i, l := range m.mods {
			w0[i] = mat.DenseCopyOf(l.W.Value)
		}
		ls, err := AddLoRA(m, LoRAConfig{R: 2, Alpha: 3, RSLoRA: rs, Dropout: 0.3, Targets: []string{"q", "qq", "fc", "head"}, Seed: 9})
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(rng, ls)
		adapted := mat.DenseCopyOf(m.forward(x).Value)
		if mat.EqualApprox(adapted, base, 1e-6) {
			t.Fatal("adapter changed nothing")
		}
		DisableAdapters(m)
		if !mat.Equal(m.forward(x).Value, base) {
			t.Error("disabled adapters: output differs from the base")
		}
		EnableAdapters(m)
		if err := MergeAdapters(m); err != nil {
			t.Fatal(err)
		}
		if got := m.forward(x).Value; !mat.EqualApprox(got, adapted, 1e-12) {
			t.Errorf("rsLoRA=%v: merged output differs from the adapter's by more than 1e-12", rs)
		}
		DisableAdapters(m)
		if !mat.Equal(m.forward(x).Value, base) {
			t.Error("disabled while merged: output differs from the base")
		}
		EnableAdapters(m)
		if err := m.mods[0].Merge(); err == nil {
			t.Error("merging twice succeeded")
		}
		if err := UnmergeAdapters(m); err != nil {
			t.Fatal(err)
		}
		for i, l := range m.mods {
			if !mat.Equal(l.W.Value, w0[i]) {
				t.Errorf("unmerge did not restore %s exactly", l.Name)
			}
		}
		if !mat.Equal(m.forward(x).Value, adapted) {
			t.Error("after unmerge the output is not the adapter's")
		}
		if err := m.mods[0].Unmerge(); err == nil {
			t.Error("unmerging an unmerged layer succeeded")
		}
	}
}

func TestRSLoRADelta(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, r := range []int{1, 2, 3} {
		std, _ := NewLoRA("m", "default", 5, 4, LoRAConfig{R: r, Alpha: 7}, rand.New(rand.NewSource(1)))
		rs, _ := NewLoRA("m", "default", 5, 4, LoRAConfig{R: r, Alpha: 7, RSLoRA: true}, rand.New(rand.NewSource(1)))
		b := randDense(rng, 5, r)
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

func TestLoRAGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	m := newChain(1, []string{"fc1", "fc2"}, 5, 4, 3)
	ls, err := AddLoRA(m, LoRAConfig{R: 2, Alpha: 3, Dropout: 0.25, Targets: []string{"fc1", "fc2"}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, ls)
	m.SetTraining(true)
	x := NewConst(randDense(rng, 3, 5))
	var params []*Tensor
	for _, l := range ls {
		params = append(params, l.A, l.B)
	}
	f := func() *Tensor {
		for _, l := range ls {
			l.rng = rand.New(rand.NewSource(8)) // same dropout mask each call
		}
		return m.forward(x)
	}
	checkGrad(t, params, f, 1e-5)
	for _, p := range BaseParams(m) {
		if p.Grad != nil {
			t.Errorf("frozen %s got a gradient", p.Name)
		}
	}
}

func TestLoRADropoutOnlyInTraining(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	m := newChain(1, []string{"fc1"}, 6, 4)
	ls, _ := AddLoRA(m, LoRAConfig{R: 3, Dropout: 0.5, Targets: []string{"fc1"}})
	randomizeB(rng, ls)
	x := NewConst(randDense(rng, 4, 6))
	e1 := mat.DenseCopyOf(m.forward(x).Value)
	if !mat.Equal(m.forward(x).Value, e1) {
		t.Error("evaluation output is not deterministic")
	}
	m.SetTraining(true)
	if mat.EqualApprox(m.forward(x).Value, e1, 1e-9) {
		t.Error("dropout changed nothing in training")
	}
	// Merge ignores dropout: merged eval output = unmerged eval output.
	m.SetTraining(false)
	_ = MergeAdapters(m)
	if !mat.EqualApprox(m.forward(x).Value, e1, 1e-12) {
		t.Error("merged output differs")
	}
}

func TestLoRABadConfig(t *testing.T) {
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
	cases := []struct {
		cfg  LoRAConfig
		want []string
	}{
		{LoRAConfig{R: 0, Targets: []string{"q"}}, []string{"blocks.0.attn.q", "r = 0", "(4×3)", "1 ≤ r ≤", "= 3"}},
		{LoRAConfig{R: -1, Targets: []string{"fc"}}, []string{"blocks.0.mlp.fc", "r = -1", "(6×5)"}},
		{LoRAConfig{R: 3, Targets: []string{"head"}}, []string{"head", "r = 3", "(2×6)", "= 2"}},
		{LoRAConfig{R: 1, Dropout: 1, Targets: []string{"q"}}, []string{"dropout", "[0, 1)"}},
		{LoRAConfig{R: 1, Alpha: -1, Targets: []string{"q"}}, []string{"alpha"}},
		{LoRAConfig{R: 1, Targets: []string{"nope"}}, []string{"nope", "blocks.0.attn.q", "head"}},
	}
	for _, c := range cases {
		_, err := AddLoRA(m, c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not contain %q", c.cfg, err, w)
			}
		}
	}
	// A failure on a later module leaves no adapter behind.
	if _, err := AddLoRA(m, LoRAConfig{R: 3, Targets: []string{"q", "head"}}); err == nil {
		t.Fatal("r = 3 on head (2×6) accepted")
	}
	for _, l := range m.mods {
		if len(l.Adapters) != 0 {
			t.Errorf("%s kept an adapter from a failed AddLoRA", l.Name)
		}
	}
}

func TestSeveralNamedAdapters(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
	x := NewConst(randDense(rng, 4, 3))
	base := mat.DenseCopyOf(m.forward(x).Value)
	one, err := AddLoRA(m, LoRAConfig{R: 1, Name: "one", Targets: []string{"q", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, one)
	yOne := mat.DenseCopyOf(m.forward(x).Value)
	two, err := AddLoRA(m, LoRAConfig{R: 2, Name: "two", Targets: []string{"q", "head"}})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, two)
	yTwo := mat.DenseCopyOf(m.forward(x).Value)
	if mat.EqualApprox(yOne, yTwo, 1e-9) {
		t.Fatal("the two adapters give the same output")
	}
	if err := SetAdapter(m, "one"); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(m.forward(x).Value, yOne) {
		t.Error("switching back to \"one\" does not give its output")
	}
	if got := Ranks(m)["head"]; got != 1 {
		t.Errorf("rank of head with \"one\" active = %d", got)
	}
	DisableAdapters(m)
	if !mat.Equal(m.forward(x).Value, base) {
		t.Error("disabled: not the base")
	}
	EnableAdapters(m)
	if err := SetAdapter(m, "three"); err == nil {
		t.Error("SetAdapter of an unknown adapter succeeded")
	}
	if _, err := AddLoRA(m, LoRAConfig{R: 1, Name: "one", Targets: []string{"q"}}); err == nil {
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
	l, _ := NewLoRA("m", "default", 5, 4, LoRAConfig{R: 2, Alpha: 3}, rng)
	l.B.Value.Copy(randDense(rng, 5, 2))
	w0 := randDense(rng, 5, 4)
	if !mat.EqualApprox(ProbeMergedWeight(l, w0), l.MergedWeight(w0), 1e-13) {
		t.Error("probe ≠ W₀ + s·B·A")
	}
	m := newChain(1, []string{"fc1"}, 4, 5)
	c := &CustomAdapter{Tensors: l.Params(), ForwardFunc: l.Forward}
	if err := m.mods[0].Attach("c", c); err != nil {
		t.Fatal(err)
	}
	x := NewConst(randDense(rng, 3, 4))
	y := mat.DenseCopyOf(m.forward(x).Value)
	if err := m.mods[0].Merge(); err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(m.forward(x).Value, y, 1e-12) {
		t.Error("custom adapter merged by probing differs from its forward")
	}
}

func TestLinearShapeError(t *testing.T) {
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
	x := NewConst(mat.NewDense(2, 7, nil))
	for _, merged := range []bool{false, true} {
		if merged {
			if _, err := AddLoRA(m, LoRAConfig{R: 1, Targets: []string{"q"}}); err != nil {
				t.Fatal(err)
			}
			if err := MergeAdapters(m); err != nil {
				t.Fatal(err)
			}
		}
		err := Maybe(func() { m.mods[0].Forward(x) })
		var se ShapeError
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
	m := newChain(1, attnNames, 3, 4, 5, 6, 2)
	ls, _ := AddLoRA(m, LoRAConfig{R: 2, Targets: []string{"q", "head"}})
	randomizeB(rng, ls)
	x := NewConst(randDense(rng, 4, 3))
	y := mat.DenseCopyOf(m.forward(x).Value)
	q := m.mods[0]
	if err := q.Bake(); err != nil {
		t.Fatal(err)
	}
	if len(q.Adapters) != 0 || q.Active != "" || q.Merged() != "" {
		t.Errorf("after Bake: adapters %v, active %q, merged %q", q.AdapterNames(), q.Active, q.Merged())
	}
	if !mat.EqualApprox(m.forward(x).Value, y, 1e-12) {
		t.Error("baked output differs")
	}
	head := m.mods[3]
	if err := head.Detach("default"); err != nil || head.Active != "" {
		t.Fatalf("Detach: %v, active %q", err, head.Active)
	}
	if err := head.Detach("default"); err == nil {
		t.Error("detaching twice succeeded")
	}
}
