package session

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Cells that used to end the kernel process or give a wrong answer: each
// now gives Go's answer or an error, and the session keeps its variables.

func TestRecursionStopsTheCellNotTheKernel(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "keep := 42\nfunc rec(n int) int { return rec(n+1) + 1 }")
	for _, cell := range []string{
		"rec(0)",
		"go func() { rec(0) }()\ntime.Sleep(20 * time.Second)",
	} {
		t0 := time.Now()
		res := s.Execute(context.Background(), cell, 2, &recorder{})
		if res.Error == nil || res.Error.Name != "StackOverflow" {
			t.Fatalf("%q: want a StackOverflow error, got %+v", cell, res)
		}
		t.Logf("%q: stopped after %v: %s", cell, time.Since(t0).Round(time.Millisecond), res.Error.Value)
		if res, _ := runOK(t, s, "keep"); text(res) != "42" {
			t.Fatalf("keep is %s after the overflow", text(res))
		}
	}
}

func TestCallbackPanicIsReported(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "keep := 7")
	_, rec := runOK(t, s, `time.AfterFunc(5*time.Millisecond, func() { panic("boom in callback") })
time.Sleep(200 * time.Millisecond)
fmt.Println("after", keep)`)
	if out := rec.stdout(); !strings.Contains(out, "after 7") {
		t.Errorf("stdout %q", out)
	}
	// On a busy machine the timer may fire after the cell ended: the
	// report then opens the next cell.
	events := strings.Join(rec.events, "\n")
	for i := 0; i < 20 && !strings.Contains(events, "boom in callback"); i++ {
		time.Sleep(100 * time.Millisecond)
		_, next := runOK(t, s, "keep")
		events += strings.Join(next.events, "\n")
	}
	if !strings.Contains(events, "boom in callback") {
		t.Errorf("the callback's panic is not reported: %q", events)
	}
}

func TestHugeMakeIsRefused(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "keep := 3")
	for _, cell := range []string{
		"x := make([]float64, 1<<40)",
		"make([]float64, 1<<41)", // a final expression
		"n := int64(1) << 41\nb := make([]byte, 0, n)\n_ = b",
		"func grow(n int) []int { return make([]int, n) }\ngrow(1 << 42)",
	} {
		res := s.Execute(context.Background(), cell, 2, &recorder{})
		if res.Error == nil || res.Error.Name != "MemoryLimit" || !strings.Contains(res.Error.Value, "memory limit") {
			t.Fatalf("%q: want a MemoryLimit error, got %+v", cell, res.Error)
		}
	}
	// Ordinary sizes, of every integer type and an untyped float constant.
	res, _ := runOK(t, s, "a := make([]int, uint8(3)); b := make([]string, 2, int64(5)); c := make(map[string]int, 10); d := make(chan int, 1e2)\nfmt.Sprint(len(a), len(b), cap(b), len(c), cap(d), keep)")
	if got := text(res); got != "3 2 5 0 100 3" {
		t.Errorf("make with ordinary sizes gives %s", got)
	}
}

// TestInterruptedCellNeverResumes: a compiled call that ignores ctx (an
// external command) outlives the interrupt; the rest of its cell must not
// run, not even after the call returns while later cells run.
func TestInterruptedCellNeverResumes(t *testing.T) {
	s := newSession(t)
	runOK(t, s, `import "sync"`)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	rec := &recorder{}
	// wg.Wait is a compiled call that does not watch ctx.
	res := s.Execute(ctx, "var wg sync.WaitGroup; wg.Add(1); time.AfterFunc(3*time.Second, wg.Done)\nwg.Wait()\nfmt.Println(\"RESUMED\")\nresumed := true", 2, rec)
	if res.Error == nil || res.Error.Name != "Interrupted" {
		t.Fatalf("want Interrupted, got %+v", res)
	}
	// A cell interrupted while it waits for the old one runs nothing.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(900*time.Millisecond, cancel2)
	rec2 := &recorder{}
	res = s.Execute(ctx2, `fmt.Println("second")`, 3, rec2)
	if res.Error == nil || res.Error.Name != "Interrupted" || strings.Contains(rec2.stdout(), "second") {
		t.Fatalf("a cell interrupted while waiting: %+v, stdout %q", res.Error, rec2.stdout())
	}
	if !strings.Contains(strings.Join(rec2.events, ""), "waiting for a compiled call") {
		t.Errorf("the waiting cell does not say why: %q", rec2.events)
	}
	rec3 := &recorder{}
	res = s.Execute(context.Background(), "fmt.Println(\"third\")\ntime.Sleep(300 * time.Millisecond)", 4, rec3)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	res, rec4 := runOK(t, s, `fmt.Println("fourth")`)
	for _, r := range []*recorder{rec, rec2, rec3, rec4} {
		if strings.Contains(strings.Join(r.events, ""), "RESUMED") {
			t.Fatalf("the interrupted cell resumed: %q", r.events)
		}
	}
	// (The cell's statements were compiled before it ran, so resumed is
	// declared; its statement never ran.)
	if res := s.Execute(context.Background(), "resumed", 5, &recorder{}); res.Error == nil && text(res) != "false" {
		t.Errorf("resumed is %s: the rest of the interrupted cell ran", text(res))
	}
}

// TestGoAndDeferBindArgumentsAtTheStatement: the examples of every Go
// course, which gave 1210 and [5 5 5 5 5] when the kernel's go rewrite
// evaluated the arguments late.
func TestGoAndDeferBindArgumentsAtTheStatement(t *testing.T) {
	s := newSession(t)
	cases := []struct{ code, want string }{
		{`import "sync"
var wg sync.WaitGroup
results := make(chan int, 10)
for i := 1; i <= 10; i++ { wg.Add(1); go func(n int) { defer wg.Done(); results <- n * n }(i) }
wg.Wait(); close(results)
sum := 0
for v := range results { sum += v }
fmt.Println(sum)`, "385\n"},
		{`import ("sort"; "sync")
func worker(id int, out chan<- int, wg *sync.WaitGroup) { defer wg.Done(); out <- id }
var wg2 sync.WaitGroup
out := make(chan int, 5)
for i := 0; i < 5; i++ { wg2.Add(1); go worker(i, out, &wg2) }
wg2.Wait(); close(out)
var got []int
for v := range out { got = append(got, v) }
sort.Ints(got)
fmt.Println(got)`, "[0 1 2 3 4]\n"},
		{"for i := 0; i < 3; i++ { defer fmt.Print(i, \" \") }\nfmt.Print(\"done \")", "done 2 1 0 "},
		{"func f() { x := 1; defer fmt.Print(x, \" \"); x = 2; fmt.Print(x, \" \") }\nf()", "2 1 "},
		{"var fs []func()\nfor i := range 3 { fs = append(fs, func() { fmt.Print(i) }) }\nfor _, f := range fs { f() }", "012"},
		{"y := 10\nif y := 5; y > 0 { fmt.Print(y, \" \") }\nfmt.Print(y)", "5 10"},
		{"r := 100\nfor i := 0; i < 3; i++ { q, r := i/2, i%2; _, _ = q, r }\nfmt.Print(r)", "100"},
	}
	for _, c := range cases {
		_, rec := runOK(t, s, c.code)
		if got := rec.stdout(); got != c.want {
			t.Errorf("%s\n  prints %q, want %q", c.code, got, c.want)
		}
	}
}

// TestRedefinitionsTakeEffect: a redeclared type and a redefined func are
// seen by what earlier cells declared.
func TestRedefinitionsTakeEffect(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "type T struct{ A [11]int }\nfunc (t T) N() int { return len(t.A) }\nfunc size() int { return len(T{}.A) }")
	runOK(t, s, "func greet() string { return \"hi\" }\nfunc hello() string { return greet() + \"!\" }\nfunc twice() string { return hello() + hello() }")
	runOK(t, s, "type T struct{ A [22]int; B int }")
	runOK(t, s, "func greet() string { return \"hello\" }")
	res, _ := runOK(t, s, "fmt.Sprintln(len(T{}.A), T{}.N(), size(), T{B: 1}.B, twice())")
	if got := text(res); got != "22 22 22 1 hello!hello!\n" {
		t.Errorf("after redefinitions: %s", got)
	}
}

// TestJSONRefusesRenamedFields: encoding/json would marshal the unexported
// fields of a cell struct (the interpreter renames them b → Xb); the kernel
// refuses, and still marshals a cell struct with exported fields only.
func TestJSONRefusesRenamedFields(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "import \"encoding/json\"\ntype Pub struct{ Name string `json:\"name\"` }\ntype Priv struct{ Name string; secret int }")
	res, _ := runOK(t, s, "b, err := json.Marshal(Pub{\"ann\"})\nstring(b) + fmt.Sprint(err)")
	if got := text(res); got != `{"name":"ann"}<nil>` {
		t.Errorf("json of an exported-only cell struct: %s", got)
	}
	r := s.Execute(context.Background(), "json.Marshal(Priv{\"bob\", 1})", 3, &recorder{})
	if r.Error == nil || r.Error.Name != "Unsupported" || !strings.Contains(r.Error.Value, "unexported fields") {
		t.Fatalf("json of a cell struct with an unexported field: %+v", r.Error)
	}
}

// TestFmtVerbsRefuseCellStructs: %T, %#v and %+v would misname a cell
// struct type; they are refused, while %v, String methods and types of
// packages print as in Go.
func TestFmtVerbsRefuseCellStructs(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "type Day int\nfunc (d Day) String() string { return \"Mon\" }\ntype P struct{ X, Y int; b int }\ntype Q struct{ X, Y int }")
	_, rec := runOK(t, s, "fmt.Printf(\"%v %s %+v %v %T\\n\", Day(0), Day(0), Q{1, 2}, P{1, 2, 3}, 3)")
	if got := rec.stdout(); got != "Mon Mon {X:1 Y:2} {1 2 3} int\n" {
		t.Errorf("ordinary verbs print %q", got)
	}
	for _, cell := range []string{"fmt.Printf(\"%+v\\n\", P{1, 2, 3})", "q := Q{}\nfmt.Sprintf(\"%T\", q)", "fmt.Errorf(\"%#v\", &Q{})"} {
		r := s.Execute(context.Background(), cell, 2, &recorder{})
		if r.Error == nil || r.Error.Name != "Unsupported" {
			t.Errorf("%q: want Unsupported, got %+v", cell, r.Error)
		}
	}
}

// TestTypedNilReturnRefused: a nil *T returned as an error is a non-nil
// error in Go but a nil one in the interpreter; the kernel refuses the
// case when it happens and lets a non-nil pointer through.
func TestTypedNilReturnRefused(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "type MyErr struct{}\nfunc (*MyErr) Error() string { return \"my error\" }\nfunc mayFail(fail bool) error {\n\tvar p *MyErr\n\tif fail {\n\t\tp = &MyErr{}\n\t}\n\treturn p\n}")
	if res, _ := runOK(t, s, "mayFail(true).Error()"); text(res) != "my error" {
		t.Errorf("a non-nil pointer as error: %s", text(res))
	}
	r := s.Execute(context.Background(), "err := mayFail(false)\nfmt.Println(err == nil)", 3, &recorder{})
	if r.Error == nil || r.Error.Name != "Unsupported" || !strings.Contains(r.Error.Value, "nil pointer stored in an interface") {
		t.Fatalf("a nil pointer returned as error: %+v", r.Error)
	}
}

// Spreading a compiled package's slice variable into a variadic call is a
// reflect.Convert failure inside yaegi: it is refused with the workaround,
// and the workaround works.
func TestSpreadOfPackageSliceIsExplained(t *testing.T) {
	s := newSession(t)
	res := s.Execute(context.Background(), "d := peft.DigitsData(0.2, 1, peft.DigitsMLPClasses...)", 1, &recorder{})
	if res.Error == nil || res.Error.Name != "Unsupported" || !strings.Contains(res.Error.Value, "xs := pkg.Values; f(xs...)") {
		t.Fatalf("want an Unsupported error with the workaround, got %+v", res.Error)
	}
	if res, _ := runOK(t, s, "xs := peft.DigitsMLPClasses\nd := peft.DigitsData(0.2, 1, xs...)\nlen(d.Labels) > 0"); text(res) != "true" {
		t.Fatalf("the workaround: %s", text(res))
	}
}

// A parallel assignment with a call (hoisted, see passParallelAssign) whose
// values index a compiled slice compiles at the top level and assigns every
// variable; yaegi alone left the second one 0.
func TestParallelAssignWithCallTopLevel(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "ps := peft.DigitsMLPClasses\nvar a1, a2 int\nvar u, v float64")
	if res, _ := runOK(t, s, "a1, a2 = ps[0], ps[len(ps)-1]\nu, v = math.Sqrt(16), 3\nfmt.Sprint(a1, a2, u, v)"); text(res) != "0 4 4 3" {
		t.Fatalf("got %s, want 0 4 4 3", text(res))
	}
}
