//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proof runs only without -race (as pipeline/alloc_test.go).

package arp_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestForwardingThroughARPZeroAllocs: once ARP has resolved the next hop
// (REACHABLE, learnt from a reply, not configured), forwarding allocates
// nothing per packet: mallocs counted over 12,800 packets must be 0.
func TestForwardingThroughARPZeroAllocs(t *testing.T) {
	for _, size := range []int{46, 1500} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			g := newRig(t, "network.arp", "")
			a, b := g.r.Link(t, "a"), g.r.Link(t, "b")
			pkt := pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, make([]byte, size-28)))
			// Resolve 10.0.2.2 through ARP: the first packet waits for
			// the reply.
			a.InjectFrames([][]byte{pkt})
			if req := g.read("b"); len(req) != 1 || wire.Ethernet(req[0]).Type() != wire.EtherTypeARP {
				t.Fatalf("no ARP request (%d frames)", len(req))
			}
			b.InjectFrames([][]byte{arpFrame(macRB, macB, wire.ARPFields{
				Op: wire.ARPReply, SenderMAC: macB, SenderIP: ip4("10.0.2.2"), TargetMAC: macRB, TargetIP: ip4("10.0.2.1"),
			})})
			if out := g.read("b"); len(out) != 1 {
				t.Fatalf("the queued packet did not leave (%d frames)", len(out))
			}
			if e := g.neighbor("b", "10.0.2.2"); e.State != pipeline.NeighborReachable {
				t.Fatalf("entry %+v", e)
			}

			pt.ForwardZeroAllocs(t, g.r, a, b, pkt, func(d []byte) error {
				if eth := wire.Ethernet(d); eth.Dst() != macB || wire.IPv4(eth.Payload()).TTL() != 63 {
					return errors.New("not forwarded to B's MAC with TTL 63")
				}
				return nil
			}, nil)
		})
	}
}
