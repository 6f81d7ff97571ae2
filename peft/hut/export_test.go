package hut

import (
	"testing"

	"github.com/gopeft/gopeft/peft"
)

// The forms of Forward, for the tests.
const (
	FormAuto     = formAuto
	FormHadamard = formHadamard
	FormMask     = formMask
)

// SetForm makes Forward take form f until t ends.
func SetForm(t testing.TB, f int) {
	old := forceForm
	forceForm = f
	t.Cleanup(func() { forceForm = old })
}

// UseHadamard is useHadamard.
func UseHadamard(r, n, dk int) bool { return useHadamard(r, n, dk) }

// ForwardHadamard and ForwardMask return the layer's output for x through
// h in the Hadamard and in the mask form.
func ForwardHadamard(h *HUT, l *peft.Linear, x *peft.Tensor) *peft.Tensor {
	return peft.Add(l.Base(x), h.hadamardTerm(l.W, x))
}

func ForwardMask(h *HUT, l *peft.Linear, x *peft.Tensor) *peft.Tensor {
	return peft.Add(l.Base(x), h.maskTerm(l.W, x))
}
