package cli_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/testenv"
)

// needRoot needs root (testenv: fails under CI, skips elsewhere).
func needRoot(t *testing.T) { t.Helper(); testenv.Root(t) }

// A pure-Go pipectl run as root keeps only CAP_NET_ADMIN and CAP_NET_RAW
// once its links are open, and still stops cleanly on SIGTERM.
func TestPrivilegesDropped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "pipectl")
	build := exec.Command("go", "build", "-o", bin, "github.com/pipestack/pipestack/cmd/pipectl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "p.yaml")
	writeFile(t, file, fmt.Sprintf(`
name: privtest
control: {socket: %s/ctl.sock}
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
`, dir))
	cmd := exec.Command(bin, "run", file)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	deadline := time.After(10 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("pipectl exited:\n%s", strings.Join(log, "\n"))
			}
			log = append(log, l)
			if strings.Contains(l, "running") {
				break wait
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("pipectl did not start:\n%s", strings.Join(log, "\n"))
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapEff:\t0000000000003000", "CapPrm:\t0000000000003000", "CapBnd:\t0000000000003000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("want %q in /proc status:\n%s\nlog:\n%s", want, status, strings.Join(log, "\n"))
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		for l := range lines {
			log = append(log, l)
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pipectl exit: %v\n%s", err, strings.Join(log, "\n"))
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pipectl did not stop on SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "ctl.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}
