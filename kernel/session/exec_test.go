package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInterruptInterpretedLoop(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "kept := 7")
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled time.Time
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancelled = time.Now()
		cancel()
	}()
	res := s.Execute(ctx, "n := 0\nfor {\n\tn++\n}", 2, &recorder{})
	lag := time.Since(cancelled)
	if res.Error == nil || res.Error.Name != "Interrupted" {
		t.Fatalf("want Interrupted, got %+v", res)
	}
	if lag > time.Second {
		t.Errorf("Execute returned %v after the interrupt", lag)
	}
	t.Logf("interpreted loop: returned %v after cancel", lag)
	res, _ = runOK(t, s, "kept + 1")
	if text(res) != "8" {
		t.Errorf("state lost after interrupt: %q", text(res))
	}
}

func TestInterruptCompiledCall(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "kept := \"still here\"\nimport \"math/rand\"\nvar big *mat.Dense")
	// Grow the matrix until its SVD, timed uninterrupted, runs long enough
	// for the interrupt at 200 ms to land inside it, however fast the machine.
	var full time.Duration
	for n := 900; ; n = n * 3 / 2 {
		runOK(t, s, fmt.Sprintf("big = mat.NewDense(%d, %d, nil)\nfor i := 0; i < %d; i++ { for j := 0; j < %d; j++ { big.Set(i, j, rand.NormFloat64()) } }", n, n, n, n))
		t0 := time.Now()
		runOK(t, s, "_, err := accel.ThinSVD(ctx, big)\nerr")
		full = time.Since(t0)
		if full >= 600*time.Millisecond {
			break
		}
		if n > 3000 {
			t.Fatalf("SVD of %d×%d took only %v: cannot test interruption", n, n, full)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled time.Time
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancelled = time.Now()
		cancel()
	}()
	res := s.Execute(ctx, "svd, err := accel.ThinSVD(ctx, big)", 3, &recorder{})
	lag := time.Since(cancelled)
	if res.Error == nil || res.Error.Name != "Interrupted" {
		t.Fatalf("want Interrupted, got %+v", res)
	}
	if lag > time.Second {
		t.Errorf("Execute returned %v after the interrupt", lag)
	}
	t.Logf("compiled SVD: full %v, interrupted call returned %v after cancel", full, lag)
	res, _ = runOK(t, s, "kept")
	if text(res) != "still here" {
		t.Errorf("state lost: %q", text(res))
	}
}

func TestPanicsAndExit(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "before := 1")
	cases := []struct {
		code, name, value string
		line              string // a traceback line that must appear
	}{
		{"x := 1\nvar m map[string]int\nm[\"a\"] = x", "runtime error", "assignment to entry in nil map", "cell line 3: m[\"a\"] = x"},
		{"func deep(n int) {\n\tif n == 0 {\n\t\tpanic(\"bottom\")\n\t}\n\tdeep(n - 1)\n}\ndeep(2)", "panic", "bottom", "cell line 7: deep(2)"},
		{"os.Exit(2)", "Exit", "os.Exit(2) called", "cell line 1: os.Exit(2)"},
		{"y := 1\n\nundefinedFn(y)", "CompileError", "3:1: undefined: undefinedFn", "cell line 3: undefinedFn(y)"},
		{"peft.Maybe(nil)\npanic(peft.ArgError{Op: \"Op\", Msg: \"bad arg\"})", "ArgError", "peft: Op: bad arg", "cell line 2"},
	}
	for _, c := range cases {
		rec := &recorder{}
		res := s.Execute(context.Background(), c.code, 2, rec)
		if res.Error == nil {
			t.Errorf("%q: no error", c.code)
			continue
		}
		tb := strings.Join(res.Error.Traceback, "\n")
		if res.Error.Name != c.name || !strings.Contains(res.Error.Value, c.value) || !strings.Contains(tb, c.line) {
			t.Errorf("%q:\n got %s | %s | %s\nwant %s | %s | %s", c.code, res.Error.Name, res.Error.Value, tb, c.name, c.value, c.line)
		}
		if len(rec.events) != 0 {
			t.Errorf("%q: the error must be the only output, also got %q", c.code, rec.events)
		}
	}
	res, _ := runOK(t, s, "before")
	if text(res) != "1" {
		t.Errorf("state lost: %q", text(res))
	}
}

func TestGoroutinePanic(t *testing.T) {
	s := newSession(t)
	_, rec := runOK(t, s, "done := make(chan bool)\ngo func() {\n\tdefer close(done)\n\tvar p *struct{ X int }\n\t_ = p.X\n}()\n<-done\ntime.Sleep(20 * time.Millisecond)\nfmt.Println(\"after\")")
	all := strings.Join(rec.events, "")
	if !strings.Contains(all, "panic in a goroutine") || !strings.Contains(all, "after") {
		t.Errorf("events: %q", rec.events)
	}
	if strings.Count(all, "panic in a goroutine") != 1 {
		t.Errorf("reported more than once: %q", rec.events)
	}
	// A goroutine that panics after its cell ended is reported with the next cell.
	runOK(t, s, "func later() { time.Sleep(50 * time.Millisecond); panic(\"late\") }\ngo later()")
	time.Sleep(150 * time.Millisecond)
	_, rec = runOK(t, s, "1")
	if all := strings.Join(rec.events, ""); !strings.Contains(all, "late") {
		t.Errorf("late panic not reported: %q", rec.events)
	}
}

// timedRecorder notes when the first stream arrives.
type timedRecorder struct {
	recorder
	once  sync.Once
	first time.Time
}

func (r *timedRecorder) Stream(name, text string) {
	r.once.Do(func() { r.first = time.Now() })
	r.recorder.Stream(name, text)
}

func TestStreaming(t *testing.T) {
	s := newSession(t)
	// Order across interpreted fmt, os.Stdout, compiled fmt (via strings.NewReader
	// + io.Copy), log and displays.
	code := `import ("io"; "log")
fmt.Println("one")
os.Stdout.WriteString("two\n")
io.Copy(os.Stdout, strings.NewReader("three\n"))
nb.Display(nb.Markdown("*four*"))
fmt.Fprintln(os.Stderr, "five")
log.SetFlags(0)
log.Print("six")
nb.Display(nb.HTML("<i>seven</i>"))
fmt.Println("eight")`
	_, rec := runOK(t, s, code)
	want := []string{"stdout:one\ntwo\nthree\n", "display[]:*four*", "stderr:five\nsix\n", "display[]:<i>seven</i>", "stdout:eight\n"}
	if strings.Join(rec.events, "|") != strings.Join(want, "|") {
		t.Errorf("order:\n got %q\nwant %q", rec.events, want)
	}
	// Output arrives while the cell runs, not at its end.
	tr := &timedRecorder{}
	t0 := time.Now()
	res := s.Execute(context.Background(), "fmt.Println(\"early\")\ntime.Sleep(400 * time.Millisecond)\nfmt.Println(\"late\")", 3, tr)
	end := time.Now()
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if tr.first.IsZero() || end.Sub(tr.first) < 300*time.Millisecond {
		t.Errorf("first output %v after start, cell ended at %v", tr.first.Sub(t0), end.Sub(t0))
	}
	// The process streams are restored after the cell.
	if os.Stdout != origStdout || os.Stderr != origStderr {
		t.Error("os.Stdout/os.Stderr not restored")
	}
}

var origStdout, origStderr = os.Stdout, os.Stderr

func TestDisplayUpdateClearAndContext(t *testing.T) {
	s := newSession(t)
	_, rec := runOK(t, s, `nb.DisplayWithID("p", nb.Markdown("0%"))
for i := 1; i <= 2; i++ { nb.Update("p", nb.Markdown(fmt.Sprint(i*50, "%"))) }
nb.ClearOutput(true)
fmt.Println(ctx == nb.Context(), ctx.Err())`)
	want := []string{"display[p]:0%", "update[p]:50%", "update[p]:100%", "clear", "stdout:true <nil>\n"}
	if strings.Join(rec.events, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", rec.events, want)
	}
}

func TestStdin(t *testing.T) {
	s := newSession(t)
	rec := &recorder{inputs: []string{"Ada", "42"}}
	res := s.Execute(context.Background(), "var name string\nvar age int\nfmt.Print(\"name? \")\nfmt.Scanln(&name)\nfmt.Scanln(&age)\nfmt.Sprint(name, \" is \", age)", 1, rec)
	if res.Error != nil || text(res) != "Ada is 42" {
		t.Errorf("got %q %+v", text(res), res.Error)
	}
}

func TestCellShapes(t *testing.T) {
	s := newSession(t)
	cases := []struct{ code, want string }{
		{"a := 2\nfunc sq(x int) int { return x * x }\nb := sq(a)\ntype pair struct{ L, R int }\npair{a, b}", "{L:2 R:4}"},
		{"func sq(x int) int { return x * x * x }\nsq(2)", "8"},                                               // redefined func
		{"type pair struct{ L, R int }\nfunc (p pair) Sum() int { return p.L + p.R }\npair{1, 2}.Sum()", "3"}, // same type, new method
		{"a = 10\na", "10"},                  // assignment shows nothing, then a
		{"if a > 5 {\n\ta = 0\n}", "<none>"}, // statement: nothing
		{"func f() {}\nf()", "<none>"},       // void call: nothing
		{"func two() (int, string) { return 1, \"x\" }\ntwo()", "(1, \"x\")"}, // several values
		{"fmt.Println(\"x\")", "<none>"},                                      // print call: no (n, err)
		{"var e error\ne", "<nil>"},
		{"// comment only", "<none>"},
		{"x := []float64{1, 2}; x[1]", "2"},
		{"for i := 0; i < 2; i++ {\n}\nimport \"strings\"\nstrings.Repeat(\"ab\", 2)", "abab"},
		{"m := mat.NewDense(1, 2, []float64{3, 4})\nm", "mat.Dense 1×2\n[3  4]"},
	}
	for _, c := range cases {
		rec := &recorder{}
		res := s.Execute(context.Background(), c.code, 1, rec)
		if res.Error != nil {
			t.Errorf("%q: %s: %s", c.code, res.Error.Name, res.Error.Value)
			continue
		}
		if got := text(res); got != c.want {
			t.Errorf("%q: got %q, want %q", c.code, got, c.want)
		}
	}
}

func TestInputHelper(t *testing.T) {
	s := newSession(t)
	rec := &recorder{inputs: []string{"LoRA"}}
	res := s.Execute(context.Background(), "m := input(\"method? \")\n\"using \" + m", 1, rec)
	if res.Error != nil || text(res) != "using LoRA" {
		t.Errorf("got %q %+v", text(res), res.Error)
	}
	// Without a front-end that allows input, the cell fails with a clear error.
	res = s.Execute(context.Background(), "input(\"x\")", 2, noInput{})
	if res.Error == nil || !strings.Contains(res.Error.Value, "input: stdin not allowed") {
		t.Errorf("got %+v", res.Error)
	}
}

type noInput struct{ nopPub }

func (noInput) Input(string, bool) (string, error) { return "", errors.New("stdin not allowed") }

// An interrupted cell must not go on running beside later cells (its
// top-level code shares yaegi's global frame with them).
func TestInterruptedCellStaysStopped(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "counter := 0\nresumed := false")
	for _, code := range []string{"for {\n\tcounter++\n}", "time.Sleep(20 * time.Second)\nresumed = true"} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t0 := time.Now()
		res := s.Execute(ctx, code, 2, &recorder{})
		cancel()
		if res.Error == nil || res.Error.Name != "Interrupted" {
			t.Fatalf("%q: %+v", code, res)
		}
		if d := time.Since(t0); d > 1200*time.Millisecond {
			t.Errorf("%q: interrupt took %v", code, d)
		}
	}
	res1, _ := runOK(t, s, "counter")
	time.Sleep(100 * time.Millisecond)
	res2, _ := runOK(t, s, "time.Sleep(50 * time.Millisecond)\ncounter")
	if text(res1) != text(res2) {
		t.Errorf("interrupted loop still running: counter %s then %s", text(res1), text(res2))
	}
	if res, _ := runOK(t, s, "resumed"); text(res) != "false" {
		t.Errorf("the rest of the interrupted cell ran: resumed = %s", text(res))
	}
}

// Funcs declared in one cell that use ctx see the running cell's context.
func TestCtxRebound(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "func alive() bool { return ctx.Err() == nil }")
	for i := 0; i < 3; i++ {
		if res, _ := runOK(t, s, "alive()"); text(res) != "true" {
			t.Fatalf("cell %d: ctx of an ended cell: %s", i, text(res))
		}
	}
	// A cell may still redeclare ctx as something else.
	if res, _ := runOK(t, s, "ctx := 3\nctx + 1"); text(res) != "4" {
		t.Errorf("redeclared ctx: %s", text(res))
	}
}

// A panic in a func declared by an earlier cell names that cell's line.
func TestTracebackAcrossCells(t *testing.T) {
	s := newSession(t)
	if res := s.Execute(context.Background(), "func check(v int) {\n\tif v < 0 {\n\t\tpanic(\"negative\")\n\t}\n}", 4, &recorder{}); res.Error != nil {
		t.Fatal(res.Error)
	}
	res := s.Execute(context.Background(), "x := -1\n\ncheck(x)", 5, &recorder{})
	if res.Error == nil {
		t.Fatal("no error")
	}
	tb := strings.Join(res.Error.Traceback, "\n")
	if !strings.Contains(tb, "cell [4] line 2: if v < 0 {") || !strings.Contains(tb, "cell line 3: check(x)") {
		t.Errorf("traceback:\n%s", tb)
	}
}

// blockingInput never answers, like a front-end whose user walked away.
type blockingInput struct{ nopPub }

func (blockingInput) Input(string, bool) (string, error) { select {} }

func TestInterruptWhileWaitingForInput(t *testing.T) {
	s := newSession(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res := s.Execute(ctx, "name := input(\"name? \")\nfmt.Println(name)", 1, blockingInput{})
	if res.Error == nil || res.Error.Name != "Interrupted" {
		t.Fatalf("got %+v", res)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("took %v", d)
	}
	t0 = time.Now()
	runOK(t, s, "1")
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Errorf("next cell waited %v", d)
	}
}

func TestInterruptBlockedChannel(t *testing.T) {
	s := newSession(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := s.Execute(ctx, "ch := make(chan int)\n<-ch", 1, &recorder{})
	if res.Error == nil || res.Error.Name != "Interrupted" {
		t.Fatalf("got %+v", res)
	}
	t0 := time.Now()
	if res, _ := runOK(t, s, "2 + 2"); text(res) != "4" {
		t.Errorf("after: %s", text(res))
	}
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Errorf("next cell took %v", d)
	}
}

// What a goroutine prints after its cell ended shows with the next cell.
func TestBackgroundOutput(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "go func() {\n\ttime.Sleep(50 * time.Millisecond)\n\tfmt.Println(\"from the background\")\n}()")
	time.Sleep(150 * time.Millisecond)
	_, rec := runOK(t, s, "fmt.Println(\"next cell\")")
	if got := rec.stdout(); got != "from the background\nnext cell\n" {
		t.Errorf("got %q", got)
	}
}
