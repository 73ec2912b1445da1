// Package e2e drives `pipectl run` against the Linux kernel: two host
// network namespaces (scripts/lab.sh, with a random suffix per test) wired to
// a pipestack router through TUN devices, and the kernel's own tools (ping,
// traceroute, curl, iperf3) as the peers. The tests need root and
// /dev/net/tun; under CI=true a missing requirement fails the test with the
// reason, elsewhere it skips. Tests run one after another; each one removes
// everything it made, even when it fails.
//
// Install the tools on Debian/Ubuntu with
//
//	apt-get install iproute2 iputils-ping traceroute curl iperf3 ethtool
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTUNPing: ping both ways through the router, and the router itself.
func TestTUNPing(t *testing.T) {
	requireLab(t, "ping (iputils-ping)")
	l := newLab(t)
	r := startRouter(t, l.routerConfig(""))
	for _, c := range []struct{ from, to string }{
		{l.nsA, "10.10.2.2"}, {l.nsB, "10.10.1.2"}, // across
		{l.nsA, "10.10.1.1"}, {l.nsB, "10.10.2.1"}, // the router's near side
		{l.nsA, "10.10.2.1"}, // the router's far side
	} {
		out := mustNS(t, 10*time.Second, c.from, "ping", "-c", "3", "-i", "0.2", "-W", "2", c.to)
		if !strings.Contains(out, "3 received") {
			t.Errorf("ping %s from %s:\n%s", c.to, c.from, out)
		}
	}
	if got := r.waitCounter("ipv4", "forwarded", 12, 3*time.Second); got < 12 {
		t.Errorf("ipv4 forwarded = %d, want ≥ 12 (6 echoes and 6 replies across)", got)
	}
}

// TestTUNTraceroute: the router is the first hop and answers with time
// exceeded.
func TestTUNTraceroute(t *testing.T) {
	requireLab(t, "traceroute (traceroute)")
	l := newLab(t)
	startRouter(t, l.routerConfig(""))
	out := mustNS(t, 30*time.Second, l.nsA, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", "10.10.2.2")
	var hops []string
	for _, line := range lines(out)[1:] {
		if f := strings.Fields(line); len(f) >= 2 {
			hops = append(hops, f[1])
		}
	}
	if len(hops) != 2 || hops[0] != "10.10.1.1" || hops[1] != "10.10.2.2" {
		t.Errorf("traceroute hops %v, want [10.10.1.1 10.10.2.2]:\n%s", hops, out)
	}
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
	get := func(seed uint64) {
		t.Helper()
		file := filepath.Join(t.TempDir(), fmt.Sprintf("blob%d", seed))
		url := fmt.Sprintf("http://10.10.2.2:8080/blob?size=%d&seed=%d", size, seed)
		mustNS(t, 45*time.Second, l.nsA, "curl", "-sS", "--fail", "--max-time", "40", "-o", file, url)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != size {
			t.Fatalf("got %d bytes, want %d", len(data), size)
		}
		if got, want := sha256hex(data), blobSHA256(size, seed); got != want {
			t.Fatalf("download corrupted: sha256 %s, want %s", got, want)
		}
	}
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
	background(t, 30*time.Second, "listening", l.nsB, nil, "iperf3", "-s", "-1", "--forceflush", "-B", "10.10.2.2")
	out := mustNS(t, 20*time.Second, l.nsA, "iperf3", "-c", "10.10.2.2", "-t", "3", "-J")
	var res struct {
		End struct {
			SumSent struct {
				Bytes       float64 `json:"bytes"`
				Retransmits int     `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	gbps := res.End.SumReceived.BitsPerSecond / 1e9
	t.Logf("iperf3 TCP A→B through the router: %.2f Gbit/s, %d retransmits", gbps, res.End.SumSent.Retransmits)
	if gbps < 0.1 {
		t.Errorf("iperf3: %.3f Gbit/s", gbps)
	}
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
	// The router set the device to 1400; B's kernel goes back to 1500, so
	// it advertises an MSS of 1460 and A sends full-size segments.
	mustNS(t, 5*time.Second, l.nsB, "ip", "link", "set", l.tunB, "mtu", "1500")

	out, err := ns(t, 10*time.Second, l.nsA, "ping", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", "10.10.2.2")
	if err == nil || !strings.Contains(out, "mtu = 1400") {
		t.Errorf("DF ping of 1500 bytes: want fragmentation needed (mtu = 1400):\n%s", out)
	}
	if route := mustNS(t, 5*time.Second, l.nsA, "ip", "route", "get", "10.10.2.2"); !strings.Contains(route, "mtu 1400") {
		t.Errorf("A has not learned the path MTU:\n%s", route)
	}
	out = mustNS(t, 10*time.Second, l.nsA, "ping", "-M", "do", "-s", "1372", "-c", "2", "-i", "0.2", "-W", "2", "10.10.2.2")
	if !strings.Contains(out, "2 received") {
		t.Errorf("DF ping of 1400 bytes:\n%s", out)
	}

	// Forget the learned MTU; TCP must discover it again on its own.
	mustNS(t, 5*time.Second, l.nsA, "ip", "route", "flush", "cache")
	startHTTP(t, l.nsB, "10.10.2.2:8080")
	const size = 4 << 20
	file := filepath.Join(t.TempDir(), "up")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyN(f, blob(7), size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := r.counters("ipv4")["too_big"]
	out = mustNS(t, 40*time.Second, l.nsA, "curl", "-sS", "--fail", "--max-time", "30", "-T", file, "http://10.10.2.2:8080/sha256")
	if got, want := strings.TrimSpace(out), blobSHA256(size, 7); got != want {
		t.Errorf("upload: server got sha256 %s, want %s", got, want)
	}
	if n := r.waitCounter("ipv4", "too_big", before+1, 2*time.Second); n <= before {
		t.Errorf("the upload never hit the 1400-byte link (ipv4 too_big %d): %v", n, r.counters("ipv4"))
	}
	t.Logf("upload of %d bytes: ipv4 too_big %d → %d", size, before, r.counters("ipv4")["too_big"])
	if route := mustNS(t, 5*time.Second, l.nsA, "ip", "route", "get", "10.10.2.2"); !strings.Contains(route, "mtu 1400") {
		t.Errorf("after the upload A has not learned the path MTU:\n%s", route)
	}
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
