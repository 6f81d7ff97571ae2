package session

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"strings"
)

// How a cell is prepared before yaegi sees it, so that it means what it
// means in Go. yaegi v0.16.1 differs from Go in ways a notebook user meets
// in the first hour (kernel/kerneltest/README.md has a minimal reproduction
// of each); the kernel rewrites the cell's source where a rewrite gives Go's
// answer, and refuses with an Unsupported error where it cannot:
//
//   - make(T, n) sizes are checked before allocating (gopeftk.Len): one
//     allocation larger than memory would end the process, not panic.
//   - A three-clause for loop shares its variables between iterations, and
//     so does a range loop: closures, goroutines, defers and &i see the
//     last value, not the iteration's (Go 1.22 gives each iteration its own).
//     Each captured loop variable is copied at the top of the body
//     (`i := i`); a loop that also assigns its variable in the body is
//     refused (the copy would not carry the change to the next iteration).
//   - defer evaluates its arguments when the deferred call runs, not at the
//     defer statement: the arguments are bound to fresh variables first.
//   - A panic in a goroutine would end the process: every go statement runs
//     its call under a recover that reports the panic on the cell's stderr,
//     with the arguments evaluated at the go statement as Go does.
//   - At the top level of a cell, a variable declared by the init statement
//     of an if, for or switch, or by := inside a loop body, overwrites a
//     session variable of the same name; and a top-level defer runs again at
//     the end of every later cell. So each top-level compound statement runs
//     inside a function literal (where scoping is Go's), and a defer that
//     belongs to the cell is appended to a session list and run when the
//     cell ends, last first, as Go runs main's.
//
// Every rewrite keeps the cell's line structure: inserted text has no
// newline, so positions in errors still name the cell's lines.

// unsupportedError is a construct the kernel refuses because the
// interpreter would run it differently from Go.
type unsupportedError struct {
	line int // line of the construct in the prepared source (1-based)
	msg  string
}

func (e unsupportedError) Error() string { return e.msg }

// preparer rewrites the runs of one session.
type preparer struct {
	isConst    func(name string) bool          // a session constant
	isPkg      func(name string) bool          // an imported package name
	isIntVar   func(name string) bool          // a session variable of an integer type
	isIndexed  func(name string) bool          // a session variable of a slice, array or string type
	isMethod   func(name string) bool          // a method name of a type a cell declared
	isType     func(name string) bool          // a type a cell declared
	callElem   func(call *ast.CallExpr) string // elemType of a call of compiled code's result
	elemType   func(name string) string        // Go syntax of the element type of a session slice, array or map ("" if none or unrenderable)
	runInts    map[string]bool                 // integer names of the whole run being prepared statement by statement
	runDefined map[string]bool                 // names that run declares
	runPtrs    map[string]bool                 // names that run declares with a pointer type
	runElem    map[string]string               // elemType for the names that run declares from calls of compiled code
	seq        int                             // numbers the temporaries, never reused in a session

	cellDefer bool // a run of the running cell registered a defer of the cell
}

// cellFn is the session variable a top-level compound statement runs in.
const cellFn = "__cellfn"

// cellDefers is the session variable that holds the running cell's defers,
// and endCellFn the function that runs them. (They stay in interpreted code:
// a closure that compiled code keeps is called by yaegi v0.16.1 with the
// variables of its enclosing frame as they are at the call, so a closure
// made in a loop would see the last iteration's.)
const (
	cellDefers   = "__defers"
	endCellFn    = "__endcell"
	deferPrelude = "var " + cellDefers + " []func()\n" +
		"func __rundefers(fs []func()) { if len(fs) == 0 { return }; defer __rundefers(fs[:len(fs)-1]); fs[len(fs)-1]() }\n" +
		"func " + endCellFn + "() { fs := " + cellDefers + "; " + cellDefers + " = nil; __rundefers(fs) }\n"
)

// prepare rewrites one run (declarations or statements) of a cell.
func (p *preparer) prepare(src string, decl bool) (string, error) {
	if strings.TrimSpace(src) == "" {
		return src, nil
	}
	// One parse tells which passes can apply: most cells need none, and
	// each pass that runs parses the source again (it changes between
	// passes).
	f, ok := scanFeatures(src, decl)
	if !ok {
		return src, nil // yaegi reports the syntax error
	}
	orig := src
	if f.make {
		src = p.passMake(src, decl)
	}
	if f.recover {
		src = passRecover(src, decl)
	}
	if f.typeSwitch {
		src = p.passTypeSwitch(src, decl)
	}
	src = p.passFmtCheck(src, decl)  // guarded by a string test
	src = passConstRepeat(src, decl) // guarded by a string test
	src = p.passBounds(src, decl)    // guarded by a string test
	src = p.passParallelAssign(src, decl)
	var err error
	if f.loop {
		src = p.passRangeInt(src, decl)
		if src, err = p.passLoopVars(src, decl); err != nil {
			return "", err
		}
		if f.goDefer {
			if err := checkDeferClosures(src, decl); err != nil {
				return "", err
			}
		}
	}
	if f.selector {
		if err := p.checkMethodValues(src, decl); err != nil {
			return "", err
		}
	}
	if f.goDefer {
		src = p.passGoDefer(src, decl)
	}
	if f.pointer || len(p.runPtrs) > 0 {
		src = p.passTypedNil(src, decl)
	}
	if !decl {
		if f.commaOK {
			if src, err = p.passCommaOK(src); err != nil {
				return "", err
			}
		}
		src = p.passIndexDefine(src, decl) // after passCommaOK's v := m[k]
		if f.topCompound || src != orig {
			if src, err = p.passTopLevel(src); err != nil {
				return "", err
			}
		}
	}
	return src, nil
}

// features are what one parse of a run found, for prepare to skip the
// passes that have nothing to do.
type features struct {
	make, recover, typeSwitch, loop, goDefer, selector, pointer bool
	commaOK, topCompound                                        bool // statement runs: at the top level
}

func scanFeatures(src string, decl bool) (features, bool) {
	var f features
	pr, ok := parseRun(src, decl)
	if !ok {
		return f, false
	}
	ast.Inspect(pr.file, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok {
				f.make = f.make || id.Name == "make" && len(x.Args) >= 2
				f.recover = f.recover || id.Name == "recover"
			}
		case *ast.TypeSwitchStmt:
			f.typeSwitch = true
		case *ast.ForStmt, *ast.RangeStmt:
			f.loop = true
		case *ast.GoStmt, *ast.DeferStmt:
			f.goDefer = true
		case *ast.SelectorExpr:
			f.selector = true
		case *ast.StarExpr:
			f.pointer = true
		}
		return true
	})
	for _, st := range pr.body {
		switch x := st.(type) {
		case *ast.AssignStmt:
			f.commaOK = f.commaOK || x.Tok == token.DEFINE && len(x.Lhs) == 2 && len(x.Rhs) == 1
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt, *ast.SwitchStmt, *ast.TypeSwitchStmt,
			*ast.SelectStmt, *ast.BlockStmt, *ast.LabeledStmt, *ast.GoStmt, *ast.DeferStmt:
			f.topCompound = true
		}
	}
	return f, true
}

// prepareExpr rewrites a cell's final expression (shown as its value): the
// rewrites of prepare that apply to an expression.
func (p *preparer) prepareExpr(src string) (string, error) {
	src = p.passMake(src, false)
	src = passRecover(src, false)
	src = p.passFmtCheck(src, false)
	if err := p.checkMethodValues(src, false); err != nil {
		return "", err
	}
	return src, nil
}

// parsed is a run parsed as Go source, with offsets mapped back to src.
type parsed struct {
	file   *ast.File
	tf     *token.File
	prefix int
	body   []ast.Stmt // the statements of a statement run
}

func parseRun(src string, decl bool) (*parsed, bool) {
	prefix := "package main;"
	full := prefix + src
	if !decl {
		prefix = "package main; func main() {"
		full = prefix + src + "\n}"
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", full, parser.SkipObjectResolution)
	if err != nil {
		return nil, false
	}
	p := &parsed{file: f, tf: fset.File(f.Pos()), prefix: len(prefix)}
	if !decl {
		if len(f.Decls) == 0 {
			return nil, false
		}
		fd, ok := f.Decls[len(f.Decls)-1].(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			return nil, false
		}
		p.body = fd.Body.List
	}
	return p, true
}

func (p *parsed) off(pos token.Pos) int { return p.tf.Offset(pos) - p.prefix }

// line is the 1-based line of pos in the run's source.
func (p *parsed) line(pos token.Pos) int {
	return p.tf.Line(pos) - p.tf.Line(p.tf.Pos(p.prefix)) + 1
}

// edit replaces src[off:off+del] by ins. Among edits at one offset, a
// smaller rank ends up first in the text.
type edit struct {
	off, del int
	ins      string
	rank     int
}

func applyEdits(src string, es []edit) string {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].off != es[j].off {
			return es[i].off > es[j].off
		}
		return es[i].rank > es[j].rank
	})
	for _, e := range es {
		src = src[:e.off] + e.ins + src[e.off+e.del:]
	}
	return src
}

// passMake checks the sizes given to make before the allocation.
func (p *preparer) passMake(src string, decl bool) string {
	if !strings.Contains(src, "make") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	var es []edit
	ast.Inspect(pr.file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "make" {
			return true
		}
		typ := src[pr.off(call.Args[0].Pos()):pr.off(call.Args[0].End())]
		for _, a := range call.Args[1:] {
			es = append(es,
				edit{off: pr.off(a.Pos()), ins: "gopeftk.Len((" + typ + ")(nil), "},
				edit{off: pr.off(a.End()), ins: ")"})
		}
		return true
	})
	return applyEdits(src, es)
}

// passRangeInt rewrites a range over an integer (Go 1.22), which yaegi
// v0.16.1 does not compile ("nil type"), into a counting loop:
//
//	L: for i := range n { body }
//	{ __nK := n; L: for __iK := __nK - __nK; __iK < __nK; __iK++ { i := __iK; { body } } }
//
// n is evaluated once, i has n's type (int for a constant) and is the
// iteration's own, and an assignment to i in the body does not change the
// iteration, as in Go. The integer is recognised from the syntax: a
// literal, len or cap, a conversion to an integer type, arithmetic on
// those, or a name declared with an integer type or value in the run or
// the session.
func (p *preparer) passRangeInt(src string, decl bool) string {
	if !strings.Contains(src, "range") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	ints := intNames(pr.file, p.isIntVar, p.runDefined)
	for n := range p.runInts {
		ints[n] = true
	}
	rangeLabelled := map[*ast.RangeStmt]struct{}{}
	var es []edit
	ast.Inspect(pr.file, func(n ast.Node) bool {
		var label *ast.LabeledStmt
		rs, ok := n.(*ast.RangeStmt)
		if l, isLabel := n.(*ast.LabeledStmt); isLabel {
			if r, ok2 := l.Stmt.(*ast.RangeStmt); ok2 {
				label, rs, ok = l, r, true
			}
		}
		if !ok || !isIntExpr(rs.X, ints) || rs.Value != nil || (rs.Key != nil && rs.Tok != token.DEFINE) {
			return true
		}
		if label == nil {
			// The label, if any, was handled with its statement.
			if _, seen := rangeLabelled[rs]; seen {
				return true
			}
		}
		p.seq++
		nv, iv := fmt.Sprintf("__n%d", p.seq), fmt.Sprintf("__i%d", p.seq)
		start := rs.Pos()
		prefix := "{ " + nv + " := " + src[pr.off(rs.X.Pos()):pr.off(rs.X.End())] + "; "
		if label != nil {
			start = label.Pos()
			prefix += label.Label.Name + ": "
			rangeLabelled[rs] = struct{}{}
		}
		head := "for " + iv + " := " + nv + " - " + nv + "; " + iv + " < " + nv + "; " + iv + "++ {"
		if id, ok := rs.Key.(*ast.Ident); ok && id.Name != "_" {
			head += " " + id.Name + " := " + iv + "; _ = " + id.Name + ";"
		}
		es = append(es,
			edit{off: pr.off(start), del: pr.off(rs.Body.Lbrace) + 1 - pr.off(start), ins: prefix + head + " {"},
			edit{off: pr.off(rs.Body.Rbrace), ins: "}", rank: 0},
			edit{off: pr.off(rs.Body.End()), ins: " }", rank: 1})
		return true
	})
	return applyEdits(src, es)
}

var intTypes = map[string]bool{"int": true, "int8": true, "int16": true, "int32": true, "int64": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true, "uintptr": true, "byte": true, "rune": true}

// isIntExpr reports whether e is an integer by its syntax (see
// passRangeInt).
func isIntExpr(e ast.Expr, ints map[string]bool) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return x.Kind == token.INT
	case *ast.Ident:
		return ints[x.Name]
	case *ast.ParenExpr:
		return isIntExpr(x.X, ints)
	case *ast.CallExpr:
		if id, ok := x.Fun.(*ast.Ident); ok {
			return id.Name == "len" || id.Name == "cap" || intTypes[id.Name]
		}
	case *ast.BinaryExpr:
		switch x.Op {
		case token.ADD, token.SUB, token.MUL, token.QUO, token.REM, token.SHL, token.SHR, token.AND, token.OR, token.XOR, token.AND_NOT:
			return isIntExpr(x.X, ints) && (isIntExpr(x.Y, ints) || x.Op == token.SHL || x.Op == token.SHR)
		}
	case *ast.UnaryExpr:
		return x.Op == token.SUB && isIntExpr(x.X, ints)
	}
	return false
}

// intNames collects the names a file declares as integers: parameters and
// vars of an integer type, and := of an integer expression; and the
// session's integer variables (isIntVar) that it uses.
func intNames(f *ast.File, isIntVar func(string) bool, runDefined map[string]bool) map[string]bool {
	ints := map[string]bool{}
	defined := definedNames(f)
	for n := range runDefined {
		defined[n] = true
	}
	typed := func(names []*ast.Ident, typ ast.Expr) {
		if id, ok := typ.(*ast.Ident); ok && intTypes[id.Name] {
			for _, n := range names {
				ints[n.Name] = true
			}
		}
	}
	for changed := true; changed; {
		before := len(ints)
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.Field:
				typed(x.Names, x.Type)
			case *ast.ValueSpec:
				if x.Type != nil {
					typed(x.Names, x.Type)
				} else if len(x.Values) == len(x.Names) {
					for i, v := range x.Values {
						if isIntExpr(v, ints) {
							ints[x.Names[i].Name] = true
						}
					}
				}
			case *ast.AssignStmt:
				if x.Tok == token.DEFINE && len(x.Lhs) == len(x.Rhs) {
					for i, l := range x.Lhs {
						if id, ok := l.(*ast.Ident); ok && isIntExpr(x.Rhs[i], ints) {
							ints[id.Name] = true
						}
					}
				}
			case *ast.RangeStmt:
				// A session variable, unless the run declares the name (then
				// its value is not the one the loop will see).
				if id, ok := x.X.(*ast.Ident); ok && !ints[id.Name] && !defined[id.Name] && isIntVar != nil && isIntVar(id.Name) {
					ints[id.Name] = true
				}
			}
			return true
		})
		changed = len(ints) != before
	}
	return ints
}

// passLoopVars gives each iteration of a loop its own copy of the loop
// variables that a closure, goroutine, defer or address captures.
func (p *preparer) passLoopVars(src string, decl bool) (string, error) {
	if !strings.Contains(src, "for") {
		return src, nil
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src, nil
	}
	var es []edit
	var refuse error
	ast.Inspect(pr.file, func(n ast.Node) bool {
		if refuse != nil {
			return false
		}
		var names []string
		var body *ast.BlockStmt
		threeClause := false
		switch l := n.(type) {
		case *ast.ForStmt:
			as, ok := l.Init.(*ast.AssignStmt)
			if !ok || as.Tok != token.DEFINE {
				return true
			}
			for _, e := range as.Lhs {
				if id, ok := e.(*ast.Ident); ok && id.Name != "_" {
					names = append(names, id.Name)
				}
			}
			body, threeClause = l.Body, true
		case *ast.RangeStmt:
			if l.Tok != token.DEFINE {
				return true
			}
			for _, e := range []ast.Expr{l.Key, l.Value} {
				if id, ok := e.(*ast.Ident); ok && id.Name != "_" {
					names = append(names, id.Name)
				}
			}
			body = l.Body
		default:
			return true
		}
		captured := capturedNames(body, names)
		if len(captured) == 0 {
			return true
		}
		if threeClause {
			if name, at := assignedIn(body, captured); name != "" {
				refuse = unsupportedError{line: pr.line(at), msg: fmt.Sprintf(
					"this for loop assigns to its variable %s in its body and also captures %s in a closure, goroutine, defer or address: "+
						"the interpreter shares loop variables between iterations, so gopeft gives each iteration a copy, and that copy "+
						"cannot carry the assignment to the next iteration. Capture a copy instead: write `%s := %s` "+
						"(any other name) before the closure and use it there.", name, name, "v"+name, name)}
				return false
			}
		}
		// The body goes into a block of its own, where it may declare the
		// same names again.
		es = append(es,
			edit{off: pr.off(body.Lbrace) + 1, ins: " " + strings.Join(captured, ", ") + " := " + strings.Join(captured, ", ") + "; {"},
			edit{off: pr.off(body.Rbrace), ins: "}"})
		return true
	})
	if refuse != nil {
		return "", refuse
	}
	return applyEdits(src, es), nil
}

// capturedNames returns the names among names that a function literal, go
// statement, defer statement or & operator inside body uses.
func capturedNames(body *ast.BlockStmt, names []string) []string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	seen := map[string]bool{}
	uses := func(n ast.Node) {
		ast.Inspect(n, func(m ast.Node) bool {
			if id, ok := m.(*ast.Ident); ok && want[id.Name] {
				seen[id.Name] = true
			}
			return true
		})
	}
	ast.Inspect(body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.FuncLit, *ast.GoStmt, *ast.DeferStmt:
			uses(x)
			return false
		case *ast.UnaryExpr:
			if x.Op == token.AND {
				uses(x.X)
			}
		case *ast.CallExpr:
			// A method value or call with a pointer receiver takes &v.
			if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && want[id.Name] {
					seen[id.Name] = true
				}
			}
		}
		return true
	})
	var out []string
	for _, n := range names {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// assignedIn returns a name among names that body assigns (=, op=, ++, --),
// and where; "" when none is.
func assignedIn(body *ast.BlockStmt, names []string) (string, token.Pos) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var name string
	var at token.Pos
	hit := func(e ast.Expr) {
		if id, ok := e.(*ast.Ident); ok && want[id.Name] && name == "" {
			name, at = id.Name, id.Pos()
		}
	}
	ast.Inspect(body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.AssignStmt:
			if x.Tok != token.DEFINE {
				for _, l := range x.Lhs {
					hit(l)
				}
			}
		case *ast.IncDecStmt:
			hit(x.X)
		case *ast.RangeStmt:
			if x.Tok == token.ASSIGN {
				hit(x.Key)
				if x.Value != nil {
					hit(x.Value)
				}
			}
		}
		return name == ""
	})
	return name, at
}

// goGuard reports a goroutine's panic instead of ending the process.
const goGuard = "defer func() { if __r := recover(); __r != nil { gopeftk.GoPanic(__r) } }(); "

// passGoDefer binds the arguments of go and defer statements at the
// statement, and guards goroutines. One statement is rewritten at a time
// (the last one first), then the source is parsed again, so that nested
// statements are rewritten in their new text.
func (p *preparer) passGoDefer(src string, decl bool) string {
	if !strings.Contains(src, "go") && !strings.Contains(src, "defer") {
		return src
	}
	for pass := 0; pass < 1000; pass++ {
		pr, ok := parseRun(src, decl)
		if !ok {
			return src
		}
		var target ast.Stmt
		ast.Inspect(pr.file, func(n ast.Node) bool {
			switch s := n.(type) {
			case *ast.GoStmt:
				if !guarded(s) && (target == nil || s.Pos() > target.Pos()) {
					target = s
				}
			case *ast.DeferStmt:
				if p.needsBinding(s.Call) && (target == nil || s.Pos() > target.Pos()) {
					target = s
				}
			}
			return true
		})
		if target == nil {
			return src
		}
		src = src[:pr.off(target.Pos())] + p.bindStmt(pr, src, target) + src[pr.off(target.End()):]
	}
	return src
}

// needsBinding reports whether a deferred call has a callee or argument
// whose value could change before the call runs.
func (p *preparer) needsBinding(call *ast.CallExpr) bool {
	if !p.stableCallee(call.Fun) {
		return true
	}
	for _, a := range call.Args {
		if !p.stable(a) {
			return true
		}
	}
	return false
}

// stableCallee: a callee kept in place (a name, a package member, a method
// of a name, a function literal: yaegi v0.16.1 never returns from a
// deferred call of a closure held in a variable, so a deferred literal
// stays a literal, and checkDeferClosures refuses the loops where that
// matters).
func (p *preparer) stableCallee(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident, *ast.FuncLit:
		return true
	case *ast.SelectorExpr:
		_, ok := x.X.(*ast.Ident)
		return ok
	case *ast.ParenExpr:
		return p.stableCallee(x.X)
	}
	return false
}

// stable reports whether an argument gives the same value whenever it is
// evaluated (constants, literals, temporaries), so it is left in place:
// binding an untyped constant to a variable would give it its default
// type, which the parameter may not have.
func (p *preparer) stable(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.BasicLit, *ast.FuncLit:
		return true
	case *ast.Ident:
		switch x.Name {
		case "nil", "true", "false", "iota":
			return true
		}
		return strings.HasPrefix(x.Name, "__") || (p.isConst != nil && p.isConst(x.Name))
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && p.isPkg != nil && p.isPkg(id.Name)
	case *ast.ParenExpr:
		return p.stable(x.X)
	case *ast.UnaryExpr:
		return x.Op != token.AND && x.Op != token.ARROW && p.stable(x.X)
	case *ast.BinaryExpr:
		return p.stable(x.X) && p.stable(x.Y)
	}
	return false
}

// bindStmt returns the text of a go or defer statement with its callee and
// arguments bound at the statement.
func (p *preparer) bindStmt(pr *parsed, src string, st ast.Stmt) string {
	text := func(n ast.Node) string { return src[pr.off(n.Pos()):pr.off(n.End())] }
	var call *ast.CallExpr
	isGo := false
	switch s := st.(type) {
	case *ast.GoStmt:
		call, isGo = s.Call, true
		if lit, ok := call.Fun.(*ast.FuncLit); ok {
			// yaegi evaluates a go statement's arguments at the statement:
			// only the guard is needed.
			at := pr.off(lit.Body.Lbrace) + 1
			whole := text(st)
			rel := at - pr.off(st.Pos())
			return whole[:rel] + " " + goGuard + whole[rel:]
		}
	case *ast.DeferStmt:
		call = s.Call
	}
	p.seq++
	tmp := fmt.Sprintf("__b%d_", p.seq)
	var binds []string
	fun := text(call.Fun)
	if !p.stableCallee(call.Fun) {
		binds = append(binds, tmp+"f := "+fun)
		fun = tmp + "f"
	}
	args := make([]string, len(call.Args))
	for i, a := range call.Args {
		if p.stable(a) {
			args[i] = text(a)
			continue
		}
		name := fmt.Sprintf("%s%d", tmp, i)
		binds = append(binds, name+" := "+text(a))
		args[i] = name
	}
	callText := fun + "(" + strings.Join(args, ", ")
	if call.Ellipsis.IsValid() {
		callText += "..."
	}
	callText += ")"
	var b strings.Builder
	b.WriteString("{ ")
	for _, bind := range binds {
		b.WriteString(bind + "; ")
	}
	if isGo {
		b.WriteString("go func() { " + goGuard + callText + " }() }")
	} else {
		b.WriteString("defer " + callText + " }")
	}
	return b.String()
}

// guarded reports whether g was rewritten already: its callee is a function
// literal whose body starts with the recover guard.
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

// passTopLevel runs each top-level compound statement of a statement run in
// a function literal, and turns the defers that belong to the cell into
// registrations run when the cell ends.
func (p *preparer) passTopLevel(src string) (string, error) {
	pr, ok := parseRun(src, false)
	if !ok {
		return src, nil
	}
	// A goto between top-level statements cannot cross into a function.
	for _, st := range pr.body {
		if b, ok := st.(*ast.BranchStmt); ok && b.Tok == token.GOTO {
			return src, nil
		}
	}
	var es []edit
	for _, st := range pr.body {
		switch st.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt, *ast.SwitchStmt, *ast.TypeSwitchStmt,
			*ast.SelectStmt, *ast.BlockStmt, *ast.LabeledStmt, *ast.GoStmt, *ast.DeferStmt:
		default:
			continue
		}
		var refuse error
		ast.Inspect(st, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.FuncLit:
				return false // its defers are its own
			case *ast.DeferStmt:
				if lit, ok := x.Call.Fun.(*ast.FuncLit); ok && callsRecover(lit) {
					refuse = unsupportedError{line: pr.line(x.Pos()), msg: "recover in a defer at the top level of a cell: " +
						"gopeft runs a cell's defers when the cell ends, after a panic has already stopped it. " +
						"Put the code in a function and call it: func run() { defer func() { … recover() … }(); … }"}
					return false
				}
				es = append(es,
					edit{off: pr.off(x.Pos()), del: len("defer"), ins: cellDefers + " = append(" + cellDefers + ", func() {", rank: 1},
					edit{off: pr.off(x.End()), ins: " })", rank: 0})
				p.cellDefer = true
			}
			return true
		})
		if refuse != nil {
			return "", refuse
		}
		es = append(es,
			edit{off: pr.off(st.Pos()), ins: cellFn + " = func() { ", rank: 0},
			edit{off: pr.off(st.End()), ins: " }; " + cellFn + "()", rank: 1})
	}
	return applyEdits(src, es), nil
}

// callsRecover reports whether a function literal calls recover directly.
func callsRecover(lit *ast.FuncLit) bool {
	found := false
	ast.Inspect(lit.Body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "recover" {
				found = true
			}
		}
		return !found
	})
	return found
}

// definedNames lists the names a run declares with := or var.
func definedNames(f *ast.File) map[string]bool {
	defined := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.ValueSpec:
			for _, id := range x.Names {
				defined[id.Name] = true
			}
		case *ast.AssignStmt:
			if x.Tok == token.DEFINE {
				for _, l := range x.Lhs {
					if id, ok := l.(*ast.Ident); ok {
						defined[id.Name] = true
					}
				}
			}
		}
		return true
	})
	return defined
}

// checkDeferClosures refuses a deferred function literal inside a loop of a
// function when the literal uses a variable of that loop: yaegi makes the
// closure when the deferred call runs, so every deferred call would see the
// variables of the last iteration. (At the top level of a cell the defer
// becomes a registration, and its closure is made at the statement.)
func checkDeferClosures(src string, decl bool) error {
	if !strings.Contains(src, "defer") || !strings.Contains(src, "for") {
		return nil
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return nil
	}
	var refuse error
	var bodies []*ast.BlockStmt
	ast.Inspect(pr.file, func(n ast.Node) bool {
		switch f := n.(type) {
		case *ast.FuncDecl:
			if decl && f.Body != nil {
				bodies = append(bodies, f.Body)
			}
		case *ast.FuncLit:
			bodies = append(bodies, f.Body)
		}
		return true
	})
	for _, body := range bodies {
		ast.Inspect(body, func(n ast.Node) bool {
			if refuse != nil {
				return false
			}
			if _, ok := n.(*ast.FuncLit); ok && n != ast.Node(body) {
				return false // a function of its own
			}
			var loopBody *ast.BlockStmt
			names := map[string]bool{}
			switch l := n.(type) {
			case *ast.ForStmt:
				loopBody = l.Body
				if as, ok := l.Init.(*ast.AssignStmt); ok && as.Tok == token.DEFINE {
					for _, e := range as.Lhs {
						if id, ok := e.(*ast.Ident); ok {
							names[id.Name] = true
						}
					}
				}
			case *ast.RangeStmt:
				loopBody = l.Body
				if l.Tok == token.DEFINE {
					for _, e := range []ast.Expr{l.Key, l.Value} {
						if id, ok := e.(*ast.Ident); ok {
							names[id.Name] = true
						}
					}
				}
			default:
				return true
			}
			for n := range definedNames(&ast.File{Name: ast.NewIdent("p"), Decls: []ast.Decl{&ast.FuncDecl{Name: ast.NewIdent("_"), Type: &ast.FuncType{}, Body: loopBody}}}) {
				names[n] = true
			}
			ast.Inspect(loopBody, func(m ast.Node) bool {
				if _, ok := m.(*ast.FuncLit); ok {
					return false
				}
				d, ok := m.(*ast.DeferStmt)
				if !ok {
					return true
				}
				lit, ok := d.Call.Fun.(*ast.FuncLit)
				if !ok {
					return true
				}
				own := map[string]bool{} // the literal's parameters shadow the loop's names
				for _, f := range lit.Type.Params.List {
					for _, id := range f.Names {
						own[id.Name] = true
					}
				}
				ast.Inspect(lit.Body, func(k ast.Node) bool {
					if id, ok := k.(*ast.Ident); ok && names[id.Name] && !own[id.Name] && refuse == nil {
						refuse = unsupportedError{line: pr.line(d.Pos()), msg: fmt.Sprintf(
							"a deferred function literal in a loop uses %s, a variable of the loop: the interpreter makes the closure "+
								"when the deferred call runs, so every call would see the last iteration's %s. Pass it as an argument "+
								"instead: defer func(%s T) { … }(%s)", id.Name, id.Name, id.Name, id.Name)}
					}
					return refuse == nil
				})
				return refuse == nil
			})
			return refuse == nil
		})
		if refuse != nil {
			return refuse
		}
	}
	return nil
}

// passCommaOK rewrites the comma-ok forms at the top level of a cell, which
// yaegi v0.16.1 does not compile there ("nil type"; in a function they
// work):
//
//	v, ok := m[k]   →  v := m[k]; ok := func() bool { _, ok := m[k]; return ok }()
//	v, ok := x.(T)  →  ok := func() bool { _, ok := x.(T); return ok }(); var v T; if ok { v = x.(T) }
//
// which evaluates m, k and x twice: they must be names, literals,
// selectors or indexes of those (no calls). A receive (v, ok := <-ch)
// cannot be evaluated twice and is refused.
func (p *preparer) passCommaOK(src string) (string, error) {
	if !strings.Contains(src, ",") {
		return src, nil
	}
	pr, ok := parseRun(src, false)
	if !ok {
		return src, nil
	}
	var es []edit
	for _, st := range pr.body {
		as, ok := st.(*ast.AssignStmt)
		if !ok || as.Tok != token.DEFINE || len(as.Lhs) != 2 || len(as.Rhs) != 1 {
			continue
		}
		text := func(n ast.Node) string { return src[pr.off(n.Pos()):pr.off(n.End())] }
		v, okName := text(as.Lhs[0]), text(as.Lhs[1])
		p.seq++
		tmp := fmt.Sprintf("__ok%d", p.seq)
		if okName == "_" {
			okName = tmp
		}
		var out string
		switch x := unparen(as.Rhs[0]).(type) {
		case *ast.IndexExpr:
			if !simpleOperand(x.X) || !simpleOperand(x.Index) {
				return "", unsupportedError{line: pr.line(st.Pos()), msg: commaOKMsg(text(st))}
			}
			e := text(x)
			if v != "_" {
				out = v + " := " + e + "; "
			}
			out += okName + " := func() bool { _, " + tmp + " := " + e + "; return " + tmp + " }()"
		case *ast.TypeAssertExpr:
			if x.Type == nil || !simpleOperand(x.X) {
				continue
			}
			e := text(x)
			out = okName + " := func() bool { _, " + tmp + " := " + e + "; return " + tmp + " }()"
			if v != "_" {
				out += "; var " + v + " " + text(x.Type) + "; if " + okName + " { " + v + " = " + e + " }"
			}
		case *ast.UnaryExpr:
			if x.Op != token.ARROW {
				continue
			}
			return "", unsupportedError{line: pr.line(st.Pos()), msg: commaOKMsg(text(st))}
		default:
			continue
		}
		es = append(es, edit{off: pr.off(st.Pos()), del: pr.off(st.End()) - pr.off(st.Pos()), ins: out})
	}
	return applyEdits(src, es), nil
}

func commaOKMsg(stmt string) string {
	return "`" + stmt + "` at the top level of a cell: the interpreter cannot compile this comma-ok form there " +
		"(gopeft rewrites a map lookup or type assertion of plain names, but not a receive or an operand with a call, " +
		"which must be evaluated once). Write it in an if statement, `if v, ok := …; ok { … }`, or inside a function."
}

func unparen(e ast.Expr) ast.Expr {
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			return e
		}
		e = p.X
	}
}

// simpleOperand: an expression without calls or receives, so evaluating it
// twice gives the same value with no side effect.
func simpleOperand(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident, *ast.BasicLit:
		return true
	case *ast.SelectorExpr:
		return simpleOperand(x.X)
	case *ast.IndexExpr:
		return simpleOperand(x.X) && simpleOperand(x.Index)
	case *ast.ParenExpr:
		return simpleOperand(x.X)
	case *ast.StarExpr:
		return simpleOperand(x.X)
	case *ast.BinaryExpr:
		return simpleOperand(x.X) && simpleOperand(x.Y)
	}
	return false
}

// checkMethodValues refuses a method value (x.M not called) of a type a
// cell declared: yaegi v0.16.1 binds its receiver when the value is
// called, not when it is made, so `show := c.Show; c.n = 5; show()` shows
// 5 where Go shows the old value.
func (p *preparer) checkMethodValues(src string, decl bool) error {
	if p.isMethod == nil || !strings.Contains(src, ".") {
		return nil
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return nil
	}
	methods := map[string]bool{}
	for _, d := range pr.file.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
			methods[fd.Name.Name] = true
		}
	}
	called := map[*ast.SelectorExpr]bool{}
	ast.Inspect(pr.file, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := unparen(c.Fun).(*ast.SelectorExpr); ok {
				called[sel] = true
			}
		}
		return true
	})
	var refuse error
	ast.Inspect(pr.file, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok || called[sel] || refuse != nil {
			return refuse == nil
		}
		if !methods[sel.Sel.Name] && !p.isMethod(sel.Sel.Name) {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && (p.isPkg != nil && p.isPkg(id.Name) || p.isType != nil && p.isType(id.Name)) {
			return true // a package member, or a method expression T.M
		}
		x := src[pr.off(sel.X.Pos()):pr.off(sel.X.End())]
		refuse = unsupportedError{line: pr.line(sel.Pos()), msg: fmt.Sprintf(
			"the method value %s.%s: the interpreter binds a method value's receiver when it is called, not when it is made, "+
				"so a later change to %s would show. Write a closure that says which you mean: "+
				"func() { %s.%s() } (the variable as it is then), or copy first: r := %s; f := func() { r.%s() }",
			x, sel.Sel.Name, x, x, sel.Sel.Name, x, sel.Sel.Name)}
		return false
	})
	return refuse
}

// passRecover makes recover() give the panic's value as Go does: yaegi
// v0.16.1 hands interpreted code the reflect.Value it panicked with, so
// `r.(string)` or a type switch on it fails. recover() becomes
// gopeftk.Recovered(recover()), still a direct call of recover by the
// deferred function.
func passRecover(src string, decl bool) string {
	if !strings.Contains(src, "recover()") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	var es []edit
	var walk func(n ast.Node, inFunc bool)
	walk = func(n ast.Node, inFunc bool) {
		ast.Inspect(n, func(m ast.Node) bool {
			switch x := m.(type) {
			case *ast.FuncLit:
				if m != n {
					walk(x.Body, true)
					return false
				}
			case *ast.FuncDecl:
				if m != n && x.Body != nil {
					walk(x.Body, decl)
					return false
				}
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Recovered" {
					return false // done already
				}
				if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "recover" && len(x.Args) == 0 {
					if inFunc {
						es = append(es, edit{off: pr.off(x.Pos()), ins: "gopeftk.Recovered("}, edit{off: pr.off(x.End()), ins: ")"})
					} else {
						// Outside a function, as in main's body outside a
						// deferred call, recover returns nil (yaegi crashes).
						es = append(es, edit{off: pr.off(x.Pos()), del: pr.off(x.End()) - pr.off(x.Pos()), ins: "any(nil)"})
					}
				}
			}
			return true
		})
	}
	walk(pr.file, false)
	return applyEdits(src, es)
}

// passTypeSwitch turns a type switch into a switch over comma-ok type
// assertions: yaegi v0.16.1's type switch misses `case error` for the
// errors of compiled packages (errors.New), while x.(error) works.
//
//	switch v := x.(type) { case nil: A; case int: B; case string, bool: C; default: D }
//	switch __tsN := x; { case __tsN == nil: v := __tsN; A
//	  case func() bool { _, ok := __tsN.(int); return ok }(): v := __tsN.(int); B
//	  case …(string) || …(bool): v := __tsN; C
//	  default: v := __tsN; D }
//
// An init statement moves into a block around the switch. Lines are kept.
func (p *preparer) passTypeSwitch(src string, decl bool) string {
	if !strings.Contains(src, ".(type)") {
		return src
	}
	for pass := 0; pass < 100; pass++ {
		pr, ok := parseRun(src, decl)
		if !ok {
			return src
		}
		var ts *ast.TypeSwitchStmt
		var label *ast.LabeledStmt
		ast.Inspect(pr.file, func(n ast.Node) bool {
			if ts != nil {
				return false
			}
			if l, ok := n.(*ast.LabeledStmt); ok {
				if t, ok := l.Stmt.(*ast.TypeSwitchStmt); ok {
					ts, label = t, l
					return false
				}
			}
			if t, ok := n.(*ast.TypeSwitchStmt); ok {
				ts = t
				return false
			}
			return true
		})
		if ts == nil {
			return src
		}
		text := func(n ast.Node) string { return src[pr.off(n.Pos()):pr.off(n.End())] }
		newlines := func(a, b token.Pos) string {
			return strings.Repeat("\n", strings.Count(src[pr.off(a):pr.off(b)], "\n"))
		}
		var v string
		var x ast.Expr
		switch a := ts.Assign.(type) {
		case *ast.AssignStmt:
			v = a.Lhs[0].(*ast.Ident).Name
			x = a.Rhs[0].(*ast.TypeAssertExpr).X
		case *ast.ExprStmt:
			x = a.X.(*ast.TypeAssertExpr).X
		}
		p.seq++
		tmp := fmt.Sprintf("__ts%d", p.seq)
		var es []edit
		start := ts.Pos()
		head := "switch " + tmp + " := " + text(x) + "; {"
		if label != nil {
			start = label.Pos()
			head = label.Label.Name + ": " + head
		}
		if ts.Init != nil {
			head = "{ " + text(ts.Init) + "; " + head
			es = append(es, edit{off: pr.off(ts.Body.End()), ins: " }"})
		}
		es = append(es, edit{off: pr.off(start), del: pr.off(ts.Body.Lbrace) + 1 - pr.off(start),
			ins: head + newlines(start, ts.Body.Lbrace)})
		for _, st := range ts.Body.List {
			cc := st.(*ast.CaseClause)
			var conds []string
			for _, t := range cc.List {
				if id, ok := t.(*ast.Ident); ok && id.Name == "nil" {
					conds = append(conds, tmp+" == nil")
					continue
				}
				conds = append(conds, "func() bool { _, ok := "+tmp+".("+text(t)+"); return ok }()")
			}
			clause := "default:"
			if cc.List != nil {
				clause = "case " + strings.Join(conds, " || ") + ":"
			}
			if v != "" {
				val := tmp
				if len(cc.List) == 1 {
					if id, ok := cc.List[0].(*ast.Ident); !ok || id.Name != "nil" {
						val = tmp + ".(" + text(cc.List[0]) + ")"
					}
				}
				clause += " " + v + " := " + val + "; _ = " + v + ";"
			}
			es = append(es, edit{off: pr.off(cc.Case), del: pr.off(cc.Colon) + 1 - pr.off(cc.Case),
				ins: clause + newlines(cc.Case, cc.Colon)})
		}
		src = applyEdits(src, es)
	}
	return src
}

// passFmtCheck guards the fmt verbs that misname a cell struct type (%T,
// %#v, %+v; see fmtguard.go): in
//
//	fmt.Printf("%+v\n", p)  →  fmt.Printf(gopeftk.CheckFormat("%+v\n", p), p)
//
// the check sees the arguments as fmt will and refuses a cell struct type;
// fmt itself is still called directly (yaegi gives only its own fmt
// functions a cell type's String method). The arguments are evaluated
// twice, so only calls whose arguments have no calls or receives are
// guarded.
func (p *preparer) passFmtCheck(src string, decl bool) string {
	if !strings.Contains(src, "%T") && !strings.Contains(src, "%#v") && !strings.Contains(src, "%+v") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	text := func(n ast.Node) string { return src[pr.off(n.Pos()):pr.off(n.End())] }
	var es []edit
	ast.Inspect(pr.file, func(n ast.Node) bool {
		c, ok := n.(*ast.CallExpr)
		if !ok || c.Ellipsis.IsValid() {
			return true
		}
		sel, ok := c.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "fmt" {
			return true
		}
		fi := 0
		switch sel.Sel.Name {
		case "Printf", "Sprintf", "Errorf":
		case "Fprintf":
			fi = 1
		default:
			return true
		}
		if len(c.Args) <= fi+1 {
			return true
		}
		lit, ok := c.Args[fi].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		if !strings.Contains(lit.Value, "%T") && !strings.Contains(lit.Value, "%#v") && !strings.Contains(lit.Value, "%+v") {
			return true
		}
		var args []string
		for _, a := range c.Args[fi+1:] {
			if !pureOperand(a) {
				return true
			}
			args = append(args, text(a))
		}
		es = append(es, edit{off: pr.off(lit.Pos()), ins: "gopeftk.CheckFormat("},
			edit{off: pr.off(lit.End()), ins: ", " + strings.Join(args, ", ") + ")"})
		return true
	})
	return applyEdits(src, es)
}

// pureOperand: an expression that gives the same value with no side effect
// when evaluated twice (names, literals, selectors, indexes, composite
// literals of those, &T{…}).
func pureOperand(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.CompositeLit:
		switch x.Type.(type) {
		case *ast.IndexExpr, *ast.IndexListExpr:
			return false // yaegi loses the check's result with a generic literal among the arguments
		}
		for _, el := range x.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				el = kv.Value
			}
			if !pureOperand(el) {
				return false
			}
		}
		return true
	case *ast.UnaryExpr:
		if x.Op == token.AND {
			_, ok := x.X.(*ast.CompositeLit)
			return ok && pureOperand(x.X)
		}
		return x.Op != token.ARROW && pureOperand(x.X)
	case *ast.FuncLit:
		return true
	case *ast.ParenExpr:
		return pureOperand(x.X)
	}
	return simpleOperand(e)
}

// passTypedNil guards the classic gotcha yaegi v0.16.1 gets wrong: a nil
// pointer stored in an interface is a non-nil interface in Go, but a nil
// one in the interpreter, so `err == nil` differs. Where a name declared
// with a pointer type is returned as an error/any/interface result, or
// given as the value of a var of such a type, the statement is preceded by
//
//	if p == nil { gopeftk.TypedNil("p") };
//
// which refuses the case with an Unsupported error (a non-nil pointer goes
// through unchanged).
func (p *preparer) passTypedNil(src string, decl bool) string {
	if !strings.Contains(src, "*") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	ptrs := pointerNames(pr.file)
	for n := range p.runPtrs {
		ptrs[n] = true
	}
	if len(ptrs) == 0 {
		return src
	}
	isIface := func(e ast.Expr) bool {
		switch t := e.(type) {
		case *ast.Ident:
			return t.Name == "error" || t.Name == "any"
		case *ast.InterfaceType:
			return true
		}
		return false
	}
	var es []edit
	guard := func(st ast.Stmt, names []string) {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "if %s == nil { gopeftk.TypedNil(%q) }; ", n, n)
		}
		es = append(es, edit{off: pr.off(st.Pos()), ins: b.String()})
	}
	var walk func(body *ast.BlockStmt, results []bool)
	walk = func(body *ast.BlockStmt, results []bool) {
		ast.Inspect(body, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.FuncLit:
				walk(x.Body, ifaceResults(x.Type, isIface))
				return false
			case *ast.ReturnStmt:
				if len(x.Results) != len(results) {
					return true
				}
				var names []string
				for i, r := range x.Results {
					if id, ok := r.(*ast.Ident); ok && results[i] && ptrs[id.Name] {
						names = append(names, id.Name)
					}
				}
				if len(names) > 0 {
					guard(x, names)
				}
			case *ast.DeclStmt:
				if names := ifaceVarValues(x.Decl, ptrs, isIface); len(names) > 0 {
					guard(x, names)
				}
			}
			return true
		})
	}
	for _, d := range pr.file.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
			walk(fd.Body, ifaceResults(fd.Type, isIface))
		}
	}
	return applyEdits(src, es)
}

// ifaceResults lists, for each result of a func type, whether it has an
// interface type.
func ifaceResults(ft *ast.FuncType, isIface func(ast.Expr) bool) []bool {
	var out []bool
	if ft.Results == nil {
		return nil
	}
	for _, f := range ft.Results.List {
		n := max(len(f.Names), 1)
		for i := 0; i < n; i++ {
			out = append(out, isIface(f.Type))
		}
	}
	return out
}

// ifaceVarValues lists the pointer names a var declaration of an interface
// type takes as values.
func ifaceVarValues(d ast.Decl, ptrs map[string]bool, isIface func(ast.Expr) bool) []string {
	gd, ok := d.(*ast.GenDecl)
	if !ok || gd.Tok != token.VAR {
		return nil
	}
	var names []string
	for _, sp := range gd.Specs {
		vs := sp.(*ast.ValueSpec)
		if vs.Type == nil || !isIface(vs.Type) {
			continue
		}
		for _, v := range vs.Values {
			if id, ok := v.(*ast.Ident); ok && ptrs[id.Name] {
				names = append(names, id.Name)
			}
		}
	}
	return names
}

// pointerNames lists the names a file declares with a pointer type (vars,
// parameters, results).
func pointerNames(f *ast.File) map[string]bool {
	ptrs := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.ValueSpec:
			if _, ok := x.Type.(*ast.StarExpr); ok {
				for _, id := range x.Names {
					ptrs[id.Name] = true
				}
			}
		case *ast.Field:
			if _, ok := x.Type.(*ast.StarExpr); ok {
				for _, id := range x.Names {
					ptrs[id.Name] = true
				}
			}
		}
		return true
	})
	return ptrs
}

// passConstRepeat writes out the implicit repetition of a const group's
// expression list, with iota as the line's index, in a group that uses iota
// or declares several names on a line:
//
//	const (
//		A, B = iota, iota * 10     →   A, B = 0, 0 * 10
//		C, D                       →   C, D = 1, 1 * 10
//	)
//
// which is what the Go spec defines them to mean. yaegi v0.16.1 counts
// iota by name rather than by line (C, D = iota, … gave 2) and fails on an
// implicit repetition of several names ("constant definition loop").
func passConstRepeat(src string, decl bool) string {
	if !strings.Contains(src, "const") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	// subst is the text of e with each iota replaced by i.
	subst := func(e ast.Expr, i int) string {
		var es []edit
		ast.Inspect(e, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "iota" {
				es = append(es, edit{off: pr.off(id.Pos()) - pr.off(e.Pos()), del: len("iota"), ins: strconv.Itoa(i)})
			}
			return true
		})
		return applyEdits(src[pr.off(e.Pos()):pr.off(e.End())], es)
	}
	var es []edit
	ast.Inspect(pr.file, func(n ast.Node) bool {
		g, ok := n.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || !g.Lparen.IsValid() {
			return true
		}
		usesIota, multi := false, false
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			multi = multi || len(vs.Names) > 1
			for _, v := range vs.Values {
				ast.Inspect(v, func(n ast.Node) bool {
					if id, ok := n.(*ast.Ident); ok && id.Name == "iota" {
						usesIota = true
					}
					return true
				})
			}
		}
		if !usesIota && !multi {
			return true
		}
		var prev *ast.ValueSpec
		for i, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			if len(vs.Values) > 0 {
				prev = vs
				for _, v := range vs.Values {
					if t := subst(v, i); t != src[pr.off(v.Pos()):pr.off(v.End())] {
						es = append(es, edit{off: pr.off(v.Pos()), del: pr.off(v.End()) - pr.off(v.Pos()), ins: t})
					}
				}
				continue
			}
			if prev == nil || vs.Type != nil {
				continue
			}
			ins := " = "
			if prev.Type != nil {
				ins = " " + src[pr.off(prev.Type.Pos()):pr.off(prev.Type.End())] + " = "
			}
			var vals []string
			for _, v := range prev.Values {
				vals = append(vals, subst(v, i))
			}
			es = append(es, edit{off: pr.off(vs.Names[len(vs.Names)-1].End()), ins: ins + strings.Join(vals, ", ")})
		}
		return true
	})
	return applyEdits(src, es)
}

// passBounds gives an index out of range Go's message. yaegi v0.16.1
// indexes slices, arrays and strings through reflect, whose panic names
// neither the index nor the length ("index out of range"), so a recovered
// runtime.Error prints differently from Go's "index out of range [5] with
// length 3". Where the kernel can see that x is a slice, array or string —
// a parameter, or a variable declared with such a type or a literal of
// one, or a session variable holding one — x[i] becomes
//
//	x[gopeftk.Index(int(i), len(x))]
//
// which panics with Go's runtime.Error before the access. A constant index
// is left alone (Go checks it when compiling, for arrays), and so is an x
// the kernel cannot type (a map, a named type, a field). The check is a
// call into compiled code, about 350 ns in yaegi (an indexed loop over a
// slice ran 8× slower), so it is made only where the message can be seen
// as a value: in a function that calls recover, and in a cell's top-level
// statements outside loops. Elsewhere an uncaught panic shows the
// interpreter's message, labelled as lacking the index and length.
func (p *preparer) passBounds(src string, decl bool) string {
	if !strings.Contains(src, "[") {
		return src
	}
	prefix := "package main;"
	full := prefix + src
	if !decl {
		prefix = "package main; func main() {"
		full = prefix + src + "\n}"
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", full, 0)
	if err != nil {
		return src
	}
	tf := fset.File(f.Pos())
	off := func(pos token.Pos) int { return tf.Offset(pos) - len(prefix) }
	var es []edit
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		ix, ok := n.(*ast.IndexExpr)
		if !ok || !boundsWorthIt(stack, decl) {
			return true
		}
		x, ok := ix.X.(*ast.Ident)
		if !ok || !p.indexedVar(x) || constIndex(ix.Index, p.isConst) {
			return true
		}
		es = append(es, edit{off: off(ix.Index.Pos()), ins: "gopeftk.Index(int("},
			edit{off: off(ix.Index.End()), ins: "), len(" + x.Name + "))"})
		return true
	})
	return applyEdits(src, es)
}

// indexedVar reports whether x is a variable of a slice, array or string
// type, as far as the source (or the session) shows.
func (p *preparer) indexedVar(x *ast.Ident) bool {
	if x.Obj == nil {
		return !p.runDefined[x.Name] && p.isIndexed != nil && p.isIndexed(x.Name)
	}
	if x.Obj.Kind != ast.Var {
		return false
	}
	switch d := x.Obj.Decl.(type) {
	case *ast.Field:
		return indexedType(d.Type)
	case *ast.ValueSpec:
		if d.Type != nil {
			return indexedType(d.Type)
		}
		for i, n := range d.Names {
			if n.Name == x.Name && i < len(d.Values) && len(d.Values) == len(d.Names) {
				return indexedValue(d.Values[i])
			}
		}
	case *ast.AssignStmt:
		if d.Tok != token.DEFINE || len(d.Lhs) != len(d.Rhs) {
			return false
		}
		for i, l := range d.Lhs {
			if id, ok := l.(*ast.Ident); ok && id.Name == x.Name {
				return indexedValue(d.Rhs[i])
			}
		}
	}
	return false
}

// indexedType: []T, [N]T or string.
func indexedType(t ast.Expr) bool {
	switch t := t.(type) {
	case *ast.ArrayType:
		return true
	case *ast.Ident:
		return t.Name == "string"
	}
	return false
}

// indexedValue: a literal of a slice or array type, make of a slice type,
// or a string literal.
func indexedValue(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.CompositeLit:
		_, ok := e.Type.(*ast.ArrayType)
		return ok
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "make" && len(e.Args) > 0 {
			_, ok := e.Args[0].(*ast.ArrayType)
			return ok
		}
	case *ast.BasicLit:
		return e.Kind == token.STRING
	}
	return false
}

// constIndex reports whether an index is a constant the compiler checks:
// a literal, or a name of a constant.
func constIndex(e ast.Expr, isConst func(string) bool) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		if e.Obj != nil {
			return e.Obj.Kind == ast.Con
		}
		return isConst != nil && isConst(e.Name)
	case *ast.ParenExpr:
		return constIndex(e.X, isConst)
	case *ast.UnaryExpr:
		return constIndex(e.X, isConst)
	case *ast.BinaryExpr:
		return constIndex(e.X, isConst) && constIndex(e.Y, isConst)
	}
	return false
}

// boundsWorthIt reports whether an index expression, the last of stack,
// gets passBounds' check: inside a function that calls recover, or at the
// top level of a statement run, outside loops.
func boundsWorthIt(stack []ast.Node, decl bool) bool {
	for i := len(stack) - 2; i >= 0; i-- {
		switch n := stack[i].(type) {
		case *ast.FuncLit:
			return bodyRecovers(n.Body)
		case *ast.FuncDecl:
			if n.Name.Name == "main" && !decl && i == 1 {
				return true // the wrapper of a statement run: top level, outside loops
			}
			return bodyRecovers(n.Body)
		case *ast.ForStmt, *ast.RangeStmt:
			// a loop at the top level: only a function inside it that
			// calls recover (handled above, nearer) gets the check
			top := true
			for _, m := range stack[:i] {
				if _, ok := m.(*ast.FuncLit); ok {
					top = false
				}
			}
			if top {
				return false
			}
		}
	}
	return false
}

// bodyRecovers reports whether body calls recover, directly or in a
// function literal it defers.
func bodyRecovers(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "recover" {
				found = true
			}
		}
		return !found
	})
	return found
}

// passParallelAssign hoists the calls out of a parallel assignment.
// yaegi v0.16.1 loses the other values of `a, b = f(x), y` when one of the
// right-hand sides is a call (b is left 0, silently; := is not affected):
//
//	u, v = math.Sqrt(4), 3     →   __pa7_0 := math.Sqrt(4); u, v = __pa7_0, 3
//
// The calls run first, left to right, then the assignment, which the Go
// spec allows (it fixes the order of calls, not of other operands). Only
// statements of a block are rewritten (not a for loop's post statement);
// the line count is kept.
func (p *preparer) passParallelAssign(src string, decl bool) string {
	if !strings.Contains(src, ",") || !strings.Contains(src, "(") {
		return src
	}
	pr, ok := parseRun(src, decl)
	if !ok {
		return src
	}
	text := func(n ast.Node) string { return src[pr.off(n.Pos()):pr.off(n.End())] }
	var es []edit
	rewrite := func(list []ast.Stmt) {
		// At the top level of a statement run the temporaries live in a
		// func literal: a top-level tmp := s[i] of a compiled slice does
		// not compile in yaegi v0.16.1 ("constant definition loop").
		top := !decl && len(list) > 0 && len(pr.body) > 0 && &list[0] == &pr.body[0]
		for _, st := range list {
			as, ok := st.(*ast.AssignStmt)
			if !ok || as.Tok != token.ASSIGN || len(as.Lhs) < 2 || len(as.Lhs) != len(as.Rhs) {
				continue
			}
			calls := make([]bool, len(as.Rhs))
			any := false
			for i, r := range as.Rhs {
				calls[i] = hasCall(r)
				any = any || calls[i]
			}
			if !any {
				continue
			}
			p.seq++
			var b strings.Builder
			args := make([]string, len(as.Rhs))
			for i, r := range as.Rhs {
				args[i] = text(r)
				if calls[i] {
					tmp := fmt.Sprintf("__pa%d_%d", p.seq, i)
					fmt.Fprintf(&b, "%s := %s; ", tmp, args[i])
					args[i] = tmp
				}
			}
			lhs := make([]string, len(as.Lhs))
			for i, l := range as.Lhs {
				lhs[i] = text(l)
			}
			fmt.Fprintf(&b, "%s = %s", strings.Join(lhs, ", "), strings.Join(args, ", "))
			old := text(as)
			repl := b.String()
			if top {
				repl = "func() { " + repl + " }()"
			}
			if d := strings.Count(old, "\n") - strings.Count(repl, "\n"); d > 0 {
				repl += strings.Repeat("\n", d)
			}
			es = append(es, edit{off: pr.off(as.Pos()), del: len(old), ins: repl})
		}
	}
	ast.Inspect(pr.file, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.BlockStmt:
			rewrite(x.List)
		case *ast.CaseClause:
			rewrite(x.Body)
		case *ast.CommClause:
			rewrite(x.Body)
		}
		return true
	})
	return applyEdits(src, es) // a statement run's statements are the body of its wrapper func, visited above
}

// hasCall reports whether e contains a call, outside function literals.
func hasCall(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		switch n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			found = true
		}
		return !found
	})
	return found
}

// passIndexDefine works around a yaegi v0.16.1 bug: at the top level,
// x := s[i] fails to compile ("constant definition loop", or a nil pointer
// in its compiler) when s is a slice, array or map whose type comes from
// compiled code (strings.Split's []string, abmll.Add's []*abmll.ABMLL):
// the interpreter cannot type an index of such a value there, though it
// can inside a func and as a call's argument. Where the session variable s
// has an element type the kernel can write in Go syntax (elemType), or an
// earlier statement of the run declared s from a call of compiled code
// whose result type the kernel reads off the symbols (runElem), the index
// in a top-level := becomes a conversion to that type,
//
//	x := s[i]    →   x := (T)(s[i])
//	p := &s[i]   →   p := (*T)(&s[i])
//
// which gives yaegi the type and changes nothing else: converting a value
// to its own type is the identity. Other cases stay as written, and the
// compile error is explained (explainCompile).
func (p *preparer) passIndexDefine(src string, decl bool) string {
	if decl || p.elemType == nil || !strings.Contains(src, ":=") || !strings.Contains(src, "[") {
		return src
	}
	const prefix = "package main; func main() {"
	full := prefix + src + "\n}"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", full, 0)
	if err != nil || len(f.Decls) == 0 {
		return src
	}
	fd, ok := f.Decls[0].(*ast.FuncDecl)
	if !ok || fd.Body == nil {
		return src
	}
	tf := fset.File(f.Pos())
	off := func(pos token.Pos) int { return tf.Offset(pos) - len(prefix) }
	var es []edit
	for _, st := range fd.Body.List {
		as, ok := st.(*ast.AssignStmt)
		if !ok || as.Tok != token.DEFINE {
			continue
		}
		if len(as.Lhs) != len(as.Rhs) {
			continue // v, ok := m[k] was split by passCommaOK into v := m[k] and a func
		}
		for _, rhs := range as.Rhs {
			var stack []ast.Node
			ast.Inspect(rhs, func(n ast.Node) bool {
				if n == nil {
					stack = stack[:len(stack)-1]
					return true
				}
				var parent ast.Node
				if len(stack) > 0 {
					parent = stack[len(stack)-1]
				}
				stack = append(stack, n)
				switch n := n.(type) {
				case *ast.FuncLit:
					stack = stack[:len(stack)-1] // no f(nil) follows a false
					return false                 // inside a func yaegi types it
				case *ast.IndexExpr:
					var t string
					switch x := n.X.(type) {
					case *ast.Ident:
						if x.Obj != nil {
							return true
						}
						t = p.runElem[x.Name] // declared by an earlier statement of the run
						if t == "" && !p.runDefined[x.Name] {
							t = p.elemType(x.Name) // a session variable
						}
					case *ast.CallExpr:
						if p.callElem != nil {
							t = p.callElem(x) // strings.Fields(s)[0]
						}
					}
					// A conversion is not addressable: &s[i] converts the
					// pointer instead, and s[i].f or s[i].M() stays as written
					// unless the element is a pointer
					// (a pointer method of an element of a slice of values
					// needs the element itself).
					switch pn := parent.(type) {
					case *ast.UnaryExpr:
						if pn.Op == token.AND && t != "" {
							// &s[i] → (*T)(&s[i]): the pointer's type instead
							es = append(es, edit{off: off(pn.Pos()), ins: "(*" + t + ")("}, edit{off: off(pn.End()), ins: ")"})
							return true
						}
					case *ast.SelectorExpr:
						if !strings.HasPrefix(t, "*") {
							t = ""
						}
					}
					if t != "" {
						es = append(es, edit{off: off(n.Pos()), ins: "(" + t + ")("}, edit{off: off(n.End()), ins: ")"})
						return true // and its index, which may index too
					}
				}
				return true
			})
		}
	}
	return applyEdits(src, es)
}
