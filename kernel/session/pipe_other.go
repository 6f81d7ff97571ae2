//go:build !linux

package session

// pumpPipe reads sr's pipe until EOF. Without raw non-blocking reads,
// drainPipe cannot empty the pipe: the order between compiled and
// interpreted output is then best effort.
func pumpPipe(sr *streamReader, take func(data []byte, eof bool)) {
	for {
		n, err := sr.r.Read(sr.buf)
		sr.mu.Lock()
		if n > 0 {
			take(sr.buf[:n], false)
		}
		if err != nil {
			take(nil, true)
			sr.mu.Unlock()
			return
		}
		sr.mu.Unlock()
	}
}

func drainPipe(*streamReader, func([]byte)) {}
