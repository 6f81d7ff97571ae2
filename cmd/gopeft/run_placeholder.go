//go:build gopeft_norun

package main

import (
	"fmt"
	"os"
)

// runMain is a placeholder used only with -tags gopeft_norun, while
// cmd/gopeft/run.go (the headless runner) is not there.
func runMain(args []string) int {
	fmt.Fprintln(os.Stderr, "gopeft run: not built into this binary")
	return 2
}
