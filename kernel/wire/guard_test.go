package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawPeer is a hand-written ZMTP 3.0 peer (NULL mechanism, DEALER) without a
// key: it lets a test send frame headers that no ZeroMQ library would.
type rawPeer struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, port int) *rawPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var greet [64]byte
	greet[0], greet[9], greet[10], greet[11] = 0xff, 0x7f, 3, 0
	copy(greet[12:], "NULL")
	p := &rawPeer{t, c}
	p.write(greet[:])
	return p
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.Write(b); err != nil {
		p.t.Fatalf("raw peer write: %v", err)
	}
}

// ready sends the handshake's READY command.
func (p *rawPeer) ready() {
	body := []byte("\x05READY")
	body = append(body, byte(len("Socket-Type")))
	body = append(body, "Socket-Type"...)
	body = binary.BigEndian.AppendUint32(body, uint32(len("DEALER")))
	body = append(body, "DEALER"...)
	p.header(0x04, uint64(len(body)))
	p.write(body)
}

// header sends a frame header with flags (LONG is added as needed).
func (p *rawPeer) header(flags byte, size uint64) {
	if size > 255 {
		p.write(binary.BigEndian.AppendUint64([]byte{flags | 0x02}, size))
		return
	}
	p.write([]byte{flags, byte(size)})
}

// closedByKernel reports whether the kernel closes the connection within d
// (reading and discarding what the kernel sends: its greeting and READY).
func (p *rawPeer) closedByKernel(d time.Duration) bool {
	_ = p.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, p.Conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func guardedPair(t *testing.T, opt Options) (*Conn, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	opt.Log = log.New(logs, "", 0)
	k, err := Listen(ConnectionInfo{Transport: "tcp", IP: "127.0.0.1", Key: "secret", SignatureScheme: "hmac-sha256"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, logs
}

// roundTrip checks that a fresh, keyed client is served: a kernel_info
// request reaches the kernel and the reply comes back.
func roundTrip(t *testing.T, k *Conn) *Client {
	t.Helper()
	cl, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	req := cl.NewRequest("kernel_info_request", nil)
	if err := cl.Send(Shell, req); err != nil {
		t.Fatal(err)
	}
	got := recvWithin(t, k, Shell, 5*time.Second)
	if got == nil || got.Header.MsgID != req.Header.MsgID {
		t.Fatalf("kernel_info from a legitimate client: got %+v", got)
	}
	rep := &Message{Identities: got.Identities, Header: NewHeader("kernel_info_reply", "k"), Parent: got.RawHeader, Content: map[string]string{"status": "ok"}}
	if err := k.Send(Shell, rep); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Recv(Shell, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return cl
}

// inboxes holds one receiving goroutine per (Conn, channel), so that a
// recvWithin that timed out leaves no receiver behind to steal the next
// message.
var inboxes sync.Map // inboxKey → chan *Message

type inboxKey struct {
	k  *Conn
	ch Channel
}

// recvWithin returns the next message on ch, or nil after d.
func recvWithin(t *testing.T, k *Conn, ch Channel, d time.Duration) *Message {
	t.Helper()
	in, loaded := inboxes.LoadOrStore(inboxKey{k, ch}, make(chan *Message, 64))
	if !loaded {
		go func() {
			for {
				m, err := k.Recv(ch)
				if err != nil {
					return
				}
				in.(chan *Message) <- m
			}
		}()
	}
	select {
	case m := <-in.(chan *Message):
		return m
	case <-time.After(d):
		return nil
	}
}

// A peer without the key announces a 255 MiB frame (under the 256 MiB
// limit): the kernel must not allocate it, and drops the connection.
func TestUnauthenticatedHugeFrame(t *testing.T) {
	k, logs := guardedPair(t, Options{})
	p := dialRaw(t, k.Info().ShellPort)
	p.ready()
	runtime.GC()
	before := totalAlloc()
	p.header(0, 255<<20)
	p.write(make([]byte, 64<<10)) // the first bytes of the body
	closed := p.closedByKernel(3 * time.Second)
	grown := totalAlloc() - before
	t.Logf("allocated %d KiB while the peer announced 255 MiB", grown>>10)
	if !closed {
		t.Error("the kernel kept the connection of an unauthenticated peer announcing 255 MiB")
	}
	if grown > 32<<20 {
		t.Errorf("the kernel allocated %d MiB for an unauthenticated frame", grown>>20)
	}
	if l := logs.String(); !strings.Contains(l, "closed the connection") || !strings.Contains(l, "not authenticated") {
		t.Errorf("log lacks the drop:\n%s", l)
	}
	roundTrip(t, k)
}

// Many small frames add up: the pre-authentication limit is per message.
func TestUnauthenticatedManyFrames(t *testing.T) {
	k, logs := guardedPair(t, Options{PreAuthMax: 64 << 10})
	p := dialRaw(t, k.Info().ShellPort)
	p.ready()
	chunk := make([]byte, 1000)
	for i := 0; i < 200; i++ { // 200 kB > 64 KiB, no frame above it
		hdr := binary.BigEndian.AppendUint64([]byte{0x01 | 0x02}, uint64(len(chunk)))
		if _, err := p.Write(append(hdr, chunk...)); err != nil {
			break // already dropped
		}
	}
	if !p.closedByKernel(3 * time.Second) {
		t.Error("an unauthenticated message of 200 frames × 1000 bytes was accepted")
	}
	if l := logs.String(); !strings.Contains(l, "closed the connection") {
		t.Errorf("log lacks the drop:\n%s", l)
	}
	roundTrip(t, k)
}

// Command frames (handshake, subscriptions) are small whoever sends them.
func TestOversizedCommand(t *testing.T) {
	k, _ := guardedPair(t, Options{})
	p := dialRaw(t, k.Info().ShellPort)
	before := totalAlloc()
	p.header(0x04, 200<<20) // a READY of 200 MiB
	if !p.closedByKernel(3 * time.Second) {
		t.Error("a 200 MiB command frame was accepted")
	}
	if grown := totalAlloc() - before; grown > 32<<20 {
		t.Errorf("the kernel allocated %d MiB for a command frame", grown>>20)
	}
	roundTrip(t, k)
}

// Unauthenticated peers together hold at most PreAuthBudget bytes.
func TestPreAuthBudget(t *testing.T) {
	k, logs := guardedPair(t, Options{PreAuthMax: 1 << 20, PreAuthBudget: 2 << 20})
	var peers []*rawPeer
	for i := 0; i < 3; i++ {
		p := dialRaw(t, k.Info().ShellPort)
		p.ready()
		p.header(0, 900<<10) // and never send the body
		peers = append(peers, p)
		time.Sleep(100 * time.Millisecond) // in order
	}
	if peers[2].closedByKernel(3*time.Second) != true {
		t.Error("a third unauthenticated peer got past a 2 MiB budget with 2 × 900 KiB held")
	}
	if peers[0].closedByKernel(200 * time.Millisecond) {
		t.Error("the first peer, within the budget, was dropped")
	}
	if l := logs.String(); !strings.Contains(l, "budget") {
		t.Errorf("log lacks the budget drop:\n%s", l)
	}
	// Closing the first two frees their share.
	peers[0].Close()
	peers[1].Close()
	time.Sleep(100 * time.Millisecond)
	p := dialRaw(t, k.Info().ShellPort)
	p.ready()
	p.header(0, 900<<10)
	if p.closedByKernel(300 * time.Millisecond) {
		t.Error("the budget was not given back when its holders went away")
	}
}

// A signed message lifts the limit for its connection only; a replayed
// message lifts nothing.
func TestPreAuthLiftedBySignedMessage(t *testing.T) {
	k, logs := guardedPair(t, Options{PreAuthMax: 64 << 10})
	cl := roundTrip(t, k) // kernel_info: this connection is now authenticated
	big := cl.NewRequest("execute_request", map[string]string{"code": strings.Repeat("x", 256<<10)})
	frames, _ := Encode(big, cl.Signer())
	cl.SendFrames(Shell, frames)
	if got := recvWithin(t, k, Shell, 5*time.Second); got == nil || got.Header.MsgID != big.Header.MsgID {
		t.Fatalf("a 256 KiB request after a signed message was not delivered: %+v", got)
	}
	// A second client's first message is large: its connection is dropped.
	cl2, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	cl2.Send(Shell, cl2.NewRequest("execute_request", map[string]string{"code": strings.Repeat("y", 256<<10)}))
	// A third client replays the first client's (signed) big message: that
	// must not authenticate it, so its next big message is refused too.
	cl3, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	defer cl3.Close()
	small := cl.NewRequest("complete_request", nil)
	sfr, _ := Encode(small, cl.Signer())
	cl.SendFrames(Shell, sfr)
	if got := recvWithin(t, k, Shell, 5*time.Second); got == nil || got.Header.MsgID != small.Header.MsgID {
		t.Fatalf("got %+v, want the complete_request", got)
	}
	cl3.SendFrames(Shell, sfr) // replay: dropped, does not authenticate
	cl3.Send(Shell, cl3.NewRequest("execute_request", map[string]string{"code": strings.Repeat("z", 256<<10)}))
	if got := recvWithin(t, k, Shell, time.Second); got != nil {
		t.Errorf("delivered %s (%d bytes of content) from an unauthenticated or replaying peer", got.Header.MsgType, len(got.RawContent()))
	}
	l := logs.String()
	if n := strings.Count(l, "closed the connection"); n != 2 {
		t.Errorf("%d connections closed, want 2:\n%s", n, l)
	}
	if !strings.Contains(l, "replayed") {
		t.Errorf("log lacks the replay:\n%s", l)
	}
	// The authenticated client still works.
	ok := cl.NewRequest("kernel_info_request", nil)
	cl.Send(Shell, ok)
	if got := recvWithin(t, k, Shell, 5*time.Second); got == nil || got.Header.MsgID != ok.Header.MsgID {
		t.Errorf("the authenticated client is no longer served: %+v\n%s", got, logs)
	}
}

// With no key nothing can be authenticated, and anyone may run code anyway:
// the pre-authentication limit does not apply.
func TestNoKeyNoPreAuthLimit(t *testing.T) {
	logs := &syncBuf{}
	k, err := Listen(ConnectionInfo{Transport: "tcp", IP: "127.0.0.1"}, Options{Log: log.New(logs, "", 0), PreAuthMax: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cl, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	big := cl.NewRequest("execute_request", map[string]string{"code": strings.Repeat("x", 256<<10)})
	cl.Send(Shell, big)
	if got := recvWithin(t, k, Shell, 5*time.Second); got == nil || got.Header.MsgID != big.Header.MsgID {
		t.Fatalf("no key: a 256 KiB first message was not delivered: %+v\n%s", got, logs)
	}
}

// A validly signed message sent three times runs once.
func TestReplayRejected(t *testing.T) {
	k, logs := guardedPair(t, Options{})
	cl := roundTrip(t, k)
	exec := cl.NewRequest("execute_request", map[string]string{"code": "launch()"})
	frames, err := Encode(exec, cl.Signer())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := cl.SendFrames(Shell, frames); err != nil {
			t.Fatal(err)
		}
	}
	cl.SendFrames(Control, frames) // another channel: still a replay
	after := cl.NewRequest("complete_request", nil)
	cl.Send(Shell, after)
	var got []string
	for {
		m := recvWithin(t, k, Shell, 2*time.Second)
		if m == nil {
			break
		}
		got = append(got, m.Header.MsgType)
		if m.Header.MsgID == after.Header.MsgID {
			break
		}
	}
	if strings.Join(got, " ") != "execute_request complete_request" {
		t.Errorf("received %v, want the execute_request once then the complete_request", got)
	}
	if m := recvWithin(t, k, Control, 500*time.Millisecond); m != nil {
		t.Errorf("the replay on control was delivered: %s", m.Header.MsgType)
	}
	if n := strings.Count(logs.String(), "replayed"); n != 3 {
		t.Errorf("%d replays logged, want 3:\n%s", n, logs)
	}
}

// With no key there are no signatures, so no replay check is possible.
func TestReplayNoKey(t *testing.T) {
	k, err := Listen(ConnectionInfo{Transport: "tcp", IP: "127.0.0.1"}, Options{Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cl, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	frames, _ := Encode(cl.NewRequest("execute_request", nil), cl.Signer())
	cl.SendFrames(Shell, frames)
	cl.SendFrames(Shell, frames)
	for i := 0; i < 2; i++ {
		if m := recvWithin(t, k, Shell, 5*time.Second); m == nil {
			t.Fatalf("no key: message %d not delivered", i+1)
		}
	}
}

func TestReplayCacheBounded(t *testing.T) {
	rc := newReplayCache(4)
	key := func(i int) [16]byte { return [16]byte{byte(i), byte(i >> 8)} }
	for i := 0; i < 4; i++ {
		if !rc.add(key(i)) {
			t.Fatalf("fresh key %d reported as seen", i)
		}
	}
	if rc.add(key(2)) || !rc.seen(key(0)) {
		t.Error("a recent key was forgotten")
	}
	for i := 4; i < 1000; i++ {
		rc.add(key(i))
	}
	if len(rc.set) != 4 || len(rc.ring) != 4 {
		t.Errorf("cache holds %d keys in a ring of %d, want 4", len(rc.set), len(rc.ring))
	}
	if rc.seen(key(0)) || !rc.seen(key(999)) {
		t.Error("the cache does not keep exactly the newest keys")
	}
}

// go-zeromq runs the handshake on the accept loop: a peer that connects and
// says nothing must not keep other clients out for longer than the
// handshake timeout.
func TestStalledHandshake(t *testing.T) {
	k, logs := guardedPair(t, Options{HandshakeTimeout: 300 * time.Millisecond})
	idle, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", k.Info().ShellPort))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	half := dialRaw(t, k.Info().ShellPort) // a greeting, then nothing
	_ = half
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		roundTrip(t, k)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a client could not connect while another peer stalled in the handshake")
	}
	if l := logs.String(); !strings.Contains(l, "no ZMTP handshake") {
		t.Errorf("log lacks the stalled handshake:\n%s", l)
	}
}
