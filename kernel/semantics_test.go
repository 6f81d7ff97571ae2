package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopeft/gopeft/kernel/dispatch"
	"github.com/gopeft/gopeft/kernel/session"
	"github.com/gopeft/gopeft/kernel/wire"
)

// Go-semantics conformance suite: each case in testdata/semantics/NAME.txt
// is a notebook (cells run in order in one fresh kernel, over real Jupyter
// messages) and the equivalent standalone Go program. The cells' stdout must
// equal the program's; a program that panics must make a cell fail with the
// same panic message. See kernel/kerneltest/README.md.
//
//	go test ./kernel/ -run TestGoSemantics -v
//	go test ./kernel/ -run TestGoSemantics -update-table   # rewrites the README table

var updateTable = flag.Bool("update-table", false, "rewrite the Go-semantics table in kernel/kerneltest/README.md")

// semCase is one parsed testdata/semantics file.
type semCase struct {
	name    string
	comment string   // the header, without the want line
	want    string   // "same" or "unsupported"
	cells   []string // cell1, cell2, …
	program string   // main.go
}

// Classes of a case.
const (
	classSame        = "same"
	classUnsupported = "unsupported"
	classWrong       = "wrong"
)

// parseSemCase reads the txtar-like format: header lines, then files each
// introduced by a line "-- NAME --".
func parseSemCase(name string, data []byte) (*semCase, error) {
	c := &semCase{name: name}
	files := map[string]string{}
	var order []string
	cur := ""
	var header, body strings.Builder
	inFile := false
	flush := func() {
		if inFile {
			files[cur] = body.String()
			order = append(order, cur)
		}
		body.Reset()
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		t := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) > 6 {
			flush()
			cur = strings.TrimSpace(t[3 : len(t)-3])
			if _, dup := files[cur]; dup {
				return nil, fmt.Errorf("%s: file %s twice", name, cur)
			}
			inFile = true
			continue
		}
		if inFile {
			body.WriteString(line)
			continue
		}
		if w, ok := strings.CutPrefix(strings.TrimSpace(t), "want:"); ok {
			c.want = strings.TrimSpace(w)
			continue
		}
		header.WriteString(line)
	}
	flush()
	c.comment = strings.TrimSpace(header.String())
	// want: wrong marks a known wrong answer of the interpreter, listed as
	// wrong in kernel/kerneltest/README.md: the suite fails when such a case
	// changes (fixed, refused, or another wrong answer is not detected, but
	// a fix shows), so the table stays true.
	if c.want != classSame && c.want != classUnsupported && c.want != classWrong {
		return nil, fmt.Errorf("%s: want %q (need a line `want: same`, `want: unsupported` or `want: wrong`)", name, c.want)
	}
	for i := 1; ; i++ {
		src, ok := files[fmt.Sprintf("cell%d", i)]
		if !ok {
			break
		}
		c.cells = append(c.cells, src)
	}
	c.program = files["main.go"]
	if len(c.cells) == 0 || c.program == "" {
		return nil, fmt.Errorf("%s: needs cell1… and main.go", name)
	}
	for _, f := range order {
		if f != "main.go" && !strings.HasPrefix(f, "cell") {
			return nil, fmt.Errorf("%s: unknown file %s", name, f)
		}
	}
	if len(c.cells)+1 != len(order) {
		return nil, fmt.Errorf("%s: cells must be numbered cell1, cell2, … without gaps", name)
	}
	return c, nil
}

func loadSemCases(t *testing.T) []*semCase {
	paths, err := filepath.Glob(filepath.Join("testdata", "semantics", "*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in testdata/semantics: %v", err)
	}
	sort.Strings(paths)
	var cases []*semCase
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseSemCase(strings.TrimSuffix(filepath.Base(p), ".txt"), data)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return cases
}

// progResult is what `go run main.go` did.
type progResult struct {
	stdout, stderr string
	err            error  // a failure to run at all, or a timeout
	panicMsg       string // first line of a panic ("panic: " removed), "" if none
	exitCode       int
}

// buildPrograms builds the cases' main.go programs with one `go build`
// into a directory of binaries and returns the binary of each case. The
// binaries are cached in the user cache directory, each under the hash of
// its source and the Go version, so that only new or changed programs are
// built (building is most of the suite's time).
func buildPrograms(t *testing.T, cases []*semCase) map[string]string {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ver, err := exec.Command(goTool, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	cache := filepath.Join(t.TempDir(), "bin")
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "gopeft-semantics")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	bins := map[string]string{}
	keep := map[string]bool{}
	var missing []*semCase
	for _, c := range cases {
		h := sha256.Sum256([]byte(string(ver) + "\x00" + c.program))
		name := c.name + "-" + hex.EncodeToString(h[:])[:16]
		bins[c.name] = filepath.Join(cache, name)
		keep[name] = true
		if _, err := os.Stat(bins[c.name]); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		mod := t.TempDir()
		out := t.TempDir()
		if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module semantics\n\ngo 1.26\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range missing {
			dir := filepath.Join(mod, c.name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(c.program), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(goTool, "build", "-ldflags=-s -w", "-o", out+string(filepath.Separator), "./...")
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false", "GOTOOLCHAIN=local")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build of the cases' programs: %v\n%s", err, msg)
		}
		for _, c := range missing {
			data, err := os.ReadFile(filepath.Join(out, c.name))
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.CreateTemp(cache, ".tmp-*")
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(f.Name(), 0o755)
			}
			if err == nil {
				err = os.Rename(f.Name(), bins[c.name])
			}
			if err != nil {
				os.Remove(f.Name())
				t.Fatal(err)
			}
		}
	}
	// Drop binaries of programs that changed or went.
	if old, err := os.ReadDir(cache); err == nil {
		for _, e := range old {
			if !keep[e.Name()] && !strings.HasPrefix(e.Name(), ".tmp-") {
				os.Remove(filepath.Join(cache, e.Name()))
			}
		}
	}
	return bins
}

// runPrograms runs the built programs, a few at a time.
func runPrograms(bins map[string]string, cases []*semCase) map[string]*progResult {
	res := map[string]*progResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := runProgram(bins[c.name])
			mu.Lock()
			res[c.name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

func runProgram(path string) *progResult {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := &progResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
		r.exitCode = ee.ExitCode()
	} else if err != nil {
		r.err = err
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if m, ok := strings.CutPrefix(l, "panic: "); ok {
			r.panicMsg = strings.TrimSuffix(m, " [recovered]")
			r.panicMsg = strings.TrimSuffix(r.panicMsg, " [recovered, repanicked]")
			break
		}
		if m, ok := strings.CutPrefix(l, "fatal error: "); ok {
			r.panicMsg = m
			break
		}
	}
	return r
}

// cellRun is what one cell did in the kernel.
type cellRun struct {
	stdout, stderr string
	results        []string // execute_result text (not compared)
	status         string
	ename, evalue  string
	traceback      []string
}

// runCells runs the cells in order in one fresh kernel, up to the first
// failing one (as a notebook with stop_on_error does).
func runCells(t *testing.T, cells []string) []cellRun {
	c, stop := startSemKernel(t)
	var runs []cellRun
	hung := false
	for _, code := range cells {
		r := execCell(c, code, 10*time.Second)
		runs = append(runs, r)
		hung = r.ename == "Timeout" && r.evalue == noReply
		if r.status != "ok" {
			break
		}
	}
	stop(hung)
	return runs
}

// startSemKernel is startKernel with a stop function instead of a cleanup:
// the session of a kernel that did not answer an interrupt is left running
// (closing it would wait for the stuck cell) so that the suite goes on.
func startSemKernel(t *testing.T) (*client, func(hung bool)) {
	t.Helper()
	conn, err := wire.Listen(wire.ConnectionInfo{Transport: "tcp", IP: "127.0.0.1", Key: "secret", SignatureScheme: "hmac-sha256"},
		wire.Options{Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.New()
	if err != nil {
		t.Fatal(err)
	}
	k := dispatch.New(conn, s, dispatch.Config{ImplementationVersion: Version, Log: log.New(io.Discard, "", 0)})
	ctx, cancel := context.WithCancel(context.Background())
	go k.Run(ctx)
	cl, err := wire.Dial(conn.Info())
	if err != nil {
		t.Fatal(err)
	}
	stop := func(hung bool) {
		cancel()
		cl.Close()
		if !hung {
			conn.Close()
			s.Close()
		}
	}
	c := &client{t, cl}
	for i := 0; ; i++ { // wait for the IOPub subscription
		id := c.send(wire.Shell, "kernel_info_request", map[string]any{})
		c.reply(wire.Shell, id)
		if _, ok := c.iopubUntilIdle(id, 300*time.Millisecond); ok {
			return c, stop
		}
		if i == 20 {
			stop(false)
			t.Fatal("no IOPub")
		}
	}
}

// noReply is the evalue of a cell that did not end after an interrupt.
const noReply = "no reply after an interrupt"

// execCell is client.execute with a timeout that interrupts the cell
// instead of failing the test.
func execCell(c *client, code string, timeout time.Duration) cellRun {
	id := c.send(wire.Shell, "execute_request", map[string]any{"code": code, "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	var rep map[string]any
	deadline := time.Now().Add(timeout)
	interrupted := false
	for rep == nil {
		m, err := c.cl.Recv(wire.Shell, time.Until(deadline))
		if err != nil {
			if interrupted {
				return cellRun{status: "error", ename: "Timeout", evalue: noReply}
			}
			c.reply(wire.Control, c.send(wire.Control, "interrupt_request", map[string]any{}))
			interrupted = true
			deadline = time.Now().Add(5 * time.Second)
			continue
		}
		if parent(m) == id {
			rep = body(m)
		}
	}
	r := cellRun{status: fmt.Sprint(rep["status"])}
	if interrupted {
		r.status = "error"
		r.ename, r.evalue = "Timeout", fmt.Sprintf("the cell ran more than %v and was interrupted", timeout)
	} else if r.status == "error" {
		r.ename, _ = rep["ename"].(string)
		r.evalue, _ = rep["evalue"].(string)
		if tb, ok := rep["traceback"].([]any); ok {
			for _, l := range tb {
				r.traceback = append(r.traceback, fmt.Sprint(l))
			}
		}
	}
	evs, _ := c.iopubUntilIdle(id, 10*time.Second)
	for _, e := range evs {
		switch e.typ {
		case "stream":
			text, _ := e.content["text"].(string)
			if e.content["name"] == "stderr" {
				r.stderr += text
			} else {
				r.stdout += text
			}
		case "execute_result", "display_data":
			if data, ok := e.content["data"].(map[string]any); ok {
				s, _ := data["text/plain"].(string)
				r.results = append(r.results, s)
			}
		}
	}
	return r
}

// classify compares the cells with the program. It returns the class and,
// unless the class is same, why.
func classify(runs []cellRun, p *progResult) (class, why string) {
	var stdout, stderr strings.Builder
	var failed *cellRun
	for i := range runs {
		stdout.WriteString(runs[i].stdout)
		stderr.WriteString(runs[i].stderr)
		if runs[i].status != "ok" {
			failed = &runs[i]
		}
	}
	if failed != nil && failed.ename == "Unsupported" {
		return classUnsupported, "Unsupported: " + failed.evalue
	}
	if p.err != nil {
		return classWrong, fmt.Sprintf("the program did not run: %v", p.err)
	}
	if stdout.String() != p.stdout {
		if failed != nil {
			return classWrong, fmt.Sprintf("stdout differs; cell%d failed: %s: %s", len(runs), failed.ename, failed.evalue)
		}
		return classWrong, "stdout differs"
	}
	if p.exitCode != 0 || p.panicMsg != "" {
		if failed == nil {
			return classWrong, fmt.Sprintf("the program failed (%q) but no cell did", p.panicMsg)
		}
		if !panicMatches(failed, p.panicMsg) {
			return classWrong, fmt.Sprintf("panic message: go %q, kernel %s: %q", p.panicMsg, failed.ename, failed.evalue)
		}
		return classSame, ""
	}
	if failed != nil {
		return classWrong, fmt.Sprintf("cell failed: %s: %s", failed.ename, failed.evalue)
	}
	if stderr.String() != p.stderr {
		return classWrong, "stderr differs"
	}
	return classSame, ""
}

// panicMatches reports whether a failed cell reports Go's panic message
// (its first line): as the error value, as "ename: evalue", or as the
// first traceback line.
func panicMatches(r *cellRun, msg string) bool {
	if msg == "" {
		return false
	}
	cands := []string{r.evalue, r.ename + ": " + r.evalue}
	if len(r.traceback) > 0 {
		cands = append(cands, r.traceback[0])
	}
	for _, c := range cands {
		if strings.TrimSpace(c) == msg {
			return true
		}
	}
	return false
}

func describeRuns(runs []cellRun) string {
	var b strings.Builder
	for i, r := range runs {
		fmt.Fprintf(&b, "  cell%d: status %s\n", i+1, r.status)
		if r.stdout != "" {
			fmt.Fprintf(&b, "    stdout: %q\n", r.stdout)
		}
		if r.stderr != "" {
			fmt.Fprintf(&b, "    stderr: %q\n", r.stderr)
		}
		for _, res := range r.results {
			fmt.Fprintf(&b, "    result: %q\n", res)
		}
		if r.status != "ok" {
			fmt.Fprintf(&b, "    error: %s: %q\n", r.ename, r.evalue)
			for _, l := range r.traceback {
				fmt.Fprintf(&b, "      %s\n", l)
			}
		}
	}
	return b.String()
}

func describeProgram(p *progResult) string {
	s := fmt.Sprintf("  go run: stdout %q\n", p.stdout)
	if p.panicMsg != "" {
		s += fmt.Sprintf("  go run: panic %q (exit %d)\n", p.panicMsg, p.exitCode)
	} else if p.stderr != "" {
		s += fmt.Sprintf("  go run: stderr %q\n", p.stderr)
	}
	if p.err != nil {
		s += fmt.Sprintf("  go run: %v\n", p.err)
	}
	return s
}

func TestGoSemantics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs every case's Go program")
	}
	t0 := time.Now()
	cases := loadSemCases(t)
	bins := buildPrograms(t, cases)
	progs := runPrograms(bins, cases)
	tBuild := time.Since(t0)
	classes := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runs := runCells(t, c.cells)
			p := progs[c.name]
			class, why := classify(runs, p)
			classes[c.name] = class
			if class != c.want {
				t.Errorf("%s: want %s, got %s (%s)\n%s%s", c.name, c.want, class, why, describeRuns(runs), describeProgram(p))
			} else if class != classSame && testing.Verbose() {
				t.Logf("%s: %s (%s)", c.name, class, why)
			}
		})
	}
	table := semTable(cases, classes)
	t.Logf("Go programs built and run in %v, whole suite %v\n%s", tBuild.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), table)
	if *updateTable && len(classes) < len(cases) {
		t.Error("-update-table needs every case run (no -run filter below TestGoSemantics)")
	} else if *updateTable {
		if err := writeSemTable(filepath.Join("kerneltest", "README.md"), table); err != nil {
			t.Error(err)
		}
	}
}

// semTable is the summary and the per-case rows, in Markdown.
func semTable(cases []*semCase, classes map[string]string) string {
	n := map[string]int{}
	for _, c := range cases {
		n[classes[c.name]]++
	}
	var b strings.Builder
	b.WriteString("| cases | same as go run | clear error (Unsupported) | wrong |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d |\n\n", len(cases), n[classSame], n[classUnsupported], n[classWrong])
	b.WriteString("| case | class | checks |\n|---|---|---|\n")
	for _, c := range cases {
		desc := strings.Join(strings.Fields(c.comment), " ")
		desc = strings.ReplaceAll(desc, "|", `\|`)
		class := classes[c.name]
		if class == "" {
			class = "not run"
		}
		if class != c.want {
			class = "**" + class + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, class, desc)
	}
	return b.String()
}

const semMarker = "<!-- semantics-table -->"

// writeSemTable replaces the text between the two markers in the README.
func writeSemTable(path, table string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i := strings.Index(s, semMarker)
	if i < 0 {
		return fmt.Errorf("%s: no %s marker", path, semMarker)
	}
	j := strings.Index(s[i+len(semMarker):], semMarker)
	if j < 0 {
		return fmt.Errorf("%s: one %s marker, need two around the table", path, semMarker)
	}
	j += i + len(semMarker)
	s = s[:i+len(semMarker)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
