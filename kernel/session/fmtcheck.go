package session

import (
	"fmt"
	"go/ast"
	"go/token"
	"reflect"
	"strconv"
	"strings"
)

// fmt and the String, Error and Format methods of cell types.
//
// yaegi v0.16.1 gives compiled code the underlying value of a cell type
// (Weekday as int, a struct type as an unnamed struct), with no methods.
// For fmt's print functions it wraps an argument whose static type has a
// String or Format method in a value that has it; everything else loses
// its methods. In Go, fmt also calls the methods of values inside slices,
// maps, arrays, struct fields and interfaces, prefers Error to String,
// calls String only for %v %s %q %x %X, and only when the value's method
// set has it (not for a T whose String has a pointer receiver). So:
//
//   - The kernel's fmt and log print functions (installed by guardStdlib)
//     take yaegi's wrapper apart: String and Error apply to the verbs Go
//     applies them to, and other verbs (%d) format the underlying value.
//     yaegi is also told to wrap error types, so Error is found, and first.
//   - Before a compiled program runs, checkFmtCalls walks it: an argument
//     of a call to one of those functions whose static type holds a cell
//     type with String, Error or Format below the top (a []Weekday, a
//     struct field, a map key), or is a T whose method has a pointer
//     receiver, is refused with an Unsupported error that says what to
//     write instead.
//   - At run time an argument that holds an interpreter value of a cell
//     type with methods inside an interface (a []any holding a Weekday) is
//     refused too: the static types cannot show it.

// methodType is what fmt could call on a cell type.
type methodType struct {
	stringer, errorer, formatter bool
	ptrOnly                      bool // each of those has a pointer receiver
	name                         string
}

// fmtMethodTypes returns the cell types with String, Error or Format
// methods, by name, from the stored declarations.
func (s *Session) fmtMethodTypes() map[string]*methodType {
	if s.fmtTypesN == len(s.decls) && s.fmtTypes != nil {
		return s.fmtTypes
	}
	out := map[string]*methodType{}
	valueRecv := map[string]bool{}
	for _, d := range s.decls {
		if len(d.names) != 1 || !strings.Contains(d.names[0], ".") {
			continue
		}
		tn, m, _ := strings.Cut(d.names[0], ".")
		if m != "String" && m != "Error" && m != "Format" {
			continue
		}
		mt := out[tn]
		if mt == nil {
			mt = &methodType{name: tn}
			out[tn] = mt
		}
		switch m {
		case "String":
			mt.stringer = true
		case "Error":
			mt.errorer = true
		case "Format":
			mt.formatter = true
		}
		if !pointerReceiver(d.src) {
			valueRecv[tn] = true
		}
	}
	for tn, mt := range out {
		mt.ptrOnly = !valueRecv[tn]
	}
	s.fmtTypes, s.fmtTypesN = out, len(s.decls)
	return out
}

// pointerReceiver reports whether the method declared by src has a
// pointer receiver.
func pointerReceiver(src string) bool {
	pr, ok := parseRun(src, true)
	if !ok || len(pr.file.Decls) == 0 {
		return false
	}
	fd, ok := pr.file.Decls[0].(*ast.FuncDecl)
	if !ok || fd.Recv == nil || len(fd.Recv.List) != 1 {
		return false
	}
	_, ptr := fd.Recv.List[0].Type.(*ast.StarExpr)
	return ptr
}

// fmtFuncs are the kernel's print functions (guardStdlib), by the
// reflect.Value yaegi calls.
type fmtFuncs map[reflect.Value]string

// checkFmtCalls refuses a program that passes fmt a cell type whose
// methods fmt would call in Go but cannot reach through the interpreter.
func (s *Session) checkFmtCalls(prog any) error {
	if len(s.fmtFuncs) == 0 {
		return nil
	}
	types := s.fmtMethodTypes()
	root := reflect.ValueOf(prog)
	if root.Kind() != reflect.Pointer || root.IsNil() {
		return nil
	}
	root = root.Elem().FieldByName("root")
	var err error
	seen := map[uintptr]bool{}
	var walk func(n reflect.Value)
	walk = func(n reflect.Value) {
		if err != nil || !n.IsValid() || n.IsNil() || seen[n.Pointer()] {
			return
		}
		seen[n.Pointer()] = true
		nv := n.Elem()
		kids := nv.FieldByName("child")
		if kids.Len() > 0 {
			if name, ok := s.fmtCallee(kids.Index(0)); ok {
				verbs, fi := formatVerbs(name, kids)
				for i := 1; i < kids.Len() && err == nil; i++ {
					verb := rune(0) // Print and Println: %v
					if fi > 0 {
						verb = '?' // unknown: a format that is not a literal
						if i <= fi {
							continue
						}
						if verbs != nil {
							verb = 'v' // an extra argument: %!(EXTRA T=…) shows its value
							if j := i - fi - 1; j < len(verbs) {
								verb = verbs[j]
							}
						}
					}
					err = fmtArgCheck(name, kids.Index(i), verb, types, s.it.FileSet())
				}
			}
		}
		for i := 0; i < kids.Len(); i++ {
			walk(kids.Index(i))
		}
	}
	walk(root)
	return err
}

// fmtCallee reports whether node n is one of the print functions.
func (s *Session) fmtCallee(n reflect.Value) (string, bool) {
	if n.IsNil() {
		return "", false
	}
	rv := settable(n.Elem().FieldByName("rval"))
	if !rv.IsValid() {
		return "", false
	}
	v := rv.Interface().(reflect.Value)
	if !v.IsValid() || v.Kind() != reflect.Func {
		return "", false
	}
	name, ok := s.fmtFuncs[v]
	return name, ok
}

// fmtArgCheck checks the static type of argument node n of a call to fn.
func fmtArgCheck(fn string, n reflect.Value, verb rune, types map[string]*methodType, fset *token.FileSet) error {
	if n.IsNil() {
		return nil
	}
	t := n.Elem().FieldByName("typ")
	if verb == 'T' || verb == '#' {
		if name := cellNamedType(t, verb == '#'); name != "" {
			at := 0
			if p := token.Pos(n.Elem().FieldByName("pos").Int()); p.IsValid() {
				at = fset.Position(p).Line - 1
			}
			v := "%T"
			if verb == '#' {
				v = "%#v"
			}
			return unsupportedError{line: at, msg: fmt.Sprintf("%s with %s cannot name the type %s declared in a cell: the "+
				"interpreter gives compiled code its underlying type (main.%s would show as its underlying type). Print the "+
				"type's name yourself, or use %%v", fn, v, name, name)}
		}
	}
	var bad *methodType
	var nested, rawStruct bool
	var walk func(t reflect.Value, depth int, viaPtr bool, seen map[uintptr]bool)
	walk = func(t reflect.Value, depth int, viaPtr bool, seen map[uintptr]bool) {
		if bad != nil || !t.IsValid() || t.IsNil() || seen[t.Pointer()] {
			return
		}
		seen[t.Pointer()] = true
		tv := t.Elem()
		if name := tv.FieldByName("name").String(); name != "" {
			if mt := types[name]; mt != nil && tv.FieldByName("path").String() == "main" {
				if depth > 0 || mt.ptrOnly && !viaPtr {
					bad, nested = mt, depth > 0
					return
				}
				if !viaPtr && !methodVerb(verb) && underlyingStruct(tv) {
					bad, rawStruct = mt, true
					return
				}
			}
		}
		cat := tv.FieldByName("cat").Uint()
		if cat == funcCat || cat == interfaceCat {
			return // not printed through; a value in an interface is checked at run time
		}
		if cat == ptrCat && depth == 0 {
			// fmt prints &{…} for a pointer at the top, with *T's methods
			walk(tv.FieldByName("val"), 0, true, seen)
			return
		}
		walk(tv.FieldByName("val"), depth+1, false, seen)
		walk(tv.FieldByName("key"), depth+1, false, seen)
		fs := tv.FieldByName("field")
		for i := 0; i < fs.Len(); i++ {
			walk(fs.Index(i).FieldByName("typ"), depth+1, false, seen)
		}
	}
	walk(t, 0, false, map[uintptr]bool{})
	if bad == nil {
		return nil
	}
	what := "String"
	switch {
	case bad.formatter:
		what = "Format"
	case bad.errorer:
		what = "Error"
	}
	at := 0
	if p := token.Pos(n.Elem().FieldByName("pos").Int()); p.IsValid() {
		at = fset.Position(p).Line - 1 // the compiled source starts with a newline per line before the run (pad)
	}
	if rawStruct {
		return unsupportedError{line: at, msg: fmt.Sprintf("%s cannot format a value of type %s with a verb that does not call its %s "+
			"method (%s): the interpreter passes compiled code one field of the struct in its place. Print the fields "+
			"you need, or use %%v", fn, bad.name, what, verbName(verb))}
	}
	if nested {
		return unsupportedError{line: at, msg: fmt.Sprintf("%s would not call the %s method of %s for the %s values inside this argument: the interpreter "+
			"passes compiled code their underlying value, without methods (Go calls it for values in slices, arrays, maps, "+
			"struct fields and pointers too). Format them in the cell instead, e.g. call .%s() on each element in a loop",
			fn, what, bad.name, bad.name, what)}
	}
	return unsupportedError{line: at, msg: fmt.Sprintf("the interpreter's %s would call the %s method of a value of type %s, but the method has a pointer "+
		"receiver, so Go's fmt does not (the method set of %s lacks it; that of *%s has it). Pass a pointer (&x) to "+
		"use %s, or print the fields", fn, what, bad.name, bad.name, bad.name, what)}
}

// yaegi v0.16.1's type categories (interp/type.go's tcat) that the walk
// above tells apart. The semantics suite (kernel/testdata/semantics:
// stringer_fmt, stringer_pointer_receiver, fmt_cell_struct_refused) fails
// if one is wrong.
const (
	funcCat      = 16
	interfaceCat = 18
	linkedCat    = 24
	ptrCat       = 26
	structCat    = 30
)

// fmtArg is a cell value with a String or Error method, as the kernel's
// fmt functions pass it on: fmt calls Format, which applies the method for
// the verbs Go's fmt applies it to and formats the underlying value for
// the others.
type fmtArg struct {
	raw   any
	str   func() string
	isErr bool
}

func (a fmtArg) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v', 's', 'q', 'x', 'X':
		if verb == 'v' && f.Flag('#') {
			break
		}
		s, ok := a.call()
		if !ok {
			m := "String"
			if a.isErr {
				m = "Error"
			}
			fmt.Fprintf(f, "%%!%c(PANIC=%s method: %s)", verb, m, s)
			return
		}
		fmt.Fprintf(f, fmt.FormatString(f, verb), s)
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), a.raw)
}

// call runs the method; a panic in it gives ok false and the panic value.
func (a fmtArg) call() (s string, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s, ok = fmt.Sprint(r), false
		}
	}()
	return a.str(), true
}

// yaegi's wrapper types, by package path and name.
const (
	yaegiStdlib = "github.com/traefik/yaegi/stdlib"
	yaegiInterp = "github.com/traefik/yaegi/interp"
)

// fixFmtArgs replaces yaegi's method wrappers among args by fmtArgs, and
// refuses an interpreter value inside an interface (see above).
func fixFmtArgs(fn string, args []any) []any {
	var out []any
	for i, a := range args {
		v := reflect.ValueOf(a)
		if !v.IsValid() {
			continue
		}
		t := v.Type()
		var fa *fmtArg
		if t.Kind() == reflect.Struct && t.NumField() == 2 && t.Field(0).Name == "IValue" {
			switch {
			case t.PkgPath() == yaegiStdlib && t.Name() == "_fmt_Stringer":
				fa = &fmtArg{raw: v.Field(0).Interface(), str: v.Field(1).Interface().(func() string)}
			case t.PkgPath() == yaegiInterp && t.Name() == "_error":
				fa = &fmtArg{raw: v.Field(0).Interface(), str: v.Field(1).Interface().(func() string), isErr: true}
			}
		}
		if fa != nil && fa.str != nil {
			if out == nil {
				out = append([]any(nil), args...)
			}
			out[i] = *fa
			continue
		}
		if hidesInterpValue(v, 0, map[reflect.Type]bool{}) {
			panic(unsupportedPanic(fn + " was given a value of a type declared in a cell, with methods, inside an interface " +
				"(a []any, a map of any, an any field): the interpreter passes it on as its own internal value, which fmt " +
				"would print as pointers. Print it directly, or convert it to a string first (x.String(), fmt.Sprint(x))"))
		}
	}
	if out == nil {
		return args
	}
	return out
}

// hidesInterpValue reports whether v holds one of yaegi's internal values
// (interp.valueInterface) below the top. It looks into interfaces, slices,
// arrays, maps, struct fields and pointers, up to a bounded number of
// elements.
func hidesInterpValue(v reflect.Value, depth int, clean map[reflect.Type]bool) bool {
	if !v.IsValid() || depth > 8 {
		return false
	}
	t := v.Type()
	if t.PkgPath() == yaegiInterp && t.Name() == "valueInterface" {
		return true
	}
	if clean[t] {
		return false
	}
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return false
		}
		return hidesInterpValue(v.Elem(), depth+1, clean)
	case reflect.Slice, reflect.Array:
		if !mayHold(t, map[reflect.Type]bool{}) {
			clean[t] = true
			return false
		}
		for i := 0; i < v.Len() && i < 4096; i++ {
			if hidesInterpValue(v.Index(i), depth+1, clean) {
				return true
			}
		}
	case reflect.Map:
		if !mayHold(t, map[reflect.Type]bool{}) {
			clean[t] = true
			return false
		}
		it := v.MapRange()
		for n := 0; it.Next() && n < 4096; n++ {
			if hidesInterpValue(it.Key(), depth+1, clean) || hidesInterpValue(it.Value(), depth+1, clean) {
				return true
			}
		}
	case reflect.Struct:
		if !mayHold(t, map[reflect.Type]bool{}) {
			clean[t] = true
			return false
		}
		for i := 0; i < v.NumField(); i++ {
			if hidesInterpValue(v.Field(i), depth+1, clean) {
				return true
			}
		}
	}
	return false
}

// mayHold reports whether a value of type t can hold an interface below
// it (only interfaces hide interpreter values).
func mayHold(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
		return mayHold(t.Elem(), seen)
	case reflect.Map:
		return mayHold(t.Key(), seen) || mayHold(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if mayHold(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// methodVerb reports whether fmt calls String or Error for verb (0 stands
// for Print's %v).
func methodVerb(verb rune) bool {
	switch verb {
	case 0, 'v', 's', 'q', 'x', 'X', 'w':
		return true
	}
	return false
}

func verbName(verb rune) string {
	if verb == '?' {
		return "the format is not a string literal, so the kernel cannot tell"
	}
	return "%" + string(verb)
}

// underlyingStruct reports whether itype tv is a struct type, through
// named types.
func underlyingStruct(tv reflect.Value) bool {
	for i := 0; i < 8; i++ {
		switch tv.FieldByName("cat").Uint() {
		case structCat:
			return true
		case linkedCat:
			v := tv.FieldByName("val")
			if v.IsNil() {
				return false
			}
			tv = v.Elem()
			continue
		}
		return false
	}
	return false
}

// formatVerbs returns the verbs of a formatted print call's literal format
// string, one per argument it consumes (a * width or precision consumes an
// int: 'd'), and the index among the call node's children of the format;
// fi is 0 for Print and Println. verbs is nil when the format is not a
// string literal or uses explicit argument indexes.
func formatVerbs(fn string, kids reflect.Value) (verbs []rune, fi int) {
	switch fn {
	case "fmt.Printf", "fmt.Sprintf", "fmt.Errorf", "log.Printf", "log.Panicf", "log.Fatalf":
		fi = 1
	case "fmt.Fprintf":
		fi = 2
	default:
		return nil, 0
	}
	if kids.Len() <= fi || kids.Index(fi).IsNil() {
		return nil, fi
	}
	// a string literal's node keeps its source text in ident
	fn0 := kids.Index(fi).Elem()
	if k := fn0.FieldByName("child"); k.Len() >= 2 && !k.Index(0).IsNil() && !k.Index(1).IsNil() &&
		calleeName(k.Index(0).Elem()) == "CheckFormat" {
		fn0 = k.Index(1).Elem() // gopeftk.CheckFormat("…", …), see passFmtCheck
	}
	lit := fn0.FieldByName("ident").String()
	if len(lit) < 2 || lit[0] != '"' && lit[0] != '`' {
		return nil, fi
	}
	format, err := strconv.Unquote(lit)
	if err != nil {
		return nil, fi
	}
	return parseVerbs(format), fi
}

// cellUnwrap reports whether a cell declared an Unwrap or Is method.
func (s *Session) cellUnwrap() bool {
	for _, d := range s.decls {
		for _, n := range d.names {
			if strings.HasSuffix(n, ".Unwrap") || strings.HasSuffix(n, ".Is") {
				return true
			}
		}
	}
	return false
}

// cellNamedType returns the name of a type declared in a cell within the
// static type t (an itype), or "". With valueOK, a named type at the top
// whose underlying type is not a struct is allowed (%#v prints its value
// alone, as Go does).
func cellNamedType(t reflect.Value, valueOK bool) string {
	found := ""
	seen := map[uintptr]bool{}
	var walk func(t reflect.Value, depth int)
	walk = func(t reflect.Value, depth int) {
		if found != "" || !t.IsValid() || t.IsNil() || seen[t.Pointer()] {
			return
		}
		seen[t.Pointer()] = true
		tv := t.Elem()
		if name := tv.FieldByName("name").String(); name != "" && tv.FieldByName("path").String() == "main" {
			if !(valueOK && depth == 0 && !underlyingStruct(tv)) {
				found = name
				return
			}
		}
		cat := tv.FieldByName("cat").Uint()
		if cat == funcCat || cat == interfaceCat {
			return
		}
		walk(tv.FieldByName("val"), depth+1)
		walk(tv.FieldByName("key"), depth+1)
		fs := tv.FieldByName("field")
		for i := 0; i < fs.Len(); i++ {
			walk(fs.Index(i).FieldByName("typ"), depth+1)
		}
	}
	walk(t, 0)
	return found
}

// calleeName is the name a call node's callee ends with: f, or pkg.f (a
// selector node, whose last child is the name).
func calleeName(n reflect.Value) string {
	if id := n.FieldByName("ident").String(); id != "" {
		return id
	}
	if k := n.FieldByName("child"); k.Len() > 0 && !k.Index(k.Len()-1).IsNil() {
		return k.Index(k.Len() - 1).Elem().FieldByName("ident").String()
	}
	return ""
}

// parseVerbs returns the verbs of format, one per argument it consumes (a
// * width or precision consumes an int: 'd'; %#v is '#'), or nil if it
// uses explicit argument indexes.
func parseVerbs(format string) []rune {
	verbs := []rune{}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		sharp := false
		for i < len(format) && strings.IndexByte("+-# 0", format[i]) >= 0 {
			sharp = sharp || format[i] == '#'
			i++
		}
		for i < len(format) && (format[i] >= '0' && format[i] <= '9' || format[i] == '*' || format[i] == '.' || format[i] == '[') {
			switch format[i] {
			case '*':
				verbs = append(verbs, 'd')
			case '[':
				return nil
			}
			i++
		}
		if i >= len(format) {
			break
		}
		if format[i] == '%' {
			continue
		}
		r := rune(format[i])
		if r >= 0x80 {
			r = '?'
		}
		if r == 'v' && sharp {
			r = '#' // %#v: Go syntax, with type names
		}
		verbs = append(verbs, r)
	}
	return verbs
}
