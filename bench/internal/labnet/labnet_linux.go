//go:build linux

package labnet

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// SplitSpec splits DEV@NETNS (NETNS a name under /var/run/netns or a
// path; without @NETNS the device is in the current namespace).
func SplitSpec(s string) (dev, ns string) {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// InNetns runs fn on an OS thread that has entered the network namespace
// ns (a name under /var/run/netns, or a path; "" runs fn here), then takes
// the thread back to its own namespace. Descriptors fn opens belong to ns.
func InNetns(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	path := ns
	if !strings.Contains(ns, "/") {
		path = "/var/run/netns/" + ns
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to the original namespace: %w", err))
			return // the thread stays locked and exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// SetUp sets dev (in the current namespace) up if it is not.
func SetUp(dev string) error {
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer unix.Close(ctl)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	if fl := ifr.Uint16(); fl&unix.IFF_UP == 0 {
		ifr.SetUint16(fl | unix.IFF_UP)
		if err := unix.IoctlIfreq(ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	return nil
}

// AttachTUN opens a queue of the existing TUN device dev in the current
// namespace with the flags given (IFF_TUN and the like: a multi_queue
// device needs IFF_MULTI_QUEUE) and returns its descriptor.
func AttachTUN(dev string, flags uint16) (int, error) {
	// TUNSETIFF would make a new device under a name that does not exist;
	// only an existing one will do.
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return -1, err
	}
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("control socket: %w", err)
	}
	err = unix.IoctlIfreq(ctl, unix.SIOCGIFINDEX, ifr)
	unix.Close(ctl)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", dev, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, _ = unix.NewIfreq(dev)
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF: %w (a multi_queue device needs IFF_MULTI_QUEUE)", err)
	}
	return fd, nil
}
