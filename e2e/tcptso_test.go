package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// tsoStack is a stack on a TUN link with virtio-net offloads into a new
// namespace (10.198.0.1 there, 10.198.0.2 ours), transport.tcp with tso.
func tsoStack(t *testing.T, tso bool) (*pipeline.Stack, string) {
	t.Helper()
	return tunStack{tag: "ts", dev: "tso", name: "tcp-tso", subnet: "10.198.0",
		modules: fmt.Sprintf("network.ipv4, {module: transport.tcp, tso: %v}", tso), offload: true}.start(t)
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
