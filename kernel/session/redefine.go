package session

import (
	"context"
	"fmt"
	"go/ast"
	"go/token"
	"reflect"
	"strings"

	"github.com/traefik/yaegi/interp"
)

// Redefinitions. A notebook user edits a cell and runs it again, so a name
// a cell declares may already exist. yaegi v0.16.1 compiles each call to
// the function it names at the time, and keeps a type's first definition
// when it is declared again (`type T struct{ A [11]int }` then `[22]int`:
// T{}.A still has 11 elements). So:
//
//   - before a run that declares a type that exists, the old type's symbol
//     is removed from the interpreter's package scope (a reflect write into
//     yaegi's scope; nothing else of yaegi is touched), so the new
//     declaration takes effect;
//   - after the run, every func, method, type and const declared in an
//     earlier cell that uses a redeclared name is compiled again from its
//     source, in declaration order, until no more names change (a func
//     that calls a redefined func, then its own callers, a method of a
//     redefined type). One that no longer compiles keeps its old code and
//     the cell says so on stderr.
//
// Values made before the change keep their old type; a closure stored in
// a variable keeps the code it was made with (as in Go, re-run its cell).

// storedDecl is a top-level func, method, type or const declaration of an
// earlier cell, as it was compiled.
type storedDecl struct {
	names []string // what it declares: "f", "T", or "T.M" for a method
	src   string   // its prepared source
	line  int      // the cell line of its first byte
	count int      // the execution count of its cell
	uses  map[string]bool
	types []string // the type names it declares
}

// redefinition is what a run of declarations is about to redeclare.
type redefinition struct {
	names map[string]bool // names the run declares that existed before
	fresh map[string]bool // stored declarations already compiled again before the run
}

// declsOf parses a run of declarations into stored declarations.
func declsOf(src string) []storedDecl {
	pr, ok := parseRun(src, true)
	if !ok {
		return nil
	}
	var out []storedDecl
	for _, d := range pr.file.Decls {
		sd := storedDecl{src: src[pr.off(d.Pos()):pr.off(d.End())], line: pr.line(d.Pos()), uses: map[string]bool{}}
		switch x := d.(type) {
		case *ast.FuncDecl:
			name := x.Name.Name
			if x.Recv != nil && len(x.Recv.List) == 1 {
				name = recvName(x.Recv.List[0].Type) + "." + name
			}
			sd.names = []string{name}
		case *ast.GenDecl:
			if x.Tok != token.TYPE && x.Tok != token.CONST && x.Tok != token.VAR {
				continue
			}
			for _, spec := range x.Specs {
				switch sp := spec.(type) {
				case *ast.TypeSpec:
					sd.names = append(sd.names, sp.Name.Name)
					sd.types = append(sd.types, sp.Name.Name)
				case *ast.ValueSpec:
					for _, n := range sp.Names {
						sd.names = append(sd.names, n.Name)
					}
				}
			}
			if x.Tok == token.VAR {
				sd.src = "" // redeclared, never compiled again (its initializer would run again)
			}
		}
		ast.Inspect(d, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				sd.uses[id.Name] = true
			}
			return true
		})
		out = append(out, sd)
	}
	return out
}

// recvName is the base type name of a method receiver.
func recvName(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return "?"
		}
	}
}

// beforeDecls prepares the interpreter for a run of declarations: the
// types it redeclares are removed first.
func (s *Session) beforeDecls(ctx context.Context, src string, c *cell) redefinition {
	rd := redefinition{names: map[string]bool{}, fresh: map[string]bool{}}
	run := declsOf(src)
	s.redeclareMethods(ctx, run, &rd, c)
	for _, d := range run {
		for _, n := range d.names {
			base := n
			if i := strings.IndexByte(n, '.'); i >= 0 {
				continue // a method: replaced in place by yaegi
			} else if _, ok := s.index.names[base]; ok {
				rd.names[base] = true
			}
		}
		for _, t := range d.types {
			if rd.names[t] {
				s.dropSymbol(t)
			}
		}
	}
	return rd
}

// redeclareMethods handles a run that declares again a method of an
// earlier cell: yaegi v0.16.1 keeps the first body of a method, so the
// receiver type is declared again from its stored source with its other
// stored methods, and the run then adds its methods to the new type.
func (s *Session) redeclareMethods(ctx context.Context, run []storedDecl, rd *redefinition, c *cell) {
	declared := map[string]bool{}
	for _, d := range run {
		for _, n := range d.names {
			declared[n] = true
		}
	}
	types := map[string]bool{}
	for _, d := range s.decls {
		for _, n := range d.names {
			if i := strings.IndexByte(n, '.'); i >= 0 && declared[n] {
				types[n[:i]] = true
			}
		}
	}
	for t := range types {
		if declared[t] {
			continue // the run declares the type too
		}
		var typeDecl *storedDecl
		var methods []*storedDecl
		for i := range s.decls {
			d := &s.decls[i]
			for _, n := range d.names {
				if n == t && len(d.types) > 0 {
					typeDecl = d
				} else if strings.HasPrefix(n, t+".") && !declared[n] {
					methods = append(methods, d)
				}
			}
		}
		if typeDecl == nil || len(typeDecl.names) != 1 {
			continue
		}
		s.dropSymbol(t)
		for _, d := range append([]*storedDecl{typeDecl}, methods...) {
			if _, err := s.evalSafe(ctx, pad(d.line)+d.src); err != nil {
				c.out.add("stderr", fmt.Sprintf("warning: %s (declared in cell [%d]) did not compile again: %s\n",
					strings.Join(d.names, ", "), d.count, fixPositions(err.Error())))
			}
			for _, n := range d.names {
				rd.fresh[n] = true
			}
		}
		rd.names[t] = true
	}
}

// afterDecls records the run's declarations and compiles again the earlier
// ones that use what it redeclared.
func (s *Session) afterDecls(ctx context.Context, rd redefinition, src string, line int, c *cell) {
	fresh := declsOf(src)
	declared := map[string]bool{}
	for i := range fresh {
		fresh[i].line += line - 1
		fresh[i].count = c.count
		for _, n := range fresh[i].names {
			declared[n] = true
		}
	}
	// Earlier declarations of the same names are superseded.
	kept := s.decls[:0]
	for _, d := range s.decls {
		if !overlaps(d.names, declared) {
			kept = append(kept, d)
		}
	}
	old := len(kept)
	s.decls = append(kept, fresh...)
	changed := map[string]bool{}
	for n := range rd.names {
		changed[n] = true
	}
	// Methods redeclared change what calls through the method name mean.
	for n := range declared {
		if i := strings.IndexByte(n, '.'); i >= 0 {
			changed[n[i+1:]] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	done := map[int]bool{}
	for more := true; more; {
		more = false
		for i := 0; i < old; i++ {
			d := &s.decls[i]
			if done[i] || d.src == "" || overlaps(d.names, rd.fresh) || !usesAny(d.uses, changed) {
				continue
			}
			done[i] = true
			more = true
			for _, t := range d.types {
				s.dropSymbol(t)
			}
			if _, err := s.evalSafe(ctx, pad(d.line)+d.src); err != nil {
				c.out.add("stderr", fmt.Sprintf("warning: %s (declared in cell [%d]) uses a name this cell redefined and no longer compiles: %s; "+
					"it keeps its old code until its cell is run again\n", strings.Join(d.names, ", "), d.count, fixPositions(err.Error())))
				continue
			}
			for _, n := range d.names {
				if i := strings.IndexByte(n, '.'); i >= 0 {
					n = n[i+1:]
				}
				changed[n] = true
			}
		}
	}
}

func overlaps(names []string, set map[string]bool) bool {
	for _, n := range names {
		if set[n] {
			return true
		}
	}
	return false
}

func usesAny(uses, set map[string]bool) bool {
	for n := range set {
		if uses[n] {
			return true
		}
	}
	return false
}

// dropSymbol removes name from the interpreter's main package scope, so
// that a new declaration of it takes effect. It does nothing if yaegi's
// layout is not the expected one (another version).
func (s *Session) dropSymbol(name string) {
	scopes := reflect.ValueOf(s.it).Elem().FieldByName("scopes")
	if !scopes.IsValid() || scopes.Kind() != reflect.Map {
		return
	}
	sc := scopes.MapIndex(reflect.ValueOf("main"))
	if !sc.IsValid() || sc.Kind() != reflect.Pointer || sc.IsNil() {
		return
	}
	sym := settable(sc.Elem().FieldByName("sym"))
	if !sym.IsValid() || sym.Kind() != reflect.Map {
		return
	}
	sym.SetMapIndex(reflect.ValueOf(name), reflect.Value{})
}

// A program's main. yaegi v0.16.1 runs the package's main function after
// every program it executes, once one is declared (Program.init ends with
// it): a cell declaring func main() ran it again with every later cell,
// and so did a cell whose code starts with a func literal call
// (func() { … }()), which yaegi compiles as the body of a main. The
// program that declares main runs it, as go run would; later programs do
// not (yaegi bug 45 in kernel/kerneltest/README.md).

// mainNode returns the address of the node of the package's main, or 0.
func (s *Session) mainNode() uintptr {
	n := s.mainSym()
	if !n.IsValid() || n.IsNil() {
		return 0
	}
	return n.Pointer()
}

// mainSym returns the node field of main's symbol in the main scope, or
// the zero Value.
func (s *Session) mainSym() reflect.Value {
	scopes := reflect.ValueOf(s.it).Elem().FieldByName("scopes")
	if !scopes.IsValid() || scopes.Kind() != reflect.Map {
		return reflect.Value{}
	}
	sc := scopes.MapIndex(reflect.ValueOf("main"))
	if !sc.IsValid() || sc.Kind() != reflect.Pointer || sc.IsNil() {
		return reflect.Value{}
	}
	sym := sc.Elem().FieldByName("sym")
	if !sym.IsValid() || sym.Kind() != reflect.Map {
		return reflect.Value{}
	}
	m := sym.MapIndex(reflect.ValueOf("main"))
	if !m.IsValid() || m.IsNil() {
		return reflect.Value{}
	}
	return m.Elem().FieldByName("node")
}

// stripMain removes the main function's node from the nodes prog runs
// after its own code.
func (s *Session) stripMain(prog *interp.Program) {
	mainNode := s.mainSym()
	init := settable(reflect.ValueOf(prog).Elem().FieldByName("init"))
	if !init.IsValid() || init.Kind() != reflect.Slice || !mainNode.IsValid() || mainNode.IsNil() {
		return
	}
	kept := reflect.MakeSlice(init.Type(), 0, init.Len())
	for i := 0; i < init.Len(); i++ {
		if n := init.Index(i); n.Pointer() != mainNode.Pointer() {
			kept = reflect.Append(kept, n)
		}
	}
	init.Set(kept)
}
