package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/pipeline"
)

// Do runs fn on an OS thread that has entered the network namespace ns
// (see Path); "" runs fn here. Sockets and devices fn creates belong to
// that namespace. The thread goes back to its own namespace afterwards or,
// if it cannot, stays locked so that the runtime ends it with its
// goroutine. An EPERM from setns carries pipeline.SetnsHint.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	path := Path(ns)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer unix.Close(target)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: own namespace: %w", err)
			return
		}
		defer unix.Close(self)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: setns %s: %w%s", ns, path, err, pipeline.SetnsHint(err))
			return
		}
		ferr := fn()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: return to own namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
