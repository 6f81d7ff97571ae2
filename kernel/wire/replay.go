package wire

import "sync"

// DefaultReplayWindow is how many accepted signatures a Conn remembers.
//
// The messaging spec lets a kernel reject a message whose signature it has
// already seen. Conn.Recv drops (and logs, without replying) a validly
// signed message whose signature is among the last DefaultReplayWindow
// (65536) signatures accepted on any channel of the connection. Memory is
// bounded: a ring of 65536 16-byte keys (1 MiB) and a set of the same keys
// (about 2 MiB more when full). A replay older than that window is not
// detected. Jupyter clients never repeat a signature (every message has a
// fresh msg_id and date), so they are not affected.
//
// With an empty key messages carry no signature at all, so no replay check
// is possible and none is made.
const DefaultReplayWindow = 1 << 16

// replayKey identifies a signature: the first 16 bytes of the HMAC itself
// (an HMAC output is uniformly distributed; a false match between two
// different messages has probability 2⁻¹²⁸ per pair). Using the decoded MAC
// rather than its hex makes upper- and lower-case spellings one key.
type replayKey [16]byte

func replayKeyOf(mac []byte) (replayKey, bool) {
	var k replayKey
	if len(mac) < len(k) {
		return k, false
	}
	copy(k[:], mac)
	return k, true
}

// replayCache is a fixed-size ring of the newest keys plus a set of them.
type replayCache struct {
	mu   sync.Mutex
	size int
	ring []replayKey // grows to size, then the oldest is overwritten
	next int
	set  map[replayKey]struct{}
}

func newReplayCache(size int) *replayCache {
	return &replayCache{size: max(size, 1), set: make(map[replayKey]struct{})}
}

// seen reports whether k is remembered.
func (rc *replayCache) seen(k replayKey) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	_, ok := rc.set[k]
	return ok
}

// add remembers k; it reports false when k was already there.
func (rc *replayCache) add(k replayKey) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if _, ok := rc.set[k]; ok {
		return false
	}
	if len(rc.ring) < rc.size {
		rc.ring = append(rc.ring, k)
	} else {
		delete(rc.set, rc.ring[rc.next])
		rc.ring[rc.next] = k
		rc.next = (rc.next + 1) % rc.size
	}
	rc.set[k] = struct{}{}
	return true
}
