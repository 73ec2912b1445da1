package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/pipeline"
)

// dropPrivileges is called once the first generation runs (its devices
// are open). As root it keeps only the configured capabilities (default
// CAP_NET_ADMIN and CAP_NET_RAW) in every thread's effective, permitted and
// bounding sets, and switches to the configured user if any. It returns what
// it did for the log; not running as root, it does nothing.
func dropPrivileges(pc pipeline.PrivilegesConfig) (string, error) {
	if pc.Drop != nil && !*pc.Drop {
		return "privileges kept (privileges: {drop: false})", nil
	}
	if os.Geteuid() != 0 {
		return "", nil
	}
	names := pc.Keep
	if len(names) == 0 {
		names = []string{"net_admin", "net_raw"}
	}
	keep := uint64(0)
	for _, n := range names {
		c, ok := pipeline.Capabilities[strings.TrimPrefix(strings.ToLower(n), "cap_")]
		if !ok {
			return "", fmt.Errorf("unknown capability %q", n)
		}
		keep |= 1 << uint(c)
	}
	uid, gid := -1, -1
	if pc.User != "" {
		u, err := user.Lookup(pc.User)
		if err != nil {
			if id, e := strconv.Atoi(pc.User); e == nil {
				u = &user.User{Uid: pc.User, Gid: strconv.Itoa(id)}
			} else {
				return "", fmt.Errorf("user %q: %w", pc.User, err)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	// Bounding set first (needs CAP_SETPCAP, which we still have).
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != syscall.EINVAL {
			if e == syscall.ENOTSUP {
				return "", errors.New("cannot drop privileges in a binary linked with cgo: build pipectl with CGO_ENABLED=0")
			}
			return "", fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	if uid >= 0 {
		if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); e != 0 {
			return "", fmt.Errorf("keepcaps: %w", e)
		}
		if err := syscall.Setgroups(nil); err != nil {
			return "", fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return "", fmt.Errorf("setgid %d: %w", gid, err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return "", fmt.Errorf("setuid %d: %w", uid, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return "", fmt.Errorf("capset: %w", e)
	}
	who := "uid 0"
	if uid >= 0 {
		who = fmt.Sprintf("uid %d gid %d", uid, gid)
	}
	return fmt.Sprintf("privileges dropped: running as %s with capabilities %s", who, strings.Join(names, ",")), nil
}
