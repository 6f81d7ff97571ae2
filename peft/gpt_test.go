package peft

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func tinyGPT(seed int64) *GPT {
	return NewGPT(GPTConfig{Vocab: 7, Context: 5, Layers: 2, Heads: 2, Dim: 6, Hidden: 8, Seed: seed})
}

func tinyLMBatch(rng *rand.Rand, seqs, T, V int) Batch {
	b := Batch{Seqs: seqs, Tokens: make([]int, seqs*T), Targets: make([]int, seqs*T)}
	for i := range b.Tokens {
		b.Tokens[i], b.Targets[i] = rng.Intn(V), rng.Intn(V)
	}
	return b
}

func TestGPTNames(t *testing.T) {
	g := tinyGPT(1)
	got := strings.Join(ModuleNames(g), " ")
	want := "blocks.0.attn.q blocks.0.attn.k blocks.0.attn.v blocks.0.attn.o blocks.0.mlp.fc blocks.0.mlp.proj " +
		"blocks.1.attn.q blocks.1.attn.k blocks.1.attn.v blocks.1.attn.o blocks.1.mlp.fc blocks.1.mlp.proj head"
	if got != want {
		t.Errorf("modules:\n%s\nwant\n%s", got, want)
	}
	seen := map[string]bool{}
	for _, p := range g.Params() {
		if p.Name == "" || seen[p.Name] {
			t.Errorf("parameter name %q empty or repeated", p.Name)
		}
		seen[p.Name] = true
	}
	if _, total, _ := TrainableParams(g); total != 7*6+5*6+2*(4*(6*6+6)+2*2*6+(8*6+8)+(6*8+6))+2*6+7*6 {
		t.Errorf("total parameters %d", total)
	}
}

// TestGPTGradients checks the gradient of a tiny GPT's loss with respect to a
// few of its parameters, and to LoRA factors on its attention, against
// central differences.
func TestGPTGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	g := tinyGPT(2)
	// Make biases and gains non-trivial so that their gradients are tested
	// away from the initial point.
	for _, p := range g.Params() {
		r, c := p.Dims()
		if r == 1 {
			p.Value.Add(p.Value, RandUniform(rng, r, c, 0.3))
		}
	}
	b := tinyLMBatch(rng, 2, 5, 7)
	byName := map[string]*Tensor{}
	for _, p := range g.Params() {
		byName[p.Name] = p
	}
	var params []*Tensor
	for _, n := range []string{"wte.weight", "wpe.weight", "blocks.0.ln1.weight", "blocks.0.attn.q.weight", "blocks.0.attn.k.bias",
		"blocks.1.attn.v.weight", "blocks.1.attn.o.weight", "blocks.0.mlp.fc.bias", "blocks.1.mlp.proj.weight", "blocks.1.ln2.bias", "ln_f.weight", "head.weight"} {
		params = append(params, byName[n])
	}
	checkGrad(t, params, func() *Tensor { return g.Loss(b) }, 1e-5)

	ls, err := addLowRank(g, lowRank{R: 2, Alpha: 2, Targets: []string{"q", "v"}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(rng, ls)
	params = params[:0]
	for _, l := range ls {
		params = append(params, l.A, l.B)
	}
	checkGrad(t, params, func() *Tensor { return g.Loss(b) }, 1e-5)
}

func TestGPTCausalAndAdapters(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	g := tinyGPT(4)
	toks := []int{1, 2, 3, 4, 5, 6, 0, 1}
	y := mat.DenseCopyOf(g.Forward(toks, 2).Value)
	toks2 := append([]int(nil), toks...)
	toks2[3], toks2[7] = 0, 6 // last position of each sequence
	y2 := g.Forward(toks2, 2).Value
	for _, i := range []int{0, 1, 2, 4, 5, 6} {
		if !mat.Equal(y.RowView(i), y2.RowView(i)) {
			t.Errorf("logits of position %d depend on a later token", i)
		}
	}
	ls, err := addLowRank(g, lowRank{R: 3, Targets: []string{"attn.q", "attn.k", "attn.v", "attn.o"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 8 {
		t.Fatalf("%d adapters, want 8", len(ls))
	}
	if !mat.Equal(g.Forward(toks, 2).Value, y) {
		t.Error("LoRA at init changed the GPT's output")
	}
	randomizeB(rng, ls)
	adapted := mat.DenseCopyOf(g.Forward(toks, 2).Value)
	DisableAdapters(g)
	if !mat.Equal(g.Forward(toks, 2).Value, y) {
		t.Error("disabled: not the base GPT")
	}
	EnableAdapters(g)
	if err := MergeAdapters(g); err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(g.Forward(toks, 2).Value, adapted, 1e-12) {
		t.Error("merged GPT differs from the adapted one by more than 1e-12")
	}
	out, err := g.Generate(context.Background(), []int{1, 2}, 9, 0.8, rand.New(rand.NewSource(1)))
	if err != nil || len(out) != 11 {
		t.Errorf("Generate: %v, %d tokens", err, len(out))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Generate(ctx, []int{1}, 5, 0, nil); err == nil {
		t.Error("Generate ignored a cancelled context")
	}
}

// TestGPTGenerateErrors checks that Generate's bad arguments are errors
// naming the problem, not panics.
func TestGPTGenerateErrors(t *testing.T) {
	g := tinyGPT(4)
	v := g.Config.Vocab
	for _, c := range []struct {
		prompt []int
		temp   float64
		rng    *rand.Rand
		want   string
	}{
		{[]int{1, v}, 0, nil, fmt.Sprintf("prompt token 1 is %d, outside the vocabulary [0, %d)", v, v)},
		{[]int{-1}, 0.8, rand.New(rand.NewSource(1)), "prompt token 0 is -1"},
		{[]int{1, 2}, 0.8, nil, "nil rng"},
	} {
		var err error
		if perr := Maybe(func() { _, err = g.Generate(context.Background(), c.prompt, 3, c.temp, c.rng) }); perr != nil {
			t.Errorf("prompt %v, temperature %g: panicked: %v", c.prompt, c.temp, perr)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("prompt %v, temperature %g: err = %v, want %q", c.prompt, c.temp, err, c.want)
		}
	}
	if out, err := g.Generate(context.Background(), []int{v - 1}, 2, 0, nil); err != nil || len(out) != 3 {
		t.Errorf("greedy with a nil rng: %v, %d tokens", err, len(out))
	}
}

func TestTinyGPTComplete(t *testing.T) {
	g, err := LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	v := CharVocab()
	s, err := g.Complete(context.Background(), v, "Call me Ishmael. ", 80, 0.8, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q", s)
	if !strings.HasPrefix(s, "Call me Ishmael. ") || len(s) != len("Call me Ishmael. ")+80 {
		t.Errorf("completion %q", s)
	}
	// A model of Moby-Dick writes mostly letters and spaces.
	letters := 0
	for _, r := range s {
		if r == ' ' || (r >= 'a' && r <= 'z') {
			letters++
		}
	}
	if float64(letters) < 0.75*float64(len(s)) {
		t.Errorf("only %d of %d characters are lower-case letters or spaces: %q", letters, len(s), s)
	}
	if _, err := g.Complete(context.Background(), &Vocab{}, "x", 1, 0, 1); err == nil {
		t.Error("a vocabulary of the wrong size was accepted")
	}
}
