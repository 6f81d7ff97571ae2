// Package layering holds the test that keeps gopeft's imports one-way:
// accel ← peft ← viz ← kernel, with nb a standard-library-only leaf.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/gopeft/gopeft/"

// forbidden lists, for each package, the module packages it must never
// depend on, directly or not.
var forbidden = map[string][]string{
	"nb":    {"accel", "peft", "viz", "kernel"},
	"accel": {"peft", "viz", "kernel", "nb"},
	"peft":  {"viz", "kernel"},
	// every method package (peft/lora, …) and the suite, too
	"peft/...": {"viz", "kernel"},
	"viz":      {"kernel"},
}

func TestImportsRunOneWay(t *testing.T) {
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == mod+b || strings.HasPrefix(dep, mod+b+"/") {
					t.Errorf("%s depends on %s: imports must run accel ← peft ← viz ← kernel", pkg, dep)
				}
			}
		}
	}
}

// TestDispatchDoesNotImportSession keeps the kernel's protocol logic light:
// kernel/dispatch names the cell contract through kernel/engine and never
// depends on the interpreter (kernel/session, and through it yaegi and the
// symbol tables); kernel/kernel.go wires the two together.
func TestDispatchDoesNotImportSession(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", mod+"kernel/dispatch").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps kernel/dispatch: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == mod+"kernel/session" || strings.HasPrefix(dep, mod+"kernel/session/") {
			t.Errorf("kernel/dispatch depends on %s: it must use kernel/engine, not kernel/session", dep)
		}
	}
}

func TestNbUsesOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", mod+"nb").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != mod+"nb" {
			t.Errorf("nb depends on %s; it must import only the standard library", dep)
		}
	}
}
