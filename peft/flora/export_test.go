package flora

import "testing"

// The forms of Forward, for the tests.
const (
	FormAuto     = formAuto
	FormFactored = formFactored
	FormDelta    = formDelta
)

// SetForm makes Forward take form f until t ends.
func SetForm(t testing.TB, f int) {
	old := forceForm
	forceForm = f
	t.Cleanup(func() { forceForm = old })
}

// Factored reports whether Forward takes the factored form for n rows.
func (f *FLoRA) Factored(n int) bool { return f.factored(n) }
