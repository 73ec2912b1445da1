package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// tsoStack is a stack on a TUN link with virtio-net offloads into a new
// namespace (10.198.0.1 there, 10.198.0.2 ours), transport.tcp with tso.
func tsoStack(t *testing.T, tso bool) (*pipeline.Stack, string) {
	t.Helper()
	s := "ts" + randSuffix()[:4]
	netns, dev := "ps-"+s, "ps-tso-"+s
	if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", netns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v\n%s", err, out)
		}
	})
	cfg, err := pipeline.ParseConfig("tcp-tso.yaml", []byte(fmt.Sprintf(`
name: tcp-tso
modules: [network.ipv4, {module: transport.tcp, tso: %v}]
links:
  - {name: t, module: link.tun, device: %s, netns: %s, offload: true, mtu: 1500, addresses: [10.198.0.2/24]}
routes:
  - {to: default, via: 10.198.0.1, link: t}
`, tso, dev, netns)))
	if err != nil {
		t.Fatal(err)
	}
	st := pipeline.New(pipeline.Options{})
	if _, err := st.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mustNS(t, 10*time.Second, netns, "ip", "addr", "add", "10.198.0.1/24", "dev", dev)
	mustNS(t, 10*time.Second, netns, "ip", "link", "set", dev, "up")
	mustNS(t, 10*time.Second, netns, "ip", "link", "set", "lo", "up")
	return st, netns
}

// TSO toward Linux over TUN with offloads: curl downloads 64 MB from our
// net/http server with the stack sending TSO super-packets (the kernel
// segments them, or takes them whole: the TUN device is GSO-capable) and
// with MSS-sized segments; the data arrive intact both ways, and the
// throughput of each is stated.
func TestTCPStackTSO(t *testing.T) {
	requireLab(t, "curl (curl)")
	const size = 64 << 20
	var rates []string
	for _, tso := range []bool{false, true} {
		t.Run(fmt.Sprintf("tso=%v", tso), func(t *testing.T) {
			st, netns := tsoStack(t, tso)
			serveBlobs(t, st)
			start := time.Now()
			out := mustNS(t, 120*time.Second, netns, "sh", "-c",
				fmt.Sprintf("curl -sS --max-time 100 'http://10.198.0.2/blob?size=%d&seed=5' | sha256sum", size))
			d := time.Since(start)
			if got, want := strings.Fields(out)[0], blobSHA256(size, 5); got != want {
				t.Fatalf("curl: sha256 %s, want %s\n%s", got, want, out)
			}
			sent := tcpCounter(st, "tso_sent")
			if tso != (sent > 0) {
				t.Fatalf("tso %v: %d super-packets sent", tso, sent)
			}
			rates = append(rates, fmt.Sprintf("tso=%v: %.0f MB/s (%d super-packets)", tso, float64(size)/d.Seconds()/1e6, sent))
			t.Logf("64 MB intact in %v (%s)", d, rates[len(rates)-1])
		})
	}
	t.Logf("curl from our server over TUN with offloads: %s", strings.Join(rates, ", "))
}
