package session

import (
	"bytes"
	"context"
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
	ctx context.Context // the cell's: cancelled on interrupt
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
	if p.ctx == nil {
		return p.pub.Input(prompt, password)
	}
	// An interrupt ends the wait, even if the front-end never answers.
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := p.pub.Input(prompt, password)
		ch <- answer{line, err}
	}()
	select {
	case a := <-ch:
		return a.line, a.err
	case <-p.ctx.Done():
		return "", errors.New("interrupted while waiting for input")
	}
}

// stdProxy is the interpreter's stdout: interpreted fmt.Print* goes into the
// running cell's output, or to the process's stdout between cells.
type stdProxy struct{ s *Session }

func (p stdProxy) Write(b []byte) (int, error) {
	if c := p.s.running(); c != nil {
		c.out.write("stdout", b)
		return len(b), nil
	}
	if p.s.background("stdout", b) {
		return len(b), nil
	}
	return os.Stdout.Write(b)
}

// panicLine matches the line yaegi writes to its stderr for each
// interpreted frame a panic unwinds ("12:3: panic: main.f(...)").
var panicLine = regexp.MustCompile(`^(?:[^\s:]*:)?(\d+):(\d+): panic(?:: ([^\s(]*))?`)

// panicFrame is one interpreted frame a panic left: its position and the
// function yaegi names ("main.f").
type panicFrame struct {
	line, col int
	fn        string
}

// stderrFilter is the interpreter's stderr. It drops yaegi's own panic lines
// (the error reply says it all, and Jupyter's tests want the error as the
// single output) and keeps their positions for the traceback.
type stderrFilter struct {
	s      *Session
	mu     sync.Mutex
	frames []panicFrame
}

func (f *stderrFilter) Write(b []byte) (int, error) {
	if m := panicLine.FindSubmatch(b); m != nil && bytes.Count(b, []byte("\n")) <= 1 {
		l, _ := strconv.Atoi(string(m[1]))
		c, _ := strconv.Atoi(string(m[2]))
		f.mu.Lock()
		f.frames = append(f.frames, panicFrame{line: l - 1, col: c, fn: string(m[3])})
		f.mu.Unlock()
		return len(b), nil
	}
	if c := f.s.running(); c != nil {
		c.out.write("stderr", b)
		return len(b), nil
	}
	if f.s.background("stderr", b) {
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

// capture collects a cell's output in the order it was produced and
// streams it to the publisher while the cell runs (every 50 ms, and before
// any display, clear or input request, so that these come after the text
// printed before them).
//
// Interpreted fmt.Print* and log go straight into the buffer. os.Stdout,
// os.Stderr and the standard logger are redirected to pipes for the
// duration of the cell, so that compiled libraries' output is caught too; a
// reader per pipe moves what arrives into the buffer. Before taking an
// interpreted write, the pipes are drained, so compiled output written
// earlier comes first.
type capture struct {
	pub *lockedPub

	mu    sync.Mutex // guards segs
	segs  []segText  // pending output, in order
	pubMu sync.Mutex // held while publishing, keeps the order

	oldOut, oldErr *os.File
	oldLog         io.Writer
	readers        []*streamReader
	wOut, wErr     *os.File
	wg             sync.WaitGroup
	ok             bool
	flushAt        *time.Timer // publishes pending output; nil when none is pending
	stopped        bool        // the cell ended: no more timed publishing
}

type segText struct{ name, text string }

type streamReader struct {
	name  string
	r     *os.File
	mu    sync.Mutex // held while bytes move from the pipe into the buffer
	carry []byte     // an incomplete UTF-8 sequence read last
	buf   []byte
}

// tickEvery is how soon output is published after it was written while
// a cell runs. The timer is started by the first pending output, so a
// cell that prints nothing costs no timer and no goroutine.
const tickEvery = 50 * time.Millisecond

// pipeBufs recycles the pipe readers' buffers: allocated per cell, they
// were 128 KB of garbage for every cell, a GC every 30 trivial cells.
var pipeBufs = sync.Pool{New: func() any { return new([64 << 10]byte) }}

func getPipeBuf() []byte { return pipeBufs.Get().(*[64 << 10]byte)[:] }

func putPipeBuf(b []byte) {
	if len(b) == 64<<10 {
		pipeBufs.Put((*[64 << 10]byte)(b))
	}
}

func startCapture(pub *lockedPub) *capture {
	c := &capture{pub: pub}
	rOut, wOut, err1 := os.Pipe()
	rErr, wErr, err2 := os.Pipe()
	if err1 != nil || err2 != nil {
		// Without pipes compiled output goes to the process streams; the
		// cell still runs.
		return c
	}
	c.ok = true
	c.oldOut, c.oldErr, c.oldLog = os.Stdout, os.Stderr, log.Writer()
	c.wOut, c.wErr = wOut, wErr
	os.Stdout, os.Stderr = wOut, wErr
	log.SetOutput(wErr)
	for _, sr := range []*streamReader{{name: "stdout", r: rOut, buf: getPipeBuf()}, {name: "stderr", r: rErr, buf: getPipeBuf()}} {
		c.readers = append(c.readers, sr)
		c.wg.Add(1)
		go c.pump(sr)
	}
	return c
}

// timed publishes the pending output when tickEvery has passed since the
// first of it was written.
func (c *capture) timed() {
	c.mu.Lock()
	c.flushAt = nil
	c.mu.Unlock()
	c.publish()
}

// add appends text to the pending output.
func (c *capture) add(name, text string) {
	if text == "" {
		return
	}
	c.mu.Lock()
	if n := len(c.segs); n > 0 && c.segs[n-1].name == name {
		c.segs[n-1].text += text
	} else {
		c.segs = append(c.segs, segText{name, text})
	}
	if c.flushAt == nil && !c.stopped {
		c.flushAt = time.AfterFunc(tickEvery, c.timed)
	}
	c.mu.Unlock()
}

// write is an interpreted write: after what compiled code wrote before.
func (c *capture) write(name string, b []byte) {
	c.waitPipes()
	c.add(name, string(b))
}

// publish sends the pending output.
func (c *capture) publish() {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	segs := c.segs
	c.segs = nil
	c.mu.Unlock()
	for _, sg := range segs {
		c.pub.Stream(sg.name, sg.text)
	}
}

// flush publishes everything written so far, compiled output included.
func (c *capture) flush() {
	if c == nil {
		return
	}
	c.waitPipes()
	c.publish()
}

// take moves data read from a pipe into the buffer, never splitting a
// UTF-8 sequence (sr.mu held). At EOF the carry goes too.
func (c *capture) take(sr *streamReader, data []byte, eof bool) {
	data = append(sr.carry, data...)
	cut := len(data)
	if !eof {
		for cut > 0 && cut > len(data)-utf8.UTFMax && !utf8.Valid(data[:cut]) {
			cut--
		}
		if cut == 0 || !utf8.Valid(data[:cut]) {
			cut = len(data)
		}
	}
	c.add(sr.name, string(data[:cut]))
	sr.carry = append([]byte(nil), data[cut:]...)
}

// pump moves what arrives on one pipe into the buffer until EOF.
func (c *capture) pump(sr *streamReader) {
	defer c.wg.Done()
	pumpPipe(sr, func(data []byte, eof bool) { c.take(sr, data, eof) })
}

// waitPipes moves into the buffer whatever the pipes hold now, so that it
// comes before what is written next.
func (c *capture) waitPipes() {
	if c == nil || !c.ok {
		return
	}
	for _, sr := range c.readers {
		drainPipe(sr, func(data []byte) { c.take(sr, data, false) })
	}
}

// stop restores the process streams and publishes what is left.
func (c *capture) stop() {
	if c.ok {
		os.Stdout, os.Stderr = c.oldOut, c.oldErr
		log.SetOutput(c.oldLog)
		c.wOut.Close()
		c.wErr.Close()
		c.wg.Wait()
		for _, sr := range c.readers {
			sr.mu.Lock()
			sr.r.Close()
			putPipeBuf(sr.buf)
			sr.buf = nil
			sr.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.stopped = true
	if c.flushAt != nil {
		c.flushAt.Stop() // a callback already started publishes in order (pubMu)
		c.flushAt = nil
	}
	c.mu.Unlock()
	c.publish()
}
