// Package wire handles the lower level of the Jupyter messaging protocol for
// the gopeft kernel: the connection file, the ZeroMQ sockets (tcp and ipc),
// the multipart framing of a message and its HMAC signature.
//
// It knows nothing about what the messages mean; kernel/dispatch does.
//
// A message on the wire is
//
//	[identities…, "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers…]
//
// where signature is the hex HMAC (scheme from the connection file) of the
// four JSON frames. An empty key disables signing.
package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ProtocolVersion is the Jupyter messaging protocol version spoken here.
const ProtocolVersion = "5.3"

// Delimiter separates the routing identities from the message proper.
var Delimiter = []byte("<IDS|MSG>")

// Header is a message header.
type Header struct {
	MsgID    string `json:"msg_id"`
	Username string `json:"username"`
	Session  string `json:"session"`
	Date     string `json:"date"`
	MsgType  string `json:"msg_type"`
	Version  string `json:"version"`
}

// Message is one Jupyter message.
//
// For a received message, RawHeader holds the header exactly as sent (it is
// the parent header of the replies) and Content is a json.RawMessage. For a
// message to send, Parent is the raw parent header (nil: {}), and Metadata
// and Content may be any value encoding/json can marshal (nil: {}).
type Message struct {
	Identities [][]byte
	Header     Header
	RawHeader  json.RawMessage
	Parent     json.RawMessage
	Metadata   any
	Content    any
	Buffers    [][]byte
}

// RawContent returns the content of a received message as raw JSON.
func (m *Message) RawContent() json.RawMessage {
	switch c := m.Content.(type) {
	case json.RawMessage:
		return c
	case []byte:
		return c
	}
	b, err := json.Marshal(m.Content)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}

// Errors returned by Decode.
var (
	ErrNoDelimiter   = errors.New("wire: no <IDS|MSG> delimiter")
	ErrShort         = errors.New("wire: fewer than 5 frames after the delimiter")
	ErrBadSignature  = errors.New("wire: bad signature")
	ErrNoSignature   = errors.New("wire: missing signature")
	ErrTooLarge      = errors.New("wire: message too large")
	errEmptyMsgType  = errors.New("wire: header has no msg_type")
	errEmptyMsgID    = errors.New("wire: header has no msg_id")
	oversizeSentinel = []byte("\x00gopeft-oversized\x00")
)

// DecodeError describes a message that was dropped.
type DecodeError struct {
	Err     error
	MsgType string // from the header when it could be read
	Detail  string
}

func (e *DecodeError) Error() string {
	s := e.Err.Error()
	if e.MsgType != "" {
		s += " (msg_type " + e.MsgType + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode parses and verifies the frames of a received message. A message whose
// signature is missing or wrong is rejected before any JSON is parsed.
func Decode(frames [][]byte, s *Signer) (*Message, error) {
	m, _, err := decode(frames, s)
	return m, err
}

// decode is Decode that also returns the verified HMAC (nil without a key).
func decode(frames [][]byte, s *Signer) (*Message, []byte, error) {
	i := 0
	for ; i < len(frames); i++ {
		if bytes.Equal(frames[i], Delimiter) {
			break
		}
	}
	if i == len(frames) {
		return nil, nil, &DecodeError{Err: ErrNoDelimiter}
	}
	ids := frames[:i]
	rest := frames[i+1:]
	if len(rest) < 5 {
		return nil, nil, &DecodeError{Err: ErrShort, Detail: fmt.Sprintf("%d frames", len(rest))}
	}
	for _, f := range rest {
		if bytes.Equal(f, oversizeSentinel) {
			return nil, nil, &DecodeError{Err: ErrTooLarge, MsgType: peekType(rest[1])}
		}
	}
	mac, err := s.verify(rest[0], rest[1:5])
	if err != nil {
		return nil, nil, &DecodeError{Err: err, MsgType: peekType(rest[1])}
	}
	m := &Message{Identities: cloneFrames(ids)}
	if err := json.Unmarshal(rest[1], &m.Header); err != nil {
		return nil, nil, &DecodeError{Err: fmt.Errorf("wire: malformed header: %w", err)}
	}
	if m.Header.MsgType == "" {
		return nil, nil, &DecodeError{Err: errEmptyMsgType}
	}
	if m.Header.MsgID == "" {
		return nil, nil, &DecodeError{Err: errEmptyMsgID, MsgType: m.Header.MsgType}
	}
	m.RawHeader = json.RawMessage(rest[1])
	m.Parent = json.RawMessage(rest[2])
	m.Metadata = json.RawMessage(rest[3])
	m.Content = json.RawMessage(rest[4])
	if len(rest) > 5 {
		m.Buffers = rest[5:]
	}
	return m, mac, nil
}

// peekType returns the msg_type of a header frame when it parses, for logs.
func peekType(header []byte) string {
	var h struct {
		MsgType string `json:"msg_type"`
	}
	if len(header) > 1<<16 || json.Unmarshal(header, &h) != nil {
		return ""
	}
	if len(h.MsgType) > 64 {
		return h.MsgType[:64]
	}
	return h.MsgType
}

func cloneFrames(fs [][]byte) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = append([]byte(nil), f...)
	}
	return out
}

// Encode returns the frames of m, signed by s.
func Encode(m *Message, s *Signer) ([][]byte, error) {
	header, err := json.Marshal(m.Header)
	if err != nil {
		return nil, fmt.Errorf("wire: header: %w", err)
	}
	parent := []byte(m.Parent)
	if len(parent) == 0 {
		parent = []byte("{}")
	}
	metadata, err := marshalObject(m.Metadata)
	if err != nil {
		return nil, fmt.Errorf("wire: metadata of %s: %w", m.Header.MsgType, err)
	}
	content, err := marshalObject(m.Content)
	if err != nil {
		return nil, fmt.Errorf("wire: content of %s: %w", m.Header.MsgType, err)
	}
	frames := make([][]byte, 0, len(m.Identities)+6+len(m.Buffers))
	frames = append(frames, m.Identities...)
	frames = append(frames, Delimiter, nil, header, parent, metadata, content)
	frames[len(m.Identities)+1] = []byte(s.Sign(header, parent, metadata, content))
	frames = append(frames, m.Buffers...)
	return frames, nil
}

func marshalObject(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		if len(x) == 0 {
			return []byte("{}"), nil
		}
		return x, nil
	}
	return json.Marshal(v)
}

// NewHeader returns a fresh header of type msgType for session.
func NewHeader(msgType, session string) Header {
	return Header{
		MsgID:    NewID(),
		Username: "kernel",
		Session:  session,
		Date:     time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
		MsgType:  msgType,
		Version:  ProtocolVersion,
	}
}

// NewID returns a random UUID-4 string.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
