package rl

import (
	"context"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// logSoftmaxRef is the test's own log-softmax of z/τ, by the definition.
func logSoftmaxRef(z []float64, tau float64) []float64 {
	s := 0.0
	for _, v := range z {
		s += math.Exp(v / tau)
	}
	out := make([]float64, len(z))
	for j, v := range z {
		out[j] = v/tau - math.Log(s)
	}
	return out
}

// TestLogProbsKnownAnswer checks LogProbs against the log-softmax of the
// logits of each sequence run through the model on its own, position by
// position, and the sequence log-likelihood against their sum.
func TestLogProbsKnownAnswer(t *testing.T) {
	for _, tau := range []float64{1, 0.7} {
		g, _, r := tinyPolicy(t, tau)
		lp := LogProbs(g, r)
		for b, s := range r.Seqs {
			sum, want := 0.0, 0.0
			for k := 0; k < r.N(); k++ {
				pos := r.PromptLen + k                               // position of the token
				z := g.Forward(s[:pos], 1).Value.RawRowView(pos - 1) // logits before it
				w := logSoftmaxRef(z, tau)[s[pos]]
				if d := math.Abs(lp[b][k] - w); d > 1e-12 {
					t.Errorf("τ = %v: sequence %d token %d: log-prob %v, direct %v", tau, b, k, lp[b][k], w)
				}
				sum += lp[b][k]
				want += w
			}
			if m := MeanLogProbs(r, lp)[b] * float64(r.N()); math.Abs(m-want) > 1e-12 || math.Abs(sum-want) > 1e-12 {
				t.Errorf("τ = %v: sequence %d: log-likelihood %v (mean×n %v), direct %v", tau, b, sum, m, want)
			}
		}
	}
}

// TestKLZeroAtInit: with LoRA's B = 0 the policy is the reference, so the
// log-probs agree bit for bit and both KLs are 0 exactly (methods-b.md §B1
// test 1). Once B ≠ 0 the exact KL is positive and equals the mean of k3
// over the policy's own distribution at each position, summed by hand.
func TestKLZeroAtInit(t *testing.T) {
	g, ads, r := tinyPolicy(t, 0.8)
	saved := make([]*mat.Dense, len(ads))
	for i, a := range ads {
		saved[i] = mat.DenseCopyOf(a.B.Value)
		a.B.Value.Zero()
	}
	lp, ref := LogProbs(g, r), RefLogProbs(g, r)
	if !reflect.DeepEqual(lp, ref) {
		t.Errorf("B = 0: policy log-probs %v differ from the reference's %v", lp, ref)
	}
	for b, row := range ExactKL(g, r) {
		for k, kl := range row {
			if kl != 0 || K3(lp[b][k], ref[b][k]) != 0 {
				t.Errorf("B = 0: KL at (%d, %d) = %v, k3 = %v; want 0", b, k, kl, K3(lp[b][k], ref[b][k]))
			}
		}
	}
	for i, a := range ads {
		a.B.Value.Copy(saved[i])
	}
	kl := ExactKL(g, r)
	// E_{a~π}[k3] = Σ_a π(a)·(π_ref(a)/π(a) − log(π_ref(a)/π(a)) − 1) = KL(π‖π_ref)
	s := r.Seqs[1]
	pos := r.PromptLen + 2
	p := logSoftmaxRef(g.Forward(s[:pos], 1).Value.RawRowView(pos-1), 0.8)
	peft.DisableAdapters(g)
	q := logSoftmaxRef(g.Forward(s[:pos], 1).Value.RawRowView(pos-1), 0.8)
	peft.EnableAdapters(g)
	ek3 := 0.0
	for a := range p {
		ek3 += math.Exp(p[a]) * K3(p[a], q[a])
	}
	if kl[1][2] <= 1e-6 || math.Abs(kl[1][2]-ek3) > 1e-12 {
		t.Errorf("B ≠ 0: exact KL %v, E_π[k3] %v; want equal and > 0", kl[1][2], ek3)
	}
	t.Logf("B ≠ 0: KL(π‖π_ref) = %.6f = E_π[k3] = %.6f", kl[1][2], ek3)
}

// TestGroupAdvantages checks known answers: [1, 0, 0, 1] has mean ½ and
// sample std 1/√3, so advantages ±√3/2; every group with spread has mean 0
// and sample std 1 (eps = 0); a group of equal rewards gives 0.
func TestGroupAdvantages(t *testing.T) {
	r := []float64{1, 0, 0, 1 /**/, 1, 1, 1, 1 /**/, 0, 0.5, 1, 0 /**/, 0.1, 0.1, 0.1, 0.1}
	adv := GroupAdvantages(r, 4, 0)
	h := math.Sqrt(3) / 2
	for i, w := range []float64{h, -h, -h, h, 0, 0, 0, 0} {
		if math.Abs(adv[i]-w) > 1e-12 {
			t.Errorf("adv[%d] = %v, want %v", i, adv[i], w)
		}
	}
	for i := 12; i < 16; i++ {
		if adv[i] != 0 {
			t.Errorf("equal rewards 0.1: adv[%d] = %v, want 0 exactly", i, adv[i])
		}
	}
	for _, s := range []int{0, 8} {
		m, ss := 0.0, 0.0
		for _, a := range adv[s : s+4] {
			m += a / 4
		}
		for _, a := range adv[s : s+4] {
			ss += (a - m) * (a - m)
		}
		if math.Abs(m) > 1e-12 || math.Abs(math.Sqrt(ss/3)-1) > 1e-12 {
			t.Errorf("group at %d: mean %v, sample std %v; want 0 and 1", s, m, math.Sqrt(ss/3))
		}
	}
	if err := peft.Maybe(func() { GroupAdvantages(r, 3, 0) }); err == nil {
		t.Error("16 rewards in groups of 3 did not panic")
	}
}

// TestUnlikelinessRewards checks the notes' formula (methods-b.md §B22) on
// a known ranking: log-likelihoods −3, −1, −5, −2 rank 1, 3, 0, 2, so with
// β = 0.25 and G = 4 the correct samples get 1 − 0.25·rank/4 and the wrong
// one 0; with all correct the least likely gets 1 and the most likely
// 1 − β(G−1)/G; β = 0 leaves the rewards alone.
func TestUnlikelinessRewards(t *testing.T) {
	lp := []float64{-3, -1, -5, -2}
	got := UnlikelinessRewards([]float64{1, 1, 0, 1}, lp, 4, 0.25)
	if want := []float64{0.9375, 0.8125, 0, 0.875}; !reflect.DeepEqual(got, want) {
		t.Errorf("shaped rewards %v, want %v", got, want)
	}
	got = UnlikelinessRewards([]float64{1, 1, 1, 1}, lp, 4, 0.25)
	if got[2] != 1 || got[1] != 1-0.25*3.0/4 {
		t.Errorf("all correct: least likely gets %v (want 1), most likely %v (want %v)", got[2], got[1], 1-0.25*3.0/4)
	}
	r := []float64{1, 0, 1, 1}
	if got := UnlikelinessRewards(r, lp, 2, 0); !reflect.DeepEqual(got, r) {
		t.Errorf("β = 0: %v, want %v", got, r)
	}
	// two groups of 2 rank separately
	if got := UnlikelinessRewards([]float64{1, 1, 1, 1}, lp, 2, 0.5); !reflect.DeepEqual(got, []float64{1, 0.75, 1, 0.75}) {
		t.Errorf("groups of 2: %v, want [1 0.75 1 0.75]", got)
	}
}

// TestClippedObjectiveKnownAnswer checks the four cases of the clip with
// ε = 0.2: ρ = 1.5 or 0.5, A = ±1, and the k3 term's value and slope.
func TestClippedObjectiveKnownAnswer(t *testing.T) {
	cases := []struct {
		rho, a, j, d float64
	}{
		{1.5, 1, 1.2, 0},      // gain capped at 1+ε, no gradient
		{1.5, -1, -1.5, -1.5}, // a loss is never capped
		{0.5, -1, -0.8, 0},    // loss capped at 1−ε
		{0.5, 1, 0.5, 0.5},    // a gain below 1 keeps its gradient
		{1.1, 2, 2.2, 2.2},    // inside the clip
		{1.1, -2, -2.2, -2.2}, // inside the clip
	}
	for _, c := range cases {
		lp := math.Log(c.rho)
		j, d := ClippedObjective([]float64{lp}, []float64{0}, nil, []float64{c.a}, nil, 0.2, 0)
		if math.Abs(j-c.j) > 1e-12 || math.Abs(d[0]-c.d) > 1e-12 {
			t.Errorf("ρ = %v, A = %v: J = %v, ∂J = %v; want %v, %v", c.rho, c.a, j, d[0], c.j, c.d)
		}
	}
	// mean over two tokens, with β·k3: k3(logp = 0, ref = log 2) = 2 − log 2 − 1
	j, d := ClippedObjective([]float64{0, 0}, []float64{0, 0}, []float64{math.Log(2), 0}, []float64{1, 1}, nil, 0.2, 0.5)
	wantJ := (1 - 0.5*(1-math.Log(2)) + 1) / 2
	if math.Abs(j-wantJ) > 1e-12 || math.Abs(d[0]-(1-0.5*(1-2))/2) > 1e-12 || math.Abs(d[1]-0.5) > 1e-12 {
		t.Errorf("with KL: J = %v, ∂J = %v; want %v, [%v 0.5]", j, d, wantJ, (1-0.5*(1-2))/2)
	}
}

// TestGAE checks known answers: with γ = λ = 1 the advantage is the
// return-to-go less the value; with λ = 0 it is the one-step TD error.
func TestGAE(t *testing.T) {
	r, v := []float64{0.5, 0, 1}, []float64{0.2, 0.4, 0.7}
	adv, ret := GAE(r, v, 1, 1)
	for i, w := range []float64{1.5 - 0.2, 1 - 0.4, 1 - 0.7} {
		if math.Abs(adv[i]-w) > 1e-12 || math.Abs(ret[i]-(w+v[i])) > 1e-12 {
			t.Errorf("γ = λ = 1: A[%d] = %v, R = %v; want %v, %v", i, adv[i], ret[i], w, w+v[i])
		}
	}
	adv, _ = GAE(r, v, 0.9, 0)
	for i, w := range []float64{0.5 + 0.9*0.4 - 0.2, 0 + 0.9*0.7 - 0.4, 1 - 0.7} {
		if math.Abs(adv[i]-w) > 1e-12 {
			t.Errorf("λ = 0: A[%d] = %v, want δ = %v", i, adv[i], w)
		}
	}
}

// TestSparsity checks a known count and that a LoRA with B = 0 leaves every
// weight unchanged while a trained one changes (almost) all of a layer.
func TestSparsity(t *testing.T) {
	w0 := mat.NewDense(4, 5, nil)
	w := mat.DenseCopyOf(w0)
	w.Set(0, 0, 1)
	w.Set(3, 4, -2)
	w.Set(2, 2, 1e-7)
	if u, n := Sparsity(w0, w, 0); u != 17 || n != 20 {
		t.Errorf("exact: %d of %d unchanged, want 17 of 20", u, n)
	}
	if u, _ := Sparsity(w0, w, 1e-5); u != 18 {
		t.Errorf("tol 1e-5: %d unchanged, want 18", u)
	}
	g, ads, _ := tinyPolicy(t, 1)
	for _, a := range ads {
		a.B.Value.Zero()
	}
	ls, err := UpdateSparsity(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Fraction != 1 {
			t.Errorf("B = 0: %s has %v unchanged, want all", l.Module, l.Fraction)
		}
	}
	ads[0].B.Value.Set(0, 0, 1)
	ls, _ = UpdateSparsity(g, 0)
	_, k := ads[0].A.Dims()
	if ls[0].Module != "blocks.0.attn.q" || ls[0].Total-ls[0].Unchanged != k {
		t.Errorf("B = e₁₁: %s changed %d entries, want row 0: %d", ls[0].Module, ls[0].Total-ls[0].Unchanged, k)
	}
}

// TestDeterminism: the same seed gives the same samples, and the same
// GRPO run (history and LoRA weights) twice from the same start.
func TestDeterminism(t *testing.T) {
	_, _, r1 := tinyPolicy(t, 0.9)
	_, _, r2 := tinyPolicy(t, 0.9)
	if !reflect.DeepEqual(r1.Seqs, r2.Seqs) {
		t.Errorf("same seed, different samples: %v and %v", r1.Seqs, r2.Seqs)
	}
	task, err := NewWordTask(6, LabLetters)
	if err != nil {
		t.Fatal(err)
	}
	run := func() (*History, []float64) {
		g, err := peft.LoadTinyGPT()
		if err != nil {
			t.Fatal(err)
		}
		ads, err := lora.Add(g, TinaLoRA(2, 7))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(8))
		for _, a := range ads { // as if trained, so that the KL term pulls
			d := a.B.Value.RawMatrix().Data
			for i := range d {
				d[i] = 0.05 * rng.NormFloat64()
			}
		}
		cfg := DefaultGRPO()
		cfg.Steps, cfg.Prompts, cfg.Group, cfg.Seed, cfg.RankPenalty = 2, 2, 4, 3, 0.25
		h, err := GRPO(context.Background(), g, task.Vocab, task, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var w []float64
		for _, a := range ads {
			w = append(w, a.A.Value.RawMatrix().Data...)
		}
		return h, w
	}
	init := func() []float64 { // A before training
		g, _ := peft.LoadTinyGPT()
		ads, _ := lora.Add(g, TinaLoRA(2, 7))
		var w []float64
		for _, a := range ads {
			w = append(w, a.A.Value.RawMatrix().Data...)
		}
		return w
	}()
	h1, w1 := run()
	h2, w2 := run()
	h2.StepTime = h1.StepTime
	if !reflect.DeepEqual(h1, h2) || !reflect.DeepEqual(w1, w2) {
		t.Errorf("same seed, different runs: %+v vs %+v", h1, h2)
	}
	if reflect.DeepEqual(w1, init) {
		t.Error("GRPO did not change LoRA's A")
	}
}

// TestWordTask checks the reward rule on known answers and that every SFT
// example is a correct answer.
func TestWordTask(t *testing.T) {
	task, err := NewWordTask(6, LabLetters)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p, c string
		r    float64
	}{
		{"w: ", "whale ", 1}, {"w: ", "was, a", 1}, {"w: ", "whales", 0}, // no end within n
		{"w: ", "the th", 0}, {"w: ", "wxq yy", 0}, {"w: ", "w the ", 0}, // wrong letter, no word, too short
		{"s: ", "sea.  ", 1}, {"s: ", "Sea.  ", 0},
	} {
		if got := task.Reward(c.p, c.c); got != c.r {
			t.Errorf("Reward(%q, %q) = %v, want %v", c.p, c.c, got, c.r)
		}
	}
	if e := task.End("was, a"); e != 4 {
		t.Errorf("End(%q) = %d, want 4", "was, a", e)
	}
	b := task.SFTData(0).Sample(rand.New(rand.NewSource(1)), 50)
	T := len(b.Tokens) / b.Seqs
	for s := 0; s < b.Seqs; s++ {
		text := task.Vocab.Decode(append(b.Tokens[s*T:(s+1)*T:(s+1)*T], b.Targets[(s+1)*T-1]))
		if task.Reward(text[:3], text[3:]) != 1 {
			t.Errorf("SFT example %q is not a correct answer", text)
		}
	}
	if _, err := NewWordTask(6, "bx"); err == nil || !strings.Contains(err.Error(), "'x'") {
		t.Errorf("letter x: err = %v, want one naming 'q'", err)
	}
}

// TestConfigErrors: a bad field is an error naming it and its value.
func TestConfigErrors(t *testing.T) {
	task, _ := NewWordTask(6, LabLetters)
	g := peft.NewGPT(peft.GPTConfig{Vocab: 96, Context: 16, Layers: 1, Heads: 1, Dim: 4, Seed: 1})
	if _, err := lora.Add(g, TinaLoRA(1, 1)); err != nil {
		t.Fatal(err)
	}
	gc := DefaultGRPO()
	gc.Group = 1
	if _, err := GRPO(context.Background(), g, task.Vocab, task, gc); err == nil || !strings.Contains(err.Error(), "Group = 1") {
		t.Errorf("G = 1: err = %v", err)
	}
	pc := DefaultPPO()
	pc.Lambda = 1.5
	if _, _, err := PPO(context.Background(), g, task.Vocab, task, pc); err == nil || !strings.Contains(err.Error(), "Lambda = 1.5") {
		t.Errorf("λ = 1.5: err = %v", err)
	}
	bare := peft.NewGPT(peft.GPTConfig{Vocab: 96, Context: 16, Layers: 1, Heads: 1, Dim: 4, Seed: 1})
	if _, err := GRPO(context.Background(), bare, task.Vocab, task, DefaultGRPO()); err == nil || !strings.Contains(err.Error(), "adapter") {
		t.Errorf("no adapter: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := GRPO(ctx, g, task.Vocab, task, DefaultGRPO()); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled: err = %v", err)
	}
}

// TestRegistered: the three methods are in the registry, as hooks with no
// file format.
func TestRegistered(t *testing.T) {
	for _, name := range []string{"PPO-LoRA", "GRPO (Tina)", "Unlikeliness reward"} {
		m, ok := peft.LookupMethod(name)
		if !ok || m.Kind != peft.HookMethod || m.Format != nil || !strings.Contains(m.Paper, "arXiv:") {
			t.Errorf("%s: %+v, %v", name, m, ok)
		}
	}
	if c := TinaLoRA(4, 0); c.Alpha/float64(c.R) != 4 {
		t.Errorf("TinaLoRA(4): α/r = %v, want 4", c.Alpha/float64(c.R))
	}
}
