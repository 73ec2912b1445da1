package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs scripts/demo.sh — the README's first command — as it is,
// in a lab of its own (LAB_SUFFIX), and checks what it shows: the WAN
// server saw the router's address (MASQUERADE), the IPv6 server the LAN
// host's (routed), traceroute went through the router, the download was
// intact, the port forward and the IPv6 pinhole answered, the WAN could not
// connect into the LAN, `pipectl conntrack -L` listed the masqueraded and
// the port-forwarded flows; that it exited 0 and left no namespace behind.
// So the demo cannot rot: a change that breaks router.yaml or the script
// fails here.
func TestDemo(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "traceroute (traceroute)", "curl (curl)", "iperf3 (iperf3)", "python3 (python3)", "go (golang)")
	suffix := "dm" + randSuffix()[:4]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "LAB_SUFFIX="+suffix, "TERM=dumb")
	// Its own process group: at the deadline the script gets SIGTERM (its
	// trap tears the lab down) and so does everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("scripts/demo.sh:\n%s", out)
	if err != nil {
		t.Errorf("scripts/demo.sh: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^you are 10\.10\.2\.1 port \d+$`), // the WAN server's answer to A: the router's address
		regexp.MustCompile(`(?m)^ok: the server in ps-b` + suffix + ` saw the router's address 10\.10\.2\.1`),
		regexp.MustCompile(`(?m)^the server's log: wan-server: "GET /whoami HTTP/1\.1" 200 - from 10\.10\.2\.1 port \d+$`), // the server's log
		regexp.MustCompile(`(?m)^you are fd00:10:1::2 port \d+$`),                                                          // IPv6: routed, not NATed
		regexp.MustCompile(`(?m)^ok: ping from the LAN$`),
		regexp.MustCompile(`(?m)^ok: traceroute: 10\.10\.1\.1, then 10\.10\.2\.2$`),
		regexp.MustCompile(`(?m)^ok: intact: `),
		regexp.MustCompile(`(?m)sender$`),                         // iperf3 ran
		regexp.MustCompile(`(?m)^you are 10\.10\.2\.2 port \d+$`), // the port forward: A's server saw B
		regexp.MustCompile(`(?m)^ok: the port forward answered`),
		regexp.MustCompile(`(?m)^ok: the IPv6 pinhole`),
		regexp.MustCompile(`(?m)^ok: ps-b` + suffix + ` → 10\.10\.1\.2:80: no answer`),
		regexp.MustCompile(`(?m)^ok: ps-b` + suffix + ` cannot ping 10\.10\.1\.2$`),
		// conntrack -L: the masqueraded flow (reply to the router) and the
		// port-forwarded one (reply from A's port 80).
		regexp.MustCompile(`(?m)^tcp +6 \d+ \w+ src=10\.10\.1\.2 dst=10\.10\.2\.2 sport=\d+ dport=8080 src=10\.10\.2\.2 dst=10\.10\.2\.1 sport=8080 dport=\d+ \[ASSURED\]`),
		regexp.MustCompile(`(?m)^tcp +6 \d+ \w+ src=10\.10\.2\.2 dst=10\.10\.2\.1 sport=\d+ dport=8080 src=10\.10\.1\.2 dst=10\.10\.2\.2 sport=80 dport=\d+ \[ASSURED\]`),
		regexp.MustCompile(`(?m)^icmp +1 \d+ src=10\.10\.1\.2 dst=10\.10\.2\.2 type=8 code=0 id=\d+ src=10\.10\.2\.2 dst=10\.10\.2\.1 `),
		regexp.MustCompile(`(?m)^pipectl exited cleanly$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("the demo's output lacks %s", want)
		}
	}
	if strings.Contains(out, "FAILED:") {
		t.Errorf("the demo reported a failure")
	}
	// Nothing it started outlives it (a server left running would also
	// hold the e2e lock's descriptor).
	if procs, _ := filepath.Glob("/proc/[0-9]*/cmdline"); len(procs) > 0 {
		for _, f := range procs {
			b, _ := os.ReadFile(f)
			if c := string(b); strings.Contains(c, "whoami.py") && (strings.Contains(c, "wan-server") || strings.Contains(c, "lan-server")) {
				t.Errorf("left running after the demo: %s", strings.ReplaceAll(c, "\x00", " "))
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	for _, n := range []string{"ps-a" + suffix, "ps-b" + suffix} {
		if regexp.MustCompile(`(?m)^` + n + `\b`).Match(list) {
			t.Errorf("namespace %s left behind", n)
			exec.Command("ip", "netns", "del", n).Run()
		}
	}
}
