package perk

import (
	"fmt"
	"math/rand"

	"github.com/gopeft/gopeft/peft"
)

// KeyValueEpisodes is a toy long-context recall task for a character
// language model (the tiny GPT): the context is Pairs key=value pairs,
// "c=4;a=7;…", drawn fresh per episode (distinct keys from Keys, values
// from Values); the questions are "c=" for every key, whose next character
// must be the value. After PERK's inner loop on the context the context is
// gone: the answer can come only from what the steps wrote into the LoRA.
//
// The context batch is one sequence (tokens and next-character targets);
// the question batch is Pairs sequences of two tokens, key and '=', with
// targets '=' and the value, so its loss is the mean over both positions.
type KeyValueEpisodes struct {
	Vocab  *peft.Vocab
	Pairs  int
	Keys   string // candidate keys, one character each
	Values string // candidate values, one character each
}

// NewKeyValueEpisodes returns episodes of pairs key=value pairs over
// peft.CharVocab, keys from "abcdefgh" and values from the digits. It
// panics if pairs is outside [1, 8].
func NewKeyValueEpisodes(pairs int) *KeyValueEpisodes {
	if pairs < 1 || pairs > 8 {
		panic(peft.ArgError{Op: "perk.NewKeyValueEpisodes", Msg: fmt.Sprintf("pairs = %d; want 1 … 8", pairs)})
	}
	return &KeyValueEpisodes{Vocab: peft.CharVocab(), Pairs: pairs, Keys: "abcdefgh", Values: "0123456789"}
}

// Episode draws one episode from rng.
func (s *KeyValueEpisodes) Episode(rng *rand.Rand) Episode {
	keys := []rune(s.Keys)
	vals := []rune(s.Values)
	perm := rng.Perm(len(keys))[:s.Pairs]
	text := ""
	var q peft.Batch
	for _, i := range perm {
		k, v := string(keys[i]), string(vals[rng.Intn(len(vals))])
		text += k + "=" + v + ";"
		ids := s.Vocab.Encode(k + "=" + v)
		q.Tokens = append(q.Tokens, ids[0], ids[1])
		q.Targets = append(q.Targets, ids[1], ids[2])
		q.Seqs++
	}
	ids := s.Vocab.Encode(text)
	c := peft.Batch{Tokens: ids[:len(ids)-1], Targets: ids[1:], Seqs: 1}
	return Episode{Context: c, Question: q}
}

// Answers returns the fraction of ep's questions whose value is the
// model's most likely next character after "key=".
func Answers(g *peft.GPT, ep Episode) float64 {
	logits := g.Forward(ep.Question.Tokens, ep.Question.Seqs).Value // (2·Pairs×V)
	right := 0
	for i := 0; i < ep.Question.Seqs; i++ {
		row := logits.RawRowView(2*i + 1)
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == ep.Question.Targets[2*i+1] {
			right++
		}
	}
	return float64(right) / float64(ep.Question.Seqs)
}

// InContext returns the task in context, as a peft.Dataset for peft.Train:
// each sequence is an episode's context followed by its pairs asked again
// in a fresh order, "c=4;a=7;a=7;c=4;", trained on every next character.
// Training the base model on it (before attaching the LoRA) gives what
// PERK assumes of its base LLM, that it knows the format of the contexts;
// PERK then has to write each context into the LoRA. EvalBatches is 16
// sequences drawn from seed.
func (s *KeyValueEpisodes) InContext(seed int64) peft.Dataset {
	return inContext{s: s, eval: s.inContextBatch(rand.New(rand.NewSource(seed)), 16)}
}

type inContext struct {
	s    *KeyValueEpisodes
	eval peft.Batch
}

func (d inContext) Sample(rng *rand.Rand, size int) peft.Batch { return d.s.inContextBatch(rng, size) }
func (d inContext) EvalBatches() []peft.Batch                  { return []peft.Batch{d.eval} }

// inContextBatch draws n sequences of InContext's form.
func (s *KeyValueEpisodes) inContextBatch(rng *rand.Rand, n int) peft.Batch {
	var b peft.Batch
	for i := 0; i < n; i++ {
		ep := s.Episode(rng)
		c := ep.Context
		semi := c.Targets[len(c.Targets)-1]
		seq := append(append([]int(nil), c.Tokens...), semi)
		for _, q := range rng.Perm(ep.Question.Seqs) {
			seq = append(seq, ep.Question.Tokens[2*q], ep.Question.Tokens[2*q+1], ep.Question.Targets[2*q+1], semi)
		}
		b.Tokens = append(b.Tokens, seq[:len(seq)-1]...)
		b.Targets = append(b.Targets, seq[1:]...)
		b.Seqs++
	}
	return b
}
