package cli_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipectl/cli"
)

// TestSetCommands: pipectl set add, test, list, del, flush over the
// control socket of a running pipeline; a reload keeps run-time elements
// of a set whose declaration is unchanged and says when the file replaced
// them; errors name the set and the element.
func TestSetCommands(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl", "r.sock")
	content := fmt.Sprintf(`
name: r
control: {socket: %s}
modules: [network.testproto]
links:
  - {name: a, module: test.link, device: d0, addresses: [10.0.1.1/24]}
filter:
  sets:
    web: {type: "addr . port", timeout: 600, counters: true, elements: ["10.0.1.5 . tcp:80"]}
    nets: {type: hash:net, elements: [10.0.0.0/8]}
  filter:
    input:
      rules: ["-m set --match-set web dst,dst -j ACCEPT", "-m set --match-set nets src -j DROP"]
`, sock)
	file := tempPipeline(t, content)
	r := startRun(t, file, cli.RunOptions{})
	if o := r.next(); o.err != nil {
		t.Fatal(o.err)
	}
	ok := func(want string, args ...string) {
		t.Helper()
		res := runMain(t, append([]string{"set", "-s", sock}, args...)...)
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("set %q: %d %q %q, want …%s…", args, res.code, res.stdout, res.stderr, want)
		}
	}
	fails := func(code int, want string, args ...string) {
		t.Helper()
		res := runMain(t, append([]string{"set", "-s", sock}, args...)...)
		if res.code != code || !strings.Contains(res.stderr+res.stdout, want) {
			t.Errorf("set %q: %d %q %q, want %d …%s…", args, res.code, res.stdout, res.stderr, code, want)
		}
	}
	ok("", "add", "web", "10.0.1.6", ".", "udp:53", "timeout", "30")
	ok("", "add", "web", "10.0.1.7,8080")
	ok("10.0.1.6 . udp:53 is in set web.", "test", "web", "10.0.1.6 . udp:53")
	fails(1, "10.0.1.6 . tcp:53 is NOT in set web.", "test", "web", "10.0.1.6 . tcp:53")
	ok("Name: web\nType: hash:ip,port\nHeader: timeout 600 counters maxelem 1048576\nChanged: at run time", "list", "web")
	ok("10.0.1.6 . udp:53 timeout 30 packets 0 bytes 0\n10.0.1.7 . 8080 timeout 600 packets 0 bytes 0\n", "list", "web")
	ok("Name: nets", "list")
	ok("", "del", "web", "10.0.1.7 . 8080")
	fails(1, "10.0.1.7 . 8080 is not in set web", "del", "web", "10.0.1.7 . 8080")
	fails(1, `set "wbe" does not exist`, "add", "wbe", "10.0.1.7 . 80")
	fails(1, `is not an address`, "add", "web", "10.0.1 . 80")
	fails(1, "set nets has no timeout", "add", "nets", "192.0.2.0/24", "timeout", "5")
	fails(2, "usage", "add", "web")
	fails(2, "a timeout goes with add", "del", "web", "10.0.1.6 . udp:53", "timeout", "3")
	ok("", "add", "nets", "192.0.2.0/24")

	// A reload that changes only web: nets keeps its run-time element,
	// web gets the file's and the reply says so.
	writeFile(t, file, strings.Replace(content, `["10.0.1.5 . tcp:80"]`, `["10.0.1.5 . tcp:80", "10.0.1.5 . tcp:443"]`, 1))
	rl := runMain(t, "reload", "-s", sock)
	if rl.code != 0 || !strings.Contains(rl.stdout, "reloaded: generation 2\nset web: the file changed its elements: the file's 2 elements replace the running set's 2 (its run-time changes are dropped)") {
		t.Errorf("reload: %d %q %q", rl.code, rl.stdout, rl.stderr)
	}
	r.next()
	ok("192.0.2.0/24", "list", "nets")
	ok("Number of entries: 2\nMembers:\n10.0.1.5 . tcp:80 packets 0 bytes 0\n10.0.1.5 . tcp:443 packets 0 bytes 0\n", "list", "web")
	ok("2 elements removed from set nets", "flush", "nets")
	ok("Number of entries: 0", "list", "nets")

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
