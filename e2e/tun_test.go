// Package e2e drives `pipectl run` against the Linux kernel: two host
// network namespaces (scripts/lab.sh, with a random suffix per test) wired to
// a pipestack router through TUN devices or, in a third namespace, over
// AF_PACKET on veth pairs, and the kernel's own tools (ping, traceroute,
// curl, iperf3, nmap, scapy) as the peers. Throughput is judged against the
// kernel forwarding the same stream in the same test (lab.sh kernel). The
// tests need root and /dev/net/tun; under CI (CI non-empty, as
// scripts/test.sh sets it) a missing requirement fails the test with the
// reason, elsewhere it skips. Tests run one after another; each one removes
// everything it made, even when it fails.
//
// sudo scripts/test.sh installs the tools (Debian/Ubuntu packages) and runs
// every test in that strict mode.
package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestTUNPing: ping both ways through the router, and the router itself.
func TestTUNPing(t *testing.T) {
	requireLab(t, "ping (iputils-ping)")
	l := newLab(t)
	r := startRouter(t, l.routerConfig(""))
	checkPings(t, l, r, v4)
}

// TestTUNTraceroute: the router is the first hop and answers with time
// exceeded.
func TestTUNTraceroute(t *testing.T) {
	requireLab(t, "traceroute (traceroute)")
	l := newLab(t)
	startRouter(t, l.routerConfig(""))
	checkTraceroute(t, l, v4)
}

// TestTUNHTTPDownload: 20 MB over HTTP from B to A arrive intact, first
// with the kernel's TSO (super-packets cross the router whole), then with
// TSO and GSO off at the sender (MTU-sized segments that the router
// coalesces before writing them to A's kernel).
func TestTUNHTTPDownload(t *testing.T) {
	requireLab(t, "curl (curl)", "ethtool (ethtool)")
	l := newLab(t)
	r := startRouter(t, l.routerConfig(""))
	startHTTP(t, l.nsB, "10.10.2.2:8080")
	const size = 20 << 20
	get := func(seed uint64) { t.Helper(); downloadIntact(t, l, v4, size, seed) }
	get(1)
	if n := r.waitCounter("tun b", "rx_gso", 1, 2*time.Second); n == 0 {
		t.Errorf("no GSO super-packet read from B's device: %v", r.counters("tun b"))
	}
	t.Logf("with TSO: tun b %v", r.counters("tun b"))

	mustNS(t, 5*time.Second, l.nsB, "ethtool", "-K", l.tunB, "tso", "off", "gso", "off")
	before := r.counters("tun a")["tx_coalesced"]
	get(2)
	if n := r.waitCounter("tun a", "tx_coalesced", before+1, 2*time.Second); n <= before {
		t.Errorf("no segment coalesced on the way to A: %v", r.counters("tun a"))
	}
	t.Logf("without TSO at the sender: tun a %v", r.counters("tun a"))
}

// TestTUNIperf3: a 3-second iperf3 TCP run from A to B.
func TestTUNIperf3(t *testing.T) {
	requireLab(t, "iperf3 (iperf3)")
	l := newLab(t)
	r := startRouter(t, l.routerConfig(""))
	checkIperf3(t, l, v4)
	t.Logf("tun a %v", r.counters("tun a"))
}

// TestTUNPathMTU: the router's link to B has MTU 1400 while B's kernel
// side keeps 1500 (a narrower path behind the router). A DF packet too big
// for it gets ICMP fragmentation needed (mtu 1400) back, Linux records the
// path MTU, and a TCP upload that starts with 1500-byte segments completes.
// Over IPv6, Packet Too Big.
func TestTUNPathMTU(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "curl (curl)")
	l := newLab(t)
	r := startRouter(t, l.routerConfig(", mtu: 1400"))
	checkPathMTU(t, l, r)
	checkPacketTooBig6(t, l, r)
}

// TestTUNCreateAndSIGTERM: without lab.sh's devices the router creates them
// in the namespaces; SIGTERM stops it with status 0 and the devices are gone.
func TestTUNCreateAndSIGTERM(t *testing.T) {
	requireLab(t)
	s := randSuffix()
	nsA, nsB := "ps-a"+s, "ps-b"+s
	for _, n := range []string{nsA, nsB} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", n, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
	}
	l := &lab{t: t, suffix: s, nsA: nsA, nsB: nsB, tunA: "ps-tun-a" + s, tunB: "ps-tun-b" + s}
	r := startRouter(t, l.routerConfig(""))
	r.waitLog(`"created":true`, 5*time.Second)
	for _, c := range []struct{ ns, dev string }{{nsA, l.tunA}, {nsB, l.tunB}} {
		out := mustNS(t, 5*time.Second, c.ns, "ip", "-d", "link", "show", c.dev)
		if !strings.Contains(out, "tun") || !strings.Contains(out, "multi_queue") || !strings.Contains(out, ",UP") {
			t.Errorf("%s in %s is not an up multi-queue TUN device:\n%s", c.dev, c.ns, out)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.log.String(), `"message":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", r.log.String())
	}
	for _, c := range []struct{ ns, dev string }{{nsA, l.tunA}, {nsB, l.tunB}} {
		if out, err := ns(t, 5*time.Second, c.ns, "ip", "link", "show", c.dev); err == nil {
			t.Errorf("%s still exists in %s after SIGTERM:\n%s", c.dev, c.ns, out)
		}
	}
}
