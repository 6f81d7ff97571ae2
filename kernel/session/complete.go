package session

import (
	"fmt"
	"go/parser"
	"go/scanner"
	"go/token"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/gopeft/gopeft/kernel/symbols"
	"github.com/traefik/yaegi/stdlib"
)

var keywords = []string{
	"break", "case", "chan", "const", "continue", "default", "defer", "else",
	"fallthrough", "for", "func", "go", "goto", "if", "import", "interface",
	"map", "package", "range", "return", "select", "struct", "switch", "type", "var",
}

var builtins = []string{
	"append", "bool", "byte", "cap", "clear", "close", "complex", "complex128", "complex64",
	"copy", "delete", "error", "false", "float32", "float64", "imag", "int", "int16",
	"int32", "int64", "int8", "iota", "len", "make", "max", "min", "new", "nil", "panic",
	"print", "println", "real", "recover", "rune", "string", "true", "uint", "uint16",
	"uint32", "uint64", "uint8", "uintptr", "any",
}

var (
	membersOnce sync.Once
	members     map[string][]string // import path → exported names, sorted
)

// packageMembers lists the exported names of a compiled package, from the
// symbol tables the interpreter uses.
func packageMembers(importPath string) []string {
	membersOnce.Do(func() {
		members = map[string][]string{}
		for _, tab := range []map[string]map[string]reflect.Value{stdlib.Symbols, symbols.Symbols} {
			for key, syms := range tab {
				p := path.Dir(key)
				var ns []string
				for n := range syms {
					if token.IsExported(n) {
						ns = append(ns, n)
					}
				}
				sort.Strings(ns)
				members[p] = ns
			}
		}
	})
	return members[importPath]
}

// uniquePackage returns the import path of the only importable package
// named name ("stat" → gonum.org/v1/gonum/stat), if there is exactly one.
func uniquePackage(name string) (string, bool) {
	packageMembers("") // fills members
	found := ""
	for p := range members {
		if path.Base(p) == name && !strings.Contains(p, "internal") {
			if found != "" {
				return "", false
			}
			found = p
		}
	}
	return found, found != ""
}

// byteOffset converts a cursor position in code points to a byte offset.
func byteOffset(code string, cursor int) int {
	if cursor < 0 {
		return 0
	}
	off := 0
	for i := 0; i < cursor && off < len(code); i++ {
		_, n := utf8.DecodeRuneInString(code[off:])
		off += n
	}
	return off
}

func isIdentRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// identAt returns the qualified identifier ("x", "pkg.Na", "v.Fi") that
// ends at byte offset off, and where it starts.
func identAt(code string, off int) (qual, ident string, start int) {
	start = off
	for start > 0 {
		r, n := utf8.DecodeLastRuneInString(code[:start])
		if !isIdentRune(r) {
			break
		}
		start -= n
	}
	ident = code[start:off]
	if start > 0 && code[start-1] == '.' {
		q := start - 1
		for q > 0 {
			r, n := utf8.DecodeLastRuneInString(code[:q])
			if !isIdentRune(r) {
				break
			}
			q -= n
		}
		qual = code[q : start-1]
	}
	return qual, ident, start
}

// Complete returns the completions of the identifier before cursorPos (in
// code points) and the range, in code points, that they replace: members of
// an imported package after `pkg.`, fields and methods after `v.`, and
// otherwise the session's names, imported packages, keywords and builtins.
func (s *Session) Complete(code string, cursorPos int) (matches []string, cursorStart, cursorEnd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := byteOffset(code, cursorPos)
	qual, ident, start := identAt(code, off)
	cursorStart = utf8.RuneCountInString(code[:start])
	cursorEnd = utf8.RuneCountInString(code[:off])
	if s.it == nil {
		return nil, cursorStart, cursorEnd
	}
	var cands []string
	if qual != "" {
		cands = s.memberNames(qual)
	} else {
		cands = append(cands, keywords...)
		cands = append(cands, builtins...)
		cands = append(cands, s.index.sorted(0, true)...)
		for n := range s.globals() {
			cands = append(cands, n)
		}
	}
	seen := map[string]bool{}
	for _, c := range cands {
		if strings.HasPrefix(c, ident) && !seen[c] && !strings.HasPrefix(c, "__") {
			seen[c] = true
			matches = append(matches, c)
		}
	}
	sort.Strings(matches)
	return matches, cursorStart, cursorEnd
}

// globals returns the interpreter's global variables, tolerating yaegi
// panics.
func (s *Session) globals() (g map[string]reflect.Value) {
	defer func() {
		if recover() != nil {
			g = nil
		}
	}()
	g = s.it.Globals()
	for n := range g {
		if strings.HasPrefix(n, "__") {
			delete(g, n) // the kernel's own (prepare.go)
		}
	}
	return g
}

// memberNames lists what can follow `qual.`: a package's exports, or a
// variable's fields and methods.
func (s *Session) memberNames(qual string) []string {
	if p, ok := s.index.imports[qual]; ok {
		return packageMembers(p)
	}
	if p, ok := uniquePackage(qual); ok {
		if _, isVar := s.globals()[qual]; !isVar {
			return packageMembers(p) // not imported yet: the cell will import it
		}
	}
	v, ok := s.globals()[qual]
	if !ok || !v.IsValid() {
		return nil
	}
	if v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	return fieldsAndMethods(v.Type())
}

func fieldsAndMethods(t reflect.Type) []string {
	var ns []string
	add := func(t reflect.Type) {
		for i := 0; i < t.NumMethod(); i++ {
			ns = append(ns, t.Method(i).Name)
		}
	}
	add(t)
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface {
		add(reflect.PointerTo(t))
	}
	st := t
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st.Kind() == reflect.Struct {
		for i := 0; i < st.NumField(); i++ {
			if f := st.Field(i); f.IsExported() {
				ns = append(ns, f.Name)
			}
		}
	}
	return ns
}

// Inspect returns the help for the name at (or just before) cursorPos:
// doc comment and declaration for packages compiled into the binary, the
// declaration for names the cells declared, the type and value of a
// variable.
func (s *Session) Inspect(code string, cursorPos, detailLevel int) (data map[string]any, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := byteOffset(code, cursorPos)
	// Extend to the end of the identifier under the cursor.
	for off < len(code) {
		r, n := utf8.DecodeRuneInString(code[off:])
		if !isIdentRune(r) {
			break
		}
		off += n
	}
	qual, ident, _ := identAt(code, off)
	if ident == "" || !unicode.IsLetter([]rune(ident)[0]) && ident[0] != '_' {
		// Inside a call's arguments: help for the function.
		if open := openParen(code, off-len(ident)); open >= 0 {
			qual, ident, _ = identAt(code, open)
		}
	}
	name := ident
	if qual != "" {
		name = qual + "." + ident
	}
	text, ok := s.helpText(name)
	if !ok {
		return nil, false
	}
	return map[string]any{"text/plain": text}, true
}

// openParen returns the offset of the innermost '(' still open at off on
// the same statement, or -1.
func openParen(code string, off int) int {
	depth := 0
	for i := off - 1; i >= 0; i-- {
		switch code[i] {
		case ')':
			depth++
		case '(':
			if depth == 0 {
				return i
			}
			depth--
		case '\n', ';', '{', '}':
			if depth == 0 {
				return -1
			}
		}
	}
	return -1
}

// helpText is the help for name ("x", "pkg.Name", "pkg.Type.Method",
// "pkg").
func (s *Session) helpText(name string) (string, bool) {
	if s.it == nil || name == "" {
		return "", false
	}
	parts := strings.Split(name, ".")
	if p, ok := s.index.imports[parts[0]]; ok {
		pd, ok := symbols.Docs()[p]
		if len(parts) == 1 {
			if !ok {
				return fmt.Sprintf("package %s // import %q", parts[0], p), true
			}
			return fmt.Sprintf("package %s // import %q\n\n%s", pd.Name, p, pd.Doc), true
		}
		member := strings.Join(parts[1:], ".")
		if ok {
			if e, ok := pd.Members[member]; ok {
				return formatEntry(e), true
			}
		}
		for _, m := range packageMembers(p) {
			if m == member {
				return fmt.Sprintf("%s.%s (no documentation compiled in for %s)", parts[0], member, p), true
			}
		}
		return "", false
	}
	if info, ok := s.index.names[parts[0]]; ok && len(parts) == 1 {
		text := info.decl
		if v, ok := s.globals()[parts[0]]; ok && v.IsValid() && v.CanInterface() && info.kind != kindFunc {
			text += fmt.Sprintf("\n\ntype:  %s\nvalue: %s", v.Type(), clipText(fmt.Sprintf("%+v", v.Interface()), 600))
		}
		if info.doc != "" {
			text += "\n\n" + info.doc
		}
		return text, true
	}
	if v, ok := s.globals()[parts[0]]; ok && v.IsValid() && len(parts) == 2 {
		// v.Method or v.Field of a variable of a compiled type.
		if text, ok := memberDoc(v, parts[1]); ok {
			return text, true
		}
	}
	if v, ok := s.globals()[parts[0]]; ok && v.IsValid() && v.CanInterface() && len(parts) == 1 {
		return fmt.Sprintf("%s %s = %s", parts[0], v.Type(), clipText(fmt.Sprintf("%+v", v.Interface()), 600)), true
	}
	for _, k := range keywords {
		if k == name {
			return fmt.Sprintf("%s is a Go keyword: see https://go.dev/ref/spec", k), true
		}
	}
	for _, b := range builtins {
		if b == name {
			return fmt.Sprintf("%s is predeclared in Go: see https://pkg.go.dev/builtin#%s", b, b), true
		}
	}
	return "", false
}

// memberDoc finds the documentation of a method of v's (compiled) type, or
// describes a field.
func memberDoc(v reflect.Value, member string) (string, bool) {
	if v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	t := v.Type()
	named := t
	if named.Kind() == reflect.Pointer {
		named = named.Elem()
	}
	if pd, ok := symbols.Docs()[named.PkgPath()]; ok && named.Name() != "" {
		if e, ok := pd.Members[named.Name()+"."+member]; ok {
			return formatEntry(e), true
		}
	}
	if named.Kind() == reflect.Struct {
		if f, ok := named.FieldByName(member); ok {
			return fmt.Sprintf("field %s %s of %s", f.Name, f.Type, t), true
		}
	}
	if m, ok := t.MethodByName(member); ok {
		return fmt.Sprintf("method %s of %s: %s", member, t, m.Type), true
	}
	return "", false
}

func formatEntry(e symbols.DocEntry) string {
	if e.Doc == "" {
		return e.Decl
	}
	return e.Decl + "\n\n" + e.Doc
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// help answers `name?` with a page payload, as IPython does.
func (s *Session) help(name string) Result {
	text, ok := s.helpText(name)
	if !ok {
		return errorResult("NameError", fmt.Sprintf("no help for %q: not a package, package member or session name", name), nil)
	}
	return Result{Payload: []map[string]any{{
		"source": "page",
		"data":   map[string]any{"text/plain": text},
		"start":  0,
	}}}
}

// IsComplete reports whether code is ready to run: "incomplete" (with the
// indent of the next line) while brackets or a raw string are open or the
// last line ends with an operator, "invalid" for a syntax error, else
// "complete".
func (s *Session) IsComplete(code string) (status, indent string) {
	trimmed := strings.TrimSpace(code)
	if trimmed == "" || strings.HasPrefix(trimmed, "%") {
		return "complete", ""
	}
	if _, ok := helpRequest(trimmed); ok {
		return "complete", ""
	}
	fset := token.NewFileSet()
	file := fset.AddFile("", -1, len(code))
	var errs scanner.ErrorList
	var sc scanner.Scanner
	sc.Init(file, []byte(code), func(pos token.Position, msg string) { errs.Add(pos, msg) }, 0)
	depth := 0
	var last token.Token
	for {
		_, tok, lit := sc.Scan()
		if tok == token.EOF {
			break
		}
		switch tok {
		case token.LPAREN, token.LBRACK, token.LBRACE:
			depth++
		case token.RPAREN, token.RBRACK, token.RBRACE:
			depth--
		}
		if !(tok == token.SEMICOLON && lit == "\n") {
			last = tok
		}
	}
	for _, e := range errs {
		if strings.Contains(e.Msg, "not terminated") {
			return "incomplete", ""
		}
	}
	if len(errs) > 0 {
		return "invalid", ""
	}
	if depth > 0 {
		return "incomplete", strings.Repeat("\t", depth)
	}
	if depth < 0 {
		return "invalid", ""
	}
	switch {
	case last.IsOperator() && last != token.RPAREN && last != token.RBRACK && last != token.RBRACE &&
		last != token.INC && last != token.DEC && last != token.SEMICOLON:
		return "incomplete", ""
	}
	runs, err := splitCell(code)
	if err != nil {
		return "invalid", ""
	}
	for _, r := range runs {
		src := "package main;" + r.src
		if !r.decl {
			src = "package main; func main() {" + r.src + "\n}"
		}
		if _, err := parser.ParseFile(token.NewFileSet(), "", src, 0); err != nil {
			return "invalid", ""
		}
	}
	return "complete", ""
}
