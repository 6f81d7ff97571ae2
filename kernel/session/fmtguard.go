package session

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"

	"github.com/traefik/yaegi/interp"
)

// A guard on the compiled function that would show a cell type wrongly.
// yaegi v0.16.1 gives compiled code a struct type declared in a cell as an
// unnamed struct type whose unexported fields are renamed (b → Xb), and
// encoding/json marshals them: the kernel's json.Marshal and MarshalIndent
// refuse such a value with an Unsupported panic that says what to write
// instead. fmt's %T, %#v and %+v show the same renamed type: fmt cannot be
// wrapped the same way (yaegi passes a cell type's String method to its own
// fmt functions only), so a call with such a verb is checked through
// gopeftk.CheckFormat (passFmtCheck).

// cellStructs reports whether t, or a type it is built from, is a struct
// type a cell declared: an unnamed struct type; with renamedOnly, one with
// a field yaegi renamed from an unexported name.
func cellStructs(t reflect.Type, renamedOnly bool, seen map[reflect.Type]bool) bool {
	if t == nil || seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
		return cellStructs(t.Elem(), renamedOnly, seen)
	case reflect.Map:
		return cellStructs(t.Key(), renamedOnly, seen) || cellStructs(t.Elem(), renamedOnly, seen)
	case reflect.Struct:
		if t.Name() == "" && t.PkgPath() == "" {
			if !renamedOnly {
				return true
			}
			for i := 0; i < t.NumField(); i++ {
				if renamed(t.Field(i).Name) {
					return true
				}
			}
		}
		for i := 0; i < t.NumField(); i++ {
			if cellStructs(t.Field(i).Type, renamedOnly, seen) {
				return true
			}
		}
	}
	return false
}

// renamed: yaegi's name for an unexported field (b → Xb).
func renamed(name string) bool {
	r := []rune(name)
	return len(r) >= 2 && r[0] == 'X' && (unicode.IsLower(r[1]) || r[1] == '_')
}

// checkMarshal refuses to marshal a cell struct type with unexported fields.
func checkMarshal(v any) {
	if cellStructs(reflect.TypeOf(v), true, map[reflect.Type]bool{}) {
		panic(unsupportedPanic("encoding/json would marshal the unexported fields of a struct type declared in a cell (the " +
			"interpreter gives them exported names, b as Xb). Marshal a type with exported fields only, or a map"))
	}
}

// unsupportedPanic is the panic value of a refused call; the cell's error
// is named Unsupported.
type unsupportedPanic string

func (e unsupportedPanic) Error() string { return string(e) }

// guardStdlib wraps the interpreter's json.Marshal and MarshalIndent with
// checkMarshal. It does nothing if yaegi's layout is not the expected one
// (another version).
func guardStdlib(it *interp.Interpreter, cellUnwrap func() bool) fmtFuncs {
	iv := reflect.ValueOf(it).Elem()
	bin := settable(iv.FieldByName("binPkg"))
	if !bin.IsValid() || bin.Kind() != reflect.Map {
		return nil
	}
	wrap := func(pkg, name string, f func(old reflect.Value) any) reflect.Value {
		syms := bin.MapIndex(reflect.ValueOf(pkg))
		if !syms.IsValid() {
			return reflect.Value{}
		}
		old := syms.MapIndex(reflect.ValueOf(name))
		if !old.IsValid() {
			return reflect.Value{}
		}
		old = old.Interface().(reflect.Value)
		nv := reflect.ValueOf(f(old))
		syms.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(nv))
		return nv
	}
	wrap("encoding/json", "Marshal", func(reflect.Value) any {
		return func(v any) ([]byte, error) { checkMarshal(v); return json.Marshal(v) }
	})
	wrap("encoding/json", "MarshalIndent", func(reflect.Value) any {
		return func(v any, prefix, indent string) ([]byte, error) {
			checkMarshal(v)
			return json.MarshalIndent(v, prefix, indent)
		}
	})
	wrap("errors", "Is", func(reflect.Value) any { return errorsIs(cellUnwrap) })
	return guardFmt(iv, bin, wrap)
}

// errorsIs is errors.Is for the interpreter. yaegi hands compiled code an
// error of a cell type in a wrapper that holds a func (never equal to
// another) and, for a struct type, only one of its fields: errors.Is(err,
// E{3}) was false where Go finds E{3} in err's chain, and the wrapped value
// cannot tell E{1, 3} from E{2, 3}. Such a target is refused; so is a
// chain through a cell error whose type might have Unwrap or Is methods,
// which the wrapper hides. Compiled errors (errors.New sentinels, %w
// chains) are compared as errors.Is does.
func errorsIs(cellUnwrap func() bool) func(err, target error) bool {
	return func(err, target error) bool {
		if isCellError(target) {
			panic(unsupportedPanic("errors.Is cannot compare with an error value of a type declared in a cell: the interpreter " +
				"gives compiled code a stand-in without the value's identity. Compare with a sentinel made by errors.New " +
				"(var ErrNotFound = errors.New(\"not found\")), or unwrap with errors.Unwrap and a type assertion in the cell"))
		}
		var is func(err error) bool
		is = func(err error) bool {
			for err != nil {
				if err == target {
					return true
				}
				if isCellError(err) {
					if cellUnwrap() {
						panic(unsupportedPanic("errors.Is cannot follow an error of a type declared in a cell whose type may " +
							"have Unwrap or Is methods: the interpreter hides them from compiled code. Check the chain in the " +
							"cell (call its Unwrap method, compare with ==)"))
					}
					return false
				}
				if x, ok := err.(interface{ Is(error) bool }); ok && x.Is(target) {
					return true
				}
				switch x := err.(type) {
				case interface{ Unwrap() error }:
					err = x.Unwrap()
				case interface{ Unwrap() []error }:
					for _, e := range x.Unwrap() {
						if is(e) {
							return true
						}
					}
					return false
				default:
					return false
				}
			}
			return false
		}
		if err == nil || target == nil {
			return err == target
		}
		return is(err)
	}
}

// isCellError reports whether err is yaegi's stand-in for an error of a
// cell type.
func isCellError(err error) bool {
	t := reflect.TypeOf(err)
	return t != nil && t.Kind() == reflect.Struct && t.PkgPath() == yaegiInterp && t.Name() == "_error"
}

// guardFmt puts the kernel's fmt and log print functions in place of the
// interpreter's (see fmtcheck.go), and has yaegi wrap an argument with an
// Error method, as it does one with String or Format, the error first.
func guardFmt(iv, bin reflect.Value, wrap func(pkg, name string, f func(old reflect.Value) any) reflect.Value) fmtFuncs {
	mapTypes := settable(iv.FieldByName("mapTypes"))
	if !mapTypes.IsValid() || mapTypes.Kind() != reflect.Map {
		return nil
	}
	// yaegi keys its lists of interfaces to wrap by the symbol's value, and
	// takes the first one a type implements: Go's fmt checks Formatter,
	// then error, then Stringer.
	wrappers := []reflect.Type{
		reflect.TypeOf((*fmt.Formatter)(nil)).Elem(),
		reflect.TypeOf((*error)(nil)).Elem(),
		reflect.TypeOf((*fmt.Stringer)(nil)).Elem(),
	}
	funcs := fmtFuncs{}
	add := func(pkg, name string, f func(old reflect.Value) any) {
		if nv := wrap(pkg, name, f); nv.IsValid() {
			mapTypes.SetMapIndex(reflect.ValueOf(nv), reflect.ValueOf(wrappers))
			funcs[nv] = pkg + "." + name
		}
	}
	type printFn = func(a ...any) (int, error)
	type printfFn = func(format string, a ...any) (int, error)
	for _, name := range []string{"Print", "Println"} {
		add("fmt", name, func(old reflect.Value) any {
			f := old.Interface().(printFn)
			name := "fmt." + name
			return func(a ...any) (int, error) { return f(fixFmtArgs(name, a)...) }
		})
	}
	add("fmt", "Printf", func(old reflect.Value) any {
		f := old.Interface().(printfFn)
		return func(format string, a ...any) (int, error) { return f(format, fixFmtArgsF("fmt.Printf", format, a)...) }
	})
	for _, name := range []string{"Sprint", "Sprintln"} {
		add("fmt", name, func(old reflect.Value) any {
			f := old.Interface().(func(a ...any) string)
			name := "fmt." + name
			return func(a ...any) string { return f(fixFmtArgs(name, a)...) }
		})
	}
	add("fmt", "Sprintf", func(old reflect.Value) any {
		f := old.Interface().(func(format string, a ...any) string)
		return func(format string, a ...any) string { return f(format, fixFmtArgsF("fmt.Sprintf", format, a)...) }
	})
	add("fmt", "Errorf", func(old reflect.Value) any {
		f := old.Interface().(func(format string, a ...any) error)
		return func(format string, a ...any) error { return f(format, fixErrorfArgs(format, a)...) }
	})
	for _, name := range []string{"Fprint", "Fprintln"} {
		add("fmt", name, func(old reflect.Value) any {
			f := old.Interface().(func(w io.Writer, a ...any) (int, error))
			name := "fmt." + name
			return func(w io.Writer, a ...any) (int, error) { return f(w, fixFmtArgs(name, a)...) }
		})
	}
	add("fmt", "Fprintf", func(old reflect.Value) any {
		f := old.Interface().(func(w io.Writer, format string, a ...any) (int, error))
		return func(w io.Writer, format string, a ...any) (int, error) {
			return f(w, format, fixFmtArgsF("fmt.Fprintf", format, a)...)
		}
	})
	for _, name := range []string{"Print", "Println", "Panic", "Panicln", "Fatal", "Fatalln"} {
		add("log", name, func(old reflect.Value) any {
			f := old.Interface().(func(a ...any))
			name := "log." + name
			return func(a ...any) { f(fixFmtArgs(name, a)...) }
		})
	}
	for _, name := range []string{"Printf", "Panicf", "Fatalf"} {
		add("log", name, func(old reflect.Value) any {
			f := old.Interface().(func(format string, a ...any))
			name := "log." + name
			return func(format string, a ...any) { f(format, fixFmtArgsF(name, format, a)...) }
		})
	}
	return funcs
}

// fixErrorfArgs is fixFmtArgs for Errorf, which keeps an error as an
// error, so that %w wraps it.
func fixErrorfArgs(format string, a []any) []any {
	out := fixFmtArgsF("fmt.Errorf", format, a)
	for i := range out {
		if fa, ok := out[i].(fmtArg); ok && fa.isErr {
			out[i] = a[i]
		}
	}
	return out
}

// checkFormat is gopeftk.CheckFormat (see passFmtCheck): it returns format,
// or panics when a verb would misname a cell struct type.
func checkFormat(format string, args ...any) string {
	typeVerb := strings.Contains(format, "%T") || strings.Contains(format, "%#v")
	fieldVerb := strings.Contains(format, "%+v")
	for _, a := range args {
		t := reflect.TypeOf(a)
		if typeVerb && cellStructs(t, false, map[reflect.Type]bool{}) {
			panic(unsupportedPanic("fmt's %T and %#v cannot name a struct type declared in a cell: the interpreter gives compiled code " +
				"an unnamed struct type (struct {…} instead of main.T). Print the fields you need, or use %v"))
		}
		if fieldVerb && cellStructs(t, true, map[reflect.Type]bool{}) {
			panic(unsupportedPanic("fmt's %+v would show the unexported fields of a struct type declared in a cell under the " +
				"interpreter's names (b as Xb). Use %v, or print the fields by name"))
		}
	}
	return format
}

// fixFmtArgsF is fixFmtArgs for a formatted print: a cell value with a
// String or Error method under %T or %#v (whose type fmt would misname) is
// refused. The static check (fmtcheck.go) catches literal formats first.
func fixFmtArgsF(fn, format string, a []any) []any {
	out := fixFmtArgs(fn, a)
	if strings.Contains(format, "%T") || strings.Contains(format, "%#v") {
		verbs := parseVerbs(format)
		for j, v := range out {
			if verbs != nil && (j >= len(verbs) || verbs[j] != 'T' && verbs[j] != '#') {
				continue
			}
			if _, ok := v.(fmtArg); ok {
				panic(unsupportedPanic(fn + "'s %T and %#v cannot name a type declared in a cell: the interpreter gives " +
					"compiled code its underlying type. Print the type's name yourself, or use %v"))
			}
		}
	}
	return out
}
