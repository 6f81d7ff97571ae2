package session

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
)

// A panic in a goroutine that interpreted code starts would end the
// process: yaegi runs `go f(x)` as a Go goroutine and re-raises the panic
// after its deferred calls. rewriteGo turns every go statement of a run into
//
//	go func() { defer func() { if r := recover(); r != nil { gopeftk.GoPanic(r) } }(); f(x) }()
//
// on the same lines, so the panic is reported on the cell's stderr and the
// kernel goes on. The call's arguments are then evaluated when the goroutine
// starts rather than before (a difference only for arguments that change
// right after the go statement).

const goGuard = "defer func() { if __r := recover(); __r != nil { gopeftk.GoPanic(__r) } }(); "

// rewriteGo guards the go statements of one run (declarations or
// statements, as given to yaegi).
func rewriteGo(src string) string {
	if !strings.Contains(src, "go") {
		return src
	}
	for pass := 0; pass < 100; pass++ {
		stmt, off := lastUnguardedGo(src)
		if stmt == nil {
			return src
		}
		callStart := off(stmt.Call.Pos())
		callEnd := off(stmt.Call.End())
		src = src[:callStart] + "func() { " + goGuard + src[callStart:callEnd] + " }()" + src[callEnd:]
	}
	return src
}

// lastUnguardedGo finds the go statement that starts last in src and is not
// guarded yet, and a function from positions to offsets in src.
func lastUnguardedGo(src string) (*ast.GoStmt, func(token.Pos) int) {
	prefixes := []string{"package main;", "package main; func main() {"}
	for _, prefix := range prefixes {
		full := prefix + src
		if prefix != prefixes[0] {
			full += "\n}"
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "", full, 0)
		if err != nil {
			continue
		}
		file := fset.File(f.Pos())
		var found *ast.GoStmt
		ast.Inspect(f, func(n ast.Node) bool {
			g, ok := n.(*ast.GoStmt)
			if !ok || guarded(g) {
				return true
			}
			if found == nil || g.Pos() > found.Pos() {
				found = g
			}
			return true
		})
		return found, func(p token.Pos) int { return file.Offset(p) - len(prefix) }
	}
	return nil, nil
}

// guarded reports whether g was rewritten already.
func guarded(g *ast.GoStmt) bool {
	lit, ok := g.Call.Fun.(*ast.FuncLit)
	if !ok || len(lit.Body.List) == 0 {
		return false
	}
	d, ok := lit.Body.List[0].(*ast.DeferStmt)
	if !ok {
		return false
	}
	inner, ok := d.Call.Fun.(*ast.FuncLit)
	if !ok || len(inner.Body.List) == 0 {
		return false
	}
	is, ok := inner.Body.List[0].(*ast.IfStmt)
	if !ok || is.Init == nil {
		return false
	}
	as, ok := is.Init.(*ast.AssignStmt)
	if !ok || len(as.Lhs) != 1 {
		return false
	}
	id, ok := as.Lhs[0].(*ast.Ident)
	return ok && id.Name == "__r"
}
