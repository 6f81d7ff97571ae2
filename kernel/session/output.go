package session

import (
	"bytes"
	"errors"
	"io"
	"log"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// lockedPub serializes calls to a Publisher: the cell, the output readers
// and goroutines started by the cell all publish.
type lockedPub struct {
	mu  sync.Mutex
	pub Publisher
}

func (p *lockedPub) Stream(name, text string) {
	if p.pub == nil || text == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pub.Stream(name, text)
}

func (p *lockedPub) Display(data, md map[string]any, id string, update bool) {
	if p.pub == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pub.Display(data, md, id, update)
}

func (p *lockedPub) ClearOutput(wait bool) {
	if p.pub == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pub.ClearOutput(wait)
}

func (p *lockedPub) Input(prompt string, password bool) (string, error) {
	if p.pub == nil {
		return "", errors.New("no front-end to read input from")
	}
	// Not under mu: a goroutine of the cell may print while we wait.
	return p.pub.Input(prompt, password)
}

// stdProxy writes to whatever *f is at the time of the write, so that
// interpreted fmt.Print* follows the per-cell redirection of os.Stdout and
// shares its pipe (and ordering) with compiled libraries.
type stdProxy struct{ f **os.File }

func (p stdProxy) Write(b []byte) (int, error) { return (*p.f).Write(b) }

// panicLine matches the line yaegi writes to its stderr for each
// interpreted frame a panic unwinds ("12:3: panic: main.f(...)").
var panicLine = regexp.MustCompile(`^(?:[^\s:]*:)?(\d+):(\d+): panic`)

type panicFrame struct{ line, col int }

// stderrFilter is the interpreter's stderr. It drops yaegi's own panic lines
// (the error reply says it all, and Jupyter's tests want the error as the
// single output) and keeps their positions for the traceback.
type stderrFilter struct {
	mu     sync.Mutex
	frames []panicFrame
}

func (f *stderrFilter) Write(b []byte) (int, error) {
	if m := panicLine.FindSubmatch(b); m != nil && bytes.Count(b, []byte("\n")) <= 1 {
		l, _ := strconv.Atoi(string(m[1]))
		c, _ := strconv.Atoi(string(m[2]))
		f.mu.Lock()
		f.frames = append(f.frames, panicFrame{line: l - 1, col: c})
		f.mu.Unlock()
		return len(b), nil
	}
	return os.Stderr.Write(b)
}

func (f *stderrFilter) reset() {
	f.mu.Lock()
	f.frames = nil
	f.mu.Unlock()
}

func (f *stderrFilter) take() []panicFrame {
	f.mu.Lock()
	defer f.mu.Unlock()
	fr := f.frames
	f.frames = nil
	return fr
}

// stdinProxy is the interpreter's stdin: fmt.Scan* in a cell asks the
// front-end for a line (Jupyter's input_request).
type stdinProxy struct {
	s   *Session
	buf []byte
}

func (p *stdinProxy) Read(b []byte) (int, error) {
	if len(p.buf) == 0 {
		p.s.curMu.Lock()
		c := p.s.cur
		p.s.curMu.Unlock()
		if c == nil {
			return 0, io.EOF
		}
		c.out.flush()
		line, err := c.pub.Input("", false)
		if err != nil {
			return 0, err
		}
		p.buf = []byte(line + "\n")
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

// capture redirects os.Stdout, os.Stderr and the standard logger to pipes
// for the duration of a cell and streams what arrives to the publisher as
// it comes.
type capture struct {
	pub            *lockedPub
	oldOut, oldErr *os.File
	oldLog         io.Writer
	readers        []*streamReader
	wOut, wErr     *os.File
	wg             sync.WaitGroup
	ok             bool
}

type streamReader struct {
	name string
	r    *os.File
	mu   sync.Mutex // held while a chunk is being published
}

func startCapture(pub *lockedPub) *capture {
	c := &capture{pub: pub}
	rOut, wOut, err1 := os.Pipe()
	rErr, wErr, err2 := os.Pipe()
	if err1 != nil || err2 != nil {
		// Without pipes output goes to the process streams; the cell still runs.
		return c
	}
	c.ok = true
	c.oldOut, c.oldErr, c.oldLog = os.Stdout, os.Stderr, log.Writer()
	c.wOut, c.wErr = wOut, wErr
	os.Stdout, os.Stderr = wOut, wErr
	log.SetOutput(wErr)
	for _, sr := range []*streamReader{{name: "stdout", r: rOut}, {name: "stderr", r: rErr}} {
		c.readers = append(c.readers, sr)
		c.wg.Add(1)
		go c.pump(sr)
	}
	return c
}

// pump publishes what arrives on one pipe, never splitting a UTF-8
// sequence between two stream messages.
func (c *capture) pump(sr *streamReader) {
	defer c.wg.Done()
	buf := make([]byte, 64<<10)
	var carry []byte
	for {
		n, err := sr.r.Read(buf)
		if n > 0 {
			sr.mu.Lock()
			data := append(carry, buf[:n]...)
			cut := len(data)
			for cut > 0 && cut > len(data)-utf8.UTFMax && !utf8.Valid(data[:cut]) {
				cut--
			}
			if cut == 0 || !utf8.Valid(data[:cut]) {
				cut = len(data)
			}
			c.pub.Stream(sr.name, string(data[:cut]))
			carry = append([]byte(nil), data[cut:]...)
			sr.mu.Unlock()
		}
		if err != nil {
			if len(carry) > 0 {
				c.pub.Stream(sr.name, string(carry))
			}
			return
		}
	}
}

// flush waits (up to 200 ms) until everything written so far to the pipes
// has been published, so that a display or an error follows the text
// printed before it.
func (c *capture) flush() {
	if c == nil || !c.ok {
		return
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for _, sr := range c.readers {
		for time.Now().Before(deadline) {
			if pipeBuffered(sr.r) == 0 {
				sr.mu.Lock() // wait for a chunk being published
				sr.mu.Unlock()
				if pipeBuffered(sr.r) == 0 {
					break
				}
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// stop restores the process streams and publishes what is left.
func (c *capture) stop() {
	if !c.ok {
		return
	}
	os.Stdout, os.Stderr = c.oldOut, c.oldErr
	log.SetOutput(c.oldLog)
	c.wOut.Close()
	c.wErr.Close()
	c.wg.Wait()
	for _, sr := range c.readers {
		sr.r.Close()
	}
}
