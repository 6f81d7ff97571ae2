package wire

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// Frame limits.
//
// go-zeromq allocates a frame's body from the 8-byte length in its header
// before reading it (and keeps every frame of a multipart message until the
// last one), so a peer announcing a huge frame, or sending a message of
// countless small frames, would make the kernel allocate what it announces.
// The guard (guardConn) sits between the socket and the ZMTP parser, reads
// every frame header before go-zeromq sees it, and applies these limits:
//
//   - A connection is unauthenticated until it has sent one complete message
//     whose HMAC is correct for the connection file's key (and whose
//     signature was not seen before, see replayCache). The guard checks the
//     HMAC itself, streaming, as the frames pass, so the upgrade takes effect
//     at the very next frame header. Until then a message, counted as the sum
//     of its frame sizes plus frameOverhead per frame, may not exceed
//     PreAuthMax (default DefaultPreAuthMax, 4 MiB), and all the
//     unauthenticated connections of one Conn together may hold at most
//     PreAuthBudget (default DefaultPreAuthBudget, 32 MiB) of frames being
//     received. A peer that exceeds either is logged and disconnected before
//     the frame is handed to go-zeromq, so nothing of its size is allocated.
//     An HMAC cannot tell a large first message from an attack before it has
//     all been read, which is why the first message of a connection is held
//     to the small limit: Jupyter clients start with a kernel_info_request
//     (a first message over 4 MiB, say an input_reply pasting more than
//     that, costs the client its connection). The budget is released when
//     go-zeromq comes back for the next frame header, i.e. once it has
//     queued the message; its socket queue (10 messages) and Recv, which
//     drops an unsigned message at once, come on top of the budget.
//   - An authenticated connection may send frames up to MaxFrame (default
//     DefaultMaxFrame, 256 MiB); a larger frame is swapped for a short
//     sentinel while its body is discarded, so Decode drops the message and
//     the connection stays up.
//   - Command frames (the ZMTP handshake, subscriptions) are limited to
//     maxCommand (64 KiB) for everyone, and the handshake must be complete
//     within HandshakeTimeout (default 10 s): go-zeromq runs it on the
//     socket's accept loop, so a peer that stalls there would keep every
//     other client out.
//
// With an empty key nothing can be authenticated, and any peer may run code
// anyway: connections then start out authenticated (only MaxFrame applies).
const (
	DefaultMaxFrame         = 256 << 20
	DefaultPreAuthMax       = 4 << 20
	DefaultPreAuthBudget    = 32 << 20
	DefaultHandshakeTimeout = 10 * time.Second

	maxCommand    = 64 << 10
	frameOverhead = 64  // bytes charged per frame: go-zeromq's slice header and allocation
	maxSigHex     = 128 // hex of an HMAC-SHA512, the longest scheme
)

// guardTransport is a zmq4 transport ("gopeft-tcp", "gopeft-ipc") whose
// listeners return guarded connections.
type guardTransport struct {
	transport.Transport
	network string
}

var guardOnce sync.Once

func registerGuards() {
	guardOnce.Do(func() {
		_ = zmq4.RegisterTransport("gopeft-tcp", guardTransport{transport.New("tcp"), "tcp"})
		_ = zmq4.RegisterTransport("gopeft-ipc", guardTransport{transport.New("unix"), "unix"})
	})
}

// guardConfig holds the limits of one Conn. It reaches the transport
// through the context the Conn's sockets are created with (zmq4 hands that
// context to Transport.Listen).
type guardConfig struct {
	maxFrame   uint64
	preAuthMax uint64
	handshake  time.Duration
	signer     *Signer
	budget     *byteBudget
	replays    *replayCache
	logf       func(format string, args ...any)
}

type guardCtxKey struct{}

func defaultGuardConfig() *guardConfig {
	return &guardConfig{
		maxFrame:   DefaultMaxFrame,
		preAuthMax: DefaultPreAuthMax,
		handshake:  DefaultHandshakeTimeout,
		budget:     &byteBudget{limit: DefaultPreAuthBudget},
		logf:       func(string, ...any) {},
	}
}

func (g guardTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	l, err := net.Listen(g.network, addr)
	if err != nil {
		return nil, err
	}
	cfg, _ := ctx.Value(guardCtxKey{}).(*guardConfig)
	if cfg == nil {
		cfg = defaultGuardConfig()
	}
	return guardListener{l, cfg}, nil
}

type guardListener struct {
	net.Listener
	cfg *guardConfig
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardConn{Conn: c, cfg: l.cfg, r: bufio.NewReaderSize(c, 64<<10), greetLeft: 64}
	gc.authed = !l.cfg.signer.Enabled()
	if l.cfg.handshake > 0 {
		gc.inHandshake = true
		_ = c.SetReadDeadline(time.Now().Add(l.cfg.handshake))
	}
	return gc, nil
}

// byteBudget is a byte count shared by the unauthenticated connections of a
// Conn.
type byteBudget struct {
	mu          sync.Mutex
	used, limit uint64
}

func (b *byteBudget) reserve(n uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *byteBudget) release(n uint64) {
	b.mu.Lock()
	b.used -= min(n, b.used)
	b.mu.Unlock()
}

// guardError ends a connection. It is a net.Error that is not a timeout, so
// that go-zeromq marks the connection closed and forgets it.
type guardError struct{ reason string }

func (e *guardError) Error() string   { return "wire: " + e.reason }
func (e *guardError) Timeout() bool   { return false }
func (e *guardError) Temporary() bool { return false }

// Where an unauthenticated connection is within the message it sends.
const (
	msgIdentities = iota // routing frames, before "<IDS|MSG>"
	msgSignature         // the next frame is the signature
	msgSigned            // header, parent, metadata, content: hashed
	msgBuffers           // after the four signed frames
	msgInvalid           // cannot be a valid message (an oversized frame…)
)

// guardConn passes the ZMTP 3 stream through unchanged, except that it
// enforces the limits described at DefaultMaxFrame.
type guardConn struct {
	net.Conn
	cfg         *guardConfig
	r           *bufio.Reader
	greetLeft   int    // bytes of the 64-byte greeting still to pass
	passLeft    uint64 // bytes of the current frame body still to pass
	discardLeft uint64 // bytes of an oversized body still to skip
	pending     []byte // replacement or original frame header to hand out
	hdr         [9]byte
	err         error // set when the guard has ended the connection

	inHandshake bool // the read deadline is set until the peer's READY passed
	cmd         bool // the current frame is a command
	more        bool // the current frame has the MORE flag
	authed      bool // see DefaultMaxFrame

	// While not authenticated: the message being received.
	msgBytes   uint64 // charged for this message against preAuthMax
	endOfMsg   bool   // the last frame has passed: release at the next header
	state      int
	capture    []byte // body of a delimiter or signature candidate
	capturing  bool
	sig        []byte
	signedLeft int // signed frames still to hash
	mac        hash.Hash

	mu       sync.Mutex
	reserved uint64 // charged to cfg.budget
	closed   bool
}

func (c *guardConn) Read(p []byte) (int, error) {
	for {
		switch {
		case c.err != nil:
			return 0, c.err
		case len(p) == 0:
			return 0, nil
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.greetLeft > 0:
			n, err := c.r.Read(p[:min(len(p), c.greetLeft)])
			c.greetLeft -= n
			return n, c.ioErr(err)
		case c.passLeft > 0:
			n, err := c.r.Read(p[:min(uint64(len(p)), c.passLeft)])
			c.passLeft -= uint64(n)
			if !c.authed {
				c.observe(p[:n])
			}
			if c.passLeft == 0 {
				c.frameDone()
			}
			return n, c.ioErr(err)
		case c.discardLeft > 0:
			n, err := c.r.Discard(int(min(c.discardLeft, 1<<20)))
			c.discardLeft -= uint64(n)
			if err != nil {
				return 0, c.ioErr(err)
			}
			continue
		}
		if err := c.nextHeader(); err != nil {
			return 0, err
		}
	}
}

// ioErr turns the expiry of the handshake deadline into the end of the
// connection: go-zeromq would neither retry nor close it.
func (c *guardConn) ioErr(err error) error {
	var ne net.Error
	if err != nil && c.inHandshake && errors.As(err, &ne) && ne.Timeout() {
		return c.drop("no ZMTP handshake within %v", c.cfg.handshake)
	}
	return err
}

// nextHeader reads a frame header and decides what to hand to go-zeromq.
func (c *guardConn) nextHeader() error {
	if c.endOfMsg {
		// go-zeromq has taken the previous message (it reads the next
		// header only after queueing it): give back its share.
		c.endOfMsg = false
		c.releaseAll()
	}
	flags, err := c.r.ReadByte()
	if err != nil {
		return c.ioErr(err)
	}
	hdr := append(c.hdr[:0], flags)
	var size uint64
	if flags&0x02 != 0 { // LONG: 8-byte big-endian size
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return c.ioErr(err)
		}
		size = binary.BigEndian.Uint64(b[:])
		hdr = append(hdr, b[:]...)
	} else {
		b, err := c.r.ReadByte()
		if err != nil {
			return c.ioErr(err)
		}
		size = uint64(b)
		hdr = append(hdr, b)
	}
	c.cmd = flags&0x04 != 0
	c.more = flags&0x01 != 0 && !c.cmd
	if c.cmd {
		if size > maxCommand {
			return c.drop("command frame of %d bytes (limit %d)", size, maxCommand)
		}
	} else if !c.authed {
		charge := size + frameOverhead
		if size > c.cfg.preAuthMax {
			return c.drop("frame of %d bytes from a peer not authenticated yet (limit %d per message until it has sent a validly signed message)",
				size, c.cfg.preAuthMax)
		}
		if c.msgBytes+charge > c.cfg.preAuthMax {
			return c.drop("message of more than %d bytes from a peer not authenticated yet (limit %d per message, %d bytes counted per frame, until it has sent a validly signed message)",
				c.msgBytes+charge, c.cfg.preAuthMax, frameOverhead)
		}
		if !c.reserve(charge) {
			return c.drop("frame of %d bytes from a peer not authenticated yet: the %d-byte budget of unauthenticated peers is used up",
				size, c.cfg.budget.limit)
		}
		c.msgBytes += charge
		c.beginFrame(size)
	}
	if !c.cmd && size > c.cfg.maxFrame {
		c.cfg.logf("dropped a message frame of %d bytes (limit %d)", size, c.cfg.maxFrame)
		c.state = msgInvalid
		c.pending = append([]byte{flags &^ 0x02, byte(len(oversizeSentinel))}, oversizeSentinel...)
		c.discardLeft = size
		c.capturing = false
		c.frameDone()
		return nil
	}
	c.pending = append([]byte(nil), hdr...)
	c.passLeft = size
	if size == 0 {
		c.frameDone()
	}
	return nil
}

// beginFrame prepares to watch the body of a message frame of size bytes.
func (c *guardConn) beginFrame(size uint64) {
	c.capture = c.capture[:0]
	c.capturing = false
	switch c.state {
	case msgIdentities:
		c.capturing = size == uint64(len(Delimiter))
	case msgSignature:
		if size == 0 || size > maxSigHex {
			c.state = msgInvalid
		} else {
			c.capturing = true
		}
	case msgSigned:
		if c.signedLeft == 4 {
			if c.mac == nil {
				c.mac = c.cfg.signer.newMAC()
			}
			c.mac.Reset()
		}
	}
}

func (c *guardConn) observe(b []byte) {
	if c.cmd {
		return
	}
	switch {
	case c.capturing:
		c.capture = append(c.capture, b...)
	case c.state == msgSigned:
		c.mac.Write(b)
	}
}

// frameDone is called once the whole body of a frame has been passed on.
func (c *guardConn) frameDone() {
	if c.cmd {
		if c.inHandshake { // the peer's READY: the handshake is over
			c.inHandshake = false
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
		return
	}
	if c.authed {
		if !c.more {
			c.endOfMsg = true
		}
		return
	}
	switch c.state {
	case msgIdentities:
		if c.capturing && string(c.capture) == string(Delimiter) {
			c.state = msgSignature
		}
	case msgSignature:
		c.sig = append(c.sig[:0], c.capture...)
		c.state, c.signedLeft = msgSigned, 4
	case msgSigned:
		c.signedLeft--
		if c.signedLeft == 0 {
			c.state = msgBuffers
		}
	}
	c.capturing = false
	if c.more {
		return
	}
	// The end of a message.
	if c.state == msgBuffers {
		c.authed = c.verify()
	}
	c.state, c.msgBytes, c.endOfMsg = msgIdentities, 0, true
}

// verify checks the signature of the message that has just passed, and that
// it is not a replay of a message the kernel accepted.
func (c *guardConn) verify() bool {
	got := make([]byte, hex.DecodedLen(len(c.sig)))
	if _, err := hex.Decode(got, c.sig); err != nil {
		return false
	}
	if !hmac.Equal(got, c.mac.Sum(nil)) {
		return false
	}
	k, ok := replayKeyOf(got)
	return ok && (c.cfg.replays == nil || !c.cfg.replays.seen(k))
}

func (c *guardConn) reserve(n uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.cfg.budget.reserve(n) {
		return false
	}
	c.reserved += n
	return true
}

func (c *guardConn) releaseAll() {
	c.mu.Lock()
	c.cfg.budget.release(c.reserved)
	c.reserved = 0
	c.mu.Unlock()
}

// drop logs why the connection ends, closes it and returns the error that
// go-zeromq will see.
func (c *guardConn) drop(format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	c.cfg.logf("closed the connection from %v: %s", c.RemoteAddr(), reason)
	c.err = &guardError{reason}
	_ = c.Close()
	return c.err
}

// Close closes the connection and gives back its share of the budget.
func (c *guardConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cfg.budget.release(c.reserved)
	c.reserved = 0
	c.mu.Unlock()
	return c.Conn.Close()
}
