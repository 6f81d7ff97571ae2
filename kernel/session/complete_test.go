package session

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestComplete(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "import \"gonum.org/v1/gonum/stat\"\nlearningRate := 0.1\nfunc trainLoop() {}\ntype layerSpec struct{ Width int }")
	cases := []struct {
		code    string
		want    []string // must be among the matches
		notWant []string
		start   int
	}{
		{code: "stat.Me", want: []string{"Mean", "MeanStdDev", "MeanVariance"}, notWant: []string{"Median"}, start: 5},
		{code: "x := peft.", want: []string{"ArgError", "Maybe", "ShapeError"}, start: 10},
		{code: "lear", want: []string{"learningRate"}, start: 0},
		{code: "fmt.Println(train", want: []string{"trainLoop"}, start: 12},
		{code: "var l lay", want: []string{"layerSpec"}, start: 6},
		{code: "for i := ra", want: []string{"range"}, start: 9},
		{code: "é := le", want: []string{"len", "learningRate"}, start: 5},
	}
	for _, c := range cases {
		m, start, end := s.Complete(c.code, len([]rune(c.code)))
		for _, w := range c.want {
			if !slices.Contains(m, w) {
				t.Errorf("Complete(%q): %q missing from %v", c.code, w, m)
			}
		}
		for _, w := range c.notWant {
			if slices.Contains(m, w) {
				t.Errorf("Complete(%q): %q should not match", c.code, w)
			}
		}
		if start != c.start || end != len([]rune(c.code)) {
			t.Errorf("Complete(%q): range %d:%d, want %d:%d", c.code, start, end, c.start, len([]rune(c.code)))
		}
	}
	// A package not imported yet completes by its name.
	if m, _, _ := s.Complete("distuv.Nor", 10); !slices.Contains(m, "Normal") {
		t.Errorf("distuv.Nor: %v", m)
	}
	// Completion in the middle of a cell, before other text.
	m, start, _ := s.Complete("stat.Mea\nfmt.Println()", 8)
	if start != 5 || !slices.Contains(m, "Mean") {
		t.Errorf("mid-cell completion: %v from %d", m, start)
	}
}

func TestInspectAndHelp(t *testing.T) {
	s := newSession(t)
	runOK(t, s, "// scale doubles things.\nfunc scale(x float64) float64 { return 2 * x }\nalpha := 16.0\ndense := mat.NewDense(2, 2, nil)")
	cases := []struct {
		code   string
		cursor int
		want   []string
	}{
		{"fmt.Println", 6, []string{"func Println(a ...any)", "Println formats"}},
		{"mat.NewDense(2, 2, nil)", 13, []string{"func NewDense(r, c int, data []float64) *Dense"}},
		{"peft.Maybe", 10, []string{"func Maybe(fn func()) (err error)"}},
		{"y := scale(alpha)", 8, []string{"func scale(x float64) float64", "scale doubles things"}},
		{"alpha", 2, []string{"alpha := 16.0", "float64", "16"}},
		{"m.SVD", 3, nil},
		{"dense.Mul(a, b)", 7, []string{"func (m *Dense) Mul(a, b Matrix)", "Mul takes the matrix product"}},
		{"dense.Nope", 8, nil},
	}
	for _, c := range cases {
		data, found := s.Inspect(c.code, c.cursor, 0)
		if c.want == nil {
			if found {
				t.Errorf("Inspect(%q) found %v", c.code, data)
			}
			continue
		}
		text, _ := data["text/plain"].(string)
		for _, w := range c.want {
			if !found || !strings.Contains(text, w) {
				t.Errorf("Inspect(%q): %q missing from %q", c.code, w, text)
			}
		}
	}
	res, _ := runOK(t, s, "mat.Dense.Mul?")
	if len(res.Payload) != 1 || res.Payload[0]["source"] != "page" {
		t.Fatalf("help payload: %v", res.Payload)
	}
	page := res.Payload[0]["data"].(map[string]any)["text/plain"].(string)
	if !strings.Contains(page, "func (m *Dense) Mul(a, b Matrix)") {
		t.Errorf("page: %q", page)
	}
	res = s.Execute(context.Background(), "nosuchname?", 2, &recorder{})
	if res.Error == nil || res.Error.Name != "NameError" {
		t.Errorf("help for unknown name: %+v", res)
	}
}

func TestIsComplete(t *testing.T) {
	s := newSession(t)
	cases := []struct{ code, status, indent string }{
		{"x := 1", "complete", ""},
		{"func f() {", "incomplete", "\t"},
		{"for i := 0; i < 3; i++ {\n\tif i > 1 {", "incomplete", "\t\t"},
		{"s := `raw\nstring", "incomplete", ""},
		{"x := 1 +", "incomplete", ""},
		{"f(1,", "incomplete", "\t"},
		{"x := )", "invalid", ""},
		{"import \"fmt\"\nfmt.Println(1)\nfunc g() {}", "complete", ""},
		{"x := 1 2", "invalid", ""},
		{"%time x := 1", "complete", ""},
		{"fmt.Println?", "complete", ""},
	}
	for _, c := range cases {
		st, ind := s.IsComplete(c.code)
		if st != c.status || ind != c.indent {
			t.Errorf("IsComplete(%q) = %q %q, want %q %q", c.code, st, ind, c.status, c.indent)
		}
	}
}

func TestMagics(t *testing.T) {
	s := newSession(t)
	_, rec := runOK(t, s, "%help")
	if !strings.Contains(rec.stdout(), "%who") || !strings.Contains(rec.stdout(), "%%time") {
		t.Errorf("%%help: %q", rec.stdout())
	}
	runOK(t, s, "count := 3\nname := \"lora\"")
	_, rec = runOK(t, s, "%who")
	out := rec.stdout()
	for _, w := range []string{"count", "int", "name", "string", "lora"} {
		if !strings.Contains(out, w) {
			t.Errorf("%%who lacks %q:\n%s", w, out)
		}
	}
	res, rec := runOK(t, s, "%time count * 2")
	if text(res) != "6" || !strings.Contains(rec.stdout(), "Wall time:") {
		t.Errorf("%%time: %q %q", text(res), rec.stdout())
	}
	res, rec = runOK(t, s, "%%time\nz := count + 1\nz")
	if text(res) != "4" || !strings.Contains(rec.stdout(), "Wall time:") {
		t.Errorf("%%%%time: %q %q", text(res), rec.stdout())
	}
	res = s.Execute(context.Background(), "%%time\nq := 1\nundefinedName", 9, &recorder{})
	if res.Error == nil || !strings.Contains(strings.Join(res.Error.Traceback, "\n"), "cell line 3") {
		t.Errorf("%%%%time error line: %+v", res.Error)
	}
	runOK(t, s, "%reset")
	res = s.Execute(context.Background(), "count", 10, &recorder{})
	if res.Error == nil || !strings.Contains(res.Error.Value, "undefined: count") {
		t.Errorf("after %%reset count is still defined: %+v %v", res.Error, res.Data)
	}
	res, _ = runOK(t, s, "math.Sqrt(4)")
	if text(res) != "2" {
		t.Errorf("preloaded packages lost by %%reset: %q", text(res))
	}
	res = s.Execute(context.Background(), "%nosuch", 11, &recorder{})
	if res.Error == nil || res.Error.Name != "UsageError" {
		t.Errorf("unknown magic: %+v", res)
	}
}
