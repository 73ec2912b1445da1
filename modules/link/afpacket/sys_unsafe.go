//go:build linux

package afpacket

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sockets are non-blocking (and recvmmsg is called with MSG_DONTWAIT),
// so recvmmsg and sendmmsg are raw system calls: the runtime is not told,
// and its monitor does not hand the goroutine's P to another thread (waking
// one) whenever a sendmmsg — which runs the receiving host's stack in its
// softirq — outlasts its 20 µs tick. Only poll(2), which sleeps, goes
// through the runtime.

// recvmmsg reads up to len(hdrs) frames; hdrs must be non-empty. It must
// not block: the socket is non-blocking.
func recvmmsg(fd int, hdrs []unix.Mmsghdr, flags int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// sendmmsg sends up to len(hdrs) frames and returns how many went; hdrs
// must be non-empty. It does not block: the socket is non-blocking.
func sendmmsg(fd int, hdrs []unix.Mmsghdr, flags int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// The block status word of a TPACKET_V3 block is shared with the kernel: it
// is read with acquire and written with release semantics. b must be 4-byte
// aligned (blocks are page aligned; the word is at offset 8).
func loadStatus(b []byte) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0])))
}

func storeStatus(b []byte, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), v)
}

// boundIfindex returns the index of the device the packet socket fd is
// bound to (getsockname); false when it is not bound to one. Unlike
// unix.Getsockname it allocates nothing: an idle reader asks once a second.
func boundIfindex(fd int) (int, bool) {
	var sa unix.RawSockaddrLinklayer
	l := uint32(unix.SizeofSockaddrLinklayer)
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 || sa.Family != unix.AF_PACKET {
		return 0, false
	}
	return int(sa.Ifindex), true
}
