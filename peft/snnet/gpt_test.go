package snnet_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/lora"
	"github.com/gopeft/gopeft/peft/snnet"
	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
)

// Small untrained GPTs for the unit tests: V = 96 (CharVocab), T ≤ 8, two
// blocks, C = 8 (2 heads) and C = 12 (3 heads).
var (
	smallGPT = peft.GPTConfig{Vocab: 96, Context: 8, Layers: 2, Heads: 2, Dim: 8, Seed: 1}
	wideGPT  = peft.GPTConfig{Vocab: 96, Context: 8, Layers: 2, Heads: 3, Dim: 12, Seed: 2}
)

// textData returns Moby-Dick in windows of T characters.
func textData(t testing.TB, T int) *peft.TextData {
	t.Helper()
	d, err := peft.NewTextData("moby-dick", T, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// gptStitched returns small[:l]→wide[lp:] on Moby-Dick windows of 8.
func gptStitched(t *testing.T, l, lp int) *snnet.GPTStitched {
	t.Helper()
	s, err := snnet.StitchGPT(context.Background(), peft.NewGPT(smallGPT), peft.NewGPT(wideGPT), textData(t, 8), snnet.StitchConfig{L: l, LPrime: lp, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGPTRest checks the per-block API against GPT.Forward: running the
// shipped tiny GPT to position l with GPTFeatures and on from there with
// GPTRest gives its logits bit for bit, at every l.
func TestGPTRest(t *testing.T) {
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	b := textData(t, 64).Sample(rand.New(rand.NewSource(1)), 3)
	want := g.Forward(b.Tokens, b.Seqs).Value
	for l := 0; l <= 2; l++ {
		x := snnet.GPTFeatures(g, l, b.Tokens, b.Seqs)
		if r, c := x.Dims(); r != 3*64 || c != 64 {
			t.Fatalf("l = %d: stream %s, want (192×64)", l, peft.ShapeOf(r, c))
		}
		if !mat.Equal(snnet.GPTRest(g, l, peft.NewConst(x), b.Seqs).Value, want) {
			t.Errorf("l = %d: GPTRest(GPTFeatures) differs from GPT.Forward by %.3g", l,
				adaptertest.RelDiffMax(snnet.GPTRest(g, l, peft.NewConst(x), b.Seqs).Value, want))
		}
	}
}

// TestGPTLeastSquaresExact is the paper's invariant on GPT streams: if X2
// = X1·Mᵀ + 1cᵀ exactly, X1 being the tiny GPT's residual stream after
// block 1 on 512 tokens (64 wide), the least-squares stitch returns M
// (96×64) and c, to 1e-9 relative to max |M| (measured 1e-14).
func TestGPTLeastSquaresExact(t *testing.T) {
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	b := textData(t, 64).Sample(rng, 8)
	x1 := snnet.GPTFeatures(g, 1, b.Tokens, b.Seqs) // (512×64)
	m := adaptertest.RandDense(rng, 96, 64)
	c := adaptertest.RandDense(rng, 1, 96)
	x2 := mat.NewDense(512, 96, nil)
	x2.Mul(x1, m.T())
	for i := 0; i < 512; i++ {
		for j := 0; j < 96; j++ {
			x2.Set(i, j, x2.At(i, j)+c.At(0, j))
		}
	}
	gm, gc, err := snnet.LeastSquares(context.Background(), x1, x2)
	if err != nil {
		t.Fatal(err)
	}
	e := math.Max(maxAbsDiff(gm, m), maxAbsDiff(gc, c)) / adaptertest.MaxAbs(m)
	t.Logf("max |error| of M and c relative to max |M|: %.3g", e)
	if e > 1e-9 {
		t.Errorf("least squares on GPT streams recovers M, c to %.3g, want ≤ 1e-9", e)
	}
}

// TestGPTSelfStitch stitches the shipped tiny GPT to itself at every
// position 0, 1, 2. The least-squares stitch is the identity (M = I, c =
// 0, to 1e-8: measured below 1e-14) with no fit error; and with the stitch
// set to exactly I and 0, the stitched output is the anchor's to 1e-10
// (measured: bit for bit).
func TestGPTSelfStitch(t *testing.T) {
	g, err := peft.LoadTinyGPT()
	if err != nil {
		t.Fatal(err)
	}
	data := textData(t, 64)
	eval := data.EvalBatches()[0]
	want := g.Forward(eval.Tokens, eval.Seqs).Value
	eye := mat.NewDense(64, 64, nil)
	for i := 0; i < 64; i++ {
		eye.Set(i, i, 1)
	}
	for l := 0; l <= 2; l++ {
		s, err := snnet.StitchGPT(context.Background(), g, g, data, snnet.StitchConfig{L: l, LPrime: l, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		e := math.Max(maxAbsDiff(s.M(), eye), adaptertest.MaxAbs(s.C()))
		t.Logf("l = %d: least-squares self-stitch within %.3g of the identity, fit error %.3g on %d tokens", l, e, s.FitError, s.FitRows)
		if e > 1e-8 || s.FitError > 1e-8 || s.FitRows != 4*8*64 {
			t.Errorf("l = %d: self-stitch %.3g from the identity, fit error %.3g, %d rows", l, e, s.FitError, s.FitRows)
		}
		s.Stitch.W.Value.Copy(eye)
		s.Stitch.B.Value.Zero()
		if d := adaptertest.RelDiffMax(s.Forward(eval.Tokens, eval.Seqs).Value, want); d > 1e-10 {
			t.Errorf("l = %d: identity-stitched output differs from the anchor's by %.3g", l, d)
		}
	}
}

// TestGPTStitched checks the stitched model: its modules and parameter
// names, its stitch (the least-squares fit of the anchors' streams on the
// same tokens, recomputed here), its output against the anchors run by
// hand, its FLOPs, that at init SN-Netv2's LoRA gives the least-squares
// stitch's output exactly, and that it saves and loads.
func TestGPTStitched(t *testing.T) {
	small, wide := peft.NewGPT(smallGPT), peft.NewGPT(wideGPT)
	data := textData(t, 8)
	cfg := snnet.StitchConfig{L: 1, LPrime: 2, Batches: 3, BatchSize: 5, Seed: 5}
	s, err := snnet.StitchGPT(context.Background(), small, wide, data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mods := "front.blocks.0.attn.q front.blocks.0.attn.k front.blocks.0.attn.v front.blocks.0.attn.o front.blocks.0.mlp.fc front.blocks.0.mlp.proj stitch back.head"
	if got := strings.Join(peft.ModuleNames(s), " "); got != mods {
		t.Errorf("modules %q, want %q", got, mods)
	}
	seen := map[string]bool{}
	for _, p := range s.Params() {
		if seen[p.Name] || p.Name == "" {
			t.Errorf("parameter name %q empty or repeated", p.Name)
		}
		seen[p.Name] = true
	}
	if c1, c2 := s.Widths(); c1 != 8 || c2 != 12 || s.FitRows != 3*5*8 {
		t.Errorf("stitch %d→%d fitted on %d rows, want 8→12 on 120", c1, c2, s.FitRows)
	}
	// The same tokens StitchGPT drew: 3 batches of 5 from a generator seeded 5.
	rng := rand.New(rand.NewSource(5))
	var x1s, x2s []*mat.Dense
	for i := 0; i < 3; i++ {
		b := data.Sample(rng, 5)
		x1s = append(x1s, snnet.GPTFeatures(small, 1, b.Tokens, b.Seqs))
		x2s = append(x2s, snnet.GPTFeatures(wide, 2, b.Tokens, b.Seqs))
	}
	m, c, err := snnet.LeastSquares(context.Background(), stackRows(x1s), stackRows(x2s))
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(s.M(), m) || !mat.Equal(s.C(), c) {
		t.Errorf("the stitch is not the least-squares fit of the anchors' streams")
	}
	// The output, by hand: the small GPT's stream after block 1, ·Mᵀ + c,
	// then the wide GPT's final LayerNorm and head.
	b := data.Sample(rand.New(rand.NewSource(6)), 3)
	h := snnet.GPTFeatures(small, 1, b.Tokens, b.Seqs)
	z := peft.AddRow(peft.MatMulT(peft.NewConst(h), peft.NewConst(m)), peft.NewConst(c))
	want := snnet.GPTRest(wide, 2, z, b.Seqs).Value
	got := mat.DenseCopyOf(s.Forward(b.Tokens, b.Seqs).Value)
	if d := adaptertest.RelDiffMax(got, want); d > 1e-12 {
		t.Errorf("stitched output differs from the anchors run by hand by %.3g", d)
	}
	// FLOPs per token at T = 8: a block is 12·C² + (T+1)·C, the head V·C.
	block := func(C int) int { return 12*C*C + 9*C }
	if want := block(8) + 8*12 + 96*12; s.FLOPs() != want {
		t.Errorf("FLOPs %d, want %d", s.FLOPs(), want)
	}
	if want := 2*block(12) + 96*12; snnet.GPTFLOPs(wide) != want {
		t.Errorf("GPTFLOPs(wide) %d, want %d", snnet.GPTFLOPs(wide), want)
	}
	if n, _, _ := peft.TrainableParams(s); n != 12*8+12 {
		t.Errorf("%d trainable, want the stitch's 12·8 + 12", n)
	}
	ls, err := snnet.Add(s, snnet.Config{R: 3, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(s.Forward(b.Tokens, b.Seqs).Value, got) {
		t.Errorf("with LoRA at init, the output differs from the least-squares stitch's")
	}
	if n, _, _ := peft.TrainableParams(s); n != 3*(8+12)+12 || s.LoRA() != ls[0] {
		t.Errorf("%d trainable, want r·(C1 + C2) + C2 = %d", n, 3*(8+12)+12)
	}
	// Save and load into a stitch rebuilt from the same anchors.
	rng = rand.New(rand.NewSource(8))
	for _, p := range append(ls[0].Params(), s.Stitch.B) { // as if trained
		r, c := p.Dims()
		p.Value.Add(p.Value, adaptertest.RandDense(rng, r, c))
	}
	dir := t.TempDir()
	if err := peft.SaveModel(filepath.Join(dir, "stitched.safetensors"), s); err != nil {
		t.Fatal(err)
	}
	if err := peft.SaveAdapter(filepath.Join(dir, "adapter"), s, ""); err != nil {
		t.Fatal(err)
	}
	fresh, err := snnet.StitchGPT(context.Background(), small, wide, data, snnet.StitchConfig{L: 1, LPrime: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := peft.LoadModel(filepath.Join(dir, "stitched.safetensors"), fresh); err != nil {
		t.Fatal(err)
	}
	if err := peft.LoadAdapter(filepath.Join(dir, "adapter"), fresh, ""); err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(fresh.Forward(b.Tokens, b.Seqs).Value, s.Forward(b.Tokens, b.Seqs).Value) {
		t.Errorf("reloaded stitched GPT's output differs")
	}
}

// TestGPTGradients compares the gradient of the stitched GPT's
// cross-entropy with respect to the stitch's LoRA factors and bias against
// central differences (wide→small at position 1, through a block of the
// back anchor), and checks that the anchors' copies and M get none. The
// loss is about ln 96 ≈ 4.6, so the differences' rounding is about 1e-9:
// errors are relative to max(|gradient|, 1e-2).
func TestGPTGradients(t *testing.T) {
	s, err := snnet.StitchGPT(context.Background(), peft.NewGPT(wideGPT), peft.NewGPT(smallGPT), textData(t, 8), snnet.StitchConfig{L: 1, LPrime: 1, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := snnet.Add(s, snnet.Config{R: 2, Alpha: 1.5, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(10))
	for _, p := range ls[0].Params() { // away from B = 0
		r, c := p.Dims()
		p.Value.Copy(adaptertest.RandDense(rng, r, c))
	}
	b := textData(t, 5).Sample(rng, 2)
	params := peft.TrainableOf(s)
	if len(params) != 3 {
		t.Fatalf("%d trainable tensors, want A, B and the bias", len(params))
	}
	for _, p := range s.Params() {
		p.ZeroGrad()
	}
	s.Loss(b).Backward()
	var worst float64
	for _, p := range params {
		got := mat.DenseCopyOf(p.Grad).RawMatrix().Data
		_, cols := p.Dims()
		x0 := append([]float64(nil), p.Value.RawMatrix().Data...)
		set := func(v []float64) {
			for j, e := range v {
				p.Value.Set(j/cols, j%cols, e)
			}
		}
		num := fd.Gradient(nil, func(v []float64) float64 {
			set(v)
			return s.Loss(b).Scalar()
		}, append([]float64(nil), x0...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
		set(x0)
		for j := range num {
			worst = math.Max(worst, math.Abs(got[j]-num[j])/math.Max(math.Max(math.Abs(got[j]), math.Abs(num[j])), 1e-2))
		}
	}
	t.Logf("max relative error of A, B and c's gradients: %.3g", worst)
	if worst > 1e-6 {
		t.Errorf("gradients off by %.3g relative", worst)
	}
	for _, p := range peft.BaseParams(s) {
		if !p.Trainable && p.Grad != nil && adaptertest.MaxAbs(p.Grad) != 0 {
			t.Errorf("frozen %s got a gradient", p.Name)
		}
	}
}

func TestGPTBadConfig(t *testing.T) {
	small, wide := peft.NewGPT(smallGPT), peft.NewGPT(wideGPT)
	data := textData(t, 8)
	for _, c := range []struct {
		cfg  snnet.StitchConfig
		want []string
	}{
		{snnet.StitchConfig{L: -1, LPrime: 1}, []string{"L = -1", "0 ≤ L ≤ 2"}},
		{snnet.StitchConfig{L: 3, LPrime: 1}, []string{"L = 3", "front anchor has 2 blocks"}},
		{snnet.StitchConfig{L: 1, LPrime: 5}, []string{"LPrime = 5", "back anchor has 2 blocks"}},
		{snnet.StitchConfig{L: 1, LPrime: 1, Batches: -1}, []string{"Batches = -1"}},
		{snnet.StitchConfig{L: 1, LPrime: 1, BatchSize: -2}, []string{"BatchSize = -2"}},
	} {
		_, err := snnet.StitchGPT(context.Background(), small, wide, data, c.cfg)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%+v: %v", c.cfg, e)
		}
	}
	adapted := peft.NewGPT(wideGPT)
	if _, err := lora.Add(adapted, lora.Config{R: 1, Targets: []string{"blocks.1.attn.v"}}); err != nil {
		t.Fatal(err)
	}
	_, err := snnet.StitchGPT(context.Background(), small, adapted, data, snnet.StitchConfig{L: 1, LPrime: 1})
	if e := adaptertest.ErrorMentions(err, "back anchor", "blocks.1.attn.v", "Bake"); e != nil {
		t.Errorf("adapted anchor: %v", e)
	}
	_, err = snnet.StitchGPT(context.Background(), small, wide, gaussData(), snnet.StitchConfig{L: 1, LPrime: 1})
	if e := adaptertest.ErrorMentions(err, "no token sequences"); e != nil {
		t.Errorf("digits data: %v", e)
	}
	other := smallGPT
	other.Context = 16
	err = peft.Maybe(func() {
		snnet.StitchGPT(context.Background(), small, peft.NewGPT(other), data, snnet.StitchConfig{L: 1, LPrime: 1})
	})
	var se peft.ShapeError
	if !errors.As(err, &se) || adaptertest.ErrorMentions(err, "T ≤ 8", "T ≤ 16") != nil {
		t.Errorf("anchors of contexts 8 and 16: %v, want a ShapeError naming both", err)
	}
}

// TestGPTCurve stitches the shipped tiny GPT (A, C = 64) and its wide
// sibling (B, C = 96) both ways at the three block boundaries 0, 1, 2 and
// checks what holds on held-out Moby-Dick (measured: A 2.741 and B 2.591
// bits/char):
//   - 8 points sorted by FLOPs, the anchors' at GPTFLOPs;
//   - every least-squares stitch is worse than both anchors, by at least
//     0.02 bits/char than A (measured 2.789 … 3.044: the fit errors are 6%
//     … 34%), and within 0.5 bits/char of A;
//   - SN-Netv2's LoRA (r = 16, α = 1, 150 steps of 8 windows) on
//     B[:2]→A[2:], the wide GPT's blocks read by the tiny one's head,
//     brings it strictly between the anchors (measured 2.718, from 2.789).
//
// Not every stitch gets between the anchors with frozen anchors: after 400
// steps of 16 windows, B[:1]→A[1:] and B[:2]→A[2:] do (2.715, 2.677),
// while the tiny→wide stitches and those at the embeddings stay 0.046 …
// 0.070 bits/char above A (see the package doc). B[:1]→A[1:], the one
// between the anchors in FLOPs too, needs more training than fits in this
// test (300 steps of 8: 2.732).
func TestGPTCurve(t *testing.T) {
	ctx := context.Background()
	a, b, data, err := snnet.GPTAnchors()
	if err != nil {
		t.Fatal(err)
	}
	pts, err := snnet.GPTCurve(ctx, a, b, data, snnet.CurveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 8 {
		t.Fatalf("%d points, want 2 anchors and 6 stitches", len(pts))
	}
	bpc := map[string]float64{}
	for i, p := range pts {
		t.Logf("%-12s FLOPs %6d  fit %.3f  %.4f bits/char", p.Name, p.FLOPs, p.FitError, p.BitsPerChar)
		bpc[p.Name] = p.BitsPerChar
		if i > 0 && p.FLOPs < pts[i-1].FLOPs {
			t.Errorf("points not sorted by FLOPs")
		}
	}
	hi, lo := bpc["A"], bpc["B"]
	if !(lo < hi) {
		t.Fatalf("the wide anchor's %.4f bits/char is not below the tiny one's %.4f", lo, hi)
	}
	for _, p := range pts {
		switch {
		case p.Name == "A" && p.FLOPs != snnet.GPTFLOPs(a), p.Name == "B" && p.FLOPs != snnet.GPTFLOPs(b):
			t.Errorf("%s: FLOPs %d, want GPTFLOPs", p.Name, p.FLOPs)
		case p.Back == "":
		case p.BitsPerChar < hi+0.02 || p.BitsPerChar > hi+0.5:
			t.Errorf("%s: least-squares stitch %.4f bits/char outside [%.4f + 0.02, %.4f + 0.5]", p.Name, p.BitsPerChar, hi, hi)
		}
	}
	s, err := snnet.StitchGPT(ctx, b, a, data, snnet.StitchConfig{L: 2, LPrime: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snnet.Add(s, snnet.Config{R: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := peft.Train(ctx, s, data, peft.TrainConfig{Steps: 150, BatchSize: 8, LR: 1e-2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	_, after, err := peft.Evaluate(ctx, s, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("B[:2]→A[2:] after LoRA: %.4f bits/char (least squares %.4f)", after, bpc["B[:2]→A[2:]"])
	if after <= lo || after >= hi {
		t.Errorf("trained B[:2]→A[2:] at %.4f bits/char, not between the anchors' (%.4f, %.4f)", after, lo, hi)
	}
}
