package dispatch

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newHist(t *testing.T, file string) (*history, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	h := &history{file: file, log: log.New(logs, "", 0)}
	t.Cleanup(h.close)
	return h, logs
}

// historyBytes is the size of everything the history keeps on disk for file.
func historyBytes(t *testing.T, file string) int64 {
	t.Helper()
	var total int64
	_ = filepath.Walk(filepath.Dir(file), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

func tailOf(h *history, n int) [][]any {
	return h.query(historyRequest{HistAccessType: "tail", N: &n, Output: true})
}

// A 50 MB cell is stored truncated, and the next kernel starts cleanly.
func TestHistoryHugeCell(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gopeft", "history.jsonl")
	h, _ := newHist(t, file)
	out := strings.Repeat("o", 3<<20)
	h.add(1, strings.Repeat("x", 50<<20), &out)
	h.add(2, "print after", nil)
	h.close()
	if n := historyBytes(t, file); n > 1<<20 {
		t.Errorf("history takes %d bytes on disk after a 50 MB cell", n)
	}
	if n := len(h.entries[0].Input); n > maxEntryBytes {
		t.Errorf("the 50 MB cell takes %d bytes in memory", n)
	}

	h2, logs := newHist(t, file)
	got := tailOf(h2, 5)
	if h2.session != 2 || len(got) != 2 {
		t.Fatalf("next kernel: session %d, entries %v", h2.session, len(got))
	}
	in := got[0][2].([]any)[0].(string)
	o := got[0][2].([]any)[1].(string)
	for _, s := range []string{in, o} {
		if !strings.Contains(s, "only the first") || len(s) > maxEntryBytes {
			t.Errorf("truncated entry: %d bytes, ends %q", len(s), s[max(0, len(s)-80):])
		}
	}
	if !strings.Contains(in, fmt.Sprint(50<<20)) {
		t.Errorf("the marker does not give the original size: %q", in[len(in)-80:])
	}
	if got[1][2].([]any)[0] != "print after" {
		t.Errorf("entry after the huge cell: %v", got[1])
	}
	if l := logs.String(); l != "" {
		t.Errorf("logs: %s", l)
	}
}

// The shared file of earlier versions, with every kind of bad line: the
// good entries around them load, one message reports them, and the next
// session number is above every one in use.
func TestHistoryUnreadableLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	var b strings.Builder
	b.WriteString(`{"session":1,"line":1,"input":"first"}` + "\n")
	b.WriteString(strings.Repeat("x", 2<<20) + "\n") // over-long (> 1 MiB), not JSON
	b.WriteString(`{"session":1,"line":2,"input":"second"}` + "\n")
	b.WriteString("{\n")                                                     // invalid JSON
	b.WriteString("{\"session\":2,\"line\":1,\"input\":\"bad \xff\xfe\"}\n") // invalid UTF-8
	b.WriteString("null\n")
	b.WriteString(`{"session":0,"line":1,"input":"no session"}` + "\n")
	b.WriteString(`{"session":3,"line":1,"input":"third","output":"3"}` + "\r\n")
	b.WriteString(`{"session":9,"line":1,"inpu`) // torn last line
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h, logs := newHist(t, file)
	got := fmt.Sprint(tailOf(h, 10))
	if want := "[[1 1 [first <nil>]] [1 2 [second <nil>]] [3 1 [third 3]]]"; got != want {
		t.Errorf("loaded %s, want %s", got, want)
	}
	if h.session != 4 {
		t.Errorf("session %d, want 4", h.session)
	}
	l := logs.String()
	if strings.Count(l, "\n") != 1 || !strings.Contains(l, "skipped 6 unreadable") {
		t.Errorf("want one log line about 6 skipped lines, got:\n%s", l)
	}
	h.add(1, "fourth", nil)
	h.close()
	h2, _ := newHist(t, file)
	if got := fmt.Sprint(tailOf(h2, 2)); got != "[[3 1 [third 3]] [4 1 [fourth <nil>]]]" || h2.session != 5 {
		t.Errorf("after compaction: %s, session %d", got, h2.session)
	}
}

// The shared file of earlier versions after a 50 MB cell: bufio.Scanner
// gave up at that line, dropping every later entry and reusing their
// session numbers. Only its tail is read now, any line length is fine.
func TestHistoryOldFileWithHugeLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"session":1,"line":1,"input":"%s"}`+"\n", strings.Repeat("x", 50<<20))
	for s := 1; s <= 3; s++ {
		fmt.Fprintf(f, `{"session":%d,"line":2,"input":"after %d"}`+"\n", s, s)
	}
	f.Close()
	h, logs := newHist(t, file)
	if got := fmt.Sprint(tailOf(h, 10)); got != "[[1 2 [after 1 <nil>]] [2 2 [after 2 <nil>]] [3 2 [after 3 <nil>]]]" {
		t.Errorf("loaded %s", got)
	}
	if h.session != 4 {
		t.Errorf("session %d, want 4", h.session)
	}
	if l := logs.String(); strings.Count(l, "\n") > 1 || strings.Contains(l, "too long") {
		t.Errorf("log:\n%s", l)
	}
	if n := historyBytes(t, file); n > maxSessionBytes {
		t.Errorf("history still takes %d bytes", n)
	}
}

// Session files with bad lines, one of another session, an empty one.
func TestHistorySessionFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	dir := sessionsDir(file)
	os.MkdirAll(dir, 0o700)
	write := func(n int, s string) {
		if err := os.WriteFile(filepath.Join(dir, sessionFileName(n)), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1, `{"session":1,"line":1,"input":"a"}`+"\n"+strings.Repeat("{", 3<<20)+"\n"+`{"session":1,"line":2,"input":"b"}`+"\n")
	write(2, "")
	write(5, `{"session":4,"line":1,"input":"misfiled"}`+"\n"+`{"session":5,"line":1,"input":"c"}`+"\n")
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a session"), 0o600)
	h, logs := newHist(t, file)
	if got := fmt.Sprint(tailOf(h, 10)); got != "[[1 1 [a <nil>]] [1 2 [b <nil>]] [5 1 [c <nil>]]]" {
		t.Errorf("loaded %s", got)
	}
	if h.session != 6 {
		t.Errorf("session %d, want 6", h.session)
	}
	if l := logs.String(); strings.Count(l, "\n") != 1 || !strings.Contains(l, "skipped 2") {
		t.Errorf("log:\n%s", l)
	}
	if _, err := os.Stat(filepath.Join(dir, sessionFileName(6))); err != nil {
		t.Errorf("session 6 has no file: %v", err)
	}
}

// A kernel that stored nothing still used its number.
func TestHistoryNeverReusesSession(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	var sessions []int
	for i := 0; i < 3; i++ {
		h, _ := newHist(t, file)
		tailOf(h, 1) // a history_request, no execute
		sessions = append(sessions, h.session)
		h.close()
	}
	if fmt.Sprint(sessions) != "[1 2 3]" {
		t.Errorf("sessions %v, want [1 2 3]", sessions)
	}
}

// Kernels started together get distinct sessions and lose nothing.
func TestHistoryConcurrentKernels(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	const kernels, cells = 8, 30
	hs := make([]*history, kernels)
	for i := range hs {
		hs[i], _ = newHist(t, file)
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() { defer wg.Done(); h.load() }()
	}
	wg.Wait()
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= cells; i++ {
				h.add(i, fmt.Sprintf("cell %d of %d", i, h.session), nil)
			}
			h.close()
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, h := range hs {
		if seen[h.session] {
			t.Errorf("session %d used twice", h.session)
		}
		seen[h.session] = true
	}
	h, logs := newHist(t, file)
	all := tailOf(h, 1000)
	if len(all) != kernels*cells {
		t.Fatalf("%d entries, want %d", len(all), kernels*cells)
	}
	for _, e := range all {
		if want := fmt.Sprintf("cell %v of %v", e[1], e[0]); e[2].([]any)[0] != want {
			t.Errorf("entry %v", e)
		}
	}
	if h.session != kernels+1 || logs.String() != "" {
		t.Errorf("session %d, logs %q", h.session, logs)
	}
}

// Many sessions of many entries: the files stay within the total bound,
// each session's own file within its bound, and numbers keep increasing.
func TestHistoryTotalBound(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 24 MiB")
	}
	file := filepath.Join(t.TempDir(), "gopeft", "history.jsonl")
	cell := strings.Repeat("c", 20<<10)
	last := 0
	for s := 0; s < 12; s++ {
		h, logs := newHist(t, file)
		for i := 1; i <= 100; i++ {
			h.add(i, fmt.Sprintf("%d:%d %s", s, i, cell), nil)
		}
		if h.session <= last {
			t.Fatalf("session %d after %d", h.session, last)
		}
		last = h.session
		h.close()
		if n := historyBytes(t, file); n > maxTotalBytes {
			t.Fatalf("after session %d the history takes %d bytes (bound %d)", h.session, n, maxTotalBytes)
		}
		if l := logs.String(); l != "" {
			t.Errorf("logs: %s", l)
		}
	}
	h, _ := newHist(t, file)
	tail := tailOf(h, 1)
	if len(tail) != 1 || !strings.HasPrefix(tail[0][2].([]any)[0].(string), "11:100 ") {
		t.Errorf("last entry lost: %v", fmt.Sprint(tail)[:min(100, len(fmt.Sprint(tail)))])
	}
	if n := len(listSessions(sessionsDir(file))); n < 3 {
		t.Errorf("only %d sessions kept", n)
	}
}

// A crash (here: a failed rename) during a compaction leaves the old file
// whole and no temporary file behind.
func TestHistoryCompactionAtomic(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.jsonl")
	h, logs := newHist(t, file)
	h.lim = historyLimits{entryBytes: 1 << 10, lineBytes: 8 << 10, sessionBytes: 16 << 10, totalBytes: 64 << 10,
		sessionFiles: 10, memEntries: 1000, memBytes: 1 << 20}
	renameFile = func(string, string) error { return fmt.Errorf("simulated crash") }
	defer func() { renameFile = os.Rename }()
	cell := strings.Repeat("z", 900)
	for i := 1; i <= 20; i++ { // ~19 KiB > 16 KiB: a compaction is attempted
		h.add(i, fmt.Sprint(i, cell), nil)
	}
	if !strings.Contains(logs.String(), "simulated crash") {
		t.Fatalf("no compaction attempted:\n%s", logs)
	}
	check := func(wantFirst, wantLast int) {
		t.Helper()
		data, err := os.ReadFile(h.path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if !strings.HasPrefix(lines[0], fmt.Sprintf(`{"session":1,"line":%d,`, wantFirst)) ||
			!strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf(`{"session":1,"line":%d,`, wantLast)) {
			t.Errorf("file holds lines %.30s … %.30s, want %d … %d", lines[0], lines[len(lines)-1], wantFirst, wantLast)
		}
		des, _ := os.ReadDir(h.dir)
		for _, de := range des {
			if strings.HasPrefix(de.Name(), ".tmp") {
				t.Errorf("temporary file left: %s", de.Name())
			}
		}
	}
	check(1, 20) // whole, and still appended to
	renameFile = os.Rename
	h.add(21, fmt.Sprint(21, cell), nil)
	if fi, _ := os.Stat(h.path); fi.Size() > 8<<10 {
		t.Errorf("compacted file is %d bytes, want at most 8 KiB", fi.Size())
	}
	check(14, 21)
}

// Memory holds a bounded number of bytes, the newest entries.
func TestHistoryMemoryBound(t *testing.T) {
	h, _ := newHist(t, "")
	h.lim = defaultHistoryLimits
	h.lim.memBytes = 1 << 20
	cell := strings.Repeat("m", 60<<10)
	for i := 1; i <= 100; i++ {
		h.add(i, cell, nil)
	}
	if h.memBytes > 1<<20 || len(h.entries) == 0 || h.entries[len(h.entries)-1].Line != 100 {
		t.Errorf("%d entries, %d bytes, last %d", len(h.entries), h.memBytes, h.entries[len(h.entries)-1].Line)
	}
}
