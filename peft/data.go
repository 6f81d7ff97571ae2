package peft

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"math/rand"
	"strconv"
	"strings"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// The data sets shipped with the package; data/README.md gives their
// sources and licences.
//
//go:embed data/digits.csv.gz data/moby-dick.txt.gz data/sotu-1961-2021.txt.gz
var dataFS embed.FS

// Dataset is what Train draws minibatches from.
type Dataset interface {
	// Sample returns a random training minibatch of size examples (rows,
	// or sequences for text), drawing from rng.
	Sample(rng *rand.Rand, size int) Batch
	// EvalBatches returns the fixed evaluation set in batches, or nil.
	EvalBatches() []Batch
}

func gunzipFile(name string) ([]byte, error) {
	f, err := dataFS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: %w", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: %w", name, err)
	}
	return b, nil
}

var digits struct {
	once   sync.Once
	x      *mat.Dense
	labels []int
	err    error
}

// Digits returns the 1,797 8×8 handwritten digits of the UCI/scikit-learn
// set: X (1797×64), pixel intensities 0…16 divided by 16 into [0, 1], row
// after row of the image, and the labels 0…9. The caller may modify X (it is
// a copy).
func Digits() (*mat.Dense, []int) {
	digits.once.Do(func() {
		digits.x, digits.labels, digits.err = parseDigits("data/digits.csv.gz")
	})
	if digits.err != nil {
		panic(digits.err) // the embedded file is part of the package
	}
	return mat.DenseCopyOf(digits.x), append([]int(nil), digits.labels...)
}

func parseDigits(name string) (*mat.Dense, []int, error) {
	b, err := gunzipFile(name)
	if err != nil {
		return nil, nil, err
	}
	var xs []float64
	var labels []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		f := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(f) != 65 {
			if line == 1 {
				continue // a header line
			}
			return nil, nil, fmt.Errorf("peft: %s line %d: %d fields, want 65", name, line, len(f))
		}
		for j, s := range f {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || (j < 64 && v > 16) || (j == 64 && v > 9) {
				return nil, nil, fmt.Errorf("peft: %s line %d field %d: bad value %q", name, line, j+1, s)
			}
			if j < 64 {
				xs = append(xs, float64(v)/16)
			} else {
				labels = append(labels, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("peft: %s: %w", name, err)
	}
	return mat.NewDense(len(labels), 64, xs), labels, nil
}

// Classification is a labelled data set split into training and evaluation
// rows: a Dataset for classifiers such as MLP.
type Classification struct {
	X          *mat.Dense // (n×d) training inputs
	Labels     []int      // (n)
	EvalX      *mat.Dense // (m×d) evaluation inputs
	EvalLabels []int      // (m)
	Classes    int        // number of classes
	EvalBatch  int        // rows per evaluation batch, all at once if 0
}

// DigitsData returns the digits (see Digits) split for training and
// evaluation: all 1,797 are shuffled with seed and the first evalFrac of
// them held out, then both parts are filtered to the given classes (all ten
// if none). So the same seed and evalFrac give disjoint training and
// evaluation rows whatever the classes: a model pretrained on DigitsData(f,
// s, 0, 1, 2, 3, 4) has not seen the evaluation rows of DigitsData(f, s).
func DigitsData(evalFrac float64, seed int64, classes ...int) *Classification {
	if evalFrac < 0 || evalFrac >= 1 {
		panic(ArgError{Op: "DigitsData", Msg: fmt.Sprintf("evalFrac = %v outside [0, 1)", evalFrac)})
	}
	x, labels := Digits()
	keep := map[int]bool{}
	for _, c := range classes {
		if c < 0 || c > 9 {
			panic(ArgError{Op: "DigitsData", Msg: fmt.Sprintf("class %d outside 0…9", c)})
		}
		keep[c] = true
	}
	idx := rand.New(rand.NewSource(seed)).Perm(len(labels))
	nEval := int(evalFrac * float64(len(idx)))
	rows := func(ix []int) (*mat.Dense, []int) {
		var kept []int
		for _, i := range ix {
			if len(keep) == 0 || keep[labels[i]] {
				kept = append(kept, i)
			}
		}
		if len(kept) == 0 {
			return nil, nil
		}
		m := mat.NewDense(len(kept), 64, nil)
		ls := make([]int, len(kept))
		for r, i := range kept {
			m.SetRow(r, x.RawRowView(i))
			ls[r] = labels[i]
		}
		return m, ls
	}
	c := &Classification{Classes: 10}
	c.X, c.Labels = rows(idx[nEval:])
	c.EvalX, c.EvalLabels = rows(idx[:nEval])
	return c
}

// Sample returns size training rows drawn without replacement (with, if
// size exceeds the rows).
func (c *Classification) Sample(rng *rand.Rand, size int) Batch {
	n, d := c.X.Dims()
	var idx []int
	if size <= n {
		idx = rng.Perm(n)[:size]
	} else {
		idx = make([]int, size)
		for i := range idx {
			idx[i] = rng.Intn(n)
		}
	}
	x := mat.NewDense(size, d, nil)
	ls := make([]int, size)
	for r, i := range idx {
		x.SetRow(r, c.X.RawRowView(i))
		ls[r] = c.Labels[i]
	}
	return Batch{X: x, Labels: ls}
}

// EvalBatches returns the evaluation rows in batches of EvalBatch.
func (c *Classification) EvalBatches() []Batch {
	if c.EvalX == nil {
		return nil
	}
	m, _ := c.EvalX.Dims()
	step := c.EvalBatch
	if step <= 0 {
		step = m
	}
	var bs []Batch
	for i := 0; i < m; i += step {
		j := min(i+step, m)
		bs = append(bs, Batch{X: mat.DenseCopyOf(c.EvalX.Slice(i, j, 0, 64)), Labels: c.EvalLabels[i:j]})
	}
	return bs
}

// Texts lists the names Text accepts.
var Texts = []string{"moby-dick", "sotu"}

var textFiles = map[string]string{
	"moby-dick": "data/moby-dick.txt.gz",
	"sotu":      "data/sotu-1961-2021.txt.gz",
}

// Text returns a shipped text, as UTF-8: "moby-dick" (Melville's novel) or
// "sotu" (the State of the Union addresses 1961–2021, one per line).
func Text(name string) (string, error) {
	f, ok := textFiles[name]
	if !ok {
		return "", fmt.Errorf("peft: no text %q; have %s", name, quoteList(Texts))
	}
	b, err := gunzipFile(f)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Vocab is a character vocabulary: token i is the i-th character.
type Vocab struct {
	chars []rune
	index map[rune]int
}

// charset is the character vocabulary of the shipped GPT: newline and the
// 95 printable ASCII characters. CharVocab maps the few other characters of
// the shipped texts onto it (see normalizeRune).
const charset = "\n !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

// CharVocab returns the character vocabulary of both shipped texts (96
// tokens: newline and printable ASCII), the one the shipped GPT reads.
func CharVocab() *Vocab {
	v := &Vocab{chars: []rune(charset), index: map[rune]int{}}
	for i, c := range v.chars {
		v.index[c] = i
	}
	return v
}

// normalizeRune maps the non-ASCII characters of the shipped texts (curly
// quotes, dashes, a bullet, accented vowels) and tabs to ASCII; other runes
// are returned unchanged.
func normalizeRune(r rune) rune {
	switch r {
	case '’', '‘':
		return '\''
	case '“', '”':
		return '"'
	case '—', '–', '‑':
		return '-'
	case '•':
		return '*'
	case 'ï':
		return 'i'
	case 'á':
		return 'a'
	case 'ó':
		return 'o'
	case '\t', '\r':
		return ' '
	}
	return r
}

// Size returns the number of tokens V.
func (v *Vocab) Size() int { return len(v.chars) }

// Encode returns the token ids of s after normalization; characters outside
// the vocabulary become '?'.
func (v *Vocab) Encode(s string) []int {
	ids := make([]int, 0, len(s))
	unknown := v.index['?']
	for _, r := range s {
		id, ok := v.index[normalizeRune(r)]
		if !ok {
			id = unknown
		}
		ids = append(ids, id)
	}
	return ids
}

// Unknown returns the characters of s that Encode cannot represent.
func (v *Vocab) Unknown(s string) []rune {
	seen := map[rune]bool{}
	var out []rune
	for _, r := range s {
		if _, ok := v.index[normalizeRune(r)]; !ok && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// Decode returns the text of ids.
func (v *Vocab) Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && id < len(v.chars) {
			b.WriteRune(v.chars[id])
		} else {
			b.WriteRune('?')
		}
	}
	return b.String()
}

// TextData is a character-level language-modelling Dataset: random windows
// of T+1 tokens from Train, each giving T inputs and their T next tokens.
type TextData struct {
	Vocab     *Vocab
	Train     []int // training token ids
	Eval      []int // evaluation token ids
	T         int   // sequence length
	EvalSeqs  int   // evaluation sequences (consecutive windows of Eval), 32 if 0
	EvalBatch int   // sequences per evaluation batch, 16 if 0
}

// NewTextData returns the shipped text name (see Text) encoded with
// CharVocab, the last evalFrac of it held out for evaluation, in windows of
// T tokens.
func NewTextData(name string, T int, evalFrac float64) (*TextData, error) {
	if T < 1 || evalFrac <= 0 || evalFrac >= 1 {
		return nil, fmt.Errorf("peft: NewTextData(%q): T = %d, evalFrac = %v; want T ≥ 1 and evalFrac in (0, 1)", name, T, evalFrac)
	}
	s, err := Text(name)
	if err != nil {
		return nil, err
	}
	v := CharVocab()
	ids := v.Encode(s)
	cut := len(ids) - int(evalFrac*float64(len(ids)))
	if cut < T+1 || len(ids)-cut < T+1 {
		return nil, fmt.Errorf("peft: NewTextData(%q): %d tokens are too few for windows of %d", name, len(ids), T+1)
	}
	return &TextData{Vocab: v, Train: ids[:cut], Eval: ids[cut:], T: T}, nil
}

// Sample returns size random windows of the training text.
func (d *TextData) Sample(rng *rand.Rand, size int) Batch {
	T := d.T
	b := Batch{Seqs: size, Tokens: make([]int, size*T), Targets: make([]int, size*T)}
	for s := 0; s < size; s++ {
		o := rng.Intn(len(d.Train) - T)
		copy(b.Tokens[s*T:(s+1)*T], d.Train[o:o+T])
		copy(b.Targets[s*T:(s+1)*T], d.Train[o+1:o+T+1])
	}
	return b
}

// EvalBatches returns EvalSeqs windows of the evaluation text, spread evenly
// over it, in batches of EvalBatch.
func (d *TextData) EvalBatches() []Batch {
	n, per, T := d.EvalSeqs, d.EvalBatch, d.T
	if n <= 0 {
		n = 32
	}
	if per <= 0 {
		per = 16
	}
	stride := (len(d.Eval) - T - 1) / n
	if stride < 1 {
		stride, n = 1, len(d.Eval)-T-1
	}
	var bs []Batch
	for s := 0; s < n; s += per {
		k := min(per, n-s)
		b := Batch{Seqs: k, Tokens: make([]int, k*T), Targets: make([]int, k*T)}
		for i := 0; i < k; i++ {
			o := (s + i) * stride
			copy(b.Tokens[i*T:(i+1)*T], d.Eval[o:o+T])
			copy(b.Targets[i*T:(i+1)*T], d.Eval[o+1:o+T+1])
		}
		bs = append(bs, b)
	}
	return bs
}
