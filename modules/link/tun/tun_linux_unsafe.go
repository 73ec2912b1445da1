//go:build linux

package tun

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// writev is writev(2) on a prepared iovec array, without the allocation
// unix.Writev makes per call.
func writev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), errno
}
