package session

import (
	"fmt"
	"go/token"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// Runtime helpers behind the rewrites of prepare.go, and the refusals.

// checkMakeLen is gopeftk.Len: make(T, n) becomes
// make(T, gopeftk.Len((T)(nil), n)). It returns n as an int when the
// allocation it asks for fits in the kernel's memory limit, and panics
// with a message naming the size otherwise: Go's runtime ends the process
// (fatal "out of memory") on one allocation larger than the machine can
// map, which no recover catches.
func checkMakeLen(zero any, n any) int {
	v := reflect.ValueOf(n)
	var count float64
	var out int
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		count, out = float64(v.Int()), int(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if v.Uint() > math.MaxInt64 {
			panic(fmt.Sprintf("make: size %d overflows int", v.Uint()))
		}
		count, out = float64(v.Uint()), int(v.Uint())
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if f != math.Trunc(f) || math.Abs(f) > math.MaxInt64 {
			panic(fmt.Sprintf("make: size %v is not an int", f))
		}
		count, out = f, int(f)
	default:
		panic(fmt.Sprintf("make: size of type %T, want an integer", n))
	}
	if count <= 0 {
		return out // make reports negative sizes itself
	}
	elem := 1.0
	if t := reflect.TypeOf(zero); t != nil {
		switch t.Kind() {
		case reflect.Slice, reflect.Chan:
			elem = float64(max(t.Elem().Size(), 1))
		case reflect.Map:
			elem = float64(max(t.Key().Size()+t.Elem().Size(), 1))
		}
	}
	need := count * elem
	limit := MemoryLimit()
	if limit > 0 && need > float64(limit) {
		panic(sizeError{fmt.Sprintf("make(%v, %d) asks for %s, more than the kernel's memory limit of %s "+
			"(one allocation that large would end the kernel; %%memlimit shows or sets the limit)",
			reflect.TypeOf(zero), out, formatBytes(int64(min(need, math.MaxInt64))), formatBytes(limit))})
	}
	return out
}

// sizeError is the panic value of a refused allocation.
type sizeError struct{ msg string }

func (e sizeError) Error() string { return e.msg }

// errorName is the name an error gets in a cell's error message: its type's
// name when a student can look it up (peft.ShapeError → ShapeError,
// *fs.PathError → PathError), "Error" for the unexported types of
// errors.New and fmt.Errorf, whose names mean nothing to a reader.
func errorName(err any) string {
	switch err.(type) {
	case sizeError:
		return "MemoryLimit"
	case unsupportedPanic:
		return "Unsupported"
	}
	t := reflect.TypeOf(err)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Name() == "" || !token.IsExported(t.Name()) {
		return "Error"
	}
	return t.Name()
}

// guardCallback wraps a function that compiled code calls on a goroutine of
// its own (time.AfterFunc, context.AfterFunc): a panic in it is reported
// like a goroutine's instead of ending the process.
func (s *Session) guardCallback(f func()) func() {
	return func() {
		defer func() {
			if r := recover(); r != nil {
				s.goPanic(r)
			}
		}()
		f()
	}
}

// unsupportedResult is the error of a construct the kernel refuses.
func unsupportedResult(err error, r run, code string) Result {
	ue, ok := err.(unsupportedError)
	if !ok {
		return errorResult("Unsupported", err.Error(), nil)
	}
	line := r.line + ue.line - 1
	tb := []string{"Unsupported: " + ue.msg}
	lines := strings.Split(code, "\n")
	if line >= 1 && line <= len(lines) {
		tb = append(tb, fmt.Sprintf("  cell line %d: %s", line, strings.TrimSpace(lines[line-1])))
	}
	return Result{Error: &ExecError{Name: "Unsupported", Value: ue.msg, Traceback: tb}}
}

// interpreterFault reports whether a panic message comes from the
// interpreter's own use of reflection or its checks of types, not from the
// cell's code.
func interpreterFault(msg string) bool {
	for _, p := range []string{"reflect: ", "reflect.", "errors: *target must be", "errors: target must be"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// recovered is gopeftk.Recovered, around every recover() of a cell: the
// value a cell's panic carries, as Go's recover returns it. yaegi v0.16.1
// hands interpreted code the reflect.Value it panicked with, and an index
// or slice bound check of an interpreted slice panics inside reflect with a
// string; such a value becomes the runtime error Go would give (without
// the index and length, which reflect does not say).
func recovered(v any) any {
	if rv, ok := v.(reflect.Value); ok && rv.IsValid() && rv.CanInterface() {
		v = rv.Interface()
	}
	if s, ok := v.(string); ok {
		switch {
		case strings.HasPrefix(s, "reflect: slice index out of range"), strings.HasPrefix(s, "reflect: string index out of range"),
			strings.HasPrefix(s, "reflect: array index out of range"):
			return boundsError(indexUnreported)
		case strings.HasPrefix(s, "reflect.Value.Slice: slice index out of bounds"):
			return boundsError("slice bounds out of range")
		}
	}
	return v
}

// boundsIndex is gopeftk.Index (see passBounds): it returns i, or panics
// with Go's runtime.Error when i is out of range for length n.
func boundsIndex(i, n int) int {
	if i < 0 {
		panic(boundsError(fmt.Sprintf("index out of range [%d]", i)))
	}
	if i >= n {
		panic(boundsError(fmt.Sprintf("index out of range [%d] with length %d", i, n)))
	}
	return i
}

// boundsError is a runtime.Error for an index or slice bound the
// interpreter checked through reflect.
type boundsError string

func (e boundsError) Error() string { return "runtime error: " + string(e) }
func (e boundsError) RuntimeError() {}

// Compile errors that come from what yaegi v0.16.1 lacks, not from the
// cell, are reported as Unsupported with what to write instead.
var (
	missingImport    = regexp.MustCompile(`import "([^"]+)" error: unable to find source`)
	genericSelector  = regexp.MustCompile(`undefined selector: (slices|maps|cmp|iter|sync/atomic)\.(\w+)`)
	untypedInference = regexp.MustCompile(`untyped (\w+) does not implement ([\w.]+)`)
	spreadConvert    = regexp.MustCompile(`reflect\.Value\.Convert: value of type \[\]\S+ cannot be converted to type \S+`)
)

// explainCompile turns a compile error msg of src into an Unsupported
// error when it is one of the interpreter's gaps.
func (s *Session) explainCompile(msg, src string) (unsupportedError, bool) {
	line := 0
	if m := posPrefix.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		line-- // the compiled source starts with a newline per line before the run (pad)
	}
	switch {
	case missingImport.MatchString(msg):
		pkg := missingImport.FindStringSubmatch(msg)[1]
		text := fmt.Sprintf("package %s is not available in the kernel: the interpreter (yaegi v0.16.1) has the standard "+
			"library of Go 1.22, gonum, gonum/plot and gopeft's packages (%%help lists them)", pkg)
		if pkg == "iter" {
			text += "; range over a func (Go 1.23 iterators) is not supported either: return a slice, or pass a callback"
		}
		return unsupportedError{line: line, msg: text}, true
	case genericSelector.MatchString(msg):
		m := genericSelector.FindStringSubmatch(msg)
		return unsupportedError{line: line, msg: fmt.Sprintf("%s.%s is a generic function or type, which the interpreter "+
			"(yaegi v0.16.1) cannot take from a compiled package. Use the non-generic equivalents (sort.Ints, sort.Strings, "+
			"sort.Slice, strings.Compare), a loop, or declare your own generic func in a cell", m[1], m[2])}, true
	case untypedInference.MatchString(msg):
		m := untypedInference.FindStringSubmatch(msg)
		return unsupportedError{line: line, msg: fmt.Sprintf("the interpreter (yaegi v0.16.1) cannot infer a type argument "+
			"from an untyped %s constant for the constraint %s: write the type argument (Max[float64](2.5, -1.0)) or "+
			"convert the constants (float64(2.5))", m[1], m[2])}, true
	}
	if spreadConvert.MatchString(msg) && strings.Contains(src, "...") {
		return unsupportedError{line: line, msg: "the interpreter (yaegi v0.16.1) cannot spread a compiled package's slice " +
			"variable into a variadic call (f(pkg.Values...)): copy it to a variable first, xs := pkg.Values; f(xs...)"}, true
	}
	if g := s.genericCalled(src, line); g != "" {
		switch {
		case strings.Contains(msg, "nil pointer dereference"):
			return unsupportedError{line: line, msg: fmt.Sprintf("the interpreter (yaegi v0.16.1) cannot compile a variable "+
				"declared at the top level of a cell from the result of the generic func %s: give the variable its type "+
				"(var evens []int = %s(…)), or use the result inside a func", g, g)}, true
		case strings.Contains(msg, "cannot use type"):
			return unsupportedError{line: line, msg: fmt.Sprintf("the interpreter (yaegi v0.16.1) infers the type arguments "+
				"of the generic func %s wrongly here (%s): write them, e.g. %s[int, string](…)", g, msg, g)}, true
		}
	}
	if strings.Contains(msg, "constant definition loop") && !strings.Contains(src, "const") {
		return unsupportedError{line: line, msg: "the interpreter (yaegi v0.16.1) cannot type this top-level := (\"constant " +
			"definition loop\"): x := s[i] where s is a slice or map that compiled code returned and whose element type the " +
			"kernel cannot write for it (a type of a package not imported by name, say). Give the variable its type " +
			"(var x T = s[i]), or do the work inside a func: func() { … }()"}, true
	}
	if strings.Contains(msg, "nil pointer dereference") {
		return unsupportedError{line: line, msg: "the interpreter (yaegi v0.16.1) failed while compiling this code (a nil pointer " +
			"in its compiler, not in your code). Known causes: a top-level x := s[i] or x := s[i].M() where s comes from " +
			"compiled code, and x := f(…) of a generic func. Give the variable its type (var x T = …), or do the work " +
			"inside a func: func() { … }()"}, true
	}
	return unsupportedError{}, false
}

// genericCalled returns the name of a generic func declared in a cell that
// src calls without type arguments, on line (1-based; 0: anywhere).
func (s *Session) genericCalled(src string, line int) string {
	lines := strings.Split(src, "\n")
	if line >= 1 && line+1 <= len(lines) {
		src = lines[line] // the compiled source has one more line than the run (pad)
	}
	for _, d := range s.decls {
		if len(d.names) != 1 || !strings.HasPrefix(d.src, "func ") || strings.Contains(d.names[0], ".") {
			continue
		}
		g := d.names[0]
		if !strings.HasPrefix(strings.TrimPrefix(d.src, "func "), g+"[") {
			continue
		}
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(g) + `\(`).MatchString(src) {
			return g
		}
	}
	return ""
}

// indexUnreported is the message of an index out of range that passBounds
// did not check: yaegi's reflect panic has neither the index nor the length.
const indexUnreported = "index out of range (the interpreter does not report the index and the length here; " +
	"in a function that calls recover, or outside loops at the top level, the kernel checks and reports them)"
