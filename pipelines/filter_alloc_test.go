//go:build !race

package pipelines_test

import (
	"errors"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestFilterForwardZeroAllocs: forwarding through the raw, mangle and
// filter tables with rules of most matchers and targets, jumps and
// counters, allocates nothing per packet. (The limit's rule has a second
// one behind it: forwarding faster than its 10^6 packets/s empties its
// bucket, and the packets over the limit still go to accept_it.)
func TestFilterForwardZeroAllocs(t *testing.T) {
	r := pt.NewNode(t, "router", `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  raw:
    prerouting:
      rules: ["-p tcp -j DROP", "-j NOTRACK"]
  mangle:
    forward:
      rules:
        - "-p udp -m multiport --dports 1,2,3:10,2000 -j MARK --set-mark 0x7"
        - "-m ttl --ttl-gt 200 -j TTL --ttl-set 64"
  filter:
    forward:
      policy: drop
      rules:
        - "-s 192.0.2.0/24 -j DROP"
        - "-m mark ! --mark 0x7 -j DROP"
        - "-i a -o b+ -j from_a"
    from_a:
      rules:
        - "-p icmp --icmp-type echo-request -j ACCEPT"
        - "-m length --length 0:20 -j DROP"
        - "-m addrtype --dst-type LOCAL -j DROP"
        - "-m pkttype --pkt-type broadcast -j DROP"
        - "-m iprange --src-range 10.0.9.1-10.0.9.9 -j DROP"
        - "-m comment --comment counted"
        - "-p udp --sport 1000 --dport 1:65535 -m limit --limit 1000000/second --limit-burst 10000 -g accept_it"
        - "-p udp -g accept_it"
    accept_it:
      rules: ["-j ACCEPT"]
`, pipeline.Options{})
	a, b := r.Link(t, "a"), r.Link(t, "b")
	pkt := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, 100))
	pt.ForwardZeroAllocs(t, r, a, b, pkt, func(d []byte) error {
		if wire.IPv4(d).TTL() != 63 {
			return errors.New("TTL not decremented")
		}
		return nil
	}, nil)
	if l := ruleListing(t, r, "accept_it", 1); l.Packets != 300*64 {
		t.Errorf("accept_it counted %d, want %d", l.Packets, 300*64)
	}
}
