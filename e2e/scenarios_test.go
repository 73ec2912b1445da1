package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Scenarios every router lab must pass, whatever its links (TUN or
// AF_PACKET) and in both address families: the driver's tests call them
// with their lab, router and family (v4 or v6).

// family is the lab's addressing in one IP version (scripts/lab.sh).
type family struct {
	name             string // "ipv4", "ipv6": also the router's counter set
	flag             string // of ping, traceroute, curl, iperf3: "-4", "-6"
	hostA, hostB     string // the kernels' addresses
	routerA, routerB string // the router's, on links a and b
}

var (
	v4 = &family{name: "ipv4", flag: "-4", hostA: "10.10.1.2", hostB: "10.10.2.2", routerA: "10.10.1.1", routerB: "10.10.2.1"}
	v6 = &family{name: "ipv6", flag: "-6", hostA: "fd00:10:1::2", hostB: "fd00:10:2::2", routerA: "fd00:10:1::1", routerB: "fd00:10:2::1"}
)

// hostPort is addr:port, addr in brackets for IPv6.
func hostPort(addr string, port int) string { return net.JoinHostPort(addr, fmt.Sprint(port)) }

// checkPings pings both ways through the router, and the router's own
// addresses, and checks that the router forwarded the crossing ones.
func checkPings(t *testing.T, l *lab, r *router, f *family) {
	t.Helper()
	for _, c := range []struct{ from, to string }{
		{l.nsA, f.hostB}, {l.nsB, f.hostA}, // across
		{l.nsA, f.routerA}, {l.nsB, f.routerB}, // the router's near side
		{l.nsA, f.routerB}, // the router's far side
	} {
		out := mustNS(t, 10*time.Second, c.from, "ping", f.flag, "-c", "3", "-i", "0.2", "-W", "2", c.to)
		if !strings.Contains(out, "3 received") {
			t.Errorf("ping %s from %s:\n%s", c.to, c.from, out)
		}
	}
	if got := r.waitCounter(f.name, "forwarded", 12, 3*time.Second); got < 12 {
		t.Errorf("%s forwarded = %d, want ≥ 12 (6 echoes and 6 replies across)", f.name, got)
	}
}

// waitPath waits until B answers a ping from A through the router, and
// fails the test if it does not within limit.
func waitPath(t *testing.T, l *lab, f *family, limit time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		out, err := ns(t, 5*time.Second, l.nsA, "ping", f.flag, "-c", "1", "-W", "1", f.hostB)
		if err == nil && strings.Contains(out, "1 received") {
			if d := time.Since(start); d > time.Second {
				t.Logf("the path A → B answered a ping after %v", d.Round(time.Millisecond))
			}
			return
		}
		if time.Since(start) > limit {
			t.Fatalf("no ping from A answered by %s through the router within %v:\n%s", f.hostB, limit, out)
		}
	}
}

// checkTraceroute: from A the router (its address on link a) is the first
// hop, B the second.
//
// The path is first shown to work (a ping from A to B answered, within
// 10 s of the router's start): traceroute sends all its probes at once and
// waits a fixed time for each, so on a loaded machine a router still
// warming up (a race-built binary under a load of 10 and more) turned the
// whole trace into stars without saying why.
func checkTraceroute(t *testing.T, l *lab, f *family) {
	t.Helper()
	waitPath(t, l, f, 10*time.Second)
	out := mustNS(t, 30*time.Second, l.nsA, "traceroute", f.flag, "-n", "-q", "1", "-w", "3", "-m", "4", f.hostB)
	var hops []string
	for _, line := range lines(out)[1:] {
		if fs := strings.Fields(line); len(fs) >= 2 {
			hops = append(hops, fs[1])
		}
	}
	if len(hops) != 2 || hops[0] != f.routerA || hops[1] != f.hostB {
		t.Errorf("traceroute hops %v, want [%s %s]:\n%s", hops, f.routerA, f.hostB, out)
	}
}

// downloadIntact fetches size bytes of blob(seed) with curl in A from the
// helper HTTP server on B's address, port 8080 (startHTTP), and checks every
// byte.
func downloadIntact(t *testing.T, l *lab, f *family, size int64, seed uint64) {
	t.Helper()
	file := filepath.Join(t.TempDir(), fmt.Sprintf("blob%d", seed))
	url := fmt.Sprintf("http://%s/blob?size=%d&seed=%d", hostPort(f.hostB, 8080), size, seed)
	out := mustNS(t, 45*time.Second, l.nsA, "curl", f.flag, "-sS", "--fail", "--max-time", "40", "-o", file,
		"-w", "%{size_download} bytes at %{speed_download} B/s", url)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != size {
		t.Fatalf("got %d bytes, want %d", len(data), size)
	}
	if got, want := sha256hex(data), blobSHA256(size, seed); got != want {
		t.Fatalf("download corrupted: sha256 %s, want %s", got, want)
	}
	t.Logf("curl %s: %s, intact", f.flag, out)
}

// iperfResult is the part of iperf3 -J's report the tests read.
type iperfResult struct {
	Intervals []struct {
		Sum struct {
			Start, End    float64
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum"`
	} `json:"intervals"`
	End struct {
		SumSent struct {
			Bytes       float64 `json:"bytes"`
			Retransmits int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// startIperf3Server runs a one-shot iperf3 server on B's address in B.
func startIperf3Server(t *testing.T, l *lab, f *family) {
	t.Helper()
	background(t, time.Minute, "listening", l.nsB, nil, "iperf3", "-s", "-1", "--forceflush", "-B", f.hostB)
}

// iperf3 runs an iperf3 client in A against the server on B's address
// (startIperf3Server) with -J and the given arguments.
func iperf3(t *testing.T, l *lab, f *family, timeout time.Duration, args ...string) *iperfResult {
	t.Helper()
	out := mustNS(t, timeout, l.nsA, append([]string{"iperf3", f.flag, "-c", f.hostB, "-J"}, args...)...)
	res, err := parseIperf3(out)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func parseIperf3(out string) (*iperfResult, error) {
	res := new(iperfResult)
	if err := json.Unmarshal([]byte(out), res); err != nil {
		return nil, fmt.Errorf("iperf3 output: %v\n%s", err, out)
	}
	return res, nil
}

// minKernelShare is the least share of the Linux kernel's forwarding rate,
// measured in the same test, that an iperf3 stream through the router must
// reach. The router does 30–80 % of the kernel's rate here (README); the
// floor is loose because the machine is shared and noisy, but a 5×
// regression crosses it.
const minKernelShare = 0.20

// kernelIperf3 measures the Linux kernel forwarding a 3-second iperf3 TCP
// stream from A to B between namespaces wired as the AF_PACKET lab is
// (`lab.sh up kernel`: veth pairs, ip_forward in the router namespace):
// the baseline a test compares the router's rate with. The lab is removed
// when the test ends. Intervals are a quarter second.
func kernelIperf3(t *testing.T, f *family) *iperfResult {
	t.Helper()
	k := newLabMode(t, "kernel")
	startIperf3Server(t, k, f)
	res := iperf3(t, k, f, 20*time.Second, "-t", "3", "-i", "0.25")
	t.Logf("iperf3 %s TCP A→B through the Linux kernel (same test, lab.sh kernel): %.2f Gbit/s, %d retransmits, %d empty quarter seconds",
		f.flag, res.End.SumReceived.BitsPerSecond/1e9, res.End.SumSent.Retransmits, res.stalls())
	return res
}

// stalls is the number of intervals without a byte.
func (r *iperfResult) stalls() int {
	n := 0
	for _, iv := range r.Intervals {
		if iv.Sum.Bytes == 0 {
			n++
		}
	}
	return n
}

// checkRate fails when bps is below minKernelShare of the kernel's rate.
func checkRate(t *testing.T, what string, bps, kernel float64) {
	t.Helper()
	if kernel <= 0 {
		t.Fatalf("kernel baseline: %.0f bit/s", kernel)
	}
	t.Logf("%s: %.2f Gbit/s = %.0f %% of the kernel's %.2f Gbit/s (floor %.0f %%)",
		what, bps/1e9, 100*bps/kernel, kernel/1e9, 100*minKernelShare)
	if bps < minKernelShare*kernel {
		t.Errorf("%s: %.2f Gbit/s, below %.0f %% of the kernel's %.2f Gbit/s measured in this test",
			what, bps/1e9, 100*minKernelShare, kernel/1e9)
	}
}

// checkIperf3 runs a 3-second iperf3 TCP stream from A to B through the
// router and one through the kernel (kernelIperf3), and compares them.
func checkIperf3(t *testing.T, l *lab, f *family) *iperfResult {
	t.Helper()
	kernel := kernelIperf3(t, f).End.SumReceived.BitsPerSecond
	startIperf3Server(t, l, f)
	res := iperf3(t, l, f, 20*time.Second, "-t", "3")
	t.Logf("iperf3 %s TCP A→B through the router: %d retransmits", f.flag, res.End.SumSent.Retransmits)
	checkRate(t, "iperf3 "+f.flag+" through the router", res.End.SumReceived.BitsPerSecond, kernel)
	return res
}

// checkPathMTU: the router runs with link b's MTU at 1400 (mtu: 1400)
// while B's kernel side has 1500 (a narrower path behind the router). A DF
// packet too big for it gets ICMP fragmentation needed (mtu 1400) back,
// Linux records the path MTU, and a TCP upload that starts with 1500-byte
// segments (B advertised an MSS of 1460) completes after discovering it
// again on its own; the kernel's route cache then shows mtu 1400.
func checkPathMTU(t *testing.T, l *lab, r *router) {
	t.Helper()
	// A TUN router sets its device to 1400; B's kernel goes back to 1500.
	// An AF_PACKET router only caps its own MTU; the veth keeps 1500.
	mustNS(t, 5*time.Second, l.nsB, "ip", "link", "set", l.devB(), "mtu", "1500")

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
	if route := mustNS(t, 5*time.Second, l.nsA, "ip", "route", "get", "10.10.2.2"); strings.Contains(route, "mtu 1400") {
		t.Fatalf("route cache not flushed:\n%s", route)
	}
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
}
