package session

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"regexp"
	"strconv"
	"strings"
)

// yaegi picks its parse mode from the first token of the source it is given
// (a file for import/func/type/var/const, main's body otherwise), so a cell
// is cut at its top-level statement boundaries into segments, and
// consecutive segments of the same kind make a run.

// segment is one top-level declaration or statement of a cell.
type segment struct {
	start, end int // byte offsets in the cell
	line       int // cell line (1-based) of its first token
	decl       bool
	imp        bool // an import declaration (runs of imports stay apart: Go wants them first)
}

// run is a sequence of consecutive declarations, or of statements.
type run struct {
	decl      bool
	src       string // the cell's text from the first segment to the last
	start     int    // byte offset of src in the cell
	line      int    // cell line of src's first byte
	segs      []segment
	finalLine int // set by splitFinalExpr
}

// cellToken is a scanned token with its byte offset.
type cellToken struct {
	off int
	tok token.Token
	lit string
}

func (t cellToken) end() int {
	switch {
	case t.tok == token.SEMICOLON && t.lit == "\n":
		return t.off
	case t.lit != "":
		return t.off + len(t.lit)
	}
	return t.off + len(t.tok.String())
}

// scanCell returns the tokens of code, or the first scanner error.
func scanCell(code string) ([]cellToken, *token.File, error) {
	fset := token.NewFileSet()
	file := fset.AddFile("cell", -1, len(code))
	var errs scanner.ErrorList
	var sc scanner.Scanner
	sc.Init(file, []byte(code), func(pos token.Position, msg string) { errs.Add(pos, msg) }, 0)
	var toks []cellToken
	for {
		pos, tok, lit := sc.Scan()
		if tok == token.EOF {
			break
		}
		toks = append(toks, cellToken{off: file.Offset(pos), tok: tok, lit: lit})
	}
	if len(errs) > 0 {
		return toks, file, errs
	}
	return toks, file, nil
}

// syntaxError is a scanner error found while splitting, with exact cell
// positions.
type syntaxError struct{ msg string }

func (e syntaxError) Error() string { return e.msg }

// splitCell cuts code into runs of declarations and of statements.
func splitCell(code string) ([]run, error) {
	toks, file, err := scanCell(code)
	if err != nil {
		if el, ok := err.(scanner.ErrorList); ok && len(el) > 0 {
			e := el[0]
			return nil, syntaxError{fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Column, e.Msg)}
		}
		return nil, syntaxError{err.Error()}
	}
	var segs []segment
	depth := 0
	header := false // between for/if/switch/select and its '{'
	first := -1     // index in toks of the current segment's first token
	closeSeg := func(last int) {
		if first < 0 {
			return
		}
		s := segment{start: toks[first].off, end: toks[last].end(), line: file.Line(file.Pos(toks[first].off))}
		s.decl = isDecl(toks[first : last+1])
		s.imp = toks[first].tok == token.IMPORT
		segs = append(segs, s)
		first = -1
	}
	for i, t := range toks {
		switch t.tok {
		case token.LPAREN, token.LBRACK:
			depth++
		case token.LBRACE:
			if depth == 0 {
				header = false
			}
			depth++
		case token.RPAREN, token.RBRACK, token.RBRACE:
			depth--
		case token.FOR, token.IF, token.SWITCH, token.SELECT:
			if depth == 0 {
				header = true
			}
		}
		if t.tok == token.SEMICOLON && depth == 0 && !(header && t.lit == ";") {
			closeSeg(i - 1)
			continue
		}
		if first < 0 {
			first = i
		}
	}
	if first >= 0 {
		closeSeg(len(toks) - 1)
	}
	var runs []run
	for _, s := range segs {
		if n := len(runs); n > 0 && runs[n-1].decl == s.decl && runs[n-1].segs[0].imp == s.imp {
			r := &runs[n-1]
			r.segs = append(r.segs, s)
			r.src = code[r.start:s.end]
			continue
		}
		// The run starts on the line after the previous segment, so that
		// comments before it (doc comments) come with it.
		lineStart := 0
		if n := len(runs); n > 0 {
			prev := runs[n-1].segs[len(runs[n-1].segs)-1]
			lineStart = s.start // two kinds on one line: columns shift
			if nl := strings.IndexByte(code[prev.end:s.start], '\n'); nl >= 0 {
				lineStart = prev.end + nl + 1
			}
		}
		line := 1 + strings.Count(code[:lineStart], "\n")
		runs = append(runs, run{decl: s.decl, start: lineStart, line: line, segs: []segment{s}, src: code[lineStart:s.end]})
	}
	return runs, nil
}

// isDecl reports whether a segment's tokens make a top-level declaration.
func isDecl(ts []cellToken) bool {
	switch ts[0].tok {
	case token.IMPORT, token.TYPE, token.CONST, token.VAR:
		return true
	case token.FUNC:
		if len(ts) < 2 {
			return false
		}
		if ts[1].tok == token.IDENT {
			return true
		}
		if ts[1].tok != token.LPAREN {
			return false
		}
		// func (r T) Name(…) is a method; func (x int) {…}(…) a literal.
		depth := 0
		for i := 1; i < len(ts); i++ {
			switch ts[i].tok {
			case token.LPAREN:
				depth++
			case token.RPAREN:
				depth--
				if depth == 0 {
					return i+2 < len(ts) && ts[i+1].tok == token.IDENT &&
						(ts[i+2].tok == token.LPAREN || ts[i+2].tok == token.LBRACK)
				}
			}
		}
	}
	return false
}

// splitFinalExpr separates a statement run's last statement when it is an
// expression, whose value the cell shows. It returns the rest of the run
// and the expression ("" if there is none).
func splitFinalExpr(r *run) (rest, final string) {
	last := r.segs[len(r.segs)-1]
	text := r.src[last.start-r.start:]
	f, err := parser.ParseFile(token.NewFileSet(), "", "package p; func _() {\n"+text+"\n}", 0)
	if err != nil || len(f.Decls) != 1 {
		return r.src, ""
	}
	body := f.Decls[0].(*ast.FuncDecl).Body
	if len(body.List) != 1 {
		return r.src, ""
	}
	es, ok := body.List[0].(*ast.ExprStmt)
	if !ok || isPrintCall(es.X) {
		return r.src, ""
	}
	r.finalLine = last.line
	rest = r.src[:last.start-r.start]
	return rest, text
}

// yaegiPos matches a position in a yaegi or go/parser message.
var yaegiPos = regexp.MustCompile(`(^|[\s(\[])(?:_\.go:)?(\d+):(\d+)`)

// fixPositions rewrites the line:col positions of a message from the
// padded source the session gave yaegi (one line below the cell's) to cell
// lines.
func fixPositions(msg string) string {
	return yaegiPos.ReplaceAllStringFunc(msg, func(m string) string {
		sub := yaegiPos.FindStringSubmatch(m)
		l, _ := strconv.Atoi(sub[2])
		if l > 1 {
			l--
		}
		return sub[1] + strconv.Itoa(l) + ":" + sub[3]
	})
}

// cellLines lists the cell lines named by a fixed message.
var cellPos = regexp.MustCompile(`(?:^|[\s(\[])(\d+):\d+`)

func cellLines(msg string) []int {
	var ls []int
	seen := map[int]bool{}
	for _, m := range cellPos.FindAllStringSubmatch(msg, -1) {
		l, _ := strconv.Atoi(m[1])
		if !seen[l] {
			seen[l] = true
			ls = append(ls, l)
		}
	}
	return ls
}

// helpName matches `name?` and `pkg.Name??`.
var helpName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2})\?{1,2}$|^\?{1,2}([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2})$`)

// helpRequest reports whether a cell is `name?` (or `?name`).
func helpRequest(cell string) (string, bool) {
	m := helpName.FindStringSubmatch(cell)
	if m == nil {
		return "", false
	}
	if m[1] != "" {
		return m[1], true
	}
	return m[2], true
}

// isPrintCall reports whether e is a call of fmt's Print/Fprint family,
// whose (n, err) result nobody wants to see after the text.
func isPrintCall(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "fmt" && (strings.HasPrefix(sel.Sel.Name, "Print") || strings.HasPrefix(sel.Sel.Name, "Fprint"))
}

// pureExpr reports whether evaluating the expression src again has no side
// effects: names, selectors, literals, composite literals, indexing and
// operators, but no calls or channel receives.
func pureExpr(src string) bool {
	e, err := parser.ParseExpr(src)
	if err != nil {
		return false
	}
	pure := true
	ast.Inspect(e, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr, *ast.FuncLit:
			pure = false
		case *ast.UnaryExpr:
			if n.Op == token.ARROW {
				pure = false
			}
		}
		return pure
	})
	return pure
}
