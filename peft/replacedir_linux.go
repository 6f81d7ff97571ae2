//go:build linux

package peft

import (
	"os"

	"golang.org/x/sys/unix"
)

// replaceDir puts the directory tmp in place of dst. If dst exists the two
// are exchanged in one renameat2(RENAME_EXCHANGE), so dst is never missing,
// and the old directory, now at tmp, is removed.
func replaceDir(tmp, dst string, exists bool) error {
	if !exists {
		return os.Rename(tmp, dst)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE); err != nil {
		if err == unix.ENOSYS || err == unix.EINVAL {
			return replaceDirAside(tmp, dst)
		}
		return &os.LinkError{Op: "exchange", Old: tmp, New: dst, Err: err}
	}
	return os.RemoveAll(tmp)
}
