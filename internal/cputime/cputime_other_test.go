//go:build !unix

package cputime_test

import (
	"testing"

	"github.com/gopeft/gopeft/internal/cputime"
)

// Where CPU time is not measured, Process reads 0.
func TestProcessIsZero(t *testing.T) {
	if got := cputime.Process(); got != 0 {
		t.Fatalf("Process() = %v, want 0", got)
	}
}
