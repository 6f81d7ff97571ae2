//go:build !linux

package peft

import "os"

// replaceDir puts the directory tmp in place of dst (see replaceDirAside).
func replaceDir(tmp, dst string, exists bool) error {
	if !exists {
		return os.Rename(tmp, dst)
	}
	return replaceDirAside(tmp, dst)
}
