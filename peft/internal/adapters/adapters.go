// Package adapters holds generic helpers the method packages share; they
// stay internal because the interpreter cannot call exported generics.
package adapters

import "github.com/gopeft/gopeft/peft"

// As returns the adapters among ads that are of type T, in order (the
// others are skipped).
func As[T peft.Adapter](ads []peft.Adapter) []T {
	out := make([]T, 0, len(ads))
	for _, a := range ads {
		if t, ok := a.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
