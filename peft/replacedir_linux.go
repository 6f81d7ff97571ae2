//go:build linux

package peft

import (
	"os"

	"golang.org/x/sys/unix"
)

// exchangeDirs selects renameat2(RENAME_EXCHANGE); tests turn it off to
// run replaceDirAside, the path of systems that cannot exchange.
var exchangeDirs = true

// replaceDir puts the directory tmp in place of dst. If dst exists the two
// are exchanged in one renameat2(RENAME_EXCHANGE), so dst is never missing,
// and the old directory, now at tmp, is removed.
func replaceDir(tmp, dst string, exists bool) error {
	if !exists {
		return os.Rename(tmp, dst)
	}
	if !exchangeDirs {
		return replaceDirAside(tmp, dst)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE); err != nil {
		if err == unix.ENOSYS || err == unix.EINVAL {
			return replaceDirAside(tmp, dst)
		}
		return &os.LinkError{Op: "exchange", Old: tmp, New: dst, Err: err}
	}
	return os.RemoveAll(tmp)
}

// lockDir takes an exclusive flock on the directory dir, waiting for it,
// and returns its release. Saves into one directory take it so that one
// never removes the temporary directory of another in progress. The lock
// is the kernel's: a killed process holds it no longer, and it leaves no
// file. Where the file system has no flock, saves go unlocked.
func lockDir(dir string) (unlock func(), err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ENOLCK || err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		err = nil
	}
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}
