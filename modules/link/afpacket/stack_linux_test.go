package afpacket

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/modules/link/sniffer"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// The kernel pings a stack whose link is link.afpacket on the other end of
// its veth: requests come in through the link, replies go out through it.
func TestStackPing(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, mode := range []string{ModeMmsg, ModeRing, ModeBlock} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			run(t, "ip", "-n", l.ns, "addr", "add", "10.77.0.2/24", "dev", "vb")
			run(t, "ip", "-n", l.ns, "neigh", "replace", "10.77.0.1", "lladdr", l.macA.String(), "dev", "vb", "nud", "permanent")
			cfg := strings.NewReplacer("NS", l.ns, "MODE", mode, "MACB", l.macB.String()).Replace(`
name: af
modules: [network.ipv4]
links:
  - name: lan
    module: link.afpacket
    device: va
    netns: NS
    mode: MODE
    addresses: [10.77.0.1/24]
    neighbors: [{ip: 10.77.0.2, mac: "MACB"}]
`)
			n := pipelinetest.NewNode(t, "af", cfg, pipeline.Options{})
			out, err := exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.1").CombinedOutput()
			if err != nil {
				t.Fatalf("ping through link.afpacket: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "3 received") {
				t.Fatalf("ping:\n%s", out)
			}
			ep, _ := n.Stack.Link("lan")
			// The kernel may hand the last reply to ping before the
			// writer has counted it: wait for the counters.
			a := ep.(*Endpoint)
			pipelinetest.Eventually(t, 2*time.Second, func() bool { return a.RxPackets.Load() >= 3 && a.TxPackets.Load() >= 3 },
				"rx %d tx %d, want ≥ 3 each", a.RxPackets.Load(), a.TxPackets.Load())
		})
	}
}

// The same through link.sniffer wrapping link.afpacket: the capture holds
// the requests and the replies, and tshark reads it.
func TestStackPingSniffed(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	l := newLab(t)
	run(t, "ip", "-n", l.ns, "addr", "add", "10.77.0.2/24", "dev", "vb")
	run(t, "ip", "-n", l.ns, "neigh", "replace", "10.77.0.1", "lladdr", l.macA.String(), "dev", "vb", "nud", "permanent")
	file := filepath.Join(t.TempDir(), "lan.pcap")
	cfg := strings.NewReplacer("NS", l.ns, "FILE", file, "MACB", l.macB.String()).Replace(`
name: af
modules: [network.ipv4]
links:
  - name: lan
    module: link.sniffer
    file: FILE
    inner: {module: link.afpacket, device: va, netns: NS}
    addresses: [10.77.0.1/24]
    neighbors: [{ip: 10.77.0.2, mac: "MACB"}]
`)
	n := pipelinetest.NewNode(t, "af", cfg, pipeline.Options{})
	out, err := exec.Command("ip", "netns", "exec", l.ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	ep, _ := n.Stack.Link("lan")
	if _, ok := ep.(*sniffer.Endpoint).Inner().(*Endpoint); !ok {
		t.Fatalf("inner link is a %T", ep.(*sniffer.Endpoint).Inner())
	}
	n.Stack.Close()
	testenv.Tool(t, "tshark", "tshark")
	out, err = exec.Command("tshark", "-r", file, "-Y", "icmp").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	if req, rep := strings.Count(string(out), "Echo (ping) request"), strings.Count(string(out), "Echo (ping) reply"); req != 2 || rep != 2 {
		t.Fatalf("capture has %d requests and %d replies:\n%s", req, rep, out)
	}
}
