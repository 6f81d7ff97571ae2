package wire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Channel names one of the kernel's message sockets.
type Channel int

// The channels of a kernel. The heartbeat is served inside Conn.
const (
	Shell Channel = iota
	Control
	Stdin
	IOPub
	numChannels
)

func (ch Channel) String() string {
	switch ch {
	case Shell:
		return "shell"
	case Control:
		return "control"
	case Stdin:
		return "stdin"
	case IOPub:
		return "iopub"
	}
	return "channel(" + strconv.Itoa(int(ch)) + ")"
}

// Options tune Listen.
type Options struct {
	// Log receives dropped-message and socket errors (default: stderr).
	Log *log.Logger
	// MaxFrame is the largest frame accepted from an authenticated peer
	// (default DefaultMaxFrame).
	MaxFrame int64
	// PreAuthMax bounds a message from a peer that has not yet sent a validly
	// signed message (default DefaultPreAuthMax); PreAuthBudget bounds what
	// all such peers together may have in flight (default
	// DefaultPreAuthBudget). See DefaultMaxFrame.
	PreAuthMax, PreAuthBudget int64
	// HandshakeTimeout bounds the ZMTP handshake of a new connection
	// (default DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// ReplayWindow is how many accepted signatures are remembered to reject
	// replays (default DefaultReplayWindow).
	ReplayWindow int
}

// Conn is the kernel side of a connection: ROUTER sockets for shell, control
// and stdin, a PUB socket for iopub and a REP socket echoing heartbeats.
type Conn struct {
	info   ConnectionInfo
	signer *Signer
	log    *log.Logger
	ctx    context.Context
	cancel context.CancelFunc

	socks  [numChannels]zmq4.Socket
	sendMu [numChannels]sync.Mutex
	hb     zmq4.Socket
	ipc    []string
	once   sync.Once
	// replays holds the signatures of recently accepted messages.
	replays *replayCache
}

// Listen binds the five sockets of info. Ports given as 0 are chosen by the
// system; Info reports the ports bound.
func Listen(info ConnectionInfo, opt Options) (*Conn, error) {
	registerGuards()
	lg := opt.Log
	if lg == nil {
		lg = log.New(os.Stderr, "gopeft kernel: ", log.LstdFlags)
	}
	signer, err := NewSigner(info.SignatureScheme, info.Key)
	if err != nil {
		return nil, err
	}
	replays := newReplayCache(cmp.Or(opt.ReplayWindow, DefaultReplayWindow))
	guard := &guardConfig{
		maxFrame:   uint64(cmp.Or(max(opt.MaxFrame, 0), DefaultMaxFrame)),
		preAuthMax: uint64(cmp.Or(max(opt.PreAuthMax, 0), DefaultPreAuthMax)),
		handshake:  cmp.Or(max(opt.HandshakeTimeout, 0), DefaultHandshakeTimeout),
		signer:     signer,
		budget:     &byteBudget{limit: uint64(cmp.Or(max(opt.PreAuthBudget, 0), DefaultPreAuthBudget))},
		replays:    replays,
		logf:       lg.Printf,
	}
	// The sockets' context carries the guard's limits to guardTransport.
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), guardCtxKey{}, guard))
	c := &Conn{info: info, signer: signer, log: lg, ctx: ctx, cancel: cancel, replays: replays}
	// go-zeromq logs to stderr through its own logger; keep it on ours.
	zopts := []zmq4.Option{zmq4.WithLogger(lg)}
	c.socks[Shell] = zmq4.NewRouter(ctx, zopts...)
	c.socks[Control] = zmq4.NewRouter(ctx, zopts...)
	c.socks[Stdin] = zmq4.NewRouter(ctx, zopts...)
	c.socks[IOPub] = zmq4.NewPub(ctx, zopts...)
	c.hb = zmq4.NewRep(ctx, zopts...)
	ports := []*int{&c.info.ShellPort, &c.info.ControlPort, &c.info.StdinPort, &c.info.IOPubPort, &c.info.HBPort}
	socks := []zmq4.Socket{c.socks[Shell], c.socks[Control], c.socks[Stdin], c.socks[IOPub], c.hb}
	for i, s := range socks {
		if err := c.bind(s, ports[i]); err != nil {
			c.Close()
			return nil, err
		}
	}
	go c.heartbeat()
	return c, nil
}

func (c *Conn) bind(s zmq4.Socket, port *int) error {
	if c.info.Transport == "ipc" {
		if *port == 0 {
			return fmt.Errorf("wire: ipc transport needs explicit ports")
		}
		path := fmt.Sprintf("%s-%d", c.info.IP, *port)
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // a stale socket from an earlier kernel
		}
		if err := s.Listen("gopeft-ipc://" + path); err != nil {
			return fmt.Errorf("wire: listen ipc %s: %w", path, err)
		}
		c.ipc = append(c.ipc, path)
		return nil
	}
	ep := strings.TrimPrefix(c.info.Endpoint(*port), "tcp://")
	if err := s.Listen("gopeft-tcp://" + ep); err != nil {
		return fmt.Errorf("wire: listen tcp %s: %w", ep, err)
	}
	if *port == 0 {
		if a, ok := s.Addr().(*net.TCPAddr); ok {
			*port = a.Port
		}
	}
	return nil
}

// Info returns the connection info with the ports actually bound.
func (c *Conn) Info() ConnectionInfo { return c.info }

// Signer returns the signer of this connection.
func (c *Conn) Signer() *Signer { return c.signer }

// Log returns the connection's logger.
func (c *Conn) Log() *log.Logger { return c.log }

func (c *Conn) heartbeat() {
	for {
		msg, err := c.hb.Recv()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.log.Printf("heartbeat: %v", err)
			continue
		}
		if err := c.hb.Send(msg); err != nil && c.ctx.Err() == nil {
			c.log.Printf("heartbeat echo: %v", err)
		}
	}
}

// ErrClosed is returned by Recv and Send after Close.
var ErrClosed = errors.New("wire: connection closed")

// Recv returns the next valid message on ch (Shell, Control or Stdin).
// Messages with a bad or missing signature, or that cannot be parsed, are
// logged and dropped, and so are replays: messages whose signature is among
// the last DefaultReplayWindow accepted on any channel (see replayCache; no
// check without a key). Recv only returns an error when the socket fails or
// is closed.
func (c *Conn) Recv(ch Channel) (*Message, error) {
	if ch == IOPub || ch < 0 || ch >= numChannels {
		return nil, fmt.Errorf("wire: cannot receive on %v", ch)
	}
	for {
		zm, err := c.socks[ch].Recv()
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if err != nil {
			return nil, fmt.Errorf("wire: %v recv: %w", ch, err)
		}
		m, mac, err := decode(zm.Frames, c.signer)
		if err != nil {
			c.log.Printf("%v: dropped message: %v", ch, err)
			continue
		}
		if k, ok := replayKeyOf(mac); ok && !c.replays.add(k) {
			c.log.Printf("%v: dropped a replayed message (msg_type %s, msg_id %.64s): its signature was already seen",
				ch, m.Header.MsgType, m.Header.MsgID)
			continue
		}
		return m, nil
	}
}

// Send signs and sends m on ch. For iopub the identities are the topic.
func (c *Conn) Send(ch Channel, m *Message) error {
	if ch < 0 || ch >= numChannels {
		return fmt.Errorf("wire: cannot send on %v", ch)
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	if ch == IOPub && len(m.Identities) == 0 {
		m.Identities = [][]byte{[]byte("kernel." + m.Header.MsgType)}
	}
	frames, err := Encode(m, c.signer)
	if err != nil {
		return err
	}
	c.sendMu[ch].Lock()
	defer c.sendMu[ch].Unlock()
	if err := c.socks[ch].SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		return fmt.Errorf("wire: %v send %s: %w", ch, m.Header.MsgType, err)
	}
	return nil
}

// Close closes every socket; pending Recv calls return ErrClosed.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.cancel()
		for _, s := range c.socks {
			if s != nil {
				_ = s.Close()
			}
		}
		if c.hb != nil {
			_ = c.hb.Close()
		}
		for _, p := range c.ipc {
			_ = os.Remove(p)
		}
	})
	return nil
}
