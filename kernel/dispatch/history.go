package dispatch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gopeft/gopeft/kernel/wire"
)

// history keeps the cells run with store_history, for history_request
// (tail, range and search).
//
// Without a file it lives in memory only and this kernel is session 1. With
// Config.HistoryFile = F (say ~/.local/share/gopeft/history.jsonl) every
// kernel session has its own file, D/NNNNNNNN.jsonl, where D is F without
// its extension plus ".d" (…/gopeft/history.d) and NNNNNNNN the session
// number; each line is one JSON entry {"session","line","input","output"}.
//
//   - Session numbers. At first use (the first execute or history_request)
//     a kernel takes one more than the largest session number found (file
//     names, and the entries of F, the single shared file of earlier
//     versions) by creating its file with O_EXCL, retrying with the next
//     number if another kernel got there first. A number is never reused:
//     files are only pruned by a newer session, never the newest, and a
//     session's file exists from the moment its number is taken even if it
//     stays empty. Kernels running at the same time each write only their
//     own file, so they need no lock.
//   - Entries. An input or an output larger than maxEntryBytes (64 KiB) is
//     stored truncated at a rune boundary, with a marker line saying how long
//     it was (truncMarker), in the file and in memory alike.
//   - Size. When this session's file grows past maxSessionBytes (4 MiB) it
//     is compacted to its newest entries within maxSessionBytes/2: written
//     to a temporary file in D, synced, then renamed over the old one, so a
//     crash leaves either the old file or the new one whole. Older sessions
//     (and F) are pruned, oldest first (F compacted rather than deleted
//     while it can keep some entries), so that they stay within
//     maxTotalBytes-maxSessionBytes (12 MiB) and maxSessionFiles (1000)
//     files: with one kernel at a time the whole history stays under
//     maxTotalBytes (16 MiB); each concurrent kernel may add its own
//     maxSessionBytes.
//   - Loading accepts any content: a line longer than maxLineBytes (1 MiB)
//     is skipped without being buffered, and so is a line that is not valid
//     UTF-8, not a JSON entry, of another session than its file, or not
//     terminated by a newline (a torn write). One log message counts what
//     was skipped.
//   - Memory holds at most maxHistory entries and maxMemBytes (16 MiB) of
//     inputs and outputs, dropping the oldest tenth when either is exceeded.
type history struct {
	session  int // this kernel's session number
	entries  []histEntry
	memBytes int
	file     string
	log      *log.Logger
	loaded   bool
	lim      historyLimits

	dir    string   // D
	path   string   // this session's file
	w      *os.File // open for appending; nil until the session is allocated
	size   int64    // of this session's file
	failed bool     // the file could not be written: stop trying
}

type histEntry struct {
	Session int     `json:"session"`
	Line    int     `json:"line"`
	Input   string  `json:"input"`
	Output  *string `json:"output,omitempty"` // text/plain of the execute_result
}

// historyLimits are the bounds described at history; tests shrink them.
type historyLimits struct {
	entryBytes   int   // longest input or output stored
	lineBytes    int   // longest line read back
	sessionBytes int64 // a session's file is compacted beyond this
	totalBytes   int64 // all the files together
	sessionFiles int   // number of session files kept
	memEntries   int
	memBytes     int
}

const (
	maxHistory      = 20000 // entries in memory
	maxMemBytes     = 16 << 20
	maxEntryBytes   = 64 << 10
	maxLineBytes    = 1 << 20
	maxSessionBytes = 4 << 20
	maxTotalBytes   = 16 << 20
	maxSessionFiles = 1000
	entryOverhead   = 64 // bytes counted per entry in memory besides its text
)

var defaultHistoryLimits = historyLimits{
	entryBytes: maxEntryBytes, lineBytes: maxLineBytes,
	sessionBytes: maxSessionBytes, totalBytes: maxTotalBytes, sessionFiles: maxSessionFiles,
	memEntries: maxHistory, memBytes: maxMemBytes,
}

// renameFile replaces a file by its compacted copy (a variable so that a
// test can make it fail as a crash would).
var renameFile = os.Rename

func (h *history) limits() historyLimits {
	if h.lim == (historyLimits{}) {
		h.lim = defaultHistoryLimits
	}
	return h.lim
}

// sessionsDir returns D for the history file F.
func sessionsDir(file string) string {
	if ext := filepath.Ext(file); ext != "" && ext != filepath.Base(file) {
		return strings.TrimSuffix(file, ext) + ".d"
	}
	return file + ".d"
}

func sessionFileName(n int) string { return fmt.Sprintf("%08d.jsonl", n) }

// sessionFile is one session's file in D.
type sessionFile struct {
	n    int
	path string
	size int64
}

// listSessions returns the session files of dir, oldest first, and removes
// temporary files that a crash during a compaction left behind.
func listSessions(dir string) []sessionFile {
	des, _ := os.ReadDir(dir)
	var out []sessionFile
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".tmp-") {
			if fi, err := de.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		num, ok := strings.CutSuffix(name, ".jsonl")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n <= 0 || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		out = append(out, sessionFile{n, filepath.Join(dir, name), fi.Size()})
	}
	slices.SortFunc(out, func(a, b sessionFile) int { return a.n - b.n })
	return out
}

// loadReport counts the lines skipped while loading, for one log message.
type loadReport struct {
	bad   int
	first string
}

func (r *loadReport) skip(path string, line int, why string) {
	if r.bad == 0 {
		r.first = fmt.Sprintf("%s line %d: %s", path, line, why)
	}
	r.bad++
}

// readEntries calls fn for every valid entry of r. A line longer than
// maxLine is skipped without being held in memory. session > 0 requires
// entries of that session. With skipFirst the first (partial) line is
// ignored: r starts in the middle of a file.
func readEntries(r io.Reader, path string, session, maxLine int, skipFirst bool, rep *loadReport, fn func(e histEntry, raw []byte)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		long, complete := false, false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if !long && len(line)+len(chunk) <= maxLine+1 {
				line = append(line, chunk...)
			} else {
				long, line = true, line[:0]
			}
			if err == nil {
				complete = true
				break
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		switch {
		case skipFirst && n == 1:
		case !complete && !long && len(line) == 0: // the end
		case long:
			rep.skip(path, n, fmt.Sprintf("line longer than %d bytes", maxLine))
		case !complete:
			rep.skip(path, n, "unterminated last line")
		default:
			raw := bytes.TrimRight(line, "\r\n")
			var e histEntry
			switch {
			case len(bytes.TrimSpace(raw)) == 0:
			case !utf8.Valid(raw):
				rep.skip(path, n, "invalid UTF-8")
			case json.Unmarshal(raw, &e) != nil || e.Session <= 0 || e.Line <= 0:
				rep.skip(path, n, "not a history entry")
			case session > 0 && e.Session != session:
				rep.skip(path, n, fmt.Sprintf("entry of session %d in the file of session %d", e.Session, session))
			default:
				fn(e, raw)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			if !errors.Is(err, io.EOF) {
				rep.skip(path, n, err.Error())
			}
			return
		}
	}
}

// readTail reads the entries of the last keep bytes of path (the whole
// file when it is smaller).
func readTail(path string, session int, keep int64, maxLine int, rep *loadReport, fn func(e histEntry, raw []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	skipFirst := false
	if fi.Size() > keep {
		if _, err := f.Seek(fi.Size()-keep-1, io.SeekStart); err != nil {
			return err
		}
		skipFirst = true // the rest of the line cut in two (or the newline before the first whole one)
	}
	readEntries(f, path, session, maxLine, skipFirst, rep, fn)
	return nil
}

// compactFile rewrites path with its newest entries (truncated as new
// ones are) that fit in keep bytes: a temporary file in the same directory
// is written, synced and renamed over path, so that path is always either
// the old file or the new one, whole. keep <= 0 removes path.
func (h *history) compactFile(path string, session int, keep int64) error {
	if keep <= 0 {
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	lim := h.limits()
	var lines [][]byte
	var ignore loadReport // reported when loaded
	err := readTail(path, session, keep+int64(lim.lineBytes), lim.lineBytes, &ignore, func(e histEntry, _ []byte) {
		lines = append(lines, h.encode(e))
	})
	if err != nil {
		return err
	}
	var total int64
	first := len(lines)
	for first > 0 && total+int64(len(lines[first-1])) <= keep {
		first--
		total += int64(len(lines[first]))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	bw := bufio.NewWriter(tmp)
	for _, l := range lines[first:] {
		bw.Write(l)
	}
	err = bw.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return renameFile(tmp.Name(), path)
}

// truncate bounds s to max bytes, marker included, cutting at a rune
// boundary. The result is at most max bytes, so truncating again changes
// nothing.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(fmt.Sprintf(truncMarker, max, len(s)))
	if cut < 0 {
		return s[:0]
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(truncMarker, cut, len(s))
}

// truncMarker ends an input or output that was too long to keep whole.
const truncMarker = "\n// [gopeft history: only the first %d of %d bytes were kept]"

// bound applies the per-entry limit.
func (h *history) bound(e histEntry) histEntry {
	lim := h.limits()
	e.Input = truncate(e.Input, lim.entryBytes)
	if e.Output != nil && len(*e.Output) > lim.entryBytes {
		o := truncate(*e.Output, lim.entryBytes)
		e.Output = &o
	}
	return e
}

// encode returns the line of e (bounded), newline included.
func (h *history) encode(e histEntry) []byte {
	b, _ := json.Marshal(h.bound(e))
	return append(b, '\n')
}

func (h *history) load() {
	if h.loaded {
		return
	}
	h.loaded = true
	h.session = 1
	if h.file == "" {
		return
	}
	lim := h.limits()
	h.dir = sessionsDir(h.file)
	var rep loadReport
	var old []histEntry
	collect := func(e histEntry, _ []byte) { old = append(old, h.bound(e)) }

	// Session numbers in use: the files of D and the entries of F.
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		h.log.Printf("history: %v; keeping history in memory only", err)
		h.failed = true
	}
	sessions := listSessions(h.dir)
	floor := 0
	if len(sessions) > 0 {
		floor = sessions[len(sessions)-1].n
	}
	legacy, legacySize := h.file, int64(-1)
	if fi, err := os.Stat(legacy); err == nil && fi.Mode().IsRegular() {
		legacySize = fi.Size()
		// Only its tail: that is all that is kept of it anyway.
		_ = readTail(legacy, 0, lim.totalBytes, lim.lineBytes, &rep, func(e histEntry, raw []byte) {
			floor = max(floor, e.Session)
			collect(e, raw)
		})
	}
	h.session = floor + 1
	if !h.failed {
		h.allocate()
	}

	// Prune older sessions, then read what is left.
	before := legacySize
	sessions, legacySize = h.prune(sessions, legacySize)
	if legacySize != before { // F was compacted or removed: read what is left
		old = old[:0]
		if legacySize > 0 {
			_ = readTail(legacy, 0, lim.totalBytes, lim.lineBytes, &loadReport{}, collect)
		}
	}
	for _, s := range sessions {
		if s.n == h.session {
			continue
		}
		if err := readTail(s.path, s.n, s.size, lim.lineBytes, &rep, collect); err != nil && !errors.Is(err, fs.ErrNotExist) {
			rep.skip(s.path, 0, err.Error())
		}
	}
	if rep.bad > 0 {
		h.log.Printf("history: skipped %d unreadable line(s) (first: %s)", rep.bad, rep.first)
	}
	slices.SortStableFunc(old, func(a, b histEntry) int { return a.Session - b.Session })
	mine := h.entries
	h.entries, h.memBytes = nil, 0
	for _, e := range append(old, mine...) {
		h.keep(e)
	}
}

// allocate takes the session number h.session, or the next free one, by
// creating its file.
func (h *history) allocate() {
	for tries := 0; tries < 1000; tries++ {
		p := filepath.Join(h.dir, sessionFileName(h.session))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			h.path, h.w, h.size = p, f, 0
			return
		}
		if !errors.Is(err, fs.ErrExist) {
			h.log.Printf("history: %v; keeping history in memory only", err)
			h.failed = true
			return
		}
		h.session++
	}
	h.log.Printf("history: no free session number in %s; keeping history in memory only", h.dir)
	h.failed = true
}

// prune deletes (F: compacts) the oldest sessions before this one until the
// others fit in totalBytes-sessionBytes and sessionFiles. It returns the
// session files left and the size of F (-1: none).
func (h *history) prune(sessions []sessionFile, legacySize int64) ([]sessionFile, int64) {
	lim := h.limits()
	budget := lim.totalBytes - lim.sessionBytes
	var total int64
	count := 0
	var older []sessionFile
	for _, s := range sessions {
		if s.n < h.session {
			older = append(older, s)
			total += s.size
			count++
		}
	}
	if legacySize > 0 {
		total += legacySize
	}
	if total <= budget && count <= lim.sessionFiles && legacySize <= lim.sessionBytes {
		return sessions, legacySize
	}
	if legacySize > 0 {
		// F first: it holds the oldest sessions. Keep of it what fits.
		rest := total - legacySize
		keep := min(budget-rest, lim.sessionBytes/2)
		if err := h.compactFile(h.file, 0, keep); err != nil {
			h.log.Printf("history: compacting %s: %v", h.file, err)
		} else if fi, err := os.Stat(h.file); err == nil {
			total, legacySize = rest+fi.Size(), fi.Size()
		} else {
			total, legacySize = rest, -1
		}
	}
	removed := map[int]bool{}
	for _, s := range older {
		if total <= budget && count <= lim.sessionFiles {
			break
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.log.Printf("history: %v", err)
			continue
		}
		removed[s.n] = true
		total -= s.size
		count--
	}
	left := sessions[:0:0]
	for _, s := range sessions {
		if !removed[s.n] {
			left = append(left, s)
		}
	}
	return left, legacySize
}

// keep appends e to the entries in memory, within the memory limits.
func (h *history) keep(e histEntry) {
	lim := h.limits()
	sz := func(e histEntry) int {
		n := len(e.Input) + entryOverhead
		if e.Output != nil {
			n += len(*e.Output)
		}
		return n
	}
	h.entries = append(h.entries, e)
	h.memBytes += sz(e)
	if len(h.entries) > lim.memEntries || h.memBytes > lim.memBytes {
		drop := max(len(h.entries)/10, 1)
		freed := 0
		for _, d := range h.entries[:drop] {
			freed += sz(d)
		}
		for h.memBytes-freed > lim.memBytes && drop < len(h.entries)-1 {
			freed += sz(h.entries[drop]) // a tenth was not enough
			drop++
		}
		h.memBytes -= freed
		n := copy(h.entries, h.entries[drop:])
		clear(h.entries[n:])
		h.entries = h.entries[:n]
	}
}

func (h *history) add(line int, input string, output *string) {
	h.load()
	e := h.bound(histEntry{h.session, line, input, output})
	h.keep(e)
	h.persist(e)
}

func (h *history) persist(e histEntry) {
	if h.file == "" || h.failed || h.w == nil {
		return
	}
	b := h.encode(e)
	n, err := h.w.Write(b)
	h.size += int64(n)
	if err != nil {
		h.log.Printf("history: %v; keeping history in memory only", err)
		h.failed = true
		return
	}
	if lim := h.limits(); h.size > lim.sessionBytes {
		h.compactOwn()
	}
}

// compactOwn compacts this session's file to half its limit, then prunes
// older sessions again.
func (h *history) compactOwn() {
	lim := h.limits()
	h.w.Close() // renaming over an open file fails on some systems
	h.w = nil
	if err := h.compactFile(h.path, h.session, lim.sessionBytes/2); err != nil {
		h.log.Printf("history: compacting %s: %v", h.path, err)
	}
	f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		h.log.Printf("history: %v; keeping history in memory only", err)
		h.failed = true
		return
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		h.log.Printf("history: %v; keeping history in memory only", err)
		h.failed = true
		return
	}
	h.w, h.size = f, fi.Size()
	legacy := int64(-1)
	if fi, err := os.Stat(h.file); err == nil && fi.Mode().IsRegular() {
		legacy = fi.Size()
	}
	h.prune(listSessions(h.dir), legacy)
}

func (h *history) close() {
	if h.w != nil {
		h.w.Close()
		h.w = nil
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
