package session

import (
	"context"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gopeft/gopeft/peft"
)

// magicHelp is what %help prints.
const magicHelp = `gopeft magics (a cell starting with %):

  %help          this list
  %who           the session's variables with their types and values
  %time STMTS    run the statements and print the wall time they took
  %%time         (first line of a cell) run the rest of the cell and print its wall time
  %reset         forget every variable, function, type and import (a fresh interpreter)
  %memlimit [SIZE]  show or set the kernel's memory limit (2GiB, 500MB, 60%, off, default):
                 a cell whose Go heap passes it is stopped with a MemoryLimit error, the
                 variables it declared are reset and the memory is freed; earlier cells'
                 variables are kept. Default: GOPEFT_MEMORY_LIMIT, else 70% of the
                 machine's memory (cgroup limit or MemTotal). Not covered: a compiled call
                 that allocates without watching ctx, a goroutine that allocates after its
                 cell ended, and one allocation bigger than the free memory (Go aborts the
                 process; Jupyter restarts the kernel).

Help: name? or pkg.Name? alone in a cell shows the documentation of a
package, package member, or session name in the pager; shift-tab shows it
in a tooltip, tab completes.

Preloaded packages (no import needed): context errors fmt math math/rand os
sort strconv strings time, gonum mat, and gopeft's nb accel peft viz. Each
PEFT method is a package of its own, imported when a cell first uses it
(lora.Add, adalora.Add, galore.New, …): the catalogue is at the end.
Every cell has ctx, its context: cancelled when you interrupt the cell,
pass it to long computations (peft training, accel SVD) so they stop. A
func declared in an earlier cell that uses ctx sees the running cell's.

Showing values: the cell's last expression is shown (a chart as its image,
a matrix as a table). A call returning (value, error), such as
viz.SpectrumChart(...) or strconv.Atoi(s), shows the value alone when the
error is nil, and fails the cell with the error when it is not. Other
tuples show as (a, b, ...). nb.Display(v) shows a value mid-cell.

Go semantics. The kernel prepares each cell so that it means what it means
in Go where the interpreter (yaegi v0.16.1) differs: go and defer bind their
arguments at the statement, loop variables are per iteration, top-level
if/for/switch scope their variables, a cell's defers run when it ends, range
over an integer works, a redefined func, method or type is seen by what
earlier cells declared. What it cannot make right it refuses with an
Unsupported error that says what to write instead (a comma-ok receive at the
top level, a method value of a cell type, a deferred closure in a loop using
the loop's variables, min/max/clear, errors.As into a cell type, ...).
fmt with cell types: String and Error methods are used as Go's fmt uses
them at the top level of the arguments (Error first, %d on the value);
where the interpreter hides a method or a type name (a Stringer inside a
slice, map, field or []any, a pointer-receiver String on a value, %T or
%#v of a cell type, %d of a struct with methods) the call is refused.
The runtime errors of an index out of range name the index and length in
functions that recover and outside loops at the top level; in loops the
message says it lacks them.
Known differences it does not catch (kernel/kerneltest/README.md has the
full table, 122 cases run against go run):
  - x := s[i] at the top level, with s from compiled code (a []string
    from strings.Fields, a peft slice) can fail ("constant definition
    loop"): do it inside a func, or x := func() string { return s[i] }().
  - a nil *T stored in an error or other interface compares equal to nil;
    a nil pointer variable returned as an error (or any) is refused, but a
    package-level var i any = p is not checked.
  - a named basic type (type Celsius float64) matches its underlying type
    in type switches and assertions.
  - methods of types declared in cells are invisible to compiled code:
    such a value shows as text, not richly; wrap what its method returns
    (nb.HTML(v.HTML())).
  - library APIs are not generic (the interpreter cannot call compiled
    generics); generic funcs declared in cells work for simple cases.
  - a panic in a goroutine a compiled library starts ends the kernel;
    panics in goroutines your cells start and in time.AfterFunc callbacks
    are caught and reported.`

// magic runs a cell whose first line starts with %.
func (s *Session) magic(ctx context.Context, c *cell, code string) Result {
	first, rest, _ := strings.Cut(code, "\n")
	fields := strings.Fields(first)
	name := fields[0]
	arg := strings.TrimSpace(strings.TrimPrefix(first, name))
	switch name {
	case "%help", "%lsmagic", "%quickref":
		c.out.write("stdout", []byte(magicHelp+"\n\n"+methodCatalogue()))
		return Result{}
	case "%who", "%whos":
		c.out.write("stdout", []byte(s.who()))
		return Result{}
	case "%reset":
		if err := s.reset(); err != nil {
			return errorResult("ResetError", err.Error(), nil)
		}
		c.errFilter = s.errf
		c.out.write("stdout", []byte("session reset: all names are forgotten\n"))
		return Result{}
	case "%memlimit":
		out, err := memlimitMagic(arg)
		if err != nil {
			return errorResult("UsageError", err.Error(), nil)
		}
		c.out.write("stdout", []byte(out))
		return Result{}
	case "%time":
		body := arg
		if rest != "" {
			body += "\n" + rest
		}
		// Keep cell lines: the statement sits on line 1 after "%time".
		return s.timed(ctx, c, strings.Repeat(" ", len(first)-len(arg))+body)
	case "%%time":
		return s.timed(ctx, c, "\n"+rest)
	}
	return errorResult("UsageError", fmt.Sprintf("unknown magic %s (%%help lists them)", name), nil)
}

// timed runs code and prints its wall time, as IPython's %time does.
func (s *Session) timed(ctx context.Context, c *cell, code string) Result {
	t0 := time.Now()
	res := s.evalCell(ctx, c, code)
	d := time.Since(t0)
	c.out.write("stdout", []byte(fmt.Sprintf("Wall time: %s\n", formatDuration(d))))
	return res
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

// who lists the session's variables: name, type, value.
func (s *Session) who() string {
	g := s.globals()
	var names []string
	for n := range g {
		if n == "_" || strings.HasPrefix(n, "__") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "no variables\n"
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "Variable\tType\tValue")
	fmt.Fprintln(w, "--------\t----\t-----")
	for _, n := range names {
		v := g[n]
		typ, val := "?", "?"
		if v.IsValid() {
			typ = v.Type().String()
			if v.Kind() == reflect.Interface && !v.IsNil() {
				typ = v.Elem().Type().String()
			}
			if v.CanInterface() {
				val = oneLine(clipText(fmt.Sprintf("%v", v.Interface()), 60))
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", n, typ, val)
	}
	w.Flush()
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// methodCatalogue lists the registered PEFT methods for %help: package,
// kind, what it changes and its paper.
func methodCatalogue() string {
	var b strings.Builder
	b.WriteString("PEFT methods (peft.Methods()): package, kind, what it does, paper\n")
	for _, m := range peft.Methods() {
		fmt.Fprintf(&b, "  %-10s %-9s %s\n             %s\n", path.Base(m.Package), m.Kind, m.Summary, m.Paper)
	}
	return b.String()
}
