package rl

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/gopeft/gopeft/peft"
)

// History is what an RL run recorded, step by step.
type History struct {
	Name   string
	Steps  []int     // step numbers, from 1
	Reward []float64 // mean task reward of the step's rollouts (before any shaping)
	// KL is the mean k3 estimate of KL(π_θ ‖ π_ref) over the rollouts'
	// tokens that count, under the policy that sampled them.
	KL []float64
	// Distinct is the mean, over the step's prompts, of the number of
	// distinct correct answers among the samples of that prompt (GRPO's
	// groups; for PPO, the samples that share a prompt).
	Distinct []float64
	StepTime []float64 // wall time of each step, seconds
}

// Answerer is a Task that can say which answer a completion gives, so that
// distinct correct completions are counted by answer (WordTask's word)
// rather than by their whole text.
type Answerer interface {
	Answer(prompt, completion string) (answer string, ok bool)
}

// loop holds what GRPO and PPO share: the model, the task, the seeded
// generator, the trainable tensors and the history.
type loop struct {
	ctx    context.Context
	g      *peft.GPT
	v      *peft.Vocab
	task   Task
	rng    *rand.Rand
	params []*peft.Tensor
	h      *History
}

func newLoop(ctx context.Context, g *peft.GPT, v *peft.Vocab, task Task, seed int64, name string) (*loop, error) {
	if v.Size() != g.Config.Vocab {
		return nil, fmt.Errorf("peft: rl: vocabulary of %d tokens for a model of %d", v.Size(), g.Config.Vocab)
	}
	params := peft.TrainableOf(g)
	if len(params) == 0 {
		return nil, fmt.Errorf("peft: rl: the model has no trainable parameter; put an adapter on it first (TinaLoRA, PPOLoRA)")
	}
	if len(peft.AdapterParams(g.Modules())) == 0 {
		return nil, fmt.Errorf("peft: rl: the model has no adapter: the reference policy is the model with its adapters disabled")
	}
	return &loop{ctx: ctx, g: g, v: v, task: task, rng: rand.New(rand.NewSource(seed)), params: params, h: &History{Name: name}}, nil
}

// rollout is one batch of sampled completions with what the updates need.
type rollout struct {
	r       *Rollouts
	prompts []string
	answers []string // the answer of each correct sample, "" otherwise
	rewards []float64
	old     [][]float64 // log-probs under the sampling policy (B×n)
	ref     [][]float64 // log-probs under the reference (B×n)
	logits  *peft.Tensor
}

func (lp *loop) rollout(step int, prompts []string, tau float64) (*rollout, error) {
	if err := lp.ctx.Err(); err != nil {
		return nil, fmt.Errorf("peft: rl: %sstopped before step %d: %w", label(lp.h.Name), step, err)
	}
	ids := make([][]int, len(prompts))
	for i, p := range prompts {
		ids[i] = lp.v.Encode(p)
	}
	r, err := Sample(lp.ctx, lp.g, ids, lp.task.CompletionLen(), tau, lp.rng)
	if err != nil {
		return nil, fmt.Errorf("peft: rl: %sstep %d: %w", label(lp.h.Name), step, err)
	}
	ro := &rollout{r: r, prompts: prompts, rewards: make([]float64, len(prompts)), answers: make([]string, len(prompts))}
	ans, isAns := lp.task.(Answerer)
	stop, isStop := lp.task.(Stopper)
	if isStop {
		r.Lens = make([]int, r.B())
	}
	for b, p := range prompts {
		c := lp.v.Decode(r.Completion(b))
		ro.rewards[b] = lp.task.Reward(p, c)
		if isStop {
			r.Lens[b] = min(max(stop.End(c), 1), r.N())
		}
		if isAns {
			if a, ok := ans.Answer(p, c); ok {
				ro.answers[b] = a
			}
		} else if ro.rewards[b] >= 1 {
			ro.answers[b] = c
		}
	}
	z, tg := forward(lp.g, r)
	ro.logits = z
	ro.old = tokenLogProbs(z.Value, tg, r)
	ro.ref = RefLogProbs(lp.g, r)
	return ro, nil
}

// update runs backward (which adds −∇J into the gradients), clips the
// gradient norm and takes one optimizer step.
func (lp *loop) update(step int, opt peft.Optimizer, lr, clipNorm float64, backward func()) error {
	for _, p := range lp.params {
		p.Grad = nil
	}
	backward()
	norm2 := 0.0
	for _, p := range lp.params {
		if p.Grad == nil {
			continue
		}
		for _, g := range p.Grad.RawMatrix().Data {
			if math.IsNaN(g) || math.IsInf(g, 0) {
				return fmt.Errorf("peft: rl: %sstep %d: the gradient of %s is %v", label(lp.h.Name), step, p.Name, g)
			}
			norm2 += g * g
		}
	}
	if clipNorm > 0 && math.Sqrt(norm2) > clipNorm {
		f := clipNorm / math.Sqrt(norm2)
		for _, p := range lp.params {
			if p.Grad != nil {
				p.Grad.Scale(f, p.Grad)
			}
		}
	}
	return peft.Maybe(func() { opt.Step(lp.params, lr) })
}

func (lp *loop) record(step int, ro *rollout, d time.Duration) {
	h := lp.h
	h.Steps = append(h.Steps, step)
	h.Reward = append(h.Reward, mean(ro.rewards))
	kl, n := 0.0, 0
	for b := range ro.old {
		for t := range ro.old[b][:ro.r.Len(b)] {
			kl += K3(ro.old[b][t], ro.ref[b][t])
			n++
		}
	}
	h.KL = append(h.KL, kl/float64(n))
	h.Distinct = append(h.Distinct, distinct(ro.prompts, ro.answers))
	h.StepTime = append(h.StepTime, d.Seconds())
}

// distinct returns the mean over the distinct prompts of the number of
// distinct non-empty answers given to each.
func distinct(prompts, answers []string) float64 {
	sets := map[string]map[string]bool{}
	for i, p := range prompts {
		if sets[p] == nil {
			sets[p] = map[string]bool{}
		}
		if answers[i] != "" {
			sets[p][answers[i]] = true
		}
	}
	s := 0
	for _, a := range sets {
		s += len(a)
	}
	return float64(s) / float64(len(sets))
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func label(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf("%q ", name)
}

// Eval is what Evaluate measures.
type Eval struct {
	Reward   float64 // mean reward of all samples (pass@1)
	PassAtK  float64 // share of prompts with at least one correct sample among k
	Distinct float64 // mean number of distinct correct answers per prompt among k
	K        int     // samples per prompt
}

// Evaluate samples k completions of each of prompts from g at temperature
// τ (with a generator seeded with seed) and returns the mean reward, pass@k
// and the mean number of distinct correct answers per prompt.
func Evaluate(ctx context.Context, g *peft.GPT, v *peft.Vocab, task Task, prompts []string, k int, temperature float64, seed int64) (Eval, error) {
	if len(prompts) == 0 || k < 1 {
		return Eval{}, fmt.Errorf("peft: rl.Evaluate: %d prompts, k = %d; want ≥ 1 of each", len(prompts), k)
	}
	lp := &loop{ctx: ctx, g: g, v: v, task: task, rng: rand.New(rand.NewSource(seed)), h: &History{}}
	var all []string
	for _, p := range prompts {
		for i := 0; i < k; i++ {
			all = append(all, p)
		}
	}
	ids := make([][]int, len(all))
	for i, p := range all {
		ids[i] = v.Encode(p)
	}
	r, err := Sample(ctx, g, ids, task.CompletionLen(), temperature, lp.rng)
	if err != nil {
		return Eval{}, err
	}
	ans, isAns := task.(Answerer)
	e := Eval{K: k}
	answers := make([]string, len(all))
	pass := map[string]bool{}
	for b, p := range all {
		c := v.Decode(r.Completion(b))
		rw := task.Reward(p, c)
		e.Reward += rw
		if rw >= 1 {
			pass[p] = true
			answers[b] = c
			if isAns {
				answers[b], _ = ans.Answer(p, c)
			}
		}
	}
	e.Reward /= float64(len(all))
	e.Distinct = distinct(all, answers)
	np := map[string]bool{}
	for _, p := range prompts {
		np[p] = true
	}
	e.PassAtK = float64(len(pass)) / float64(len(np))
	return e, nil
}
