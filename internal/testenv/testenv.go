// Package testenv says what the tests may assume of the machine they run
// on. Under CI (the environment variable CI set to anything non-empty, as
// scripts/test.sh and .ci/run set it) every requirement a test names must
// be met: a missing tool, root or kernel feature fails the test with the
// reason. Elsewhere (a developer's `go test ./...`) the test skips with
// the same reason. Tests say what they need through this package only, so
// that there is one meaning of "strict".
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether a missing requirement must fail the test: CI is
// set and non-empty (CI=true, CI=1, ...).
func Strict() bool { return os.Getenv("CI") != "" }

// Need stops t for a requirement the machine does not meet: under CI it
// fails with "needs <reason>", elsewhere it skips with it.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "needs " + fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatal(msg + " (CI is set: nothing may skip; sudo scripts/test.sh installs what the tests need)")
	}
	t.Skip(msg)
}

// Root needs root (network namespaces, TUN devices, packet sockets).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, "root (network namespaces, TUN devices, packet sockets): run the tests as root, as scripts/test.sh does")
	}
}

// Tool needs the command name on PATH, from the Debian package pkg.
func Tool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Need(t, "%s: apt-get install %s", name, pkg)
	}
}
