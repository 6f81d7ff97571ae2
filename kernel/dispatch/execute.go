package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gopeft/gopeft/kernel/engine"
	"github.com/gopeft/gopeft/kernel/wire"
)

type executeRequest struct {
	Code            string            `json:"code"`
	Silent          bool              `json:"silent"`
	StoreHistory    *bool             `json:"store_history"`
	UserExpressions map[string]string `json:"user_expressions"`
	AllowStdin      *bool             `json:"allow_stdin"`
	StopOnError     *bool             `json:"stop_on_error"`
}

func (k *Kernel) execute(m *wire.Message) {
	if k.lateQueued(m) {
		k.reply(wire.Shell, m, map[string]any{"status": "aborted", "execution_count": k.count})
		return
	}
	var req executeRequest
	if !k.decode(wire.Shell, m, &req) {
		return
	}
	store := !req.Silent
	if req.StoreHistory != nil && !req.Silent {
		store = *req.StoreHistory
	}
	if store {
		k.count++
	}
	count := k.count
	if !req.Silent {
		k.publish(m, "execute_input", map[string]any{"code": req.Code, "execution_count": count})
	}
	pub := &cellPublisher{k: k, req: m, silent: req.Silent, allowStdin: req.AllowStdin == nil || *req.AllowStdin}
	res := k.run(req.Code, count, pub)

	var outText *string
	if res.Error != nil {
		stop := req.StopOnError == nil || *req.StopOnError
		if stop {
			// Abort, after this request's idle, what was queued before
			// the client could see this error.
			k.failedAt = time.Now()
			k.abortPending, k.abortQueuedN = true, len(k.shellQ)
		} else {
			k.abortUntil = time.Time{} // this failure aborts nothing
		}
		e := res.Error
		tb := e.Traceback
		if tb == nil {
			tb = []string{}
		}
		if !req.Silent {
			k.publish(m, "error", map[string]any{"ename": e.Name, "evalue": e.Value, "traceback": tb})
		}
		k.reply(wire.Shell, m, map[string]any{
			"status": "error", "execution_count": count,
			"ename": e.Name, "evalue": e.Value, "traceback": tb,
		})
		if store {
			k.history.add(count, req.Code, nil)
		}
		return
	}
	if res.Data != nil {
		if t, ok := res.Data["text/plain"].(string); ok {
			outText = &t
		}
		if !req.Silent {
			md := res.Metadata
			if md == nil {
				md = map[string]any{}
			}
			k.publish(m, "execute_result", map[string]any{"execution_count": count, "data": res.Data, "metadata": md})
		}
	}
	payload := res.Payload
	if payload == nil {
		payload = []map[string]any{}
	}
	k.reply(wire.Shell, m, map[string]any{
		"status": "ok", "execution_count": count, "payload": payload,
		"user_expressions": k.userExpressions(req.UserExpressions, count),
	})
	if store {
		k.history.add(count, req.Code, outText)
	}
}

// run calls the engine with a cancellable context and turns a panic of the
// engine itself into an error result.
func (k *Kernel) run(code string, count int, pub engine.Publisher) (res engine.Result) {
	ctx, cancel := context.WithCancel(context.Background())
	k.mu.Lock()
	select {
	case <-k.done:
		cancel() // shutting down: do not start
	default:
	}
	k.cancel, k.cellCtx = cancel, ctx
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.cancel, k.cellCtx = nil, nil
		k.mu.Unlock()
		cancel()
		if r := recover(); r != nil {
			k.log.Printf("engine panic: %v\n%s", r, debug.Stack())
			msg := fmt.Sprint(r)
			res = engine.Result{Error: &engine.ExecError{Name: "InternalError", Value: msg,
				Traceback: []string{"InternalError: the kernel recovered from a panic: " + msg}}}
		}
	}()
	return k.eng.Execute(ctx, code, count, pub)
}

func (k *Kernel) userExpressions(exprs map[string]string, count int) map[string]any {
	out := map[string]any{}
	for name, expr := range exprs {
		res := k.run(expr, count, discard{})
		if res.Error != nil {
			tb := res.Error.Traceback
			if tb == nil {
				tb = []string{}
			}
			out[name] = map[string]any{"status": "error", "ename": res.Error.Name, "evalue": res.Error.Value, "traceback": tb}
			continue
		}
		data, md := res.Data, res.Metadata
		if data == nil {
			data = map[string]any{}
		}
		if md == nil {
			md = map[string]any{}
		}
		out[name] = map[string]any{"status": "ok", "data": data, "metadata": md}
	}
	return out
}

// abortWindow is how long after a failed cell (stop_on_error) newly arriving
// execute_requests may still be aborted: a front-end that sent "run all" may
// not have delivered every cell by the time the first one fails.
const abortWindow = 50 * time.Millisecond

// lateQueued reports whether m is an execute_request that the front-end
// queued before the failure it must be aborted for, but that arrived just
// after: it arrives within abortWindow and its header was dated before the
// error. A client that saw the error reply and then sent a request is not
// affected.
func (k *Kernel) lateQueued(m *wire.Message) bool {
	if k.failedAt.IsZero() || time.Now().After(k.abortUntil) {
		return false
	}
	sent, err := time.Parse(time.RFC3339Nano, m.Header.Date)
	return err == nil && sent.Before(k.failedAt)
}

// abortQueued answers the execute_requests that were queued on shell when
// a cell failed with stop_on_error, and those arriving within abortWindow
// that were sent before the failure, with status "aborted"; other queued
// requests are served in order.
func (k *Kernel) abortQueued() {
	n := k.abortQueuedN
	k.abortPending, k.abortQueuedN = false, 0
	for i := 0; i < n; i++ {
		m := <-k.shellQ // only this goroutine takes from shellQ: n are there
		if m.Header.MsgType != "execute_request" {
			k.handle(wire.Shell, m)
			continue
		}
		k.publish(m, "status", map[string]string{"execution_state": "busy"})
		k.reply(wire.Shell, m, map[string]any{"status": "aborted", "execution_count": k.count})
		k.publish(m, "status", map[string]string{"execution_state": "idle"})
	}
	k.abortUntil = time.Now().Add(abortWindow)
}

// cellPublisher sends what a running cell produces to IOPub, with the
// execute_request as parent.
type cellPublisher struct {
	k          *Kernel
	req        *wire.Message
	silent     bool
	allowStdin bool
}

func (p *cellPublisher) Stream(name, text string) {
	if p.silent || text == "" {
		return
	}
	if name != "stderr" {
		name = "stdout"
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	p.k.publish(p.req, "stream", map[string]any{"name": name, "text": text})
}

func (p *cellPublisher) Display(data, metadata map[string]any, displayID string, update bool) {
	if p.silent || data == nil {
		return
	}
	if metadata == nil {
		metadata = map[string]any{}
	}
	content := map[string]any{"data": data, "metadata": metadata}
	typ := "display_data"
	if displayID != "" {
		content["transient"] = map[string]any{"display_id": displayID}
		if update {
			typ = "update_display_data"
		}
	}
	p.k.publish(p.req, typ, content)
}

func (p *cellPublisher) ClearOutput(wait bool) {
	if p.silent {
		return
	}
	p.k.publish(p.req, "clear_output", map[string]any{"wait": wait})
}

// ErrNoStdin is returned by Input when the front-end does not accept input.
var ErrNoStdin = errors.New("stdin is not available: the front-end does not allow input requests")

// ErrInputInterrupted is returned by Input when the cell is interrupted or
// the kernel shuts down while waiting.
var ErrInputInterrupted = errors.New("input request interrupted")

func (p *cellPublisher) Input(prompt string, password bool) (string, error) {
	if !p.allowStdin {
		return "", ErrNoStdin
	}
	k := p.k
	k.inputMu.Lock()
	defer k.inputMu.Unlock()
	// Drop stale replies (to an earlier, interrupted request).
	for len(k.stdinQ) > 0 {
		<-k.stdinQ
	}
	out := k.newMsg(p.req, "input_request", map[string]any{"prompt": prompt, "password": password})
	out.Identities = p.req.Identities
	if err := k.conn.Send(wire.Stdin, out); err != nil {
		return "", fmt.Errorf("input request: %w", err)
	}
	ctxDone := k.cellDone()
	for {
		select {
		case m := <-k.stdinQ:
			if m.Header.MsgType != "input_reply" {
				k.log.Printf("stdin: ignored %s", m.Header.MsgType)
				continue
			}
			var rep struct {
				Value string `json:"value"`
			}
			if err := json.Unmarshal(m.RawContent(), &rep); err != nil {
				return "", fmt.Errorf("malformed input_reply: %w", err)
			}
			return rep.Value, nil
		case <-ctxDone: // nil (never ready) outside a cell
			return "", ErrInputInterrupted
		case <-k.done:
			return "", ErrInputInterrupted
		}
	}
}

// cellDone returns a channel closed when the running cell is interrupted.
func (k *Kernel) cellDone() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cellCtx == nil {
		return nil
	}
	return k.cellCtx.Done()
}

// discard is the Publisher of user expressions: they show nothing.
type discard struct{}

func (discard) Stream(string, string)                                {}
func (discard) Display(map[string]any, map[string]any, string, bool) {}
func (discard) ClearOutput(bool)                                     {}
func (discard) Input(string, bool) (string, error)                   { return "", ErrNoStdin }

var _ engine.Publisher = (*cellPublisher)(nil)
