// Package session is the execution side of the gopeft kernel: it runs
// notebook cells in a yaegi (v0.16.1) interpreter that keeps its state from
// cell to cell, and turns what a cell produces (output streams, displays,
// its final value, compile errors, panics, interrupts) into what the
// dispatcher sends to the front-end. It also answers completion, inspection
// and is_complete requests from the same state.
//
// # Cells
//
// A cell mixes imports, declarations and statements in any order: it is cut
// with go/scanner at its top-level statement boundaries into runs of
// imports, of declarations (evaluated as a file) and of statements
// (evaluated as the body of main), evaluated in order, with positions kept
// so errors name cell lines. Re-importing a package is a no-op. Each run
// is prepared first (prepare.go) so that it means what it means in Go: go
// and defer arguments are bound at the statement, loop variables are per
// iteration, top-level if/for/switch statements scope their variables, a
// cell's top-level defers run when the cell ends, a range over an integer
// counts; constructs the interpreter would run differently and the kernel
// cannot rewrite are refused with an "Unsupported" error that says what to
// write instead. A later cell may redefine a func, a var or a type: the
// funcs, methods and types of earlier cells that use a redefined name are
// compiled again (redefine.go). The statements of a run are compiled
// together (a compile error stops them all) and run one program each on
// the session's one worker goroutine.
//
// The value of a final expression is shown as execute_result (several
// values as a tuple; a (value, error) pair shows the value alone when the
// error is nil, and fails the cell with the error otherwise); statements, declarations, void calls and fmt.Print*
// calls show nothing. `name?` (or `?name`) alone shows help in the pager;
// a first line starting with % is a magic (%help lists them: %who, %time,
// %%time, %reset).
//
// # What cells can use
//
// Preloaded without import: context errors fmt math math/rand os sort
// strconv strings time, gonum's mat, and gopeft's nb accel peft viz; the
// rest of the standard library, gonum stat/floats/distuv and gonum/plot
// are importable (kernel/symbols). gonum's matrix code runs on accel.
// Predeclared: ctx, the cell's context (nb.Context() returns the same),
// cancelled on interrupt; input(prompt) and inputPassword(prompt), which
// ask the front-end for a line (Jupyter's input_request); fmt.Scan,
// Scanln and Scanf read the same way. Reading os.Stdin directly is not
// connected.
//
// # Output
//
// Interpreted fmt.Print* and log go straight into the cell's output;
// os.Stdout, os.Stderr and the standard logger are redirected to pipes
// while a cell runs, so compiled libraries' output is caught too. Output is
// published in order, within 50 ms while the cell runs and before each
// display. The kernel's own logging should therefore not use os.Stderr or
// the standard logger during a cell (keep a *log.Logger made at start-up).
//
// Displays: nb.Display, nb.DisplayWithID, nb.Update and nb.ClearOutput, and
// final values, are turned into MIME bundles by kernel/display. Methods of
// types declared in cells are invisible to compiled code, so such values
// show as text: wrap what their methods return (nb.HTML(v.HTML())).
//
// # Failures
//
// Compile errors and panics become an ExecError whose traceback names the
// cell lines (yaegi's own panic lines on stderr are removed, the error is
// the cell's only output). os.Exit panics with an "Exit" error instead of
// ending the process. A panic in a goroutine started by a cell is
// recovered (go statements are rewritten to recover) and reported on the
// cell's stderr, or the next cell's if it ended; so is a panic in a
// time.AfterFunc or context.AfterFunc callback. A panic in a goroutine
// another compiled library starts cannot be caught here and ends the
// process, so libraries recover in their goroutines (house style 12).
// Runaway recursion is stopped with a StackOverflow error before Go's fatal
// stack overflow (stack.go), and make(T, n) larger than the memory limit
// fails with a MemoryLimit error before allocating. On interrupt,
// interpreted code stops at its next step and Execute returns at once;
// compiled calls stop only if they watch ctx (peft and accel do). One that
// does not is waited for by the next cell, which says so: the rest of an
// interrupted cell never runs.
//
// # Memory
//
// A cell that allocates without bound is stopped like an interrupted one,
// with a "MemoryLimit" error, once the Go heap passes the kernel's limit
// (GOPEFT_MEMORY_LIMIT, e.g. "2GiB", "500MB", "60%", "off"; else 70% of
// the machine's memory, the cgroup v2 memory.max or MemTotal; %memlimit
// shows or sets it). A watchdog goroutine samples the heap every 10 ms
// through runtime/metrics while a cell runs, and stops the cell only when
// memory actually reachable passed the limit (memory.go). The variables
// the stopped cell declared are reset to their zero values and the memory
// is returned to the system; earlier cells' variables are kept (also those
// the cell grew, which keep their memory). Measured (go test
// ./kernel/session -run 'TestMemoryLimitStopsCell$' -count 3 -v, 300 MiB
// limit, quiet machine, 2026-12-04): the error comes 7–46 ms after the
// heap crosses the limit, and the resident size goes from a peak of
// 328–338 MiB back to 29 MiB (28.5–29.2 MiB before the cell).
// Not covered: a compiled call that allocates without watching ctx (it
// goes on after the stop), a goroutine started by a cell that allocates
// after its cell ended (the heap is watched only while a cell runs), and a
// single allocation bigger than the free memory made by compiled code
// (make in a cell is checked first): Go's runtime aborts the process on
// out-of-memory, and Jupyter shows that the kernel died and restarts it.
package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/token"
	"path"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/kernel/display"
	"github.com/gopeft/gopeft/kernel/engine"
	"github.com/gopeft/gopeft/kernel/symbols"
	"github.com/gopeft/gopeft/nb"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// Publisher, ExecError and Result are the cell contract shared with the
// dispatcher; they live in kernel/engine so that kernel/dispatch need not
// import this package. The aliases keep session.Result and friends usable.
type (
	// Publisher receives what a running cell produces (see engine.Publisher).
	Publisher = engine.Publisher
	// ExecError is a failed cell (see engine.ExecError).
	ExecError = engine.ExecError
	// Result is what Execute returns once the cell is done (see engine.Result).
	Result = engine.Result
)

// Session is one interpreter and everything known about the cells it ran.
type Session struct {
	runTypes map[string]reflect.Type // static types of what the run being compiled declares (runElemTypes)
	// sessionTypes are the session variables' types when the run being
	// compiled started: yaegi's Globals is not readable between the
	// compilation of one statement of a run and the next.
	sessionTypes map[string]reflect.Type
	mu           sync.Mutex // serializes Execute, Complete, Inspect
	it           *interp.Interpreter
	index        *declIndex

	errf        *stderrFilter // the interpreter's stderr
	cur         *cell         // the running cell, nil between cells
	pipes       *outPipes     // os.Stdout and os.Stderr while a cell runs (made at the first cell)
	noPipes     bool          // the system gave no pipes
	curMu       sync.Mutex
	pending     []segText // output of goroutines after their cell ended, for the next cell
	lastGoPanic struct {
		gid uint64
		msg string
	}

	noop   *interp.Program // arms yaegi's cancellation before a run
	armed  bool            // yaegi's cancellation is armed (no stop since)
	zombie chan struct{}   // closed when an interrupted cell's goroutine ends

	wd      watchdog // stops a cell whose heap passes the memory limit (memory.go)
	cellSeq uint64   // the running cell's watchdog sequence number
	memTrip int64    // heap size when the watchdog stopped the running cell, 0 if it did not

	fitFrom int // first global frame slot released since the last run (noFit: none), see roots.go

	shown     []any // values passed to the Show rewrite of the last run
	shownRich []map[string]any
	hasShown  bool

	prep  preparer     // rewrites runs so they mean what Go means (prepare.go)
	decls []storedDecl // funcs, methods, types and consts, for redefinitions (redefine.go)

	fmtFuncs  fmtFuncs               // the kernel's print functions (fmtcheck.go)
	fmtTypes  map[string]*methodType // cell types with String, Error or Format, of decls[:fmtTypesN]
	fmtTypesN int
	work      *worker    // runs the programs (runOnWorker)
	stack     stackWatch // stops runaway recursion (stack.go)
	stackTrip int64      // stack size when the watcher stopped the running cell, 0 if it did not
}

// noFit: no global frame slot was released since the last run.
const noFit = int(^uint(0) >> 1)

// rtPath is the import path under which the session's runtime helpers are
// visible to interpreted code, as package gopeftk.
const rtPath = "gopeft.kernel/gopeftk"

// New starts an interpreter with the standard library, gonum, gonum/plot and
// gopeft's packages importable, fmt preloaded and `ctx` predeclared.
func New() (*Session, error) {
	accel.Use()    // gonum's matrix code runs on accel
	initMemLimit() // the memory limit, and the runtime's soft limit
	s := &Session{}
	if err := s.reset(); err != nil {
		return nil, err
	}
	s.startStackWatch()
	return s, nil
}

// reset replaces the interpreter by a fresh one (New and %reset).
func (s *Session) reset() error {
	s.errf = &stderrFilter{s: s}
	it := interp.New(interp.Options{
		Stdout:       stdProxy{s},
		Stderr:       s.errf,
		Stdin:        &stdinProxy{s: s},
		Unrestricted: true,
	})
	if err := it.Use(stdlib.Symbols); err != nil {
		return err
	}
	if err := it.Use(symbols.Symbols); err != nil {
		return err
	}
	if err := it.Use(s.runtimeSymbols()); err != nil {
		return err
	}
	fmtFns := guardStdlib(it, s.cellUnwrap)
	s.it = it
	s.fmtFuncs = fmtFns
	s.armed = false
	s.fitFrom = noFit
	s.index = newDeclIndex()
	s.prep = preparer{
		isConst: func(n string) bool { d, ok := s.index.names[n]; return ok && d.kind == kindConst },
		isPkg:   func(n string) bool { _, ok := s.index.imports[n]; return ok },
		isMethod: func(n string) bool {
			for _, d := range s.decls {
				for _, k := range d.names {
					if i := strings.IndexByte(k, '.'); i >= 0 && k[i+1:] == n {
						return true
					}
				}
			}
			return false
		},
		isType: func(n string) bool { d, ok := s.index.names[n]; return ok && d.kind == kindType },
		isIndexed: func(n string) bool {
			v, ok := s.globals()[n]
			if !ok || !v.IsValid() {
				return false
			}
			switch v.Kind() {
			case reflect.Slice, reflect.Array, reflect.String:
				return true
			}
			return false
		},
		callElem: func(call *ast.CallExpr) string { return s.elemSyntax(s.staticType(call, 0)) },
		elemType: func(n string) string { return s.elemSyntax(s.sessionType(n)) },
		isIntVar: func(n string) bool {
			v, ok := s.globals()[n]
			if !ok || !v.IsValid() {
				return false
			}
			for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer && v.Type().Elem().Kind() != reflect.Struct {
				if v.IsNil() {
					return false
				}
				v = v.Elem()
			}
			switch v.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
				return true
			}
			return false
		},
	}
	s.decls = nil
	var imports strings.Builder
	imports.WriteString("import (\n\t\"gopeft.kernel\"\n")
	for _, p := range preloaded {
		if _, ok := stdlib.Symbols[p+"/"+path.Base(p)]; !ok {
			if _, ok := symbols.Symbols[p+"/"+path.Base(p)]; !ok {
				continue // not generated yet
			}
		}
		fmt.Fprintf(&imports, "\t%q\n", p)
		s.index.addImport(path.Base(p), p)
	}
	imports.WriteString(")\nvar ctx context.Context = context.Background()\nvar " + cellFn + " func()\n" + deferPrelude)
	imports.WriteString(preludeFuncs)
	noop, err := s.compile("var _ = 0")
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	s.noop = noop
	if _, err := s.evalSafe(context.Background(), imports.String()); err != nil {
		return fmt.Errorf("session: prelude: %w", err)
	}
	s.index.add("ctx", kindVar, "var ctx context.Context // the running cell's context, cancelled on interrupt")
	return nil
}

// preloaded are the packages every cell can use without importing them
// (importing them again is harmless).
var preloaded = []string{
	"context", "errors", "fmt", "math", "math/rand", "os", "sort", "strconv", "strings", "time",
	"gonum.org/v1/gonum/mat",
	"github.com/gopeft/gopeft/nb",
	"github.com/gopeft/gopeft/accel",
	"github.com/gopeft/gopeft/peft",
	"github.com/gopeft/gopeft/viz",
}

// preludeFuncs are interpreted helpers every cell sees.
const preludeFuncs = `
// input asks the user for a line of text (Jupyter's input box).
func input(prompt string) string { return gopeftk.Input(prompt, false) }

// inputPassword asks for a line of text without showing it.
func inputPassword(prompt string) string { return gopeftk.Input(prompt, true) }
`

// exitPanic is what os.Exit panics with inside a cell.
type exitPanic struct{ code int }

func (e exitPanic) Error() string {
	return fmt.Sprintf("os.Exit(%d) called: the kernel keeps running and keeps its state (use return or panic to stop a cell)", e.code)
}

// runtimeSymbols are the helpers interpreted code reaches: the Show rewrite
// of final expressions, goroutine panic reports, the cell context, and an
// os.Exit that panics instead of ending the process.
func (s *Session) runtimeSymbols() interp.Exports {
	return interp.Exports{
		rtPath: {
			"Show": reflect.ValueOf(func(v ...any) {
				s.shown = v
				s.hasShown = true
			}),
			"ShowText": reflect.ValueOf(func(text string) {
				s.shownRich = []map[string]any{{"text/plain": text}}
			}),
			"Input": reflect.ValueOf(func(prompt string, password bool) string {
				c := s.running()
				if c == nil {
					panic(errors.New("input: no cell is running"))
				}
				c.out.flush()
				line, err := c.pub.Input(prompt, password)
				if err != nil {
					panic(fmt.Errorf("input: %w", err))
				}
				return line
			}),
			"GoPanic":     reflect.ValueOf(func(r any) { s.goPanic(r) }),
			"Len":         reflect.ValueOf(checkMakeLen),
			"Recovered":   reflect.ValueOf(recovered),
			"Index":       reflect.ValueOf(boundsIndex),
			"CheckFormat": reflect.ValueOf(checkFormat),
			"TypedNil": reflect.ValueOf(func(name string) {
				panic(unsupportedPanic(fmt.Sprintf("%s is a nil pointer stored in an interface (an error, any): Go gives a non-nil "+
					"interface holding a nil pointer, the interpreter a nil interface, so a comparison with nil would differ. "+
					"Store or return nil itself (if %s == nil { return nil }), or keep the pointer type", name, name)))
			}),
			"Context": reflect.ValueOf(func() context.Context { return nb.Context() }),
		},
		"context/context": {
			"AfterFunc": reflect.ValueOf(func(ctx context.Context, f func()) func() bool {
				return context.AfterFunc(ctx, s.guardCallback(f))
			}),
		},
		"os/os": {
			"Exit": reflect.ValueOf(func(code int) { panic(exitPanic{code}) }),
		},
		"time/time": {
			// A panic in the callback is reported, not fatal.
			"AfterFunc": reflect.ValueOf(func(d time.Duration, f func()) *time.Timer {
				return time.AfterFunc(d, s.guardCallback(f))
			}),
			// An interrupt ends a sleep at once.
			"Sleep": reflect.ValueOf(func(d time.Duration) {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-t.C:
				case <-nb.Context().Done():
				}
			}),
		},
	}
}

// goPanic reports a panic recovered in a goroutine started by interpreted
// code: on the running cell's stderr, or at the start of the next cell.
func (s *Session) goPanic(r any) {
	msg := fmt.Sprintf("panic in a goroutine (recovered by gopeft, the kernel goes on): %v\n", r)
	gid := goroutineID()
	s.curMu.Lock()
	// yaegi runs the guard once per interpreted frame the panic leaves.
	if s.lastGoPanic.gid == gid && s.lastGoPanic.msg == msg {
		s.curMu.Unlock()
		return
	}
	s.lastGoPanic.gid, s.lastGoPanic.msg = gid, msg
	c := s.cur
	if c == nil {
		s.pending = append(s.pending, segText{"stderr", msg})
	}
	s.curMu.Unlock()
	if c != nil {
		c.out.write("stderr", []byte(msg))
	}
}

// goroutineID returns the calling goroutine's id, from its stack header.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// maxPending bounds what is kept of background output between cells.
const maxPending = 1 << 20

// background keeps output that interpreted goroutines write between cells:
// it is shown at the start of the next cell. It reports false when a cell
// is running (write to it instead).
func (s *Session) background(name string, b []byte) bool {
	s.curMu.Lock()
	defer s.curMu.Unlock()
	if s.cur != nil {
		return false
	}
	size := 0
	for _, p := range s.pending {
		size += len(p.text)
	}
	if size+len(b) <= maxPending {
		s.pending = append(s.pending, segText{name, string(b)})
	}
	return true
}

// running returns the running cell, or nil.
func (s *Session) running() *cell {
	s.curMu.Lock()
	defer s.curMu.Unlock()
	return s.cur
}

// Close releases the session: it drops the interpreter and closes the
// output pipes.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.it = nil
	s.wd.stop()
	s.stopStackWatch()
	s.abandonWorker()
	s.pipes.close()
	s.pipes = nil
	return nil
}

// Execute runs one cell. ctx is cancelled by the dispatcher on
// interrupt_request or SIGINT: Execute then returns within a second with an
// "Interrupted" error, and every earlier variable survives. count is the
// execution count, used in tracebacks.
func (s *Session) Execute(ctx context.Context, code string, count int, pub Publisher) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.it == nil {
		return errorResult("SessionClosed", "the session is closed", nil)
	}
	// The cell's own context is cancelled only after yaegi has been told to
	// stop (see execute), so that code returning early on cancellation
	// (compiled calls, time.Sleep) does not run one more statement.
	cellCtx, cellCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cellCancel()
	c := s.startCell(cellCtx, count, pub)
	c.cancel = cellCancel
	s.memTrip, s.stackTrip = 0, 0
	select {
	case <-s.stack.trip: // a trip between cells was handled by the watcher
	default:
	}
	s.cellSeq = s.wd.begin()
	res := s.runCell(ctx, c, code)
	s.wd.end()
	s.endCell(c)
	if s.memTrip != 0 {
		// Stopped by the memory watchdog: free what the cell held.
		reset, after := s.afterMemTrip(code)
		res = memLimitResult(s.memTrip, MemoryLimit(), reset, after)
		s.memTrip = 0
	}
	dropRoots(s.it)
	return res
}

// runCell dispatches magics and help, then evaluates the cell.
func (s *Session) runCell(ctx context.Context, c *cell, code string) Result {
	trimmed := strings.TrimSpace(code)
	if strings.HasPrefix(trimmed, "%") {
		return s.magic(ctx, c, trimmed)
	}
	if name, ok := helpRequest(trimmed); ok {
		return s.help(name)
	}
	return s.evalCell(ctx, c, code)
}

// evalCell splits code into runs and evaluates them in order. The final
// expression statement of the cell, if any, is shown.
func (s *Session) evalCell(ctx context.Context, c *cell, code string) Result {
	s.prep.cellDefer = false
	res := s.evalRuns(ctx, c, code)
	if !s.prep.cellDefer {
		return res
	}
	if ctx.Err() != nil || s.memTrip != 0 || s.stackTrip != 0 {
		// An interrupted cell does nothing more.
		s.evalSafe(context.Background(), cellDefers+" = nil")
		return res
	}
	// The cell's top-level defers run when it ends, last first, as main's
	// do in Go, also when it failed.
	if _, err := s.evalSafe(ctx, endCellFn+"()"); err != nil && res.Error == nil {
		return s.failure(ctx, err, code)
	}
	return res
}

// evalRuns evaluates the runs of a cell.
func (s *Session) evalRuns(ctx context.Context, c *cell, code string) Result {
	runs, err := splitCell(code)
	if err != nil {
		return compileErrorResult(err, code)
	}
	s.autoImport(ctx, code)
	s.bindCtx(c.ctx)
	var shown []any
	var shownRich []map[string]any
	hasShown := false
	for ri, r := range runs {
		last := ri == len(runs)-1
		src := r.src
		var final string // final expression, evaluated apart
		if last && !r.decl {
			src, final = splitFinalExpr(&r)
		}
		if r.decl {
			src = s.dropKnownImports(src)
		}
		if strings.TrimSpace(src) != "" {
			if r.decl {
				if src, err = s.prep.prepare(src, true); err != nil {
					return unsupportedResult(err, r, code)
				}
				redef := s.beforeDecls(ctx, src, c)
				if _, err := s.evalRun(ctx, r, src); err != nil {
					if !varsOnly(r) || !strings.Contains(err.Error(), "variable definition loop") {
						return s.failure(ctx, err, code)
					}
					// yaegi v0.16.1 refuses a package-level var whose value
					// uses a variable a cell declared with :=; in main's
					// body the vars are session variables too.
					sr := r
					sr.decl = false
					if err := s.evalStmts(ctx, sr, r.src, code); err != nil {
						if _, ok := err.(unsupportedError); ok {
							return unsupportedResult(err, r, code)
						}
						return s.failure(ctx, err, code)
					}
				}
				s.afterDecls(ctx, redef, src, r.line, c)
			} else if err := s.evalStmts(ctx, r, src, code); err != nil {
				if _, ok := err.(unsupportedError); ok {
					return unsupportedResult(err, r, code)
				}
				return s.failure(ctx, err, code)
			}
		}
		s.index.learn(r, code, c.count)
		if final != "" {
			s.shown, s.shownRich, s.hasShown = nil, nil, false
			fr := r
			fr.line = r.finalLine
			fset, base := s.it.FileSet(), s.it.FileSet().Base()
			slots := globalSlots(s.it)
			final, err := s.prep.prepareExpr(final)
			if err != nil {
				return unsupportedResult(err, fr, code)
			}
			prog, err := s.compile(pad(fr.line) + "gopeftk.Show(" + final + ")")
			if err != nil {
				// A call with no result cannot be shown: run it as is.
				if strings.HasPrefix(strings.TrimSpace(final), "func") {
					final = ";" + final // see evalStmts
				}
				prog, err = s.compile(pad(fr.line) + final)
				if err != nil {
					return compileErrorResult(err, code)
				}
			}
			if _, err := s.execute(ctx, prog); err != nil {
				return s.failure(ctx, err, code)
			}
			if len(s.shown) == 1 && cellType(s.shown[0]) && pureExpr(final) {
				// A value of a cell type: its String or Error method is
				// only visible to interpreted code, so the text is made
				// there (the expression has no side effects to repeat).
				s.evalSafe(ctx, "gopeftk.ShowText(fmt.Sprintf(\"%+v\", "+final+"))")
			}
			shown, shownRich, hasShown = s.shown, s.shownRich, s.hasShown
			if !hasFuncLit(final) {
				// Nothing of the expression outlives it: its source file
				// can go (see roots.go).
				trimFiles(fset, base, false)
				releaseSlots(s.it, slots)
				s.fitFrom = min(s.fitFrom, slots)
			}
		}
	}
	res := Result{}
	if hasShown {
		if v, err, ok := valueAndError(shown); ok {
			if err != nil {
				name := errorName(err)
				return errorResult(name, err.Error(), []string{
					name + ": " + err.Error(),
					"  (the cell's final expression returned this error as its last value)"})
			}
			shown = []any{v}
			if len(shownRich) > 1 {
				shownRich = shownRich[:1]
			}
		}
		res.Data, res.Metadata = showBundle(shown, shownRich)
	}
	return res
}

// valueAndError recognizes the values of a final expression of type
// (T, error), the result of most fallible calls (viz charts, strconv,
// os.ReadFile): two values, the second a nil interface or an error. The
// cell then shows the first value as if it were alone (richly: a chart as
// its image) when the error is nil, and fails with the error otherwise.
func valueAndError(vals []any) (v any, err error, ok bool) {
	if len(vals) != 2 {
		return nil, nil, false
	}
	if vals[1] == nil {
		return vals[0], nil, true
	}
	if e, isErr := vals[1].(error); isErr {
		return vals[0], e, true
	}
	return nil, nil, false
}

// hasFuncLit reports whether expr contains a func literal (which can outlive
// the expression and may need its positions later).
func hasFuncLit(expr string) bool {
	toks, _, err := scanCell(expr)
	if err != nil {
		return true
	}
	for _, t := range toks {
		if t.tok == token.FUNC {
			return true
		}
	}
	return false
}

// bindCtx sets the predeclared ctx to the cell's context, unless a cell
// redeclared ctx with another type. Funcs declared in earlier cells that
// use ctx see the running cell's context too.
func (s *Session) bindCtx(ctx context.Context) {
	defer func() { _ = recover() }()
	v, ok := s.globals()["ctx"]
	if !ok || !v.IsValid() || !v.CanSet() {
		return
	}
	if cv := reflect.ValueOf(ctx); cv.Type().AssignableTo(v.Type()) {
		v.Set(cv)
	}
}

// autoImport imports the packages a cell uses as pkg.Name without
// importing them, when exactly one importable package has that name
// (stat → gonum.org/v1/gonum/stat), as goimports would. Names the session
// or the cell declares are left alone.
func (s *Session) autoImport(ctx context.Context, code string) {
	toks, _, err := scanCell(code)
	if err != nil {
		return
	}
	heads := map[string]bool{}
	plain := map[string]bool{}
	for i, t := range toks {
		if t.tok != token.IDENT {
			continue
		}
		selected := i > 0 && toks[i-1].tok == token.PERIOD
		if !selected && i+1 < len(toks) && toks[i+1].tok == token.PERIOD {
			heads[t.lit] = true
		} else if !selected {
			plain[t.lit] = true
		}
	}
	g := s.globals()
	for name := range heads {
		if plain[name] {
			continue
		}
		if _, ok := s.index.names[name]; ok {
			continue
		}
		if _, ok := g[name]; ok {
			continue
		}
		p, ok := uniquePackage(name)
		if !ok {
			continue
		}
		if _, err := s.evalSafe(ctx, fmt.Sprintf("import %q", p)); err == nil {
			s.index.addImport(name, p)
		}
	}
}

// cellFieldNames matches the names yaegi gives unexported fields of cell
// types in reflect ("Xstep:" for step).
var cellFieldNames = regexp.MustCompile(`([{ ])X([a-z_][A-Za-z0-9_]*):`)

// cellType reports whether v looks like a value of a struct type declared
// in a cell: yaegi gives those no name in reflect.
func cellType(v any) bool {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != nil && t.Kind() == reflect.Struct && t.Name() == ""
}

// showBundle is the execute_result bundle of the values of a final
// expression: the value itself, or the values' text side by side.
func showBundle(vals []any, rich []map[string]any) (map[string]any, map[string]any) {
	richOf := func(i int) map[string]any {
		if i < len(rich) {
			return rich[i]
		}
		return nil
	}
	if len(vals) == 1 {
		data, md := display.BundleWith(vals[0], richOf(0))
		if t, ok := data["text/plain"].(string); ok && cellType(vals[0]) {
			data["text/plain"] = cellFieldNames.ReplaceAllString(t, "$1$2:")
		}
		return data, md
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			parts[i] = strconv.Quote(str)
			continue
		}
		data, _ := display.BundleWith(v, richOf(i))
		parts[i], _ = data["text/plain"].(string)
	}
	return map[string]any{"text/plain": "(" + strings.Join(parts, ", ") + ")"}, map[string]any{}
}

// pad returns the newlines that make a run starting at cell line `line`
// report yaegi positions one line below the cell's (see fixPositions).
func pad(line int) string { return strings.Repeat("\n", line) }

// evalRun compiles and executes one run of the cell.
func (s *Session) evalRun(ctx context.Context, r run, src string) (reflect.Value, error) {
	fset, base := s.it.FileSet(), s.it.FileSet().Base()
	v, err := s.evalSafe(ctx, pad(r.line)+src)
	if !r.decl && !hasFuncLit(src) {
		// Statements without func literals leave no code behind that
		// could report a position later (see roots.go).
		trimFiles(fset, base, false)
	}
	return v, err
}

// varsOnly reports whether a run of declarations holds only vars.
func varsOnly(r run) bool {
	for _, seg := range r.segs {
		toks, _, err := scanCell(r.src[seg.start-r.start : seg.end-r.start])
		if err != nil || len(toks) == 0 || toks[0].tok != token.VAR {
			return false
		}
	}
	return true
}

// evalStmts evaluates a run of statements (src, the run's text up to its
// final expression), one program per statement: a panic in a compiled call
// names the line of the statement that made it (yaegi reports the first
// line of the program it was running). All the statements are compiled
// before the first runs, so that a compile error anywhere in the run stops
// it all, as in Go.
func (s *Session) evalStmts(ctx context.Context, r run, src, code string) error {
	fset, base := s.it.FileSet(), s.it.FileSet().Base()
	var progs []*interp.Program
	funcLit := false
	s.prep.runInts, s.prep.runDefined = nil, nil
	s.sessionTypes = map[string]reflect.Type{}
	for n, v := range s.globals() {
		if v.IsValid() {
			s.sessionTypes[n] = v.Type()
		}
	}
	if pr, ok := parseRun(src, false); ok {
		s.prep.runInts = intNames(pr.file, nil, nil)
		s.prep.runDefined = definedNames(pr.file)
		s.prep.runPtrs = pointerNames(pr.file)
	}
	// What the run's statements declare is added as each one is prepared,
	// so that a statement sees only the declarations before it.
	s.prep.runElem, s.runTypes = map[string]string{}, map[string]reflect.Type{}
	defer func() {
		s.prep.runInts, s.prep.runDefined, s.prep.runPtrs, s.prep.runElem, s.runTypes = nil, nil, nil, nil, nil
	}()
	for i, seg := range r.segs {
		from := seg.start - r.start
		if i == 0 {
			from = 0
		}
		if from >= len(src) {
			break
		}
		to := len(src)
		if i+1 < len(r.segs) {
			to = min(r.segs[i+1].start-r.start, len(src))
		}
		line := seg.line
		if i == 0 {
			line = r.line
		}
		col := 0 // a statement after another on its line keeps its columns
		if i > 0 {
			col = seg.start - (strings.LastIndexByte(code[:seg.start], '\n') + 1)
		}
		piece, err := s.prep.prepare(src[from:to], false)
		if pr, ok := parseRun(src[from:to], false); ok {
			s.addRunTypes(pr.body) // a list of values to show (x, err) is not Go and declares nothing
		}
		if err != nil {
			if ue, ok := err.(unsupportedError); ok {
				ue.line += line - r.line
				return ue
			}
			return err
		}
		if strings.TrimSpace(piece) == "" {
			continue
		}
		funcLit = funcLit || hasFuncLit(piece)
		if toks, _, err := scanCell(piece); err == nil && len(toks) > 0 && (toks[0].tok == token.VAR || toks[0].tok == token.FUNC) {
			// yaegi compiles a source starting with var as a file, and one
			// starting with func() { … }() as the body of a main
			piece = ";" + piece
		}
		prog, err := s.compile(pad(line) + strings.Repeat(" ", col) + piece)
		if err != nil {
			return err
		}
		progs = append(progs, prog)
	}
	for _, prog := range progs {
		if _, err := s.execute(ctx, prog); err != nil {
			return err
		}
	}
	if !funcLit {
		// Statements without func literals leave no code behind that
		// could report a position later (see roots.go).
		trimFiles(fset, base, false)
	}
	return nil
}

// evalSafe compiles and executes src, recovering compile-stage panics.
func (s *Session) evalSafe(ctx context.Context, src string) (reflect.Value, error) {
	prog, err := s.compile(src)
	if err != nil {
		return reflect.Value{}, err
	}
	return s.execute(ctx, prog)
}

// compileError is a compile-stage failure.
type compileError struct{ err error }

func (e compileError) Error() string { return e.err.Error() }

// compile turns src into a program; yaegi's compile stage can panic on
// some inputs (traefik/yaegi#1560), which becomes an error here.
func (s *Session) compile(src string) (prog *interp.Program, err error) {
	fset := s.it.FileSet()
	base := fset.Base()
	defer func() { trimFiles(fset, base, err == nil) }()
	defer func() {
		if r := recover(); r != nil {
			err = compileError{fmt.Errorf("%v", r)}
			if ue, ok := s.explainCompile(fmt.Sprint(r), src); ok {
				err = compileError{ue}
			}
		}
	}()
	mainBefore := s.mainNode()
	prog, err = s.it.Compile(src)
	if err != nil {
		if ue, ok := s.explainCompile(err.Error(), src); ok {
			return nil, compileError{ue}
		}
		return nil, compileError{err}
	}
	if err := s.checkFmtCalls(prog); err != nil {
		return nil, compileError{err}
	}
	if s.mainNode() == mainBefore {
		s.stripMain(prog) // main is an earlier program's: not this one's to run
	}
	return prog, nil
}

// execute runs prog until it ends or ctx is cancelled.
//
// yaegi's ExecuteWithContext returns at cancellation but leaves its
// goroutine running until the interpreted code notices; code at the top
// level of a cell shares the global frame with the next cell and would
// resume when the next cell starts. So the program runs on a goroutine of
// ours: at cancellation yaegi's stop is called and we wait (up to
// zombieWait) for that goroutine to end. Interpreted code ends within a
// step; a compiled call that ignores ctx is waited for at the start of the
// next cell.
func (s *Session) execute(ctx context.Context, prog *interp.Program) (reflect.Value, error) {
	if err := s.waitZombie(ctx); err != nil {
		return reflect.Value{}, err
	}
	if s.memTrip != 0 {
		return reflect.Value{}, errMemLimit
	}
	// A no-op run through ExecuteWithContext arms yaegi's cancellation (a
	// fresh done channel, cancellable channel operations); it stays armed
	// until the next stop. (Arming before every run cost a goroutine and a
	// run per program.)
	if !s.armed && s.noop != nil {
		if _, err := s.it.ExecuteWithContext(context.Background(), s.noop); err != nil {
			return reflect.Value{}, err
		}
		s.armed = true
	}
	if s.fitFrom < noFit {
		s.fitFrom = fitSlots(s.it, s.fitFrom)
	}
	var res reflect.Value
	var err error
	fin := make(chan struct{})
	s.runOnWorker(func() {
		res, err = s.it.Execute(prog) // recovers panics into interp.Panic
	}, func(goexit bool) {
		if goexit {
			err = errGoexit
		}
		close(fin)
	})
wait:
	for {
		select {
		case <-fin:
			return res, err
		case <-ctx.Done():
			break wait
		case n := <-s.stack.trip:
			s.stackTrip = n
			break wait
		case tr := <-s.wd.trip:
			if tr.seq == s.cellSeq {
				s.memTrip = tr.heap
				break wait
			}
		}
	}
	interpStop(s.it)
	s.armed = false
	if c := s.running(); c != nil && c.cancel != nil {
		c.cancel()
	}
	select {
	case <-fin:
	case <-time.After(zombieWait):
		s.zombie = fin
		s.abandonWorker()
	}
	if s.memTrip != 0 {
		return reflect.Value{}, errMemLimit
	}
	if s.stackTrip != 0 {
		return reflect.Value{}, errStack
	}
	return reflect.Value{}, ctx.Err()
}

// runOnWorker runs f on the session's worker goroutine, which runs every
// program of every cell one after the other, so that the top-level code of
// a session runs on one goroutine, as a Go program's main does (a cell's
// statements are separate programs). An abandoned worker (its program
// outlived an interrupt) ends when the program returns, and the next
// program starts a new one.
// done is called after f, with goexit set when f ended its goroutine
// (runtime.Goexit); the next program then gets a new worker.
func (s *Session) runOnWorker(f func(), done func(goexit bool)) {
	if s.work == nil || s.work.dead.Load() {
		w := &worker{jobs: make(chan func())}
		s.work = w
		go func() {
			for job := range w.jobs {
				job()
			}
		}()
	}
	w := s.work
	w.jobs <- func() {
		returned := false
		defer func() {
			if !returned {
				w.dead.Store(true)
			}
			done(!returned)
		}()
		f()
		returned = true
	}
}

// worker is the goroutine that runs a session's programs.
type worker struct {
	jobs chan func()
	dead atomic.Bool // its goroutine ended (runtime.Goexit in a cell)
}

// errGoexit is what execute returns when a cell called runtime.Goexit.
var errGoexit = errors.New("runtime.Goexit")

// abandonWorker leaves the worker to finish its program alone.
func (s *Session) abandonWorker() {
	if s.work != nil {
		close(s.work.jobs) // the worker ends after its current program
		s.work = nil
	}
}

// zombieWait is how long an interrupted cell is waited for before Execute
// returns anyway.
const zombieWait = 800 * time.Millisecond

// waitZombie waits for the goroutine of an interrupted cell that was still
// in a compiled call (one that does not watch ctx). That goroutine stopped
// at the interrupt, but would go on with the rest of its cell as soon as
// the interpreter runs again (yaegi's top-level code shares the global
// frame's run id with the next run), so nothing runs until it has ended:
// the next cell says it is waiting, and an interrupt stops the wait (the
// cell then fails, and the next one waits again). Restarting the kernel
// ends the wait for good.
func (s *Session) waitZombie(ctx context.Context) error {
	if s.zombie == nil {
		return nil
	}
	select {
	case <-s.zombie:
		s.zombie = nil
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(zombieWait):
	}
	if c := s.running(); c != nil {
		c.out.add("stderr", "waiting for a compiled call of an interrupted cell to return (it does not watch ctx, so it could not stop at once; "+
			"the rest of that cell will not run). Interrupt to stop waiting, or restart the kernel.\n")
		c.out.flush()
	}
	select {
	case <-s.zombie:
		s.zombie = nil
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure turns an evaluation error into the cell's error result.
func (s *Session) failure(ctx context.Context, err error, code string) Result {
	if s.memTrip != 0 {
		return errorResult("MemoryLimit", "", nil) // completed by Execute
	}
	if s.stackTrip != 0 {
		n := s.stackTrip
		s.stackTrip = 0
		return stackResult(n)
	}
	if ctx.Err() != nil {
		msg := "the cell was interrupted; variables from earlier statements are kept"
		if ctx.Err() == context.DeadlineExceeded {
			msg = "the cell ran out of time; variables from earlier statements are kept"
		}
		return errorResult("Interrupted", msg, []string{"Interrupted: " + msg})
	}
	if err == errGoexit {
		msg := "runtime.Goexit ended the cell's goroutine, which stops the cell (in a Go program it would end main's goroutine); " +
			"return from a function instead, or call Goexit in a goroutine of your own"
		return errorResult("Unsupported", msg, []string{"Unsupported: " + msg})
	}
	if ce, ok := err.(compileError); ok {
		return compileErrorResult(ce.err, code)
	}
	if p, ok := err.(interp.Panic); ok {
		return s.panicResult(p, code)
	}
	msg := fixPositions(err.Error())
	if text, line, ok := typeAssertionFailure(msg); ok {
		tb := []string{"runtime error: " + text}
		if lines := strings.Split(code, "\n"); line >= 1 && line <= len(lines) {
			tb = append(tb, fmt.Sprintf("  cell line %d: %s", line, strings.TrimSpace(lines[line-1])))
		}
		return errorResult("runtime error", text, tb)
	}
	return errorResult("Error", msg, nil)
}

// panicResult describes a panic in interpreted code, with the cell lines
// yaegi reported on the way up (collected by stderrFilter).
func (s *Session) panicResult(p interp.Panic, code string) Result {
	if rv, ok := p.Value.(reflect.Value); ok && rv.IsValid() && rv.CanInterface() {
		p.Value = rv.Interface() // yaegi panics with the reflect.Value of binary values
	}
	name := "panic"
	switch v := p.Value.(type) {
	case exitPanic:
		name = "Exit"
	case runtime.Error:
		name = "runtime error"
	case error:
		name = errorName(v)
	}
	value := fmt.Sprint(p.Value)
	if str, ok := p.Value.(string); ok && (strings.HasPrefix(str, "reflect: slice index out of range") || strings.HasPrefix(str, "reflect: array index out of range") || strings.HasPrefix(str, "reflect: string index out of range")) {
		// yaegi indexes interpreted slices through reflect.
		name, value = "runtime error", indexUnreported
	} else if text, _, ok := typeAssertionFailure(value); ok {
		name, value = "runtime error", text
	} else if interpreterFault(value) {
		name = "Unsupported"
		value = "the interpreter (yaegi v0.16.1) failed inside Go's reflection (" + value + "). This happens when a value of a type " +
			"declared in a cell reaches compiled code that needs its methods or its exact type: errors.As into a cell type, a cell type " +
			"as an io.Writer or other interface of a compiled package, method expressions. Keep such values in interpreted code " +
			"(a type switch instead of errors.As, a func instead of the interface), or declare the type in a Go package. " +
			"kernel/kerneltest/README.md lists these interpreter bugs."
	}
	if e, ok := p.Value.(runtime.Error); ok {
		value = strings.TrimPrefix(e.Error(), "runtime error: ")
	}
	tb := []string{fmt.Sprintf("%s: %s", name, value)}
	lines := strings.Split(code, "\n")
	c := s.cur
	var frames []panicFrame
	if c != nil {
		frames = c.errFilter.take()
	}
	prev := ""
	for _, f := range frames {
		srcLines, where := lines, "cell line"
		fn := strings.TrimPrefix(f.fn, "main.")
		// A frame in a func declared by an earlier cell shows that cell.
		if fn != f.fn {
			if o, ok := s.index.funcs[fn]; ok && o.code != code {
				srcLines, where = strings.Split(o.code, "\n"), fmt.Sprintf("cell [%d] line", o.count)
			}
		}
		src := ""
		if f.line >= 1 && f.line <= len(srcLines) {
			src = strings.TrimSpace(srcLines[f.line-1])
		}
		entry := fmt.Sprintf("  %s %d: %s", where, f.line, src)
		if fn != f.fn && fn != "" && !strings.HasPrefix(fn, "__") && !strings.Contains(src, "panic(") {
			// yaegi names where a func's code starts, not the line that
			// failed in it (a top-level statement's own line is exact).
			entry = fmt.Sprintf("  in func %s, whose body starts at %s %d: %s", fn, where, f.line, src)
			if fn == "func" || strings.HasPrefix(fn, "func") && strings.Trim(fn[4:], "0123456789") == "" {
				entry = fmt.Sprintf("  in the block starting at %s %d: %s", where, f.line, src)
			}
		}
		if entry != prev {
			tb = append(tb, entry)
		}
		prev = entry
	}
	return errorResult(name, value, tb)
}

func errorResult(name, value string, tb []string) Result {
	if tb == nil {
		tb = []string{name + ": " + value}
	}
	return Result{Error: &ExecError{Name: name, Value: value, Traceback: tb}}
}

// posPrefix matches a message that starts with a cell position.
var posPrefix = regexp.MustCompile(`^(\d+):\d+: (.*)$`)

// typeAssertionFailure recognises yaegi's message for a failed type
// assertion (Go's *runtime.TypeAssertionError), which it prefixes with the
// position: it returns Go's message and the cell line.
func typeAssertionFailure(msg string) (text string, line int, ok bool) {
	m := posPrefix.FindStringSubmatch(msg)
	if m == nil || !strings.HasPrefix(m[2], "interface conversion: ") {
		return "", 0, false
	}
	line, _ = strconv.Atoi(m[1])
	return m[2], line, true
}

// missingBuiltin matches the compile error of a builtin yaegi lacks.
var missingBuiltin = regexp.MustCompile(`undefined: (min|max|clear)\b`)

var builtinInstead = map[string]string{
	"min":   "math.Min for floats, or an if for ints",
	"max":   "math.Max for floats, or an if for ints",
	"clear": "for k := range m { delete(m, k) } for a map, or a loop setting s[i] to zero for a slice",
}

// compileErrorResult reports a syntax or type error with the cell lines it
// names.
func compileErrorResult(err error, code string) Result {
	if ce, ok := err.(compileError); ok {
		err = ce.err
	}
	if ue, ok := err.(unsupportedError); ok {
		tb := []string{"Unsupported: " + ue.msg}
		if lines := strings.Split(code, "\n"); ue.line >= 1 && ue.line <= len(lines) {
			tb = append(tb, fmt.Sprintf("  cell line %d: %s", ue.line, strings.TrimSpace(lines[ue.line-1])))
		}
		return Result{Error: &ExecError{Name: "Unsupported", Value: ue.msg, Traceback: tb}}
	}
	msg := fixPositions(err.Error())
	if m := missingBuiltin.FindStringSubmatch(msg); m != nil {
		msg = "Go 1.21's builtin " + m[1] + " is missing from the interpreter (yaegi v0.16.1): write " + builtinInstead[m[1]] +
			" instead (" + msg + ")"
		return Result{Error: &ExecError{Name: "Unsupported", Value: msg, Traceback: []string{"Unsupported: " + msg}}}
	}
	if msg == "nil type" {
		msg += " (the interpreter could not give a type to an expression; yaegi v0.16.1 does this for a range over " +
			"a func iterator and over an integer it cannot see is one: write a counting loop, for i := 0; i < n; i++)"
	}
	tb := []string{"CompileError: " + msg}
	lines := strings.Split(code, "\n")
	for _, l := range cellLines(msg) {
		if l >= 1 && l <= len(lines) {
			tb = append(tb, fmt.Sprintf("  cell line %d: %s", l, strings.TrimSpace(lines[l-1])))
		}
	}
	return Result{Error: &ExecError{Name: "CompileError", Value: msg, Traceback: tb}}
}

// cell is the state of a running cell.
type cell struct {
	ctx       context.Context
	cancel    context.CancelFunc
	count     int
	pub       *lockedPub
	out       *capture
	errFilter *stderrFilter
	start     time.Time
}

// startCell redirects output to pub and installs the nb front-end.
func (s *Session) startCell(ctx context.Context, count int, pub Publisher) *cell {
	lp := &lockedPub{pub: pub, ctx: ctx}
	c := &cell{ctx: ctx, count: count, pub: lp, start: time.Now()}
	if s.pipes == nil && !s.noPipes {
		s.pipes = newOutPipes(s.background)
		s.noPipes = s.pipes == nil
	}
	c.out = startCapture(lp, s.pipes)
	c.errFilter = s.errf
	s.errf.reset()
	s.curMu.Lock()
	s.cur = c
	pending := s.pending
	s.pending = nil
	s.curMu.Unlock()
	for _, m := range pending {
		c.out.add(m.name, m.text)
	}
	nb.SetFrontend(&frontend{ctx: ctx, c: c})
	return c
}

// endCell flushes the cell's output and restores the process streams.
func (s *Session) endCell(c *cell) {
	nb.SetFrontend(nil)
	c.out.stop()
	s.curMu.Lock()
	s.cur = nil
	s.curMu.Unlock()
}

// frontend forwards nb's displays to the running cell's publisher.
type frontend struct {
	ctx context.Context
	c   *cell
}

func (f *frontend) Display(v any, id string, update bool) {
	data, md := display.Bundle(v)
	f.c.out.flush()
	f.c.pub.Display(data, md, id, update)
}

func (f *frontend) ClearOutput(wait bool) {
	f.c.out.flush()
	f.c.pub.ClearOutput(wait)
}

func (f *frontend) Context() context.Context { return f.ctx }

// goSyntax writes t as Go source the session can compile: predeclared
// types, pointers, slices, arrays and maps of such types, and named types
// of packages the session imported, by their import names. It returns ""
// for anything else (a type a cell declared, an unnamed struct, func or
// chan, a package not imported).
func (s *Session) goSyntax(t reflect.Type, depth int) string {
	if depth > 8 {
		return ""
	}
	if t.Name() != "" {
		if t.PkgPath() == "" {
			if t.Kind() == reflect.Interface { // error
				return t.Name()
			}
			if t.String() == t.Name() && t.Kind() != reflect.Struct {
				return t.Name() // int, float64, string, …
			}
			return ""
		}
		if strings.ContainsAny(t.Name(), "[]") {
			return "" // an instantiated generic type
		}
		for local, path := range s.index.imports {
			if path == t.PkgPath() && local != "_" && local != "." {
				return local + "." + t.Name()
			}
		}
		return ""
	}
	var elem string
	if k := t.Kind(); k == reflect.Pointer || k == reflect.Slice || k == reflect.Array || k == reflect.Map {
		if elem = s.goSyntax(t.Elem(), depth+1); elem == "" {
			return ""
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + elem
	case reflect.Slice:
		return "[]" + elem
	case reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), elem)
	case reflect.Map:
		key := s.goSyntax(t.Key(), depth+1)
		if key == "" {
			return ""
		}
		return "map[" + key + "]" + elem
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return "interface{}"
		}
	}
	return ""
}

// addRunTypes records, for the names that top-level statements of the run
// being compiled declare with := from calls of compiled code (xs :=
// strings.Split(…), ads, err := abmll.Add(…), ms := task.Model().Modules()),
// their static type (runTypes) and, for a slice, array or map, the element
// type in Go syntax (the preparer's runElem, for passIndexDefine). A name
// declared otherwise is forgotten, so a later statement does not use a
// type it no longer has.
func (s *Session) addRunTypes(body []ast.Stmt) {
	out := s.prep.runElem
	for _, st := range body {
		as, ok := st.(*ast.AssignStmt)
		if !ok || as.Tok != token.DEFINE {
			continue
		}
		for i, l := range as.Lhs {
			id, ok := l.(*ast.Ident)
			if !ok || id.Name == "_" {
				continue
			}
			var t reflect.Type
			switch {
			case len(as.Rhs) == len(as.Lhs):
				t = s.staticType(as.Rhs[i], 0)
			case len(as.Rhs) == 1:
				t = s.staticType(as.Rhs[0], i)
			}
			delete(out, id.Name)
			delete(s.runTypes, id.Name)
			if t == nil {
				continue
			}
			s.runTypes[id.Name] = t
			if e := s.elemSyntax(t); e != "" {
				out[id.Name] = e
			}
		}
	}
}

// staticType returns the type of result out of e, when e is a session
// variable (out 0) or a call of a compiled package's function or of a
// method of a compiled type, the receiver typed the same way; nil when it
// cannot tell.
func (s *Session) staticType(e ast.Expr, out int) reflect.Type {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return s.staticType(e.X, out)
	case *ast.Ident:
		if out != 0 {
			return nil
		}
		if t, ok := s.runTypes[e.Name]; ok {
			return t // declared earlier in the run being compiled
		}
		return s.sessionType(e.Name)
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		if !ok {
			return nil
		}
		var ft reflect.Type
		if id, ok := sel.X.(*ast.Ident); ok {
			if s.sessionType(id.Name) == nil && s.runTypes[id.Name] == nil {
				if path, ok := s.index.imports[id.Name]; ok {
					if v := compiledSymbol(path, sel.Sel.Name); v.IsValid() && v.Kind() == reflect.Func {
						ft = v.Type()
					}
				}
			}
		}
		if ft == nil {
			rt := s.staticType(sel.X, 0)
			if rt == nil {
				return nil
			}
			m, ok := rt.MethodByName(sel.Sel.Name)
			if !ok {
				return nil
			}
			ft = m.Type
		}
		if out < ft.NumOut() {
			return ft.Out(out)
		}
	}
	return nil
}

// compiledSymbol is the exported symbol name of the compiled package path,
// from the standard library's or gopeft's symbol tables.
func compiledSymbol(pkgPath, name string) reflect.Value {
	key := pkgPath + "/" + path.Base(pkgPath)
	if v, ok := stdlib.Symbols[key][name]; ok {
		return v
	}
	return symbols.Symbols[key][name]
}

// sessionType is the type of the session variable name: as the run being
// compiled found it (sessionTypes), or now; nil if there is none.
func (s *Session) sessionType(name string) reflect.Type {
	if s.sessionTypes != nil {
		return s.sessionTypes[name]
	}
	if v, ok := s.globals()[name]; ok && v.IsValid() {
		return v.Type()
	}
	return nil
}

// elemSyntax is goSyntax of the element type of t, a slice, array or map
// type; "" for any other t (nil included) or an element it cannot write.
func (s *Session) elemSyntax(t reflect.Type) string {
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return s.goSyntax(t.Elem(), 0)
	}
	return ""
}
