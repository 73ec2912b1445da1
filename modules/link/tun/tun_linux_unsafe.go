//go:build linux

package tun

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The queues' file descriptors are non-blocking and a TUN write never
// waits (it runs the kernel's receive path and returns), so reads and
// writes are raw system calls: the runtime is not told, and its monitor
// does not hand the goroutine's P to another thread (waking one) each time
// a write of a 64 KiB super-packet, with the receiving host's TCP inside
// it, outlasts its 20 µs tick. Only poll(2), which sleeps, goes through
// the runtime.

// writev is writev(2) on a prepared iovec array, without the allocation
// unix.Writev makes per call.
func writev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), errno
}

// read is read(2) on the non-blocking fd.
func read(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), errno
}
