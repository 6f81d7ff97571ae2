//go:build !linux

package peft

import "os"

// exchangeDirs is unused here: directories are always replaced aside.
var exchangeDirs = false

// replaceDir puts the directory tmp in place of dst (see replaceDirAside).
func replaceDir(tmp, dst string, exists bool) error {
	if !exists {
		return os.Rename(tmp, dst)
	}
	return replaceDirAside(tmp, dst)
}

// lockDir takes no lock on these systems: two saves to one directory at
// once may make one of them fail (never leave the directory half written).
func lockDir(dir string) (unlock func(), err error) { return func() {}, nil }
