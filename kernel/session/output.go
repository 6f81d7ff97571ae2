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
// streams it to the publisher while the cell runs (within 50 ms, and before
// any display, clear or input request, so that these come after the text
// printed before them).
//
// Interpreted fmt.Print* and log go straight into the buffer. os.Stdout,
// os.Stderr and the standard logger are redirected to the session's pipes
// for the duration of the cell, so that compiled libraries' output is
// caught too; a reader per pipe moves what arrives into the buffer. Before
// taking an interpreted write, and when the cell ends, the pipes are
// drained, so compiled output written earlier comes first.
type capture struct {
	pub *lockedPub

	mu    sync.Mutex // guards segs, flushAt, stopped
	segs  []segText  // pending output, in order
	pubMu sync.Mutex // held while publishing, keeps the order

	pipes          *outPipes // nil: compiled output is not caught
	oldOut, oldErr *os.File
	oldLog         io.Writer
	flushAt        *time.Timer // publishes pending output; nil when none is pending
	stopped        bool        // the cell ended: no more timed publishing
}

type segText struct{ name, text string }

// outPipes are the pipes os.Stdout and os.Stderr write to while a cell
// runs. They are made once per session and read by one goroutine each for
// the session's life: making them per cell cost a dozen system calls, and
// waiting at the end of each cell for their readers to see EOF put two
// goroutine wake-ups through the network poller on every round trip.
type outPipes struct {
	wOut, wErr *os.File
	readers    []*streamReader
}

type streamReader struct {
	name  string
	r     *os.File
	mu    sync.Mutex // held while bytes move from the pipe to the sink
	carry []byte     // an incomplete UTF-8 sequence read last
	buf   []byte
	sink  *capture                         // the running cell's output; nil between cells
	held  []segText                        // read between cells when background refused it
	bg    func(name string, b []byte) bool // output between cells (Session.background)
}

// tickEvery is how soon output is published after it was written while
// a cell runs. The timer is started by the first pending output, so a
// cell that prints nothing costs no timer and no goroutine.
const tickEvery = 50 * time.Millisecond

// newOutPipes makes the pipes and starts their readers; nil if the system
// gives no pipes (compiled output then goes to the process's streams).
func newOutPipes(bg func(name string, b []byte) bool) *outPipes {
	rOut, wOut, err := os.Pipe()
	if err != nil {
		return nil
	}
	rErr, wErr, err := os.Pipe()
	if err != nil {
		rOut.Close()
		wOut.Close()
		return nil
	}
	p := &outPipes{wOut: wOut, wErr: wErr}
	for _, sr := range []*streamReader{{name: "stdout", r: rOut}, {name: "stderr", r: rErr}} {
		sr.buf = make([]byte, 64<<10)
		sr.bg = bg
		p.readers = append(p.readers, sr)
		go func() {
			pumpPipe(sr, sr.take)
			sr.r.Close()
		}()
	}
	return p
}

// close ends the readers (they read what is left, then EOF).
func (p *outPipes) close() {
	if p != nil {
		p.wOut.Close()
		p.wErr.Close()
	}
}

// take moves data read from the pipe to the sink, never splitting a UTF-8
// sequence (sr.mu held). At EOF the carry goes too.
func (sr *streamReader) take(data []byte, eof bool) {
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
	sr.emit(string(data[:cut]))
	sr.carry = append(sr.carry[:0], data[cut:]...)
}

// emit hands text to the running cell, or keeps it for the next (sr.mu
// held).
func (sr *streamReader) emit(text string) {
	if text == "" {
		return
	}
	if sr.sink != nil {
		sr.sink.add(sr.name, text)
		return
	}
	// Written between cells by compiled code that kept os.Stdout.
	if len(sr.held) > 0 || !sr.bg(sr.name, []byte(text)) {
		if len(sr.held) < 1000 {
			sr.held = append(sr.held, segText{sr.name, text})
		}
	}
}

func startCapture(pub *lockedPub, p *outPipes) *capture {
	c := &capture{pub: pub, pipes: p}
	if p == nil {
		return c
	}
	for _, sr := range p.readers {
		sr.mu.Lock()
		sr.sink = c
		held := sr.held
		sr.held = nil
		sr.mu.Unlock()
		for _, h := range held {
			c.add(h.name, h.text)
		}
	}
	c.oldOut, c.oldErr, c.oldLog = os.Stdout, os.Stderr, log.Writer()
	os.Stdout, os.Stderr = p.wOut, p.wErr
	log.SetOutput(p.wErr)
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

// waitPipes moves into the buffer whatever the pipes hold now, so that it
// comes before what is written next.
func (c *capture) waitPipes() {
	if c == nil || c.pipes == nil {
		return
	}
	for _, sr := range c.pipes.readers {
		drainPipe(sr, func(data []byte) { sr.take(data, false) })
	}
}

// stop restores the process streams, takes what the pipes hold and
// publishes what is left.
func (c *capture) stop() {
	if c.pipes != nil {
		os.Stdout, os.Stderr = c.oldOut, c.oldErr
		log.SetOutput(c.oldLog)
		c.waitPipes()
		for _, sr := range c.pipes.readers {
			sr.mu.Lock()
			if sr.sink == c {
				sr.take(nil, true) // the carry: the cell's output ends here
				sr.sink = nil
			}
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
