//go:build unix

package overload

import "syscall"

// fdLimit returns the soft RLIMIT_NOFILE (which the Go runtime raises to the hard limit at
// start), or 0 if unknown.
func fdLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return uint64(r.Cur)
}
