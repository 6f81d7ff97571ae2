package session

import (
	"errors"
	"syscall"
)

// pumpPipe reads sr's pipe until EOF, handing each chunk to take with sr.mu
// held. Reads are non-blocking raw reads made when the pipe is readable, so
// that drainPipe can empty the pipe in between, under the same lock.
func pumpPipe(sr *streamReader, take func(data []byte, eof bool)) {
	rc, err := sr.r.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		sr.mu.Lock()
		defer sr.mu.Unlock()
		for {
			n, err := syscall.Read(int(fd), sr.buf)
			switch {
			case n > 0:
				take(sr.buf[:n], false)
				continue
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				return false // wait until readable again
			}
			take(nil, true) // EOF or error
			return true
		}
	})
}

// drainPipe moves what sr's pipe holds now into the buffer.
func drainPipe(sr *streamReader, take func(data []byte)) {
	rc, err := sr.r.SyscallConn()
	if err != nil {
		return
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if sr.buf == nil {
		return // reader not started
	}
	_ = rc.Control(func(fd uintptr) {
		for {
			n, err := syscall.Read(int(fd), sr.buf)
			if n > 0 {
				take(sr.buf[:n])
				continue
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
	})
}
