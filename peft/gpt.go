package peft

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"gonum.org/v1/gonum/mat"
)

// GPT is a tiny decoder-only Transformer language model over characters, in
// the manner of GPT-2 and nanoGPT (Radford et al., 2019; Karpathy, nanoGPT):
//
//	x₀ = wte[tokens] + wpe[positions]                       (B·T×C)
//	for each block:
//	  x = x + attn.o(CausalSelfAttention(q(h), k(h), v(h)))   h = LN₁(x)
//	  x = x + mlp.proj(GELU(mlp.fc(LN₂(x))))
//	logits = head(LN_f(x))                                   (B·T×V)
//
// B = sequences, T = sequence length ≤ Context, C = Dim, V = Vocab,
// H = Heads. Its Linear layers have stable dotted names: blocks.i.attn.q,
// blocks.i.attn.k, blocks.i.attn.v, blocks.i.attn.o, blocks.i.mlp.fc,
// blocks.i.mlp.proj and head; other parameters are wte.weight, wpe.weight,
// blocks.i.ln1.weight/.bias, blocks.i.ln2.weight/.bias, ln_f.weight/.bias.
type GPT struct {
	Config GPTConfig
	Wte    *Tensor // (V×C) token embeddings
	Wpe    *Tensor // (Context×C) position embeddings
	Blocks []*GPTBlock
	LnFG   *Tensor // (1×C) final LayerNorm gain
	LnFB   *Tensor // (1×C) final LayerNorm bias
	Head   *Linear // (V×C), no bias

	training bool
	rng      *rand.Rand
}

// GPTBlock is one pre-norm Transformer block.
type GPTBlock struct {
	Ln1G, Ln1B *Tensor // (1×C)
	Q, K, V, O *Linear // (C×C) each, with bias
	Ln2G, Ln2B *Tensor // (1×C)
	FC         *Linear // (Hidden×C)
	Proj       *Linear // (C×Hidden)
}

// GPTConfig gives a GPT's sizes.
type GPTConfig struct {
	Vocab   int     // V
	Context int     // longest sequence T
	Layers  int     // number of blocks
	Heads   int     // H; Dim must be a multiple
	Dim     int     // C
	Hidden  int     // MLP width, 4·C if 0
	Dropout float64 // residual dropout in training, in [0, 1)
	Seed    int64   // initialization seed
}

// NewGPT returns a GPT with weights drawn as GPT-2 does: N(0, 0.02²), the
// residual projections (attn.o, mlp.proj) N(0, (0.02/√(2L))²), biases 0,
// LayerNorm gains 1.
func NewGPT(cfg GPTConfig) *GPT {
	if cfg.Hidden == 0 {
		cfg.Hidden = 4 * cfg.Dim
	}
	switch {
	case cfg.Vocab < 1, cfg.Context < 1, cfg.Layers < 1, cfg.Heads < 1, cfg.Dim < 1, cfg.Hidden < 1:
		panic(ArgError{Op: "NewGPT", Msg: fmt.Sprintf("sizes %+v must all be ≥ 1", cfg)})
	case cfg.Dim%cfg.Heads != 0:
		panic(ArgError{Op: "NewGPT", Msg: fmt.Sprintf("Dim = %d is not a multiple of Heads = %d", cfg.Dim, cfg.Heads)})
	case cfg.Dropout < 0 || cfg.Dropout >= 1:
		panic(ArgError{Op: "NewGPT", Msg: fmt.Sprintf("Dropout = %v outside [0, 1)", cfg.Dropout)})
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	C, std := cfg.Dim, 0.02
	resStd := std / math.Sqrt(2*float64(cfg.Layers))
	normal := func(name string, r, c int, s float64) *Tensor {
		d := make([]float64, r*c)
		for i := range d {
			d[i] = s * rng.NormFloat64()
		}
		return NewParam(name, mat.NewDense(r, c, d))
	}
	linear := func(name string, in, out int, s float64, bias bool) *Linear {
		l := &Linear{Name: name, W: normal(name+".weight", out, in, s)}
		if bias {
			l.B = NewParam(name+".bias", mat.NewDense(1, out, nil))
		}
		return l
	}
	ones := func(name string) *Tensor {
		d := make([]float64, C)
		for i := range d {
			d[i] = 1
		}
		return NewParam(name, mat.NewDense(1, C, d))
	}
	zeros := func(name string) *Tensor { return NewParam(name, mat.NewDense(1, C, nil)) }

	g := &GPT{Config: cfg, rng: rand.New(rand.NewSource(cfg.Seed + 1))}
	g.Wte = normal("wte.weight", cfg.Vocab, C, std)
	g.Wpe = normal("wpe.weight", cfg.Context, C, std)
	for i := 0; i < cfg.Layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		g.Blocks = append(g.Blocks, &GPTBlock{
			Ln1G: ones(p + "ln1.weight"), Ln1B: zeros(p + "ln1.bias"),
			Q:    linear(p+"attn.q", C, C, std, true),
			K:    linear(p+"attn.k", C, C, std, true),
			V:    linear(p+"attn.v", C, C, std, true),
			O:    linear(p+"attn.o", C, C, resStd, true),
			Ln2G: ones(p + "ln2.weight"), Ln2B: zeros(p + "ln2.bias"),
			FC:   linear(p+"mlp.fc", C, cfg.Hidden, std, true),
			Proj: linear(p+"mlp.proj", cfg.Hidden, C, resStd, true),
		})
	}
	g.LnFG, g.LnFB = ones("ln_f.weight"), zeros("ln_f.bias")
	g.Head = linear("head", C, cfg.Vocab, std, false)
	return g
}

// Forward returns the logits (B·T×V) for tokens, B = seqs sequences of T
// consecutive ids each, T ≤ Context.
func (g *GPT) Forward(tokens []int, seqs int) *Tensor {
	if seqs <= 0 || len(tokens) == 0 || len(tokens)%seqs != 0 {
		panic(ShapeError{Op: "GPT.Forward", Got: fmt.Sprintf("%d tokens in %d sequences", len(tokens), seqs), Want: "B ≥ 1 sequences of equal length T ≥ 1"})
	}
	T := len(tokens) / seqs
	if T > g.Config.Context {
		panic(ShapeError{Op: "GPT.Forward", Got: fmt.Sprintf("sequences of T = %d", T), Want: fmt.Sprintf("T ≤ Context = %d", g.Config.Context)})
	}
	pos := make([]int, len(tokens))
	for i := range pos {
		pos[i] = i % T
	}
	x := Add(Embedding(g.Wte, tokens), Embedding(g.Wpe, pos)) // (B·T×C)
	for _, b := range g.Blocks {
		h := LayerNorm(x, b.Ln1G, b.Ln1B)
		a := CausalSelfAttention(b.Q.Forward(h), b.K.Forward(h), b.V.Forward(h), seqs, g.Config.Heads)
		x = Add(x, Dropout(b.O.Forward(a), g.Config.Dropout, g.rng, g.training))
		h = GELU(b.FC.Forward(LayerNorm(x, b.Ln2G, b.Ln2B))) // (B·T×Hidden)
		x = Add(x, Dropout(b.Proj.Forward(h), g.Config.Dropout, g.rng, g.training))
	}
	return g.Head.Forward(LayerNorm(x, g.LnFG, g.LnFB))
}

// Modules returns the Linear layers: for each block attn.q, attn.k, attn.v,
// attn.o, mlp.fc, mlp.proj, then head.
func (g *GPT) Modules() []*Linear {
	var ls []*Linear
	for _, b := range g.Blocks {
		ls = append(ls, b.Q, b.K, b.V, b.O, b.FC, b.Proj)
	}
	return append(ls, g.Head)
}

// Params returns the base parameters in model order, then the adapters'.
func (g *GPT) Params() []*Tensor {
	ps := []*Tensor{g.Wte, g.Wpe}
	lin := func(l *Linear) {
		ps = append(ps, l.W)
		if l.B != nil {
			ps = append(ps, l.B)
		}
	}
	for _, b := range g.Blocks {
		ps = append(ps, b.Ln1G, b.Ln1B)
		lin(b.Q)
		lin(b.K)
		lin(b.V)
		lin(b.O)
		ps = append(ps, b.Ln2G, b.Ln2B)
		lin(b.FC)
		lin(b.Proj)
	}
	ps = append(ps, g.LnFG, g.LnFB)
	lin(g.Head)
	return append(ps, AdapterParams(g.Modules())...)
}

// Loss returns the mean next-token cross-entropy (nats) on b.
func (g *GPT) Loss(b Batch) *Tensor {
	return CrossEntropy(g.Forward(b.Tokens, b.Seqs), b.Targets)
}

// SetTraining switches dropout (the model's and the adapters').
func (g *GPT) SetTraining(training bool) {
	g.training = training
	for _, l := range g.Modules() {
		l.Training = training
	}
}

// Metric returns the loss on b in bits per character.
func (g *GPT) Metric(b Batch) float64 { return g.Loss(b).Scalar() / math.Ln2 }

// LossAndMetric returns the loss on b in nats and in bits per character,
// from one forward pass (Evaluate uses it).
func (g *GPT) LossAndMetric(b Batch) (loss, bitsPerChar float64) {
	l := g.Loss(b).Scalar()
	return l, l / math.Ln2
}

// MetricName returns "bits/char".
func (g *GPT) MetricName() string { return "bits/char" }

// Generate continues prompt by n tokens, sampling each from the softmax of
// the logits divided by temperature (0 picks the most likely token), with
// rng, looking back at most Context tokens. It stops early with ctx's error
// if ctx is cancelled. An empty prompt, a prompt token outside [0, Vocab),
// or a nil rng with temperature > 0 is an error.
func (g *GPT) Generate(ctx context.Context, prompt []int, n int, temperature float64, rng *rand.Rand) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("peft: GPT.Generate: empty prompt")
	}
	for i, id := range prompt {
		if id < 0 || id >= g.Config.Vocab {
			return nil, fmt.Errorf("peft: GPT.Generate: prompt token %d is %d, outside the vocabulary [0, %d)", i, id, g.Config.Vocab)
		}
	}
	if rng == nil && temperature > 0 {
		return nil, fmt.Errorf("peft: GPT.Generate: nil rng: sampling at temperature %g needs one (or use temperature 0 for the most likely token)", temperature)
	}
	out := append([]int(nil), prompt...)
	probs := make([]float64, g.Config.Vocab)
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		ctxStart := max(0, len(out)-g.Config.Context)
		window := out[ctxStart:]
		logits := g.Forward(window, 1).Value // (T×V)
		last := mat.Row(nil, len(window)-1, logits)
		next := 0
		if temperature <= 0 {
			for j, v := range last {
				if v > last[next] {
					next = j
				}
			}
		} else {
			for j := range last {
				last[j] /= temperature
			}
			softmaxRow(probs, last)
			u, acc := rng.Float64(), 0.0
			next = len(probs) - 1
			for j, p := range probs {
				acc += p
				if u < acc {
					next = j
					break
				}
			}
		}
		out = append(out, next)
	}
	return out, nil
}

// Complete returns prompt continued by n characters sampled from g at
// temperature (0: always the most likely), tokenized with v and drawn from
// a generator seeded with seed. It stops early with ctx's error if ctx is
// cancelled, returning the text so far.
func (g *GPT) Complete(ctx context.Context, v *Vocab, prompt string, n int, temperature float64, seed int64) (string, error) {
	if v.Size() != g.Config.Vocab {
		return "", fmt.Errorf("peft: GPT.Complete: vocabulary of %d tokens for a model of %d", v.Size(), g.Config.Vocab)
	}
	ids, err := g.Generate(ctx, v.Encode(prompt), n, temperature, rand.New(rand.NewSource(seed)))
	return v.Decode(ids), err
}
