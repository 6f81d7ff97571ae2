package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	for _, scheme := range []string{"hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-md5"} {
		s, err := NewSigner(scheme, "secret")
		if err != nil {
			t.Fatal(err)
		}
		fr := [][]byte{[]byte(`{"a":1}`), []byte(`{}`), []byte(`{}`), []byte(`{"code":"x"}`)}
		sig := s.Sign(fr...)
		if err := s.Verify([]byte(sig), fr); err != nil {
			t.Errorf("%s: own signature rejected: %v", scheme, err)
		}
		fr[3] = []byte(`{"code":"y"}`)
		if err := s.Verify([]byte(sig), fr); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: tampered content: got %v, want ErrBadSignature", scheme, err)
		}
		if err := s.Verify(nil, fr); !errors.Is(err, ErrNoSignature) {
			t.Errorf("%s: missing signature: got %v", scheme, err)
		}
		if err := s.Verify([]byte("zz"), fr); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: non-hex signature: got %v", scheme, err)
		}
	}
	if _, err := NewSigner("hmac-foo", "k"); err == nil {
		t.Error("unknown scheme accepted")
	}
	// No key: no signing, anything accepted.
	s, _ := NewSigner("hmac-sha256", "")
	if s.Sign([]byte("x")) != "" || s.Verify([]byte("whatever"), nil) != nil {
		t.Error("empty key must disable signing")
	}
}

func TestEncodeDecode(t *testing.T) {
	s, _ := NewSigner("hmac-sha256", "k")
	m := &Message{
		Identities: [][]byte{[]byte("peer")},
		Header:     NewHeader("execute_request", "sess"),
		Parent:     json.RawMessage(`{"msg_id":"p"}`),
		Content:    map[string]any{"code": "1+1"},
		Buffers:    [][]byte{[]byte("buf")},
	}
	frames, err := Encode(m, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(frames, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header != m.Header || string(got.Identities[0]) != "peer" || string(got.Buffers[0]) != "buf" {
		t.Errorf("round trip: %+v", got)
	}
	var c struct{ Code string }
	if err := Decoded(got, &c); err != nil || c.Code != "1+1" {
		t.Errorf("content %q, %v", c.Code, err)
	}
	// Tamper with the header: rejected before parsing.
	frames[3] = bytes.Replace(frames[3], []byte("execute_request"), []byte("shutdown_request"), 1)
	if _, err := Decode(frames, s); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered header: %v", err)
	}
	if _, err := Decode([][]byte{[]byte("a")}, s); !errors.Is(err, ErrNoDelimiter) {
		t.Errorf("no delimiter: %v", err)
	}
	if _, err := Decode([][]byte{Delimiter, []byte("x")}, s); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
	// Malformed JSON with a valid signature.
	bad := [][]byte{[]byte("{not json"), []byte("{}"), []byte("{}"), []byte("{}")}
	fr := append([][]byte{Delimiter, []byte(s.Sign(bad...))}, bad...)
	if _, err := Decode(fr, s); err == nil || !strings.Contains(err.Error(), "malformed header") {
		t.Errorf("malformed header: %v", err)
	}
}

func TestConnectionFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k.json")
	os.WriteFile(p, []byte(`{"transport":"tcp","ip":"127.0.0.1","key":"a","signature_scheme":"hmac-sha256","shell_port":5}`), 0o600)
	ci, err := ReadConnectionFile(p)
	if err != nil || ci.Endpoint(ci.ShellPort) != "tcp://127.0.0.1:5" {
		t.Fatalf("%+v %v", ci, err)
	}
	ci.Transport, ci.IP = "ipc", "/tmp/x"
	if ci.Endpoint(7) != "ipc:///tmp/x-7" {
		t.Error(ci.Endpoint(7))
	}
	os.WriteFile(p, []byte(`{"transport":"udp"}`), 0o600)
	if _, err := ReadConnectionFile(p); err == nil {
		t.Error("udp accepted")
	}
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func listenPair(t *testing.T, ci ConnectionInfo, maxFrame int64) (*Conn, *Client, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	k, err := Listen(ci, Options{Log: log.New(io.MultiWriter(logs), "", 0), MaxFrame: maxFrame})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	cl, err := Dial(k.Info())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return k, cl, logs
}

func TestLoopback(t *testing.T) {
	for _, transport := range []string{"tcp", "ipc"} {
		t.Run(transport, func(t *testing.T) {
			ci := ConnectionInfo{Transport: transport, IP: "127.0.0.1", Key: "secret", SignatureScheme: "hmac-sha256"}
			if transport == "ipc" {
				ci.IP = filepath.Join(t.TempDir(), "kernel")
				ci.ShellPort, ci.ControlPort, ci.StdinPort, ci.IOPubPort, ci.HBPort = 1, 2, 3, 4, 5
			}
			k, cl, logs := listenPair(t, ci, 1<<20)
			if err := cl.Ping(2 * time.Second); err != nil {
				t.Fatal(err)
			}
			// A valid request arrives; the reply routes back to this client.
			req := cl.NewRequest("kernel_info_request", nil)
			if err := cl.Send(Shell, req); err != nil {
				t.Fatal(err)
			}
			got, err := k.Recv(Shell)
			if err != nil {
				t.Fatal(err)
			}
			if got.Header.MsgID != req.Header.MsgID {
				t.Fatalf("got %+v", got.Header)
			}
			rep := &Message{Identities: got.Identities, Header: NewHeader("kernel_info_reply", "k"), Parent: got.RawHeader, Content: map[string]string{"status": "ok"}}
			if err := k.Send(Shell, rep); err != nil {
				t.Fatal(err)
			}
			r, err := cl.Recv(Shell, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var parent Header
			json.Unmarshal(r.Parent, &parent)
			if parent.MsgID != req.Header.MsgID {
				t.Errorf("parent %q, want %q", parent.MsgID, req.Header.MsgID)
			}
			// Wrong key: dropped and logged; the next good message still comes through.
			other, _ := NewSigner("hmac-sha256", "wrong")
			forged, _ := Encode(cl.NewRequest("execute_request", map[string]string{"code": "evil"}), other)
			cl.SendFrames(Shell, forged)
			// Oversized frame (2 MiB > 1 MiB limit): dropped and logged.
			big := cl.NewRequest("execute_request", map[string]string{"code": strings.Repeat("x", 2<<20)})
			cl.Send(Shell, big)
			good := cl.NewRequest("complete_request", nil)
			cl.Send(Shell, good)
			got, err = k.Recv(Shell)
			if err != nil {
				t.Fatal(err)
			}
			if got.Header.MsgID != good.Header.MsgID {
				t.Errorf("after bad messages got %s, want the good one", got.Header.MsgType)
			}
			l := logs.String()
			if !strings.Contains(l, "bad signature") || !strings.Contains(l, "dropped a message frame of") || !strings.Contains(l, "too large") {
				t.Errorf("log lacks drops:\n%s", l)
			}
			if err := cl.Ping(2 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}
