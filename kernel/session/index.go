package session

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"sort"
	"strconv"
	"strings"
)

// declKind is what a session name is.
type declKind int

const (
	kindVar declKind = iota
	kindConst
	kindFunc
	kindType
	kindPkg
)

func (k declKind) String() string {
	return [...]string{"var", "const", "func", "type", "package"}[k]
}

// declIndex records the names the cells declared, for completion, %who
// and inspection: yaegi has no API listing funcs and types.
type declIndex struct {
	names   map[string]declInfo
	funcs   map[string]funcOrigin // func name → the cell that declared it
	imports map[string]string     // local name → import path
}

type declInfo struct {
	kind declKind
	decl string // the declaration's source, bodies left out
	doc  string
}

func newDeclIndex() *declIndex {
	return &declIndex{names: map[string]declInfo{}, imports: map[string]string{}, funcs: map[string]funcOrigin{}}
}

func (x *declIndex) add(name string, k declKind, decl string) {
	if name == "_" || name == "" {
		return
	}
	x.names[name] = declInfo{kind: k, decl: decl}
}

func (x *declIndex) addImport(name, path string) {
	x.imports[name] = path
	x.names[name] = declInfo{kind: kindPkg, decl: "import " + strconv.Quote(path)}
}

// sorted returns the names of kind k (all kinds if k < 0), sorted.
func (x *declIndex) sorted(k declKind, all bool) []string {
	var ns []string
	for n, d := range x.names {
		if all || d.kind == k {
			ns = append(ns, n)
		}
	}
	sort.Strings(ns)
	return ns
}

// funcOrigin is where a func was declared, for tracebacks through funcs of
// earlier cells.
type funcOrigin struct {
	count int    // execution count of the cell
	code  string // the cell's source
}

// learn indexes what a run that ran declared; code and count are its cell's.
func (x *declIndex) learn(r run, code string, count int) {
	fset := token.NewFileSet()
	if r.decl {
		f, err := parser.ParseFile(fset, "", "package main\n"+r.src, parser.ParseComments)
		if err != nil {
			return
		}
		for _, d := range f.Decls {
			x.learnDecl(fset, d)
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				x.funcs[fd.Name.Name] = funcOrigin{count: count, code: code}
			}
		}
		return
	}
	f, err := parser.ParseFile(fset, "", "package main; func main() {"+r.src+"\n}", 0)
	if err != nil || len(f.Decls) == 0 {
		return
	}
	for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
		if ds, ok := st.(*ast.DeclStmt); ok {
			x.learnDecl(fset, ds.Decl)
			continue
		}
		as, ok := st.(*ast.AssignStmt)
		if !ok || as.Tok != token.DEFINE {
			continue
		}
		for _, l := range as.Lhs {
			if id, ok := l.(*ast.Ident); ok {
				x.add(id.Name, kindVar, id.Name+" := "+nodeText(fset, as.Rhs[0]))
			}
		}
	}
}

func (x *declIndex) learnDecl(fset *token.FileSet, d ast.Decl) {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv != nil {
			return
		}
		sig := *d
		sig.Body = nil
		sig.Doc = nil
		info := declInfo{kind: kindFunc, decl: nodeText(fset, &sig), doc: d.Doc.Text()}
		x.names[d.Name.Name] = info
	case *ast.GenDecl:
		for _, sp := range d.Specs {
			switch sp := sp.(type) {
			case *ast.ImportSpec:
				p, _ := strconv.Unquote(sp.Path.Value)
				name := p[strings.LastIndex(p, "/")+1:]
				if sp.Name != nil {
					name = sp.Name.Name
				}
				if name != "_" && name != "." {
					x.addImport(name, p)
				}
			case *ast.TypeSpec:
				x.names[sp.Name.Name] = declInfo{kind: kindType, decl: "type " + nodeText(fset, sp), doc: d.Doc.Text()}
			case *ast.ValueSpec:
				k := kindVar
				if d.Tok == token.CONST {
					k = kindConst
				}
				for _, n := range sp.Names {
					if n.Name != "_" {
						x.names[n.Name] = declInfo{kind: k, decl: d.Tok.String() + " " + nodeText(fset, sp), doc: d.Doc.Text()}
					}
				}
			}
		}
	}
}

func nodeText(fset *token.FileSet, n any) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		return ""
	}
	s := b.String()
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// dropKnownImports blanks the imports of a declaration run that the session
// has already made under the same name (yaegi rejects a second import of a
// package, and cells with imports are re-run all the time). Lines are kept.
func (s *Session) dropKnownImports(src string) string {
	if !strings.Contains(src, "import") {
		return src
	}
	const prefix = "package main;"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", prefix+src, parser.ImportsOnly)
	if err != nil {
		return src
	}
	file := fset.File(f.Pos())
	off := func(p token.Pos) int { return file.Offset(p) - len(prefix) }
	known := func(sp *ast.ImportSpec) bool {
		p, _ := strconv.Unquote(sp.Path.Value)
		name := p[strings.LastIndex(p, "/")+1:]
		if sp.Name != nil {
			name = sp.Name.Name
		}
		return s.index.imports[name] == p
	}
	b := []byte(src)
	blank := func(from, to int) {
		for i := from; i < to && i < len(b); i++ {
			if b[i] != '\n' {
				b[i] = ' '
			}
		}
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.IMPORT {
			continue
		}
		all := true
		for _, sp := range g.Specs {
			if !known(sp.(*ast.ImportSpec)) {
				all = false
			}
		}
		if all {
			blank(off(g.Pos()), off(g.End()))
			continue
		}
		for _, sp := range g.Specs {
			if known(sp.(*ast.ImportSpec)) {
				blank(off(sp.Pos()), off(sp.End()))
			}
		}
	}
	return string(b)
}
