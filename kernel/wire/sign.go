package wire

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Signer signs and verifies messages with the connection file's key and
// signature_scheme. A Signer with an empty key signs with "" and accepts any
// signature, as the protocol specifies.
type Signer struct {
	key    []byte
	newH   func() hash.Hash
	scheme string
	pool   sync.Pool
}

// NewSigner returns a Signer for scheme ("hmac-sha256", "hmac-sha512",
// "hmac-sha1" or "hmac-md5"; "" means hmac-sha256) and key.
func NewSigner(scheme, key string) (*Signer, error) {
	s := &Signer{key: []byte(key), scheme: scheme}
	switch strings.ToLower(scheme) {
	case "", "hmac-sha256":
		s.newH = sha256.New
	case "hmac-sha512":
		s.newH = sha512.New
	case "hmac-sha1":
		s.newH = sha1.New
	case "hmac-md5":
		s.newH = md5.New
	default:
		return nil, fmt.Errorf("wire: unsupported signature_scheme %q", scheme)
	}
	s.pool.New = func() any { return s.newMAC() }
	return s, nil
}

// Enabled reports whether messages are signed.
func (s *Signer) Enabled() bool { return s != nil && len(s.key) > 0 }

// newMAC returns a fresh HMAC of the signer's scheme and key.
func (s *Signer) newMAC() hash.Hash { return hmac.New(s.newH, s.key) }

func (s *Signer) mac(frames ...[]byte) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	for _, f := range frames {
		h.Write(f)
	}
	sum := h.Sum(nil)
	s.pool.Put(h)
	return sum
}

// Sign returns the hex signature of the four JSON frames (header, parent,
// metadata, content), or "" when signing is disabled.
func (s *Signer) Sign(frames ...[]byte) string {
	if !s.Enabled() {
		return ""
	}
	return hex.EncodeToString(s.mac(frames...))
}

// Verify checks sig (hex) against the four JSON frames in constant time.
func (s *Signer) Verify(sig []byte, frames [][]byte) error {
	_, err := s.verify(sig, frames)
	return err
}

// verify is Verify that also returns the decoded MAC (nil without a key).
func (s *Signer) verify(sig []byte, frames [][]byte) ([]byte, error) {
	if !s.Enabled() {
		return nil, nil
	}
	if len(sig) == 0 {
		return nil, ErrNoSignature
	}
	got := make([]byte, hex.DecodedLen(len(sig)))
	if _, err := hex.Decode(got, sig); err != nil {
		return nil, ErrBadSignature
	}
	if !hmac.Equal(got, s.mac(frames...)) {
		return nil, ErrBadSignature
	}
	return got, nil
}
