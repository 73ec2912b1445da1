//go:build unix

package cli_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipectl/cli"
)

// TestRunSignals drives `pipectl run` as a user does: SIGHUP reloads,
// SIGTERM stops with exit status 0.
func TestRunSignals(t *testing.T) {
	file := tempPipeline(t, routerYAML)
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- cli.Main([]string{"run", file}, &stdout, &stderr) }()

	waitLog := func(msg string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if e := stderr.find(t, msg); e != nil {
				return e
			}
			select {
			case c := <-code:
				t.Fatalf("pipectl run exited with %d:\n%s", c, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", msg, stderr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Signal handlers are installed before "running" is logged.
	waitLog("running")

	writeFile(t, file, routerWithRoute)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if e := waitLog("reloaded"); e["generation"] != 2.0 {
		t.Errorf("reloaded %v, want generation 2", e)
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0:\n%s", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pipectl run did not stop on SIGTERM")
	}
	waitLog("stopped")
	if stdout.String() != "" {
		t.Errorf("run wrote to stdout: %q", stdout.String())
	}
}
