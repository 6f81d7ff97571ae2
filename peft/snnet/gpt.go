package snnet

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// This file stitches GPTs (peft.GPT): SN-Netv2 on the language models it
// was made for in spirit, Transformers of one family and different widths,
// here the shipped tiny GPT (C = 64) and its wider sibling (C = 96).
//
// A GPT's position l is the residual stream after its first l blocks,
// x_l (B·T×C): l = 0 is the embedding wte[tokens] + wpe[positions], l = L
// the stream that the final LayerNorm and the head read. The stitched
// network at (l, l') runs the front anchor's embedding and blocks 1 … l,
// maps its stream token by token, and runs the back anchor's blocks
// l'+1 … L' and head:
//
//	h = x_l of the front      (B·T×C1)
//	z = h·Mᵀ + 1cᵀ (+ LoRA)   (B·T×C2), standing in for x_l' of the back
//	logits = head(LN_f(back blocks l'+1 … on z))   (B·T×V)
//
// As for MLPs, M and c start as the least-squares map between the two
// streams on the same tokens (one row per token, as the reference code's
// ViT stitch fits one row per patch token), and SN-Netv2's LoRA then
// trains on M, with c.

// GPTFeatures returns the residual stream of g after its first l blocks
// (0 ≤ l ≤ Layers) for seqs sequences of tokens (B·T×C), as a stitch sees
// it: l = 0 gives the embeddings. Adapters on g's layers take part; dropout
// does not. It panics if l is out of range or the tokens do not fit g.
func GPTFeatures(g *peft.GPT, l int, tokens []int, seqs int) *mat.Dense {
	checkGPT("snnet.GPTFeatures", g)
	if l < 0 || l > len(g.Blocks) {
		panic(peft.ArgError{Op: "snnet.GPTFeatures", Msg: fmt.Sprintf("position l = %d outside [0, %d] for a GPT of %d blocks", l, len(g.Blocks), len(g.Blocks))})
	}
	x := gptEmbed("snnet.GPTFeatures", g.Wte, g.Wpe, g.Config.Context, tokens, seqs)
	for _, b := range g.Blocks[:l] {
		x = gptBlock(b, x, seqs, g.Config.Heads)
	}
	return mat.DenseCopyOf(x.Value)
}

// GPTRest returns the logits (B·T×V) of g run from position l on: its
// blocks l+1 … L on the residual stream x (B·T×C) of seqs sequences, then
// the final LayerNorm and the head. GPTRest(g, l, GPTFeatures(g, l, …))
// is g.Forward without dropout, for every l. It panics if l is out of range
// or x is not (B·T×C).
func GPTRest(g *peft.GPT, l int, x *peft.Tensor, seqs int) *peft.Tensor {
	checkGPT("snnet.GPTRest", g)
	if l < 0 || l > len(g.Blocks) {
		panic(peft.ArgError{Op: "snnet.GPTRest", Msg: fmt.Sprintf("position l = %d outside [0, %d] for a GPT of %d blocks", l, len(g.Blocks), len(g.Blocks))})
	}
	checkStream("snnet.GPTRest", x, seqs, g.Config.Dim)
	for _, b := range g.Blocks[l:] {
		x = gptBlock(b, x, seqs, g.Config.Heads)
	}
	return g.Head.Forward(peft.LayerNorm(x, g.LnFG, g.LnFB))
}

// checkGPT panics unless g is a GPT with its parts.
func checkGPT(op string, g *peft.GPT) {
	if g == nil || g.Wte == nil || g.Wpe == nil || g.Head == nil || g.LnFG == nil || g.LnFB == nil {
		panic(peft.ArgError{Op: op, Msg: "nil GPT or a GPT without its embeddings, final LayerNorm or head"})
	}
}

// checkStream panics unless x is (B·T×C) for seqs sequences.
func checkStream(op string, x *peft.Tensor, seqs, c int) {
	n, k := x.Dims()
	if seqs <= 0 || n%seqs != 0 || k != c {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("x %s in %d sequences", peft.ShapeOf(n, k), seqs), Want: fmt.Sprintf("x (B·T×%d) for B ≥ 1 sequences", c)})
	}
}

// gptEmbed returns x₀ = wte[tokens] + wpe[positions] (B·T×C), checking the
// tokens as GPT.Forward does.
func gptEmbed(op string, wte, wpe *peft.Tensor, context int, tokens []int, seqs int) *peft.Tensor {
	if seqs <= 0 || len(tokens) == 0 || len(tokens)%seqs != 0 {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("%d tokens in %d sequences", len(tokens), seqs), Want: "B ≥ 1 sequences of equal length T ≥ 1"})
	}
	T := len(tokens) / seqs
	if T > context {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("sequences of T = %d", T), Want: fmt.Sprintf("T ≤ Context = %d", context)})
	}
	pos := make([]int, len(tokens))
	for i := range pos {
		pos[i] = i % T
	}
	return peft.Add(peft.Embedding(wte, tokens), peft.Embedding(wpe, pos))
}

// gptBlock runs one pre-norm block on the stream x (B·T×C), as
// GPT.Forward does with dropout off:
//
//	x = x + attn.o(CausalSelfAttention(q(h), k(h), v(h))),  h = LN₁(x)
//	x = x + mlp.proj(GELU(mlp.fc(LN₂(x))))
func gptBlock(b *peft.GPTBlock, x *peft.Tensor, seqs, heads int) *peft.Tensor {
	h := peft.LayerNorm(x, b.Ln1G, b.Ln1B)
	a := peft.CausalSelfAttention(b.Q.Forward(h), b.K.Forward(h), b.V.Forward(h), seqs, heads)
	x = peft.Add(x, b.O.Forward(a))
	h = peft.GELU(b.FC.Forward(peft.LayerNorm(x, b.Ln2G, b.Ln2B))) // (B·T×Hidden)
	return peft.Add(x, b.Proj.Forward(h))
}

// GPTStitched is one network of SN-Net's family over two GPTs: the front
// anchor's embeddings and first L blocks, the stitching layer, and the back
// anchor's blocks from L'+1 on with its final LayerNorm and head (see the
// math at the top of this file). The anchors' parts are frozen copies
// (so that merging or training here never changes the anchors), named
// "front.wte.weight", "front.blocks.0.attn.q", …, "back.blocks.1.mlp.fc",
// "back.head"; the stitch, "stitch", is a peft.Linear with W = M (C2×C1)
// and B = c (1×C2), trainable until an adapter is added. GPTStitched is a
// peft.Model over token batches (its Loss the mean next-token
// cross-entropy in nats) and a peft.Metricer (bits/char), so peft.Train,
// peft.Evaluate and any adapter work on it. The anchors' dropout is not
// applied.
type GPTStitched struct {
	Name     string            // "front[:L]→back[L':]", or the label GPTCurve gives
	Wte, Wpe *peft.Tensor      // the front anchor's embeddings (V×C1), (Context×C1)
	Front    []*peft.GPTBlock  // copies of the front anchor's blocks 1 … L
	Stitch   *peft.Linear      // M (C2×C1), c (1×C2)
	Back     []*peft.GPTBlock  // copies of the back anchor's blocks L'+1 …
	LnFG     *peft.Tensor      // the back anchor's final LayerNorm gain (1×C2)
	LnFB     *peft.Tensor      // and bias (1×C2)
	Head     *peft.Linear      // the back anchor's head (V×C2)
	Configs  [2]peft.GPTConfig // the front and back anchors' configs
	L        int               // front blocks run, 0 ≤ L ≤ the front's blocks
	LPrime   int               // back blocks the stitch stands in for, 0 ≤ L' ≤ the back's blocks
	// FitRows is the number of token rows the least-squares fit used, and
	// FitError its relative residual ‖X1·Mᵀ + 1cᵀ − X2‖_F / ‖X2‖_F on them.
	FitRows  int
	FitError float64
}

var (
	_ peft.Model    = (*GPTStitched)(nil)
	_ peft.Metricer = (*GPTStitched)(nil)
)

// DefaultGPTBatchSize is the sequences per batch of the least-squares fit
// of StitchGPT when StitchConfig.BatchSize is 0: 4 batches of 8 windows of
// 64 characters give 2048 token rows, about 20 per unknown of a 96-wide
// stream.
const DefaultGPTBatchSize = 8

// checkGPTAnchors panics unless front and back are GPTs of the same
// vocabulary and context.
func checkGPTAnchors(op string, front, back *peft.GPT) {
	checkGPT(op, front)
	checkGPT(op, back)
	f, b := front.Config, back.Config
	if f.Vocab != b.Vocab || f.Context != b.Context {
		panic(peft.ShapeError{Op: op, Got: fmt.Sprintf("front anchor V = %d, T ≤ %d; back anchor V = %d, T ≤ %d", f.Vocab, f.Context, b.Vocab, b.Context),
			Want: "anchors of the same vocabulary and context"})
	}
}

// checkGPTPositions returns an error naming the field and value out of
// range for GPT anchors of nf and ng blocks.
func (cfg StitchConfig) checkGPTPositions(nf, ng int) error {
	switch {
	case cfg.L < 0 || cfg.L > nf:
		return fmt.Errorf("peft: SN-Netv2 GPT stitch: L = %d out of range: want 0 ≤ L ≤ %d (the front anchor has %d blocks)", cfg.L, nf, nf)
	case cfg.LPrime < 0 || cfg.LPrime > ng:
		return fmt.Errorf("peft: SN-Netv2 GPT stitch: LPrime = %d out of range: want 0 ≤ L' ≤ %d (the back anchor has %d blocks)", cfg.LPrime, ng, ng)
	case cfg.Batches < 0:
		return fmt.Errorf("peft: SN-Netv2 GPT stitch: Batches = %d; want ≥ 1 (4 if 0)", cfg.Batches)
	case cfg.BatchSize < 0:
		return fmt.Errorf("peft: SN-Netv2 GPT stitch: BatchSize = %d; want ≥ 1 (%d sequences if 0)", cfg.BatchSize, DefaultGPTBatchSize)
	}
	return nil
}

// StitchGPT returns the stitched network of front's embeddings and first
// cfg.L blocks and back's blocks from cfg.LPrime+1 on, its stitch fitted by
// least squares (see LeastSquares) to map front's residual stream at L onto
// back's at L', one row per token, both computed on cfg.Batches batches of
// cfg.BatchSize training sequences of data (4 and DefaultGPTBatchSize if
// 0), drawn with cfg.Seed. Positions run from 0 (the embeddings) to the
// anchor's number of blocks (the stream its head reads). Stitch M and c
// are trainable, the anchors' copies frozen; add SN-Netv2's LoRA with Add.
//
// It panics if an anchor is nil or the anchors differ in vocabulary or
// context. It returns an error, naming the field and value, if L or L' is
// out of range or an anchor layer has adapters (Bake or detach them
// first), and an error if the data gives no token batches, the streams are
// not finite, the fit fails, or ctx is cancelled.
func StitchGPT(ctx context.Context, front, back *peft.GPT, data peft.Dataset, cfg StitchConfig) (*GPTStitched, error) {
	checkGPTAnchors("snnet.StitchGPT", front, back)
	if err := cfg.checkGPTPositions(len(front.Blocks), len(back.Blocks)); err != nil {
		return nil, err
	}
	if cfg.Batches == 0 {
		cfg.Batches = 4
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultGPTBatchSize
	}
	for _, a := range []struct {
		what string
		g    *peft.GPT
	}{{"front", front}, {"back", back}} {
		for _, l := range a.g.Modules() {
			if len(l.Adapters) > 0 {
				return nil, fmt.Errorf("peft: SN-Netv2 GPT stitch: the %s anchor's %s has adapters %v; bake (Linear.Bake) or detach them first", a.what, l.Name, l.AdapterNames())
			}
		}
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	var x1s, x2s []*mat.Dense
	rows := 0
	for i := 0; i < cfg.Batches; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := data.Sample(rng, cfg.BatchSize)
		if len(b.Tokens) == 0 || b.Seqs < 1 {
			return nil, fmt.Errorf("peft: SN-Netv2 GPT stitch: batch %d has no token sequences: the data must be a language-modelling set (peft.TextData)", i+1)
		}
		x1s = append(x1s, GPTFeatures(front, cfg.L, b.Tokens, b.Seqs))     // (B·T×C1)
		x2s = append(x2s, GPTFeatures(back, cfg.LPrime, b.Tokens, b.Seqs)) // (B·T×C2)
		rows += len(b.Tokens)
	}
	x1, x2 := stack(x1s), stack(x2s)
	m, c, err := LeastSquares(ctx, x1, x2)
	if err != nil {
		return nil, err
	}
	s := &GPTStitched{
		Name:    fmt.Sprintf("front[:%d]→back[%d:]", cfg.L, cfg.LPrime),
		Wte:     frozenTensor("front.wte.weight", front.Wte),
		Wpe:     frozenTensor("front.wpe.weight", front.Wpe),
		Stitch:  &peft.Linear{Name: StitchModule, W: peft.NewParam(StitchModule+".weight", m), B: peft.NewParam(StitchModule+".bias", c)},
		LnFG:    frozenTensor("back.ln_f.weight", back.LnFG),
		LnFB:    frozenTensor("back.ln_f.bias", back.LnFB),
		Head:    frozenCopy("back.head", back.Head),
		Configs: [2]peft.GPTConfig{front.Config, back.Config},
		L:       cfg.L,
		LPrime:  cfg.LPrime,
		FitRows: rows,
	}
	for i, b := range front.Blocks[:cfg.L] {
		s.Front = append(s.Front, frozenBlock(fmt.Sprintf("front.blocks.%d.", i), b))
	}
	for i, b := range back.Blocks[cfg.LPrime:] {
		s.Back = append(s.Back, frozenBlock(fmt.Sprintf("back.blocks.%d.", cfg.LPrime+i), b))
	}
	s.FitError = relResidual(x1, x2, m, c)
	return s, nil
}

// frozenTensor returns a frozen copy of t named name.
func frozenTensor(name string, t *peft.Tensor) *peft.Tensor {
	c := peft.NewParam(name, mat.DenseCopyOf(t.Value))
	c.Freeze()
	return c
}

// frozenBlock returns a frozen copy of b, its parameters named prefix +
// "ln1.weight", prefix + "attn.q", … as a GPT names them.
func frozenBlock(prefix string, b *peft.GPTBlock) *peft.GPTBlock {
	return &peft.GPTBlock{
		Ln1G: frozenTensor(prefix+"ln1.weight", b.Ln1G), Ln1B: frozenTensor(prefix+"ln1.bias", b.Ln1B),
		Q: frozenCopy(prefix+"attn.q", b.Q), K: frozenCopy(prefix+"attn.k", b.K),
		V: frozenCopy(prefix+"attn.v", b.V), O: frozenCopy(prefix+"attn.o", b.O),
		Ln2G: frozenTensor(prefix+"ln2.weight", b.Ln2G), Ln2B: frozenTensor(prefix+"ln2.bias", b.Ln2B),
		FC: frozenCopy(prefix+"mlp.fc", b.FC), Proj: frozenCopy(prefix+"mlp.proj", b.Proj),
	}
}

// Forward returns the logits (B·T×V) for tokens, B = seqs sequences of T
// consecutive ids each, T ≤ the anchors' context.
func (s *GPTStitched) Forward(tokens []int, seqs int) *peft.Tensor {
	x := gptEmbed("GPTStitched.Forward", s.Wte, s.Wpe, s.Configs[0].Context, tokens, seqs) // (B·T×C1)
	for _, b := range s.Front {
		x = gptBlock(b, x, seqs, s.Configs[0].Heads)
	}
	x = s.Stitch.Forward(x) // (B·T×C2)
	for _, b := range s.Back {
		x = gptBlock(b, x, seqs, s.Configs[1].Heads)
	}
	return s.Head.Forward(peft.LayerNorm(x, s.LnFG, s.LnFB)) // (B·T×V)
}

// Modules returns the Linear layers in the order the tokens meet them: the
// front blocks' attn.q, attn.k, attn.v, attn.o, mlp.fc, mlp.proj, the
// stitch, the back blocks', and the head.
func (s *GPTStitched) Modules() []*peft.Linear {
	var ls []*peft.Linear
	for _, b := range s.Front {
		ls = append(ls, b.Q, b.K, b.V, b.O, b.FC, b.Proj)
	}
	ls = append(ls, s.Stitch)
	for _, b := range s.Back {
		ls = append(ls, b.Q, b.K, b.V, b.O, b.FC, b.Proj)
	}
	return append(ls, s.Head)
}

// Params returns the base parameters in model order, then the adapters'.
func (s *GPTStitched) Params() []*peft.Tensor {
	ps := []*peft.Tensor{s.Wte, s.Wpe}
	lin := func(l *peft.Linear) {
		ps = append(ps, l.W)
		if l.B != nil {
			ps = append(ps, l.B)
		}
	}
	block := func(b *peft.GPTBlock) {
		ps = append(ps, b.Ln1G, b.Ln1B)
		lin(b.Q)
		lin(b.K)
		lin(b.V)
		lin(b.O)
		ps = append(ps, b.Ln2G, b.Ln2B)
		lin(b.FC)
		lin(b.Proj)
	}
	for _, b := range s.Front {
		block(b)
	}
	lin(s.Stitch)
	for _, b := range s.Back {
		block(b)
	}
	ps = append(ps, s.LnFG, s.LnFB)
	lin(s.Head)
	return append(ps, peft.AdapterParams(s.Modules())...)
}

// Loss returns the mean next-token cross-entropy (nats) on b.
func (s *GPTStitched) Loss(b peft.Batch) *peft.Tensor {
	return peft.CrossEntropy(s.Forward(b.Tokens, b.Seqs), b.Targets)
}

// SetTraining switches the layers' (and adapters') training behaviour.
func (s *GPTStitched) SetTraining(training bool) {
	for _, l := range s.Modules() {
		l.Training = training
	}
}

// Metric returns the loss on b in bits per character.
func (s *GPTStitched) Metric(b peft.Batch) float64 { return s.Loss(b).Scalar() / math.Ln2 }

// LossAndMetric returns the loss on b in nats and in bits per character,
// from one forward pass (peft.Evaluate uses it).
func (s *GPTStitched) LossAndMetric(b peft.Batch) (loss, bitsPerChar float64) {
	l := s.Loss(b).Scalar()
	return l, l / math.Ln2
}

// MetricName returns "bits/char".
func (s *GPTStitched) MetricName() string { return "bits/char" }

// FLOPs returns the multiply-adds per token of a forward pass over
// sequences of the full context T (see GPTFLOPs): the front's blocks, the
// stitch counted once as C1·C2 (its LoRA merged, as for deployment), the
// back's blocks and the head.
func (s *GPTStitched) FLOPs() int {
	T := s.Configs[0].Context
	n := 0
	for _, b := range s.Front {
		n += blockMACs(b, T)
	}
	out, in := s.Stitch.Dims()
	n += out * in
	for _, b := range s.Back {
		n += blockMACs(b, T)
	}
	out, in = s.Head.Dims()
	return n + out*in
}

// GPTFLOPs returns the multiply-adds per token of g's forward pass over
// sequences of its full context T, an anchor's point on the curve: per
// block the six Linear layers (12·C² for Hidden = 4·C) and the attention's
// scores and weighted sum, (T+1)·C averaged over the causal positions;
// then the head, V·C. Embedding look-ups, LayerNorms and softmaxes are not
// counted.
func GPTFLOPs(g *peft.GPT) int {
	checkGPT("snnet.GPTFLOPs", g)
	n := 0
	for _, b := range g.Blocks {
		n += blockMACs(b, g.Config.Context)
	}
	out, in := g.Head.Dims()
	return n + out*in
}

// blockMACs returns the multiply-adds per token of block b on sequences
// of T tokens: its Linear layers and (T+1)·C for QKᵀ and the weighted sum
// of V, each (t+1)·C at position t, averaged over t = 0 … T−1.
func blockMACs(b *peft.GPTBlock, T int) int {
	_, C := b.Q.Dims()
	return macs([]*peft.Linear{b.Q, b.K, b.V, b.O, b.FC, b.Proj}) + (T+1)*C
}

// LoRA returns the stitch's active adapter if it is a *lora.LoRA (as Add
// makes), or nil.
func (s *GPTStitched) LoRA() *lora.LoRA {
	a, _ := s.Stitch.ActiveAdapter().(*lora.LoRA)
	return a
}

// M returns a copy of the stitch's weight (C2×C1): the least-squares M,
// unless the stitch was trained without an adapter. While an adapter is
// merged into the stitch, W holds M + ΔW: unmerge first.
func (s *GPTStitched) M() *mat.Dense { return mat.DenseCopyOf(s.Stitch.W.Value) }

// C returns a copy of the stitch's bias c (1×C2).
func (s *GPTStitched) C() *mat.Dense { return mat.DenseCopyOf(s.Stitch.B.Value) }

// Spectrum returns the singular values of the stitch's base weight M,
// descending.
func (s *GPTStitched) Spectrum(ctx context.Context) ([]float64, error) {
	sv, err := accel.SingularValues(ctx, s.M())
	if err != nil {
		return nil, fmt.Errorf("peft: SN-Netv2 %s: singular values of M: %w", s.Name, err)
	}
	return sv, nil
}

// Widths returns the stitch's input and output widths C1 and C2.
func (s *GPTStitched) Widths() (c1, c2 int) {
	c2, c1 = s.Stitch.Dims()
	return c1, c2
}
