// Package kernel is the gopeft Jupyter kernel: it wires kernel/wire (the
// sockets), kernel/dispatch (the protocol logic) and kernel/session (the
// yaegi interpreter) together. `gopeft kernel -f CONNECTION_FILE` calls Run.
package kernel

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gopeft/gopeft/kernel/dispatch"
	"github.com/gopeft/gopeft/kernel/engine"
	"github.com/gopeft/gopeft/kernel/session"
	"github.com/gopeft/gopeft/kernel/wire"
)

// Version is gopeft's version, reported by kernel_info and `gopeft version`.
var Version = "0.1.0"

// HelpLinks are the help_links of kernel_info_reply.
var HelpLinks = []dispatch.HelpLink{
	{Text: "gopeft", URL: "https://github.com/gopeft/gopeft"},
	{Text: "Go documentation", URL: "https://go.dev/doc/"},
	{Text: "Go standard library", URL: "https://pkg.go.dev/std"},
	{Text: "gonum", URL: "https://pkg.go.dev/gonum.org/v1/gonum"},
	{Text: "yaegi", URL: "https://github.com/traefik/yaegi"},
}

// Run serves the kernel described by connectionFile until a shutdown_request
// or SIGTERM. SIGINT interrupts the running cell instead of ending the
// process (interrupt_mode "message" is preferred; SIGINT is the fallback).
func Run(connectionFile string) error {
	tuneGC()
	// The session redirects os.Stderr while cells run; kernel logs keep the
	// real stderr.
	lg := log.New(os.Stderr, "gopeft kernel: ", log.LstdFlags|log.Lmicroseconds)
	info, err := wire.ReadConnectionFile(connectionFile)
	if err != nil {
		return err
	}
	// Catch SIGINT before anything slow, so an early interrupt cannot kill us.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	conn, err := wire.Listen(info, wire.Options{Log: lg})
	if err != nil {
		return err
	}
	defer conn.Close()

	// The interpreter loads large symbol tables; start it in the background
	// so that kernel_info is answered at once.
	eng := newLazyEngine(lg)
	defer eng.close()
	k := dispatch.New(conn, eng, dispatch.Config{
		Implementation:        "gopeft",
		ImplementationVersion: Version,
		HelpLinks:             HelpLinks,
		Log:                   lg,
		HistoryFile:           historyFile(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGTERM {
					lg.Printf("SIGTERM: shutting down")
					cancel()
					return
				}
				if !k.Interrupt() {
					lg.Printf("SIGINT with no running cell: ignored")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	restart := k.Run(ctx)
	// Let the last IOPub messages (shutdown_reply, idle) leave the queue.
	time.Sleep(50 * time.Millisecond)
	if restart {
		lg.Printf("shutdown for restart")
	}
	return nil
}

// historyFile is where the history of cells is kept across sessions:
// $GOPEFT_HISTORY ("off": memory only), else $XDG_DATA_HOME/gopeft or
// ~/.local/share/gopeft, file history.jsonl.
func historyFile() string {
	if f, ok := os.LookupEnv("GOPEFT_HISTORY"); ok {
		if f == "off" || f == "" {
			return ""
		}
		return f
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "gopeft", "history.jsonl")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "share", "gopeft", "history.jsonl")
}

// lazyEngine creates the session in the background and makes the first
// engine call wait for it.
type lazyEngine struct {
	ready chan struct{}
	s     *session.Session
	err   error
	log   *log.Logger
}

func newLazyEngine(lg *log.Logger) *lazyEngine {
	e := &lazyEngine{ready: make(chan struct{}), log: lg}
	go func() {
		defer close(e.ready)
		defer func() {
			if r := recover(); r != nil {
				e.err = fmt.Errorf("session: panic while starting: %v", r)
			}
		}()
		e.s, e.err = session.New()
		if e.err != nil {
			lg.Printf("the interpreter did not start: %v", e.err)
		}
	}()
	return e
}

func (e *lazyEngine) wait(ctx context.Context) error {
	select {
	case <-e.ready:
		return e.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *lazyEngine) Execute(ctx context.Context, code string, count int, pub engine.Publisher) engine.Result {
	if err := e.wait(ctx); err != nil {
		name := "KernelError"
		if ctx.Err() != nil {
			name, err = "Interrupted", fmt.Errorf("interrupted while the interpreter was starting")
		}
		return engine.Result{Error: &engine.ExecError{Name: name, Value: err.Error(),
			Traceback: []string{name + ": " + err.Error()}}}
	}
	return e.s.Execute(ctx, code, count, pub)
}

func (e *lazyEngine) Complete(code string, cursorPos int) ([]string, int, int) {
	if e.wait(context.Background()) != nil {
		return nil, cursorPos, cursorPos
	}
	return e.s.Complete(code, cursorPos)
}

func (e *lazyEngine) Inspect(code string, cursorPos, detailLevel int) (map[string]any, bool) {
	if e.wait(context.Background()) != nil {
		return nil, false
	}
	return e.s.Inspect(code, cursorPos, detailLevel)
}

func (e *lazyEngine) IsComplete(code string) (string, string) {
	if e.wait(context.Background()) != nil {
		return "unknown", ""
	}
	return e.s.IsComplete(code)
}

func (e *lazyEngine) close() {
	select {
	case <-e.ready:
		if e.s != nil {
			if err := e.s.Close(); err != nil {
				e.log.Printf("closing the session: %v", err)
			}
		}
	default: // still starting: the process is about to exit anyway
	}
}

var _ dispatch.Engine = (*lazyEngine)(nil)
