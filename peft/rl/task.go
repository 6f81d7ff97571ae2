package rl

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"

	"github.com/gopeft/gopeft/peft"
)

// Task is a reward task with checkable answers: prompts to continue and a
// rule that scores a continuation. All of a task's prompts have the same
// length in tokens, so that one batch of rollouts is one matrix of
// sequences.
type Task interface {
	// Prompt returns a prompt drawn with rng.
	Prompt(rng *rand.Rand) string
	// CompletionLen returns n, the number of tokens sampled after a prompt.
	CompletionLen() int
	// Reward scores completion (n characters) as a continuation of prompt:
	// 1 for a correct answer, 0 for a wrong one (a task may grade between).
	Reward(prompt, completion string) float64
}

// WordTask is the reward task of this package's lab, sized so that SFT and
// RL on the shipped tiny GPT show progress in seconds of CPU:
//
//	prompt      "w: "      a lower-case letter L, a colon and a space
//	completion  n = 6 characters sampled after it
//	reward 1    iff the completion starts with a word w of 2…n−1 lower-case
//	            letters that begins with L, is a word of Moby-Dick (its
//	            Lexicon), and is followed by a character that is not a
//	            letter: "whale " or "was, a" for "w: "; else 0.
//
// Every correct answer is checked against the lexicon, and many are right
// for one prompt ("was", "with", "whale", "white", "water", …), so the
// number of distinct correct completions among G samples measures the
// diversity that the unlikeliness reward is meant to keep.
//
// The base model has never seen the "L: " format: supervised fine-tuning on
// SFTData (correct answers cut from the novel) teaches it, and RL then
// raises the share of correct samples.
type WordTask struct {
	Vocab   *peft.Vocab     // CharVocab
	Letters string          // the prompt letters, each with SFT examples
	N       int             // completion length n
	Lexicon map[string]bool // the lower-case words of the novel
	// Examples holds, for each letter, the completions cut from the novel
	// that are correct answers (the word and the characters that follow
	// it, n in all), as often as they occur: the SFT data.
	Examples map[byte][]string
}

var (
	_ Task     = (*WordTask)(nil)
	_ Stopper  = (*WordTask)(nil)
	_ Answerer = (*WordTask)(nil)
)

var mobyWords struct {
	once  sync.Once
	words []string // the text's lower-case words, with the n chars from each
	text  string
	err   error
}

// LabLetters are the prompt letters of the lab's runs: eight letters that
// begin many different short words of the novel (150–440 each), none of
// them dominated by one word as t is by "the". With fewer letters a run of
// seconds gives each letter more updates.
const LabLetters = "bcdfmpsw"

// NewWordTask returns the word task with completions of n characters
// (3 ≤ n ≤ 16; the lab uses 6) built from the shipped Moby-Dick: the lexicon
// is every lower-case word of the novel that occurs at least twice (so
// that one-off typos do not count). The prompt letters are letters, or, if
// letters is empty, every letter with at least 200 SFT examples (23 of
// them at n = 6); a given letter with no example is an error.
func NewWordTask(n int, letters string) (*WordTask, error) {
	if n < 3 || n > 16 {
		return nil, fmt.Errorf("peft: rl.NewWordTask: completion length n = %d; want 3 ≤ n ≤ 16", n)
	}
	mobyWords.once.Do(func() {
		s, err := peft.Text("moby-dick")
		if err != nil {
			mobyWords.err = err
			return
		}
		v := peft.CharVocab()
		mobyWords.text = v.Decode(v.Encode(s)) // normalized to the vocabulary
	})
	if mobyWords.err != nil {
		return nil, mobyWords.err
	}
	text := mobyWords.text
	count := map[string]int{}
	examples := map[byte][]string{}
	for i := 0; i < len(text); {
		if !isLetter(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isLetter(text[j]) {
			j++
		}
		w := text[i:j]
		// a word starts after a non-letter and is all lower case
		if w == strings.ToLower(w) {
			count[w]++
			if len(w) >= 2 && len(w) <= n-1 && i+n <= len(text) {
				examples[w[0]] = append(examples[w[0]], text[i:i+n])
			}
		}
		i = j
	}
	t := &WordTask{Vocab: peft.CharVocab(), N: n, Lexicon: map[string]bool{}, Examples: map[byte][]string{}}
	for w, c := range count {
		if c >= 2 {
			t.Lexicon[w] = true
		}
	}
	if letters != "" {
		for i := 0; i < len(letters); i++ {
			l := letters[i]
			if len(examples[l]) == 0 {
				return nil, fmt.Errorf("peft: rl.NewWordTask: letters = %q: no word of 2…%d letters starts with %q", letters, n-1, l)
			}
			t.Examples[l] = examples[l]
		}
		t.Letters = letters
		return t, nil
	}
	var ls []byte
	for l, ex := range examples {
		if len(ex) >= 200 {
			ls = append(ls, l)
			t.Examples[l] = ex
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	t.Letters = string(ls)
	return t, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Prompts returns the prompt of every letter, in order: the evaluation
// prompts.
func (t *WordTask) Prompts() []string {
	ps := make([]string, len(t.Letters))
	for i := range ps {
		ps[i] = PromptFor(t.Letters[i])
	}
	return ps
}

// Prompt returns "L: " for a letter L drawn uniformly from Letters.
func (t *WordTask) Prompt(rng *rand.Rand) string {
	return PromptFor(t.Letters[rng.Intn(len(t.Letters))])
}

// PromptFor returns the word task's prompt for letter l: "l: ".
func PromptFor(l byte) string { return string(l) + ": " }

// CompletionLen returns N.
func (t *WordTask) CompletionLen() int { return t.N }

// Answer returns the word at the start of completion and whether it is a
// correct answer to prompt (see WordTask).
func (t *WordTask) Answer(prompt, completion string) (word string, ok bool) {
	if len(prompt) != 3 || len(completion) != t.N {
		return "", false
	}
	j := 0
	for j < len(completion) && completion[j] >= 'a' && completion[j] <= 'z' {
		j++
	}
	word = completion[:j]
	if j < 2 || j == len(completion) || isLetter(completion[j]) {
		return word, false
	}
	return word, word[0] == prompt[0] && t.Lexicon[word]
}

// End returns the length of the completion's first word plus its end
// marker, the first character that is not a lower-case letter (n if there
// is none): the characters after it are padding.
func (t *WordTask) End(completion string) int {
	for j := 0; j < len(completion); j++ {
		if completion[j] < 'a' || completion[j] > 'z' {
			return j + 1
		}
	}
	return len(completion)
}

// Reward returns 1 if completion answers prompt correctly, else 0.
func (t *WordTask) Reward(prompt, completion string) float64 {
	if _, ok := t.Answer(prompt, completion); ok {
		return 1
	}
	return 0
}

// SFTData returns the supervised fine-tuning set: sequences "L: " followed
// by a correct completion cut from the novel, the letter drawn uniformly and
// the example by its frequency in the text, as a peft.Dataset of sequences
// of T = 2 + n input tokens (the prompt's 3 and n completion characters,
// less the last, which is only a target). Its evaluation set is evalSeqs
// such sequences drawn with seed 0.
func (t *WordTask) SFTData(evalSeqs int) peft.Dataset {
	d := &sftData{task: t}
	if evalSeqs > 0 {
		d.eval = []peft.Batch{d.Sample(rand.New(rand.NewSource(0)), evalSeqs)}
	}
	return d
}

type sftData struct {
	task *WordTask
	eval []peft.Batch
}

func (d *sftData) Sample(rng *rand.Rand, size int) peft.Batch {
	t := d.task
	L := 3 + t.N
	b := peft.Batch{Seqs: size, Tokens: make([]int, 0, size*(L-1)), Targets: make([]int, 0, size*(L-1))}
	for s := 0; s < size; s++ {
		l := t.Letters[rng.Intn(len(t.Letters))]
		ex := t.Examples[l]
		ids := t.Vocab.Encode(PromptFor(l) + ex[rng.Intn(len(ex))])
		b.Tokens = append(b.Tokens, ids[:L-1]...)
		b.Targets = append(b.Targets, ids[1:]...)
	}
	return b
}

func (d *sftData) EvalBatches() []peft.Batch { return d.eval }
