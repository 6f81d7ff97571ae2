package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// DefaultMaxFrame is the largest message frame the kernel accepts (256 MiB).
// go-zeromq allocates a frame's body from the 8-byte length in its header
// before reading it, so a peer announcing a huge frame would make the kernel
// run out of memory. The guard below sits between the socket and the ZMTP
// parser, reads frame headers, and swaps an oversized frame for a short
// sentinel while discarding its body, so Decode drops the message.
const DefaultMaxFrame = 256 << 20

// guardTransport is a zmq4 transport ("gopeft-tcp", "gopeft-ipc") whose
// listeners return guarded connections.
type guardTransport struct {
	transport.Transport
	network string
}

var (
	guardOnce    sync.Once
	guardMu      sync.RWMutex
	guardMax     int64 = DefaultMaxFrame
	guardReports func(size uint64)
)

func registerGuards() {
	guardOnce.Do(func() {
		_ = zmq4.RegisterTransport("gopeft-tcp", guardTransport{transport.New("tcp"), "tcp"})
		_ = zmq4.RegisterTransport("gopeft-ipc", guardTransport{transport.New("unix"), "unix"})
	})
}

// setGuard sets the frame limit and the oversize callback shared by the
// guarded listeners of this process.
func setGuard(max int64, report func(size uint64)) {
	guardMu.Lock()
	if max > 0 {
		guardMax = max
	}
	if report != nil {
		guardReports = report
	}
	guardMu.Unlock()
}

func guardLimits() (uint64, func(uint64)) {
	guardMu.RLock()
	defer guardMu.RUnlock()
	return uint64(guardMax), guardReports
}

func (g guardTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	l, err := net.Listen(g.network, addr)
	if err != nil {
		return nil, err
	}
	return guardListener{l}, nil
}

type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), greetLeft: 64}, nil
}

// guardConn passes the ZMTP 3 stream through unchanged except for frames
// longer than the limit.
type guardConn struct {
	net.Conn
	r           *bufio.Reader
	greetLeft   int    // bytes of the 64-byte greeting still to pass
	passLeft    uint64 // bytes of the current frame body still to pass
	discardLeft uint64 // bytes of an oversized body still to skip
	pending     []byte // replacement or original frame header to hand out
	hdr         [9]byte
}

func (c *guardConn) Read(p []byte) (int, error) {
	for {
		switch {
		case len(p) == 0:
			return 0, nil
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.greetLeft > 0:
			n, err := c.r.Read(p[:min(len(p), c.greetLeft)])
			c.greetLeft -= n
			return n, err
		case c.passLeft > 0:
			n, err := c.r.Read(p[:min(uint64(len(p)), c.passLeft)])
			c.passLeft -= uint64(n)
			return n, err
		case c.discardLeft > 0:
			n, err := c.r.Discard(int(min(c.discardLeft, 1<<20)))
			c.discardLeft -= uint64(n)
			if err != nil {
				return 0, err
			}
			continue
		}
		flags, err := c.r.ReadByte()
		if err != nil {
			return 0, err
		}
		var size uint64
		hdr := c.hdr[:0]
		hdr = append(hdr, flags)
		if flags&0x02 != 0 { // LONG: 8-byte big-endian size
			var b [8]byte
			if _, err := io.ReadFull(c.r, b[:]); err != nil {
				return 0, err
			}
			size = binary.BigEndian.Uint64(b[:])
			hdr = append(hdr, b[:]...)
		} else {
			b, err := c.r.ReadByte()
			if err != nil {
				return 0, err
			}
			size = uint64(b)
			hdr = append(hdr, b)
		}
		limit, report := guardLimits()
		if flags&0x04 == 0 && size > limit {
			if report != nil {
				report(size)
			}
			c.pending = append([]byte{flags &^ 0x02, byte(len(oversizeSentinel))}, oversizeSentinel...)
			c.discardLeft = size
			continue
		}
		c.pending = append([]byte(nil), hdr...)
		c.passLeft = size
	}
}
