// Package dispatch is the logic of the gopeft Jupyter kernel: the msg_type
// switch over the shell, control and stdin channels, the busy/idle status
// around every request, execution counting, stop_on_error, history, comms,
// interrupts and shutdown. kernel/wire does the sockets and signatures; the
// cells themselves run in an Engine (kernel/session in the real kernel, a
// fake in the tests), through the types of kernel/engine, so that this
// package does not depend on the interpreter.
//
// The dispatcher never panics and never exits the process: every handler
// recovers, logs, and answers a request with an error reply.
package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gopeft/gopeft/kernel/engine"
	"github.com/gopeft/gopeft/kernel/wire"
)

// Engine runs cells. Calls other than the cancellation of ctx are serialized
// by the dispatcher.
type Engine interface {
	// Execute runs one cell; count is its execution_count. When ctx is
	// cancelled (interrupt) it returns promptly with an error result.
	Execute(ctx context.Context, code string, count int, pub engine.Publisher) engine.Result
	// Complete returns the matches for the code at cursorPos (code points).
	Complete(code string, cursorPos int) (matches []string, cursorStart, cursorEnd int)
	// Inspect returns the help bundle for the name at cursorPos.
	Inspect(code string, cursorPos, detailLevel int) (data map[string]any, found bool)
	// IsComplete reports "complete", "incomplete", "invalid" or "unknown".
	IsComplete(code string) (status, indent string)
}

// Config describes the kernel to front-ends.
type Config struct {
	Implementation        string // "gopeft"
	ImplementationVersion string
	Banner                string
	LanguageVersion       string // Go version, without the "go" prefix
	HelpLinks             []HelpLink
	Log                   *log.Logger // default: the connection's logger
	// HistoryFile, when set, keeps the history across kernel sessions:
	// each session writes its own JSON-lines file in HistoryFile's
	// directory under history.d/, bounded per entry and in total (see
	// history.go); otherwise it lives in memory only.
	HistoryFile string
}

// HelpLink is an entry of kernel_info_reply's help_links.
type HelpLink struct {
	Text string `json:"text"`
	URL  string `json:"url"`
}

// Kernel dispatches the messages of one connection to one Engine.
type Kernel struct {
	conn    *wire.Conn
	eng     Engine
	cfg     Config
	log     *log.Logger
	session string

	shellQ  chan *wire.Message
	stdinQ  chan *wire.Message
	inputMu sync.Mutex

	mu        sync.Mutex
	cancel    context.CancelFunc // of the running cell; nil when idle
	cellCtx   context.Context    // of the running cell; nil when idle
	done      chan struct{}      // closed on shutdown
	shellDone chan struct{}      // closed when the shell loop has ended
	restart   bool
	closeOnce sync.Once

	// Owned by the shell goroutine.
	count        int
	history      history
	abortPending bool      // stop_on_error: a cell failed; after its idle,
	abortQueuedN int       // abort this many queued requests
	abortUntil   time.Time // and late arrivals before this time,
	failedAt     time.Time // if sent before the last failure
}

// New returns a Kernel serving conn with eng.
func New(conn *wire.Conn, eng Engine, cfg Config) *Kernel {
	if cfg.Implementation == "" {
		cfg.Implementation = "gopeft"
	}
	if cfg.LanguageVersion == "" {
		cfg.LanguageVersion = strings.TrimPrefix(runtime.Version(), "go")
	}
	lg := cfg.Log
	if lg == nil {
		lg = conn.Log()
	}
	return &Kernel{
		conn:      conn,
		eng:       eng,
		cfg:       cfg,
		log:       lg,
		session:   wire.NewID(),
		shellQ:    make(chan *wire.Message, 4096),
		stdinQ:    make(chan *wire.Message, 16),
		done:      make(chan struct{}),
		shellDone: make(chan struct{}),
		history:   history{file: cfg.HistoryFile, log: lg},
	}
}

// Run serves until a shutdown_request arrives or ctx is cancelled. It reports
// whether the front-end asked for a restart. The caller closes the
// connection afterwards.
func (k *Kernel) Run(ctx context.Context) (restart bool) {
	k.publish(nil, "status", map[string]string{"execution_state": "starting"})
	go k.readLoop(wire.Shell, k.shellQ)
	go k.readLoop(wire.Stdin, k.stdinQ)
	go k.controlLoop()
	go func() {
		select {
		case <-ctx.Done():
			k.stop(false)
		case <-k.done:
		}
	}()
	// Shell requests run in their own goroutine, so that a shutdown ends Run
	// even while a cell is stuck in a compiled call that ignores its context.
	go k.shellLoop()
	<-k.done
	k.closeHistory()
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.restart
}

// closeHistory closes the history file once the shell loop is out of
// handle (or after a grace period when a cell is stuck).
func (k *Kernel) closeHistory() {
	select {
	case <-k.shellDone:
		k.history.close()
	case <-time.After(200 * time.Millisecond):
	}
}

func (k *Kernel) shellLoop() {
	defer close(k.shellDone)
	for {
		select {
		case <-k.done:
			return
		case m := <-k.shellQ:
			k.handle(wire.Shell, m)
			if k.abortPending {
				k.abortQueued()
			}
		}
	}
}

// Done is closed when the kernel has been asked to shut down.
func (k *Kernel) Done() <-chan struct{} { return k.done }

// Interrupt cancels the running cell, if any (interrupt_request, SIGINT).
func (k *Kernel) Interrupt() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cancel != nil {
		k.cancel()
		return true
	}
	return false
}

func (k *Kernel) stop(restart bool) {
	k.closeOnce.Do(func() {
		k.mu.Lock()
		k.restart = restart
		if k.cancel != nil {
			k.cancel()
		}
		k.mu.Unlock()
		close(k.done)
	})
}

func (k *Kernel) readLoop(ch wire.Channel, q chan<- *wire.Message) {
	for {
		m, err := k.conn.Recv(ch)
		if err != nil {
			select {
			case <-k.done:
				return
			default:
			}
			if err == wire.ErrClosed {
				return
			}
			k.log.Printf("%v: %v", ch, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case q <- m:
		case <-k.done:
			return
		}
	}
}

func (k *Kernel) controlLoop() {
	for {
		m, err := k.conn.Recv(wire.Control)
		if err != nil {
			select {
			case <-k.done:
				return
			default:
			}
			if err == wire.ErrClosed {
				return
			}
			k.log.Printf("control: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		k.handle(wire.Control, m)
	}
}

// handle answers one request, wrapped in busy/idle, recovering any panic.
func (k *Kernel) handle(ch wire.Channel, m *wire.Message) {
	typ := m.Header.MsgType
	k.publish(m, "status", map[string]string{"execution_state": "busy"})
	defer k.publish(m, "status", map[string]string{"execution_state": "idle"})
	defer func() {
		if r := recover(); r != nil {
			k.log.Printf("%v: panic handling %s: %v\n%s", ch, typ, r, debug.Stack())
			if strings.HasSuffix(typ, "_request") {
				k.replyError(ch, m, "InternalError", fmt.Sprint(r))
			}
		}
	}()
	switch typ {
	case "kernel_info_request":
		k.reply(ch, m, k.kernelInfo())
	case "shutdown_request":
		k.shutdown(ch, m)
	case "interrupt_request":
		k.Interrupt()
		k.reply(ch, m, map[string]string{"status": "ok"})
	}
	if ch == wire.Control {
		switch typ {
		case "kernel_info_request", "shutdown_request", "interrupt_request":
		default:
			k.log.Printf("control: ignored message type %q", typ)
		}
		return
	}
	switch typ {
	case "kernel_info_request", "shutdown_request", "interrupt_request":
	case "execute_request":
		k.execute(m)
	case "complete_request":
		k.complete(m)
	case "inspect_request":
		k.inspect(m)
	case "is_complete_request":
		k.isComplete(m)
	case "history_request":
		k.historyRequest(m)
	case "comm_info_request":
		k.reply(ch, m, map[string]any{"status": "ok", "comms": map[string]any{}})
	case "comm_open":
		k.commOpen(m)
	case "comm_msg", "comm_close":
		k.log.Printf("shell: %s for an unknown comm ignored", typ)
	case "connect_request":
		ci := k.conn.Info()
		k.reply(ch, m, map[string]any{"status": "ok", "shell_port": ci.ShellPort, "iopub_port": ci.IOPubPort,
			"stdin_port": ci.StdinPort, "hb_port": ci.HBPort, "control_port": ci.ControlPort})
	default:
		k.log.Printf("shell: ignored unknown message type %q", typ)
	}
}

// decode parses the content of m into v; on failure it answers with an
// error reply and returns false.
func (k *Kernel) decode(ch wire.Channel, m *wire.Message, v any) bool {
	raw := m.RawContent()
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		k.log.Printf("%v: malformed %s content: %v", ch, m.Header.MsgType, err)
		k.replyError(ch, m, "MalformedRequest", fmt.Sprintf("malformed %s content: %v", m.Header.MsgType, err))
		return false
	}
	return true
}

func replyType(reqType string) string {
	return strings.TrimSuffix(reqType, "_request") + "_reply"
}

func (k *Kernel) newMsg(parent *wire.Message, msgType string, content any) *wire.Message {
	out := &wire.Message{Header: wire.NewHeader(msgType, k.session), Content: content}
	if parent != nil {
		out.Parent = parent.RawHeader
	}
	return out
}

// reply sends the reply to m on the channel m came from.
func (k *Kernel) reply(ch wire.Channel, m *wire.Message, content any) {
	out := k.newMsg(m, replyType(m.Header.MsgType), content)
	out.Identities = m.Identities
	if err := k.conn.Send(ch, out); err != nil {
		k.log.Printf("%v: %v", ch, err)
	}
}

func (k *Kernel) replyError(ch wire.Channel, m *wire.Message, ename, evalue string) {
	content := map[string]any{"status": "error", "ename": ename, "evalue": evalue, "traceback": []string{ename + ": " + evalue}}
	if m.Header.MsgType == "execute_request" {
		content["execution_count"] = k.count
	}
	k.reply(ch, m, content)
}

// publish sends an IOPub message with parent as its parent (nil: none).
func (k *Kernel) publish(parent *wire.Message, msgType string, content any) {
	if err := k.conn.Send(wire.IOPub, k.newMsg(parent, msgType, content)); err != nil && err != wire.ErrClosed {
		k.log.Printf("iopub: %v", err)
	}
}

func (k *Kernel) kernelInfo() map[string]any {
	banner := k.cfg.Banner
	if banner == "" {
		banner = "gopeft " + k.cfg.ImplementationVersion + ": a Go kernel (yaegi) with gonum and peft preloaded"
	}
	links := k.cfg.HelpLinks
	if links == nil {
		links = []HelpLink{}
	}
	return map[string]any{
		"status":                 "ok",
		"protocol_version":       wire.ProtocolVersion,
		"implementation":         k.cfg.Implementation,
		"implementation_version": k.cfg.ImplementationVersion,
		"language_info": map[string]any{
			"name":               "go",
			"version":            k.cfg.LanguageVersion,
			"mimetype":           "text/x-go",
			"file_extension":     ".go",
			"pygments_lexer":     "go",
			"codemirror_mode":    "go",
			"nbconvert_exporter": "script",
		},
		"banner":     banner,
		"help_links": links,
		"debugger":   false,
	}
}

func (k *Kernel) shutdown(ch wire.Channel, m *wire.Message) {
	var req struct {
		Restart bool `json:"restart"`
	}
	_ = json.Unmarshal(m.RawContent(), &req) // a malformed body still shuts down
	content := map[string]any{"status": "ok", "restart": req.Restart}
	k.reply(ch, m, content)
	k.publish(m, "shutdown_reply", content)
	k.stop(req.Restart)
}

func (k *Kernel) commOpen(m *wire.Message) {
	var req struct {
		CommID     string `json:"comm_id"`
		TargetName string `json:"target_name"`
	}
	if err := json.Unmarshal(m.RawContent(), &req); err != nil || req.CommID == "" {
		k.log.Printf("shell: malformed comm_open ignored")
		return
	}
	// No comm targets: close the comm at once, as ipykernel does.
	k.log.Printf("shell: no comm target %q; closing comm %s", req.TargetName, req.CommID)
	k.publish(m, "comm_close", map[string]any{"comm_id": req.CommID, "data": map[string]any{}})
}
