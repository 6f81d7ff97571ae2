package session

import (
	"encoding/json"
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
func guardStdlib(it *interp.Interpreter) {
	bin := settable(reflect.ValueOf(it).Elem().FieldByName("binPkg"))
	if !bin.IsValid() || bin.Kind() != reflect.Map {
		return
	}
	wrap := func(pkg, name string, f func(old reflect.Value) any) {
		syms := bin.MapIndex(reflect.ValueOf(pkg))
		if !syms.IsValid() {
			return
		}
		old := syms.MapIndex(reflect.ValueOf(name))
		if !old.IsValid() {
			return
		}
		old = old.Interface().(reflect.Value)
		syms.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(reflect.ValueOf(f(old))))
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
