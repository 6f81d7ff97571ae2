package dispatch

import (
	"bufio"
	"encoding/json"
	"log"
	"os"
	"path/filepath"

	"github.com/gopeft/gopeft/kernel/wire"
)

// history keeps the cells run with store_history, for history_request
// (tail, range and search). With a file, entries of earlier kernel sessions
// are loaded from it (lazily, at first use) and new ones appended to it, one
// JSON object per line; this kernel's session number is one more than the
// largest found.
type history struct {
	session int // this kernel's session number
	entries []histEntry
	file    string
	log     *log.Logger
	loaded  bool
	w       *os.File
	failed  bool // the file could not be written: stop trying
}

type histEntry struct {
	Session int     `json:"session"`
	Line    int     `json:"line"`
	Input   string  `json:"input"`
	Output  *string `json:"output,omitempty"` // text/plain of the execute_result
}

// maxHistory bounds the entries kept in memory (and loaded from the file).
const maxHistory = 20000

func (h *history) load() {
	if h.loaded {
		return
	}
	h.loaded = true
	h.session = 1
	if h.file == "" {
		return
	}
	f, err := os.Open(h.file)
	if err != nil {
		if !os.IsNotExist(err) {
			h.log.Printf("history: %v", err)
		}
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var old []histEntry
	for sc.Scan() {
		var e histEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Session <= 0 {
			continue // a torn or foreign line
		}
		old = append(old, e)
		h.session = max(h.session, e.Session+1)
		if len(old) >= 2*maxHistory {
			old = append(old[:0], old[len(old)-maxHistory:]...)
		}
	}
	if err := sc.Err(); err != nil {
		h.log.Printf("history %s: %v", h.file, err)
	}
	if len(old) > maxHistory {
		old = old[len(old)-maxHistory:]
	}
	h.entries = append(old, h.entries...)
}

func (h *history) add(line int, input string, output *string) {
	h.load()
	if len(h.entries) >= maxHistory {
		n := copy(h.entries, h.entries[len(h.entries)/10:])
		clear(h.entries[n:])
		h.entries = h.entries[:n]
	}
	e := histEntry{h.session, line, input, output}
	h.entries = append(h.entries, e)
	h.persist(e)
}

func (h *history) persist(e histEntry) {
	if h.file == "" || h.failed {
		return
	}
	if h.w == nil {
		if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err == nil {
			h.w, err = os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		}
		if h.w == nil {
			h.log.Printf("history: cannot write %s; keeping history in memory only", h.file)
			h.failed = true
			return
		}
	}
	b, _ := json.Marshal(e)
	if _, err := h.w.Write(append(b, '\n')); err != nil {
		h.log.Printf("history: %v; keeping history in memory only", err)
		h.failed = true
	}
}

func (h *history) close() {
	if h.w != nil {
		h.w.Close()
	}
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

// query answers a history request. As in IPython, a range's session 0 (or
// absent) is the current one and a negative session counts back from it.
func (h *history) query(req historyRequest) [][]any {
	h.load()
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
		session := req.Session
		if session <= 0 {
			session += h.session
		}
		for _, e := range h.entries {
			if e.Session == session && e.Line >= req.Start && (req.Stop == nil || e.Line < *req.Stop) {
				sel = append(sel, e)
			}
		}
	case "search":
		pattern := req.Pattern
		if pattern == "" {
			pattern = "*"
		}
		for _, e := range h.entries {
			if globMatch(pattern, e.Input) {
				sel = append(sel, e)
			}
		}
		if req.Unique { // keep the latest of each input
			seen := map[string]bool{}
			var u []histEntry
			for i := len(sel) - 1; i >= 0; i-- {
				if !seen[sel[i].Input] {
					seen[sel[i].Input] = true
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
			if e.Output != nil {
				o = *e.Output
			}
			out = append(out, []any{e.Session, e.Line, []any{e.Input, o}})
		} else {
			out = append(out, []any{e.Session, e.Line, e.Input})
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
