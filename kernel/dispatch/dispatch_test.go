package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopeft/gopeft/kernel/engine"
	"github.com/gopeft/gopeft/kernel/wire"
)

// fakeEngine runs a tiny command language, one command per line:
//
//	print X | eprint X | result X | display ID | update ID | clear |
//	sleep DUR | loop | fail X | panic | input PROMPT | page | count
type fakeEngine struct {
	executed atomic.Int64
	mu       sync.Mutex
	codes    []string
}

func (f *fakeEngine) Execute(ctx context.Context, code string, count int, pub engine.Publisher) engine.Result {
	f.executed.Add(1)
	f.mu.Lock()
	f.codes = append(f.codes, code)
	f.mu.Unlock()
	var res engine.Result
	for i, line := range strings.Split(code, "\n") {
		cmd, arg, _ := strings.Cut(line, " ")
		fail := func(name, value string) engine.Result {
			return engine.Result{Error: &engine.ExecError{Name: name, Value: value,
				Traceback: []string{name + ": " + value, "cell line " + strconv.Itoa(i+1)}}}
		}
		switch cmd {
		case "print":
			pub.Stream("stdout", arg+"\n")
		case "eprint":
			pub.Stream("stderr", arg+"\n")
		case "result":
			res.Data = map[string]any{"text/plain": arg}
		case "display":
			pub.Display(map[string]any{"text/plain": "shown " + arg}, nil, arg, false)
		case "update":
			pub.Display(map[string]any{"text/plain": "updated " + arg}, nil, arg, true)
		case "clear":
			pub.ClearOutput(false)
		case "sleep":
			d, _ := time.ParseDuration(arg)
			time.Sleep(d)
		case "stuck": // a compiled call that ignores its context
			time.Sleep(5 * time.Second)
		case "loop":
			<-ctx.Done()
			return fail("Interrupted", "interrupted by the user")
		case "fail":
			return fail("Boom", arg)
		case "panic":
			panic("engine exploded")
		case "input":
			v, err := pub.Input(arg, false)
			if err != nil {
				return fail("StdinError", err.Error())
			}
			pub.Stream("stdout", "got "+v+"\n")
		case "page":
			res.Payload = []map[string]any{{"source": "page", "data": map[string]any{"text/plain": "help text"}, "start": 0}}
		case "count":
			res.Data = map[string]any{"text/plain": strconv.Itoa(count)}
		case "":
		default:
			return fail("SyntaxError", "unknown command "+cmd)
		}
	}
	return res
}

func (f *fakeEngine) Complete(code string, pos int) ([]string, int, int) {
	r := []rune(code)[:pos]
	start := pos
	for start > 0 && (r[start-1] >= 'a' && r[start-1] <= 'z') {
		start--
	}
	prefix := string(r[start:])
	var out []string
	for _, w := range []string{"fmt", "for", "func", "go"} {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out, start, pos
}

func (f *fakeEngine) Inspect(code string, pos, detail int) (map[string]any, bool) {
	if strings.Contains(code, "fmt") {
		return map[string]any{"text/plain": "package fmt"}, true
	}
	return nil, false
}

func (f *fakeEngine) IsComplete(code string) (string, string) {
	open := strings.Count(code, "{") - strings.Count(code, "}")
	switch {
	case open > 0:
		return "incomplete", "\t"
	case open < 0:
		return "invalid", ""
	}
	return "complete", ""
}

// harness is a kernel on loopback with a client connected to it.
type harness struct {
	t    testing.TB
	eng  *fakeEngine
	k    *Kernel
	cl   *wire.Client
	logs *syncBuf
	ret  chan bool
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t testing.TB) *harness { return startWith(t, Config{}) }

func startWith(t testing.TB, cfg Config) *harness {
	t.Helper()
	logs := &syncBuf{}
	lg := log.New(io.Writer(logs), "", 0)
	conn, err := wire.Listen(wire.ConnectionInfo{Transport: "tcp", IP: "127.0.0.1", Key: "k3y", SignatureScheme: "hmac-sha256"},
		wire.Options{Log: lg, MaxFrame: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, eng: &fakeEngine{}, logs: logs, ret: make(chan bool, 1)}
	cfg.ImplementationVersion, cfg.Log = "test", lg
	h.k = New(conn, h.eng, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.ret <- h.k.Run(ctx) }()
	cl, err := wire.Dial(conn.Info())
	if err != nil {
		t.Fatal(err)
	}
	h.cl = cl
	t.Cleanup(func() {
		cancel()
		cl.Close()
		conn.Close()
	})
	// Like jupyter_client's wait_for_ready: kernel_info until IOPub answers.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("kernel never became ready")
		}
		id := h.send(wire.Shell, "kernel_info_request", map[string]any{})
		if _, err := cl.Recv(wire.Shell, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if h.drainIOPubFor(id, 200*time.Millisecond) {
			break
		}
	}
	return h
}

// drainIOPubFor reads IOPub until the idle status of msgID.
func (h *harness) drainIOPubFor(msgID string, timeout time.Duration) bool {
	for {
		m, err := h.cl.Recv(wire.IOPub, timeout)
		if err != nil {
			return false
		}
		if parentID(m) == msgID && m.Header.MsgType == "status" && state(m) == "idle" {
			return true
		}
	}
}

func (h *harness) send(ch wire.Channel, typ string, content any) string {
	h.t.Helper()
	m := h.cl.NewRequest(typ, content)
	if err := h.cl.Send(ch, m); err != nil {
		h.t.Fatal(err)
	}
	return m.Header.MsgID
}

func parentID(m *wire.Message) string {
	var p wire.Header
	_ = json.Unmarshal(m.Parent, &p)
	return p.MsgID
}

func state(m *wire.Message) string {
	var c struct {
		S string `json:"execution_state"`
	}
	_ = wire.Decoded(m, &c)
	return c.S
}

func content(m *wire.Message) map[string]any {
	var c map[string]any
	_ = wire.Decoded(m, &c)
	return c
}

// reply waits for the reply to msgID on ch.
func (h *harness) reply(ch wire.Channel, msgID string) map[string]any {
	h.t.Helper()
	for {
		m, err := h.cl.Recv(ch, 5*time.Second)
		if err != nil {
			h.t.Fatalf("waiting for reply to %s: %v", msgID, err)
		}
		if parentID(m) == msgID {
			c := content(m)
			c["_type"] = m.Header.MsgType
			return c
		}
	}
}

// iopub returns the IOPub messages of msgID, from busy to idle inclusive,
// and checks that busy comes first and idle last.
func (h *harness) iopub(msgID string) []*wire.Message {
	h.t.Helper()
	var out []*wire.Message
	for {
		m, err := h.cl.Recv(wire.IOPub, 5*time.Second)
		if err != nil {
			h.t.Fatalf("iopub for %s: %v (so far %v)", msgID, err, types(out))
		}
		if parentID(m) != msgID {
			continue
		}
		out = append(out, m)
		if m.Header.MsgType == "status" && state(m) == "idle" {
			break
		}
	}
	if out[0].Header.MsgType != "status" || state(out[0]) != "busy" {
		h.t.Errorf("first IOPub message of %s is %v, want status busy", msgID, types(out))
	}
	for _, m := range out[1 : len(out)-1] {
		if m.Header.MsgType == "status" {
			h.t.Errorf("extra status in %v", types(out))
		}
	}
	return out
}

func types(ms []*wire.Message) []string {
	var s []string
	for _, m := range ms {
		t := m.Header.MsgType
		switch t {
		case "status":
			t += ":" + state(m)
		case "stream":
			c := content(m)
			t += ":" + c["name"].(string) + ":" + strings.TrimSpace(c["text"].(string))
		}
		s = append(s, t)
	}
	return s
}

func (h *harness) execute(code string, extra map[string]any) (map[string]any, []*wire.Message) {
	h.t.Helper()
	c := map[string]any{"code": code, "silent": false, "store_history": true, "user_expressions": map[string]any{},
		"allow_stdin": false, "stop_on_error": true}
	for k, v := range extra {
		c[k] = v
	}
	id := h.send(wire.Shell, "execute_request", c)
	rep := h.reply(wire.Shell, id)
	return rep, h.iopub(id)
}

func TestKernelInfoOnShellAndControl(t *testing.T) {
	h := start(t)
	for _, ch := range []wire.Channel{wire.Shell, wire.Control} {
		id := h.send(ch, "kernel_info_request", map[string]any{})
		rep := h.reply(ch, id)
		h.iopub(id)
		li, _ := rep["language_info"].(map[string]any)
		if rep["status"] != "ok" || rep["protocol_version"] != "5.3" || rep["implementation"] != "gopeft" ||
			li["name"] != "go" || li["file_extension"] != ".go" || li["mimetype"] != "text/x-go" ||
			li["pygments_lexer"] != "go" || li["codemirror_mode"] != "go" || rep["banner"] == "" || rep["help_links"] == nil {
			t.Errorf("%v: kernel_info_reply %v", ch, rep)
		}
	}
	if err := h.cl.Ping(2 * time.Second); err != nil {
		t.Error(err)
	}
}

func TestExecuteStreamingOrderAndCounts(t *testing.T) {
	h := start(t)
	code := "print a\neprint e\ndisplay d1\nupdate d1\nclear\nprint b\nresult 42"
	rep, msgs := h.execute(code, nil)
	if rep["status"] != "ok" || rep["execution_count"] != 1.0 || rep["_type"] != "execute_reply" {
		t.Fatalf("reply %v", rep)
	}
	want := []string{"status:busy", "execute_input", "stream:stdout:a", "stream:stderr:e", "display_data",
		"update_display_data", "clear_output", "stream:stdout:b", "execute_result", "status:idle"}
	if got := types(msgs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("IOPub order\n got %v\nwant %v", got, want)
	}
	in := content(msgs[1])
	if in["code"] != code || in["execution_count"] != 1.0 {
		t.Errorf("execute_input %v", in)
	}
	disp := content(msgs[4])
	if tr, _ := disp["transient"].(map[string]any); tr["display_id"] != "d1" {
		t.Errorf("display_data transient %v", disp)
	}
	res := content(msgs[8])
	if res["execution_count"] != 1.0 || res["data"].(map[string]any)["text/plain"] != "42" || res["metadata"] == nil {
		t.Errorf("execute_result %v", res)
	}

	// The engine sees the count; the count grows only with store_history.
	rep, msgs = h.execute("count", nil)
	if rep["execution_count"] != 2.0 || content(msgs[2])["data"].(map[string]any)["text/plain"] != "2" {
		t.Errorf("second cell: %v %v", rep, types(msgs))
	}
	rep, msgs = h.execute("count", map[string]any{"store_history": false})
	if rep["execution_count"] != 2.0 || content(msgs[1])["execution_count"] != 2.0 {
		t.Errorf("store_history=false: %v %v", rep, types(msgs))
	}
	// Silent: no execute_input, no outputs, no count.
	rep, msgs = h.execute("print hidden\nresult 1", map[string]any{"silent": true})
	if rep["status"] != "ok" || rep["execution_count"] != 2.0 || len(msgs) != 2 {
		t.Errorf("silent: %v %v", rep, types(msgs))
	}
	rep, _ = h.execute("count", nil)
	if rep["execution_count"] != 3.0 {
		t.Errorf("after silent: %v", rep)
	}
	// Payload (pager) and user_expressions.
	rep, _ = h.execute("page", map[string]any{"user_expressions": map[string]any{"x": "result 7", "y": "fail no"}})
	pl, _ := rep["payload"].([]any)
	if len(pl) != 1 || pl[0].(map[string]any)["source"] != "page" {
		t.Errorf("payload %v", rep["payload"])
	}
	ue, _ := rep["user_expressions"].(map[string]any)
	x, _ := ue["x"].(map[string]any)
	y, _ := ue["y"].(map[string]any)
	if x["status"] != "ok" || x["data"].(map[string]any)["text/plain"] != "7" || y["status"] != "error" || y["ename"] != "Boom" {
		t.Errorf("user_expressions %v", ue)
	}
}

func TestExecuteError(t *testing.T) {
	h := start(t)
	rep, msgs := h.execute("print before\nfail bad thing", nil)
	if rep["status"] != "error" || rep["ename"] != "Boom" || rep["evalue"] != "bad thing" || rep["execution_count"] != 1.0 {
		t.Fatalf("reply %v", rep)
	}
	tb, _ := rep["traceback"].([]any)
	if len(tb) != 2 || !strings.Contains(tb[1].(string), "line 2") {
		t.Errorf("traceback %v", tb)
	}
	got := types(msgs)
	if strings.Join(got, " ") != "status:busy execute_input stream:stdout:before error status:idle" {
		t.Errorf("IOPub %v", got)
	}
	e := content(msgs[3])
	if e["ename"] != "Boom" || e["evalue"] != "bad thing" || len(e["traceback"].([]any)) != 2 {
		t.Errorf("error message %v", e)
	}
}

func TestEnginePanicIsAnErrorReply(t *testing.T) {
	h := start(t)
	rep, msgs := h.execute("panic", nil)
	if rep["status"] != "error" || rep["ename"] != "InternalError" || !strings.Contains(rep["evalue"].(string), "engine exploded") {
		t.Fatalf("reply %v", rep)
	}
	if types(msgs)[2] != "error" {
		t.Errorf("IOPub %v", types(msgs))
	}
	if rep, _ := h.execute("result ok", nil); rep["status"] != "ok" || rep["execution_count"] != 2.0 {
		t.Errorf("kernel did not survive: %v", rep)
	}
	if !strings.Contains(h.logs.String(), "engine panic") {
		t.Error("panic not logged")
	}
}

func TestStopOnErrorAbortsQueuedExecutes(t *testing.T) {
	h := start(t)
	base := map[string]any{"silent": false, "store_history": true, "user_expressions": map[string]any{}, "allow_stdin": false}
	req := func(code string, stop bool) string {
		c := map[string]any{"code": code, "stop_on_error": stop}
		for k, v := range base {
			c[k] = v
		}
		return h.send(wire.Shell, "execute_request", c)
	}
	before := h.eng.executed.Load()
	id1 := req("sleep 150ms\nfail first", true)
	id2 := req("print second", true)
	idc := h.send(wire.Shell, "complete_request", map[string]any{"code": "f", "cursor_pos": 1})
	id3 := req("print third", true)
	r1, r2, rc, r3 := h.reply(wire.Shell, id1), h.reply(wire.Shell, id2), h.reply(wire.Shell, idc), h.reply(wire.Shell, id3)
	if r1["status"] != "error" || r2["status"] != "aborted" || r3["status"] != "aborted" {
		t.Errorf("statuses %v %v %v", r1["status"], r2["status"], r3["status"])
	}
	if rc["status"] != "ok" {
		t.Errorf("queued complete_request was not served: %v", rc)
	}
	if n := h.eng.executed.Load() - before; n != 1 {
		t.Errorf("engine ran %d cells, want 1", n)
	}
	for _, id := range []string{id1, id2, idc, id3} {
		h.iopub(id) // busy first, idle last, for aborted ones too
	}
	// After the abort, new requests run; stop_on_error=false keeps the queue.
	id4 := req("sleep 100ms\nfail again", false)
	id5 := req("result fifth", true)
	if r := h.reply(wire.Shell, id4); r["status"] != "error" {
		t.Errorf("id4 %v", r)
	}
	if r := h.reply(wire.Shell, id5); r["status"] != "ok" {
		t.Errorf("with stop_on_error=false the next cell must run: %v", r)
	}
}

func TestStopOnErrorLateArrivals(t *testing.T) {
	h := start(t)
	exec := func(code string) *wire.Message {
		return h.cl.NewRequest("execute_request", map[string]any{"code": code, "stop_on_error": true})
	}
	// Queued by the front-end before the failure, delivered just after it.
	late := exec("print late")
	fail := exec("fail now")
	h.cl.Send(wire.Shell, fail)
	if r := h.reply(wire.Shell, fail.Header.MsgID); r["status"] != "error" {
		t.Fatal(r)
	}
	h.cl.Send(wire.Shell, late)
	if r := h.reply(wire.Shell, late.Header.MsgID); r["status"] != "aborted" {
		t.Errorf("late-delivered queued cell: %v", r["status"])
	}
	// A failure with stop_on_error=false aborts nothing, even within the
	// window of an earlier stop_on_error failure.
	fail = exec("fail stop")
	h.cl.Send(wire.Shell, fail)
	h.reply(wire.Shell, fail.Header.MsgID)
	early := exec("print early")
	quiet := h.cl.NewRequest("execute_request", map[string]any{"code": "fail quietly", "stop_on_error": false})
	h.cl.Send(wire.Shell, quiet)
	h.reply(wire.Shell, quiet.Header.MsgID)
	h.cl.Send(wire.Shell, early)
	if r := h.reply(wire.Shell, early.Header.MsgID); r["status"] != "ok" {
		t.Errorf("after a stop_on_error=false failure: %v", r)
	}
	// Sent after the client saw the error reply: runs.
	fail = exec("fail again")
	h.cl.Send(wire.Shell, fail)
	h.reply(wire.Shell, fail.Header.MsgID)
	next := exec("result next")
	h.cl.Send(wire.Shell, next)
	if r := h.reply(wire.Shell, next.Header.MsgID); r["status"] != "ok" {
		t.Errorf("cell sent after the error reply was aborted: %v", r)
	}
}

func TestInterrupt(t *testing.T) {
	h := start(t)
	if rep, _ := h.execute("result 1", nil); rep["status"] != "ok" {
		t.Fatal(rep)
	}
	id := h.send(wire.Shell, "execute_request", map[string]any{"code": "loop", "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	// Wait until the cell runs.
	for {
		m, err := h.cl.Recv(wire.IOPub, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if parentID(m) == id && m.Header.MsgType == "execute_input" {
			break
		}
	}
	// Control is served while shell is busy.
	kid := h.send(wire.Control, "kernel_info_request", map[string]any{})
	if r := h.reply(wire.Control, kid); r["status"] != "ok" {
		t.Errorf("kernel_info on control during a cell: %v", r)
	}
	t0 := time.Now()
	iid := h.send(wire.Control, "interrupt_request", map[string]any{})
	if r := h.reply(wire.Control, iid); r["status"] != "ok" || r["_type"] != "interrupt_reply" {
		t.Errorf("interrupt_reply %v", r)
	}
	rep := h.reply(wire.Shell, id)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("interrupt took %v", d)
	}
	if rep["status"] != "error" || rep["ename"] != "Interrupted" {
		t.Errorf("reply %v", rep)
	}
	// SIGINT's path: Interrupt() with no running cell is a no-op.
	if h.k.Interrupt() {
		t.Error("Interrupt reported a running cell while idle")
	}
	if rep, _ := h.execute("count", nil); rep["status"] != "ok" || rep["execution_count"] != 3.0 {
		t.Errorf("after interrupt: %v", rep)
	}
}

func TestInputRequest(t *testing.T) {
	h := start(t)
	id := h.send(wire.Shell, "execute_request", map[string]any{"code": "input name? ", "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": true, "stop_on_error": true})
	m, err := h.cl.Recv(wire.Stdin, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.MsgType != "input_request" || parentID(m) != id || content(m)["prompt"] != "name? " || content(m)["password"] != false {
		t.Fatalf("got %s %v", m.Header.MsgType, content(m))
	}
	r := h.cl.NewRequest("input_reply", map[string]any{"value": "Ada"})
	r.Parent = m.RawHeader
	h.cl.Send(wire.Stdin, r)
	rep := h.reply(wire.Shell, id)
	msgs := h.iopub(id)
	if rep["status"] != "ok" || !strings.Contains(strings.Join(types(msgs), " "), "stream:stdout:got Ada") {
		t.Errorf("reply %v, IOPub %v", rep, types(msgs))
	}
	// allow_stdin false: the engine gets an error, no request is sent.
	rep, _ = h.execute("input again", map[string]any{"allow_stdin": false})
	if rep["status"] != "error" || rep["ename"] != "StdinError" {
		t.Errorf("allow_stdin=false: %v", rep)
	}
	// Interrupt while waiting for input.
	id = h.send(wire.Shell, "execute_request", map[string]any{"code": "input never", "allow_stdin": true})
	if _, err := h.cl.Recv(wire.Stdin, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.send(wire.Control, "interrupt_request", map[string]any{})
	if rep := h.reply(wire.Shell, id); rep["status"] != "error" {
		t.Errorf("interrupted input: %v", rep)
	}
}

func TestCompleteInspectIsComplete(t *testing.T) {
	h := start(t)
	id := h.send(wire.Shell, "complete_request", map[string]any{"code": "x := fé + f", "cursor_pos": 11})
	rep := h.reply(wire.Shell, id)
	h.iopub(id)
	m, _ := rep["matches"].([]any)
	if rep["status"] != "ok" || len(m) != 3 || rep["cursor_start"] != 10.0 || rep["cursor_end"] != 11.0 {
		t.Errorf("complete_reply %v", rep)
	}
	id = h.send(wire.Shell, "complete_request", map[string]any{"code": "zz", "cursor_pos": 99})
	if rep := h.reply(wire.Shell, id); rep["status"] != "ok" || len(rep["matches"].([]any)) != 0 {
		t.Errorf("no matches must be [] : %v", rep)
	}
	id = h.send(wire.Shell, "inspect_request", map[string]any{"code": "fmt.Println", "cursor_pos": 3, "detail_level": 0})
	rep = h.reply(wire.Shell, id)
	if rep["status"] != "ok" || rep["found"] != true || rep["data"].(map[string]any)["text/plain"] != "package fmt" {
		t.Errorf("inspect %v", rep)
	}
	id = h.send(wire.Shell, "inspect_request", map[string]any{"code": "nothing", "cursor_pos": 3, "detail_level": 0})
	if rep := h.reply(wire.Shell, id); rep["found"] != false {
		t.Errorf("inspect not found %v", rep)
	}
	for code, want := range map[string]string{"f()": "complete", "func f() {": "incomplete", "}": "invalid"} {
		id = h.send(wire.Shell, "is_complete_request", map[string]any{"code": code})
		rep = h.reply(wire.Shell, id)
		h.iopub(id)
		if rep["status"] != want {
			t.Errorf("is_complete(%q) = %v, want %s", code, rep, want)
		}
		if want == "incomplete" && rep["indent"] != "\t" {
			t.Errorf("indent %q", rep["indent"])
		}
	}
}

func TestHistory(t *testing.T) {
	h := start(t)
	for _, c := range []string{"result 6*7", "print x", "result 6*7", "fail e", "result 1+1"} {
		h.execute(c, nil)
	}
	h.execute("result hidden", map[string]any{"store_history": false})
	hist := func(c map[string]any) []any {
		c["output"], c["raw"] = c["output"] == true, true
		id := h.send(wire.Shell, "history_request", c)
		rep := h.reply(wire.Shell, id)
		h.iopub(id)
		if rep["status"] != "ok" {
			t.Fatalf("history %v", rep)
		}
		return rep["history"].([]any)
	}
	tail := hist(map[string]any{"hist_access_type": "tail", "n": 2})
	if len(tail) != 2 || tail[0].([]any)[2] != "fail e" || tail[1].([]any)[1] != 5.0 {
		t.Errorf("tail %v", tail)
	}
	out := hist(map[string]any{"hist_access_type": "tail", "n": 1, "output": true})
	if io := out[0].([]any)[2].([]any); io[0] != "result 1+1" || io[1] != "1+1" {
		t.Errorf("tail with output %v", out)
	}
	session := tail[0].([]any)[0]
	rng := hist(map[string]any{"hist_access_type": "range", "session": session, "start": 2, "stop": 4})
	if len(rng) != 2 || rng[0].([]any)[2] != "print x" || rng[1].([]any)[2] != "result 6*7" {
		t.Errorf("range %v", rng)
	}
	if s := hist(map[string]any{"hist_access_type": "search", "pattern": "result 6?7"}); len(s) != 2 {
		t.Errorf("search %v", s)
	}
	if s := hist(map[string]any{"hist_access_type": "search", "pattern": "result 6?7", "unique": true}); len(s) != 1 || s[0].([]any)[1] != 3.0 {
		t.Errorf("search unique %v", s)
	}
	if s := hist(map[string]any{"hist_access_type": "search", "pattern": "result*", "n": 2}); len(s) != 2 || s[1].([]any)[2] != "result 1+1" {
		t.Errorf("search n %v", s)
	}
}

func TestHistoryPersistsAcrossSessions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gopeft", "history.jsonl")
	h := startWith(t, Config{HistoryFile: file})
	h.execute("result first", nil)
	h.execute("print second", nil)
	id := h.send(wire.Control, "shutdown_request", map[string]any{"restart": true})
	h.reply(wire.Control, id)
	<-h.ret

	h = startWith(t, Config{HistoryFile: file})
	h.execute("result third", nil)
	query := func(c map[string]any) []any {
		c["output"], c["raw"] = false, true
		id := h.send(wire.Shell, "history_request", c)
		return h.reply(wire.Shell, id)["history"].([]any)
	}
	tail := query(map[string]any{"hist_access_type": "tail", "n": 3})
	want := "[[1 1 result first] [1 2 print second] [2 1 result third]]"
	if got := fmt.Sprint(tail); got != want {
		t.Errorf("tail across sessions %s, want %s", got, want)
	}
	if got := fmt.Sprint(query(map[string]any{"hist_access_type": "range", "session": -1, "start": 1})); got != "[[1 1 result first] [1 2 print second]]" {
		t.Errorf("range session -1: %s", got)
	}
	if got := fmt.Sprint(query(map[string]any{"hist_access_type": "range", "session": 0, "start": 1})); got != "[[2 1 result third]]" {
		t.Errorf("range current session: %s", got)
	}
	if got := query(map[string]any{"hist_access_type": "search", "pattern": "result *"}); len(got) != 2 {
		t.Errorf("search across sessions: %v", got)
	}

	// A third kernel that stores nothing still takes session 3, so the
	// fourth is session 4; absolute session numbers keep working.
	for want := 3; want <= 4; want++ {
		id = h.send(wire.Control, "shutdown_request", map[string]any{"restart": true})
		h.reply(wire.Control, id)
		<-h.ret
		h = startWith(t, Config{HistoryFile: file})
		if got := fmt.Sprint(query(map[string]any{"hist_access_type": "range", "session": 2, "start": 1})); got != "[[2 1 result third]]" {
			t.Errorf("range session 2 from session %d: %s", want, got)
		}
		if got := fmt.Sprint(query(map[string]any{"hist_access_type": "range", "session": 2 - want, "start": 1})); got != "[[2 1 result third]]" {
			t.Errorf("range session %d from session %d: %s", 2-want, want, got)
		}
	}
	h.execute("print fourth", nil)
	if got := fmt.Sprint(query(map[string]any{"hist_access_type": "tail", "n": 1})); got != "[[4 1 print fourth]]" {
		t.Errorf("fourth kernel's entry: %s", got)
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{
		{"*", "", true}, {"a*b", "a/x/b", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"[a-c]x", "bx", true}, {"[^a-c]x", "bx", false}, {"[^a-c]x", "dx", true}, {"*.go", "x.go", true},
		{"*.go", "x.gox", false}, {"A*", "a", false}, {"[]]", "]", true}, {"[ab", "[ab", true}, {"*a*a*", "banana", true},
	} {
		if got := globMatch(c.p, c.s); got != c.ok {
			t.Errorf("globMatch(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestComms(t *testing.T) {
	h := start(t)
	id := h.send(wire.Shell, "comm_info_request", map[string]any{})
	if rep := h.reply(wire.Shell, id); rep["status"] != "ok" || len(rep["comms"].(map[string]any)) != 0 {
		t.Errorf("comm_info %v", rep)
	}
	h.iopub(id)
	id = h.send(wire.Shell, "comm_open", map[string]any{"comm_id": "c1", "target_name": "jupyter.widget", "data": map[string]any{}})
	msgs := h.iopub(id)
	if got := types(msgs); strings.Join(got, " ") != "status:busy comm_close status:idle" || content(msgs[1])["comm_id"] != "c1" {
		t.Errorf("comm_open answered with %v", got)
	}
	id = h.send(wire.Shell, "comm_msg", map[string]any{"comm_id": "c1", "data": map[string]any{}})
	h.iopub(id)
}

func TestBadInput(t *testing.T) {
	h := start(t)
	before := h.eng.executed.Load()
	// Wrong key: dropped, logged, never executed.
	other, _ := wire.NewSigner("hmac-sha256", "not the key")
	forged, _ := wire.Encode(h.cl.NewRequest("execute_request", map[string]any{"code": "print evil"}), other)
	h.cl.SendFrames(wire.Shell, forged)
	// Missing signature.
	unsigned, _ := wire.Encode(h.cl.NewRequest("execute_request", map[string]any{"code": "print evil"}), &wire.Signer{})
	h.cl.SendFrames(wire.Shell, unsigned)
	// Valid signature, malformed content: an error reply.
	m := h.cl.NewRequest("execute_request", json.RawMessage(`{"code": 12`))
	fr, _ := wire.Encode(m, h.cl.Signer())
	h.cl.SendFrames(wire.Shell, fr)
	if rep := h.reply(wire.Shell, m.Header.MsgID); rep["status"] != "error" || rep["ename"] != "MalformedRequest" {
		t.Errorf("malformed content: %v", rep)
	}
	// Malformed header JSON: dropped.
	hdr := []byte(`{"msg_type": "execute_request", `)
	frames := [][]byte{hdr, []byte("{}"), []byte("{}"), []byte(`{"code":"print evil"}`)}
	h.cl.SendFrames(wire.Shell, append([][]byte{wire.Delimiter, []byte(h.cl.Signer().Sign(frames...))}, frames...))
	// Garbage frames.
	h.cl.SendFrames(wire.Shell, [][]byte{[]byte("garbage")})
	// Oversized (2 MiB > 1 MiB limit here): dropped.
	h.cl.Send(wire.Shell, h.cl.NewRequest("execute_request", map[string]any{"code": "print " + strings.Repeat("x", 2<<20)}))
	// Unknown type: busy/idle, logged, no reply, no crash.
	uid := h.send(wire.Shell, "frobnicate_request", map[string]any{})
	h.iopub(uid)
	uid = h.send(wire.Control, "frobnicate_request", map[string]any{})
	h.iopub(uid)
	// Still serving.
	if rep, _ := h.execute("result alive", nil); rep["status"] != "ok" {
		t.Errorf("after bad input: %v", rep)
	}
	if n := h.eng.executed.Load() - before; n != 1 {
		t.Errorf("engine ran %d cells, want 1 (bad messages must never execute)", n)
	}
	l := h.logs.String()
	for _, want := range []string{"bad signature", "missing signature", "malformed header", "no <IDS|MSG>", "too large", `unknown message type "frobnicate_request"`, `control: ignored message type "frobnicate_request"`} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

func TestShutdownWithRestart(t *testing.T) {
	h := start(t)
	id := h.send(wire.Control, "shutdown_request", map[string]any{"restart": true})
	rep := h.reply(wire.Control, id)
	if rep["status"] != "ok" || rep["restart"] != true {
		t.Errorf("shutdown_reply %v", rep)
	}
	msgs := h.iopub(id)
	if types(msgs)[1] != "shutdown_reply" {
		t.Errorf("IOPub %v", types(msgs))
	}
	select {
	case restart := <-h.ret:
		if !restart {
			t.Error("Run reported no restart")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
}

func TestShutdownInterruptsRunningCell(t *testing.T) {
	h := start(t)
	id := h.send(wire.Shell, "execute_request", map[string]any{"code": "loop"})
	time.Sleep(100 * time.Millisecond)
	sid := h.send(wire.Control, "shutdown_request", map[string]any{"restart": false})
	if rep := h.reply(wire.Control, sid); rep["restart"] != false {
		t.Errorf("shutdown_reply %v", rep)
	}
	select {
	case restart := <-h.ret:
		if restart {
			t.Error("restart reported")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return")
	}
	_ = id
}

// The dispatcher itself keeps nothing per execute but a history entry.
func TestNoMemoryGrowthPerExecute(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	h := start(t)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := 0; i < 200; i++ {
		h.execute("result 1", nil)
	}
	before := heap()
	const n = 2000
	for i := 0; i < n; i++ {
		h.execute("result 1", nil)
	}
	after := heap()
	// Client and kernel share this heap; a history entry is ~60 bytes.
	per := (float64(after) - float64(before)) / n
	t.Logf("heap %d KiB -> %d KiB over %d executes (%.0f B each)", before>>10, after>>10, n, per)
	if per > 300 {
		t.Errorf("heap grows by %.0f bytes per execute", per)
	}
}

func TestShutdownWhileCellIgnoresContext(t *testing.T) {
	h := start(t)
	h.send(wire.Shell, "execute_request", map[string]any{"code": "stuck"})
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	sid := h.send(wire.Control, "shutdown_request", map[string]any{"restart": false})
	h.reply(wire.Control, sid)
	select {
	case <-h.ret:
		if d := time.Since(t0); d > time.Second {
			t.Errorf("shutdown took %v", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return while the cell was stuck")
	}
}

// BenchmarkExecuteRoundTrip times execute_request → idle over loopback with
// the fake engine: the protocol's own cost, without an interpreter.
func BenchmarkExecuteRoundTrip(b *testing.B) {
	h := start(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := h.send(wire.Shell, "execute_request", map[string]any{"code": "result 1"})
		h.drainIOPubFor(id, 5*time.Second)
		h.reply(wire.Shell, id)
	}
}
