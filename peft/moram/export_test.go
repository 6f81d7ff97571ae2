package moram

import (
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// The unexported ops, for the tests.
func NormalizeRows(p *peft.Tensor) *peft.Tensor { return normalizeRows(p) }

func TopK(v *mat.Dense, k int) [][]bool { return topK(v, k) }

func MaskedSoftmax(z *peft.Tensor, keep [][]bool) *peft.Tensor { return maskedSoftmax(z, keep) }
