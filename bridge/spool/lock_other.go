//go:build !unix

package spool

import "os"

// lockDir opens dir/LOCK; without flock, two bridges on one spool are not
// detected on this platform.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
}
