package session

import (
	"context"

	"github.com/gopeft/gopeft/accel"
	"gonum.org/v1/gonum/blas/blas64"
	"strings"
	"sync"
	"testing"
)

// recorder is a Publisher that keeps everything in order.
type recorder struct {
	mu     sync.Mutex
	events []string // "stdout:text", "stderr:text", "display:text/plain", "clear"
	data   []map[string]any
	inputs []string
}

func (r *recorder) Stream(name, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.events); n > 0 && strings.HasPrefix(r.events[n-1], name+":") {
		r.events[n-1] += text
		return
	}
	r.events = append(r.events, name+":"+text)
}

func (r *recorder) Display(data, md map[string]any, id string, update bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kind := "display"
	if update {
		kind = "update"
	}
	t, _ := data["text/plain"].(string)
	r.events = append(r.events, kind+"["+id+"]:"+t)
	r.data = append(r.data, data)
}

func (r *recorder) ClearOutput(wait bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "clear")
}

func (r *recorder) Input(prompt string, password bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inputs) == 0 {
		return "", nil
	}
	in := r.inputs[0]
	r.inputs = r.inputs[1:]
	return in, nil
}

func (r *recorder) stdout() string {
	var b strings.Builder
	for _, e := range r.events {
		if t, ok := strings.CutPrefix(e, "stdout:"); ok {
			b.WriteString(t)
		}
	}
	return b.String()
}

func newSession(t testing.TB) *Session {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run executes code and fails the test on an error.
func runOK(t testing.TB, s *Session, code string) (Result, *recorder) {
	t.Helper()
	rec := &recorder{}
	res := s.Execute(context.Background(), code, 1, rec)
	if res.Error != nil {
		t.Fatalf("cell %q: %s: %s\n%s", code, res.Error.Name, res.Error.Value, strings.Join(res.Error.Traceback, "\n"))
	}
	return res, rec
}

func text(res Result) string {
	if res.Data == nil {
		return "<none>"
	}
	s, _ := res.Data["text/plain"].(string)
	return s
}

func TestBasics(t *testing.T) {
	s := newSession(t)
	res, rec := runOK(t, s, "x := 41\nfunc inc(v int) int { return v + 1 }\nfmt.Println(\"hi\")\ninc(x)")
	if got := text(res); got != "42" {
		t.Errorf("value: got %q", got)
	}
	if got := rec.stdout(); got != "hi\n" {
		t.Errorf("stdout: got %q", got)
	}
	res, _ = runOK(t, s, "func inc(v int) int { return v + 2 }\ninc(x)")
	if got := text(res); got != "43" {
		t.Errorf("redefined: got %q", got)
	}
	res, _ = runOK(t, s, "fmt.Println(x)")
	if got := text(res); got != "<none>" {
		t.Errorf("println shows %q", got)
	}
}

func TestGonumRunsOnAccel(t *testing.T) {
	newSession(t)
	if _, ok := blas64.Implementation().(accel.Implementation); !ok {
		t.Errorf("gonum's BLAS is %T, want accel.Implementation", blas64.Implementation())
	}
}
