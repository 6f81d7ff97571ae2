package wire

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Client is a minimal front-end side of a connection (DEALER sockets for
// shell, control and stdin, SUB for iopub, REQ for heartbeat). The kernel's
// tests and benchmarks drive it; it is not used by the kernel itself.
type Client struct {
	Session string
	signer  *Signer
	ctx     context.Context
	cancel  context.CancelFunc
	socks   [numChannels]zmq4.Socket
	hb      zmq4.Socket
	sendMu  [numChannels]sync.Mutex
	once    sync.Once
	rx      [numChannels]chan recvResult
	rxOnce  [numChannels]sync.Once
}

// Dial connects a client to the kernel described by info.
func Dial(info ConnectionInfo) (*Client, error) {
	signer, err := NewSigner(info.SignatureScheme, info.Key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &Client{Session: NewID(), signer: signer, ctx: ctx, cancel: cancel}
	// Retry every 5 ms for up to 60 s, so that a client started together
	// with a kernel connects as soon as the kernel listens.
	retry := []zmq4.Option{zmq4.WithDialerRetry(5 * time.Millisecond), zmq4.WithDialerMaxRetries(12000)}
	id := append([]zmq4.Option{zmq4.WithID(zmq4.SocketIdentity(cl.Session))}, retry...)
	cl.socks[Shell] = zmq4.NewDealer(ctx, id...)
	cl.socks[Control] = zmq4.NewDealer(ctx, id...)
	cl.socks[Stdin] = zmq4.NewDealer(ctx, id...)
	cl.socks[IOPub] = zmq4.NewSub(ctx, retry...)
	cl.hb = zmq4.NewReq(ctx, retry...)
	ports := []int{info.ShellPort, info.ControlPort, info.StdinPort, info.IOPubPort, info.HBPort}
	socks := []zmq4.Socket{cl.socks[Shell], cl.socks[Control], cl.socks[Stdin], cl.socks[IOPub], cl.hb}
	for i, s := range socks {
		if err := s.Dial(info.Endpoint(ports[i])); err != nil {
			cl.Close()
			return nil, err
		}
	}
	if err := cl.socks[IOPub].SetOption(zmq4.OptionSubscribe, ""); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// NewRequest returns a message of type msgType carrying content.
func (cl *Client) NewRequest(msgType string, content any) *Message {
	h := NewHeader(msgType, cl.Session)
	h.Username = "test"
	return &Message{Header: h, Content: content}
}

// Send signs and sends m on ch.
func (cl *Client) Send(ch Channel, m *Message) error {
	frames, err := Encode(m, cl.signer)
	if err != nil {
		return err
	}
	return cl.SendFrames(ch, frames)
}

// SendFrames sends raw frames on ch, for tests of malformed input.
func (cl *Client) SendFrames(ch Channel, frames [][]byte) error {
	cl.sendMu[ch].Lock()
	defer cl.sendMu[ch].Unlock()
	return cl.socks[ch].SendMulti(zmq4.NewMsgFrom(frames...))
}

// Signer returns the client's signer.
func (cl *Client) Signer() *Signer { return cl.signer }

// Recv returns the next message on ch, or an error after timeout.
func (cl *Client) Recv(ch Channel, timeout time.Duration) (*Message, error) {
	// zmq4 has no receive deadline: a goroutine per channel receives into a
	// buffered channel, so a timed-out Recv loses nothing.
	select {
	case r := <-cl.pending(ch):
		if r.err != nil {
			return nil, r.err
		}
		return Decode(r.msg.Frames, cl.signer)
	case <-time.After(timeout):
		return nil, fmt.Errorf("wire: no %v message within %v", ch, timeout)
	}
}

type recvResult struct {
	msg zmq4.Msg
	err error
}

// pending returns the channel fed by ch's reader goroutine (started once).
func (cl *Client) pending(ch Channel) chan recvResult {
	cl.rxOnce[ch].Do(func() {
		c := make(chan recvResult, 1024)
		cl.rx[ch] = c
		go func() {
			for {
				m, err := cl.socks[ch].Recv()
				if cl.ctx.Err() != nil {
					return
				}
				c <- recvResult{m, err}
				if err != nil {
					return
				}
			}
		}()
	})
	return cl.rx[ch]
}

// Ping sends a heartbeat and waits for its echo.
func (cl *Client) Ping(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		if err := cl.hb.Send(zmq4.NewMsgString("ping")); err != nil {
			done <- err
			return
		}
		m, err := cl.hb.Recv()
		if err == nil && string(m.Bytes()) != "ping" {
			err = fmt.Errorf("wire: heartbeat echoed %q", m.Bytes())
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("wire: no heartbeat within %v", timeout)
	}
}

// Close closes the client's sockets.
func (cl *Client) Close() {
	cl.once.Do(func() {
		cl.cancel()
		for _, s := range cl.socks {
			if s != nil {
				_ = s.Close()
			}
		}
		if cl.hb != nil {
			_ = cl.hb.Close()
		}
	})
}

// Decoded unmarshals the content of m into v.
func Decoded(m *Message, v any) error {
	return json.Unmarshal(m.RawContent(), v)
}

// IsReply reports whether msgType is a reply type.
func IsReply(msgType string) bool { return strings.HasSuffix(msgType, "_reply") }
