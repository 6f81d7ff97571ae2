package peft

import "gonum.org/v1/gonum/mat"

// Batch is one minibatch for a Model's Loss. A task sets the fields its
// models read:
//   - classification (MLP): X and Labels;
//   - regression (the teacher task's linear model): X and Y;
//   - language modelling (GPT): Tokens, Targets and Seqs.
type Batch struct {
	X      *mat.Dense // (n×d) inputs, one example per row
	Y      *mat.Dense // (n×o) regression targets
	Labels []int      // (n) class labels
	// Tokens holds Seqs sequences of T = len(Tokens)/Seqs token ids, one
	// after the other; Targets[i] is the token that follows Tokens[i].
	Tokens  []int // (B·T)
	Targets []int // (B·T)
	Seqs    int   // B
}

// Size returns the number of examples in b: sequences for a language-model
// batch, rows of X otherwise.
func (b Batch) Size() int {
	if b.Seqs > 0 {
		return b.Seqs
	}
	if b.X != nil {
		r, _ := b.X.Dims()
		return r
	}
	return len(b.Labels)
}

// Items returns what b counts toward History.Tokens: its tokens for a
// language-model batch, its examples otherwise.
func (b Batch) Items() int {
	if len(b.Tokens) > 0 {
		return len(b.Tokens)
	}
	return b.Size()
}
