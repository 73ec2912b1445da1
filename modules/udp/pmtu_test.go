package udp_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// A connected UDP socket and path MTU discovery, as with Linux's default
// IP_PMTUDISC_WANT: its datagram that fits the first link leaves with DF;
// the router before a smaller link answers fragmentation needed; the
// socket's next read reports EMSGSIZE (the datagram was lost) and the
// next datagram of that size goes without DF, fragmented to the learnt
// path MTU, and arrives.
func TestPathMTUConnectedUDP(t *testing.T) {
	h := pt.NewNode(t, "h", `
name: h
modules: [network.ipv4, transport.udp]
links:
  - {name: eth0, module: link.channel, mtu: 1500, addresses: [10.0.1.2/24]}
routes:
  - {to: default, via: 10.0.1.1, link: eth0}
`, pipeline.Options{})
	r := pt.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, mtu: 1500, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1000, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, pipeline.Options{})
	far := pt.NewNode(t, "far", `
name: far
modules: [network.ipv4, transport.udp]
links:
  - {name: eth0, module: link.channel, mtu: 1000, addresses: [10.0.2.2/24]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`, pipeline.Options{})
	pt.Connect(t, h, "eth0", r, "a")
	pt.Connect(t, r, "b", far, "eth0")
	srv := listen(t, far, "10.0.2.2:9000")
	c, err := udp.Dial(h.Stack, "udp4", "", "10.0.2.2:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := make([]byte, 1400)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	if _, err := c.Read(buf); !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("read after the datagram met the smaller link: %v, want EMSGSIZE (%s | %s)", err, h.DumpCounters(), r.DumpCounters())
	}
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, _, err := srv.ReadFromUDPAddrPort(buf); err != nil || k != len(big) {
		t.Fatalf("far read %d: %v (%s)", k, err, h.DumpCounters())
	}
	h.WantCounters(t, "ipv4", map[string]uint64{"pmtu_updates": 1, "frag_ok": 1})
}
