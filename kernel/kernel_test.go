package kernel

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/gopeft/gopeft/kernel/dispatch"
	"github.com/gopeft/gopeft/kernel/session"
	"github.com/gopeft/gopeft/kernel/wire"
)

// Wire-level tests of the whole kernel (real yaegi session) through an
// in-process client over loopback.

type client struct {
	t  *testing.T
	cl *wire.Client
}

func startKernel(t *testing.T) *client {
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
	t.Cleanup(func() { cancel(); cl.Close(); conn.Close(); s.Close() })
	c := &client{t, cl}
	for i := 0; ; i++ { // wait for the IOPub subscription
		id := c.send(wire.Shell, "kernel_info_request", map[string]any{})
		c.reply(wire.Shell, id)
		if _, ok := c.iopubUntilIdle(id, 300*time.Millisecond); ok {
			return c
		}
		if i == 20 {
			t.Fatal("no IOPub")
		}
	}
}

func (c *client) send(ch wire.Channel, typ string, content any) string {
	m := c.cl.NewRequest(typ, content)
	if err := c.cl.Send(ch, m); err != nil {
		c.t.Fatal(err)
	}
	return m.Header.MsgID
}

func parent(m *wire.Message) string {
	var h wire.Header
	_ = json.Unmarshal(m.Parent, &h)
	return h.MsgID
}

func body(m *wire.Message) map[string]any {
	var v map[string]any
	_ = wire.Decoded(m, &v)
	return v
}

func (c *client) reply(ch wire.Channel, id string) map[string]any {
	c.t.Helper()
	for {
		m, err := c.cl.Recv(ch, 30*time.Second)
		if err != nil {
			c.t.Fatalf("reply to %s: %v", id, err)
		}
		if parent(m) == id {
			return body(m)
		}
	}
}

type event struct {
	typ     string
	content map[string]any
	at      time.Time
}

func (c *client) iopubUntilIdle(id string, timeout time.Duration) ([]event, bool) {
	var evs []event
	for {
		m, err := c.cl.Recv(wire.IOPub, timeout)
		if err != nil {
			return evs, false
		}
		if parent(m) != id {
			continue
		}
		// When the kernel sent it (this client reads IOPub after the reply).
		at, _ := time.Parse(time.RFC3339Nano, m.Header.Date)
		ev := event{m.Header.MsgType, body(m), at}
		evs = append(evs, ev)
		if ev.typ == "status" && ev.content["execution_state"] == "idle" {
			return evs, true
		}
	}
}

func (c *client) execute(code string) (map[string]any, []event) {
	c.t.Helper()
	id := c.send(wire.Shell, "execute_request", map[string]any{"code": code, "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	rep := c.reply(wire.Shell, id)
	evs, ok := c.iopubUntilIdle(id, 30*time.Second)
	if !ok {
		c.t.Fatalf("no idle for %q", code)
	}
	return rep, evs
}

func (c *client) result(code string) string {
	c.t.Helper()
	rep, evs := c.execute(code)
	if rep["status"] != "ok" {
		c.t.Fatalf("%q: %v", code, rep)
	}
	for _, e := range evs {
		if e.typ == "execute_result" {
			return e.content["data"].(map[string]any)["text/plain"].(string)
		}
	}
	c.t.Fatalf("%q: no execute_result", code)
	return ""
}

func TestStreamingWhileTheCellRuns(t *testing.T) {
	c := startKernel(t)
	rep, evs := c.execute("fmt.Println(\"first\")\ntime.Sleep(400 * time.Millisecond)\nfmt.Println(\"second\")\n6*7")
	if rep["status"] != "ok" {
		t.Fatal(rep)
	}
	var types []string
	var first, result time.Time
	for _, e := range evs {
		types = append(types, e.typ)
		if e.typ == "stream" && strings.Contains(e.content["text"].(string), "first") {
			first = e.at
		}
		if e.typ == "execute_result" {
			result = e.at
		}
	}
	if got := strings.Join(types, " "); got != "status execute_input stream stream execute_result status" {
		t.Errorf("IOPub order: %s", got)
	}
	if first.IsZero() || result.Sub(first) < 300*time.Millisecond {
		t.Errorf("first line arrived %v before the result; want it while the cell runs", result.Sub(first))
	}
}

func TestInterruptInterpretedAndCompiled(t *testing.T) {
	c := startKernel(t)
	if got := c.result("kept := 41\nkept + 1"); got != "42" {
		t.Fatal(got)
	}
	setup := "n := 1200\nd := make([]float64, n*n)\nfor i := range d {\n\td[i] = float64((i*7919)%1009) / 1009\n}\nbig := mat.NewDense(n, n, d)\n0"
	c.result(setup)
	for _, code := range []string{"for {\n}", "svd, err := accel.ThinSVD(ctx, big)\nfmt.Println(svd, err)"} {
		id := c.send(wire.Shell, "execute_request", map[string]any{"code": code})
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		c.reply(wire.Control, c.send(wire.Control, "interrupt_request", map[string]any{}))
		rep := c.reply(wire.Shell, id)
		if d := time.Since(t0); d > time.Second {
			t.Errorf("%q: interrupt took %v", code, d)
		}
		if rep["status"] != "error" {
			t.Errorf("%q: %v", code, rep)
		}
		c.iopubUntilIdle(id, 5*time.Second)
		if got := c.result("kept"); got != "41" {
			t.Errorf("after interrupting %q: kept = %s", code, got)
		}
	}
}

func TestPanicsAndBadSignatures(t *testing.T) {
	c := startKernel(t)
	rep, evs := c.execute("x := 1\npanic(\"boom\")")
	var tb []string
	for _, l := range rep["traceback"].([]any) {
		tb = append(tb, l.(string))
	}
	if rep["status"] != "error" || !strings.Contains(strings.Join(tb, "\n"), "line 2") {
		t.Errorf("panic reply %v", rep)
	}
	if n := len(evs); n != 4 { // busy, execute_input, error, idle: no extra stderr
		t.Errorf("IOPub for a panic: %d messages", n)
	}
	c.execute("go func() { panic(\"in a goroutine\") }()\ntime.Sleep(200 * time.Millisecond)")
	if got := c.result("40 + 2"); got != "42" {
		t.Errorf("after a goroutine panic: %s", got)
	}
	// A forged execute never runs.
	other, _ := wire.NewSigner("hmac-sha256", "wrong")
	frames, _ := wire.Encode(c.cl.NewRequest("execute_request", map[string]any{"code": "forged := 1"}), other)
	c.cl.SendFrames(wire.Shell, frames)
	if rep, _ := c.execute("forged"); rep["status"] != "error" {
		t.Errorf("a message with a bad signature was executed: %v", rep)
	}
}
