package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildTestPlugin builds the filter plugin the plugin tests use
// (modules/filter/plugin/internal/testplugin) into dir, with -ldflags.
func buildTestPlugin(t *testing.T, out, ldflags string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, "./modules/filter/plugin/internal/testplugin")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testplugin: %v\n%s", err, b)
	}
}

// udpProbe sends n datagrams from A to B's port and returns how many B
// received.
func udpProbe(t *testing.T, l *lab, port, n int) int {
	t.Helper()
	recv := fmt.Sprintf(`
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.10.2.2", %d))
s.settimeout(1.5)
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048); n += 1
except socket.timeout:
    pass
print(n)
`, port)
	send := fmt.Sprintf(`
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(%d):
    s.sendto(b"probe", ("10.10.2.2", %d)); time.sleep(0.005)
`, n, port)
	got := make(chan string, 1)
	go func() {
		out, _ := ns(t, 20*time.Second, l.nsB, "/usr/bin/python3", "-c", recv)
		got <- out
	}()
	time.Sleep(400 * time.Millisecond)
	if out, err := ns(t, 10*time.Second, l.nsA, "/usr/bin/python3", "-c", send); err != nil {
		t.Fatalf("udp sender: %v\n%s", err, out)
	}
	out := <-got
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("udp receiver said %q", out)
	}
	c, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("udp receiver said %q", out)
	}
	return c
}

// TestPluginMatcherSwapUnderIperf3: a plugin matcher ("-m plugin --name pm
// -j DROP") drops UDP to B's port 9999 between Linux hosts; every TCP and
// UDP packet through the router is judged by it. While an iperf3 TCP
// stream to B's iperf3 port runs, a rebuilt plugin that lets port 9999
// through is renamed into place (reload: watch): the stream must not
// notice (no quarter second without data), and afterwards port 9999's
// datagrams arrive.
func TestPluginMatcherSwapUnderIperf3(t *testing.T) {
	requireLab(t, "iperf3 (iperf3)", "python3 (python3)")
	l := newLabMode(t, "tun")
	dir, err := os.MkdirTemp("", "pipestack-e2e-plugin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "pm")
	buildTestPlugin(t, bin, "")
	// Default privileges (net_admin, net_raw): the plugin runs as uid 0
	// without capabilities, and is restarted and replaced after pipectl
	// dropped its own.
	cfg := l.routerConfig("") + fmt.Sprintf(`plugins:
  - {name: pm, path: %s, reload: watch, timeout: 500ms, on_failure: accept, config: {block: 9999}}
filter:
  filter:
    forward:
      rules:
        - "-p udp -m plugin --name pm -j DROP"
        - "-p tcp -m plugin --name pm -j DROP"
`, bin)
	r := startRouter(t, cfg)
	startIperf3Server(t, l, v4)
	if got := udpProbe(t, l, 9999, 50); got != 0 {
		t.Fatalf("version 1: %d of 50 datagrams to port 9999 passed, want 0", got)
	}
	done := make(chan *iperfResult, 1)
	go func() {
		out, err := ns(t, 30*time.Second, l.nsA, "iperf3", "-c", "10.10.2.2", "-J", "-t", "6", "-i", "0.25")
		if err != nil {
			t.Errorf("iperf3: %v\n%s", err, out)
			done <- nil
			return
		}
		res, err := parseIperf3(out)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(2 * time.Second)
	buildTestPlugin(t, bin+".new", "-X main.allow=yes")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	r.waitLog("reload: watch: binary replaced", 15*time.Second)
	res := <-done
	if res == nil {
		t.FailNow()
	}
	if s := res.stalls(); s != 0 {
		t.Errorf("the TCP stream had %d quarter seconds without data across the plugin swap", s)
	}
	t.Logf("iperf3 TCP through the plugin matcher, swapped mid-stream: %.2f Gbit/s, %d retransmits, %d stalls",
		res.End.SumReceived.BitsPerSecond/1e9, res.End.SumSent.Retransmits, res.stalls())
	if got := udpProbe(t, l, 9999, 50); got < 45 {
		t.Errorf("version 2: %d of 50 datagrams to port 9999 passed, want them all", got)
	}
	out, err := r.control("plugins")
	if err != nil || !strings.Contains(out, "testyes") || !strings.Contains(out, "running") {
		t.Errorf("pipectl plugins: %v\n%s", err, out)
	}
	t.Logf("pipectl plugins:\n%s", out)
}
