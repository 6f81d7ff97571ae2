package session

import (
	"os"

	"golang.org/x/sys/unix"
)

// pipeBuffered reports how many bytes wait unread in the pipe r.
func pipeBuffered(r *os.File) int {
	rc, err := r.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	if err != nil {
		return 0
	}
	return n
}
