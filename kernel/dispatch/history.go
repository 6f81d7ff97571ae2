package dispatch

import (
	"github.com/gopeft/gopeft/kernel/wire"
)

// history keeps the cells run with store_history in memory, for
// history_request (tail, range and search).
type history struct {
	session int
	entries []histEntry
}

type histEntry struct {
	line   int
	input  string
	output *string // text/plain of the execute_result, if any
}

// maxHistory bounds the memory kept; the oldest entries go first.
const maxHistory = 100000

func (h *history) add(line int, input string, output *string) {
	if len(h.entries) >= maxHistory {
		n := copy(h.entries, h.entries[len(h.entries)/10:])
		clear(h.entries[n:])
		h.entries = h.entries[:n]
	}
	h.entries = append(h.entries, histEntry{line, input, output})
}

type historyRequest struct {
	Output         bool   `json:"output"`
	Raw            bool   `json:"raw"`
	HistAccessType string `json:"hist_access_type"`
	Session        int    `json:"session"`
	Start          int    `json:"start"`
	Stop           *int   `json:"stop"`
	N              *int   `json:"n"`
	Pattern        string `json:"pattern"`
	Unique         bool   `json:"unique"`
}

func (k *Kernel) historyRequest(m *wire.Message) {
	var req historyRequest
	if !k.decode(wire.Shell, m, &req) {
		return
	}
	k.reply(wire.Shell, m, map[string]any{"status": "ok", "history": k.history.query(req)})
}

// query answers a history request. Sessions: this kernel's is 1; 0 and
// negative numbers (relative, as in IPython) also mean the current one.
func (h *history) query(req historyRequest) [][]any {
	var sel []histEntry
	switch req.HistAccessType {
	case "tail":
		n := 10
		if req.N != nil {
			n = *req.N
		}
		n = clamp(n, 0, len(h.entries))
		sel = h.entries[len(h.entries)-n:]
	case "range":
		if req.Session > 0 && req.Session != h.session {
			break
		}
		for _, e := range h.entries {
			if e.line >= req.Start && (req.Stop == nil || e.line < *req.Stop) {
				sel = append(sel, e)
			}
		}
	case "search":
		pattern := req.Pattern
		if pattern == "" {
			pattern = "*"
		}
		for _, e := range h.entries {
			if globMatch(pattern, e.input) {
				sel = append(sel, e)
			}
		}
		if req.Unique { // keep the latest of each input
			seen := map[string]bool{}
			var u []histEntry
			for i := len(sel) - 1; i >= 0; i-- {
				if !seen[sel[i].input] {
					seen[sel[i].input] = true
					u = append(u, sel[i])
				}
			}
			for i, j := 0, len(u)-1; i < j; i, j = i+1, j-1 {
				u[i], u[j] = u[j], u[i]
			}
			sel = u
		}
		if req.N != nil {
			n := clamp(*req.N, 0, len(sel))
			sel = sel[len(sel)-n:]
		}
	}
	out := make([][]any, 0, len(sel))
	for _, e := range sel {
		if req.Output {
			var o any
			if e.output != nil {
				o = *e.output
			}
			out = append(out, []any{h.session, e.line, []any{e.input, o}})
		} else {
			out = append(out, []any{h.session, e.line, e.input})
		}
	}
	return out
}

// globMatch reports whether s matches the glob pattern as SQLite's GLOB
// (which IPython's history search uses) does: * any run, ? one character,
// [abc], [a-z] and [^abc] classes; case-sensitive, and '/' is not special.
func globMatch(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	// Iterative matcher with backtracking to the last star.
	pi, ti := 0, 0
	starP, starT := -1, 0
	for ti < len(t) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starT = pi, ti
				pi++
				continue
			case '?':
				pi++
				ti++
				continue
			case '[':
				if ok, next, valid := matchClass(p, pi, t[ti]); valid {
					if ok {
						pi, ti = next, ti+1
						continue
					}
				} else if t[ti] == '[' { // unterminated class: literal '['
					pi++
					ti++
					continue
				}
			default:
				if p[pi] == t[ti] {
					pi++
					ti++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starT++
		pi, ti = starP+1, starT
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class starting at p[i] == '['. It
// returns whether c matches, the index after the class, and whether the
// class is well formed.
func matchClass(p []rune, i int, c rune) (match bool, next int, valid bool) {
	j := i + 1
	negate := false
	if j < len(p) && p[j] == '^' {
		negate = true
		j++
	}
	first := true
	for j < len(p) && (first || p[j] != ']') {
		lo := p[j]
		hi := lo
		if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
			hi = p[j+2]
			j += 2
		}
		if lo <= c && c <= hi {
			match = true
		}
		j++
		first = false
	}
	if j >= len(p) {
		return false, 0, false
	}
	return match != negate, j + 1, true
}
