//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proof runs only without -race.

package ipv6_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestForwarding6ZeroAllocs proves exactly that IPv6 forwarding allocates
// nothing per packet: heap allocations counted over 12,800 forwarded
// packets (after a warm-up that fills the pools) must be 0 — on IP links,
// and on Ethernet links whose next hop is a REACHABLE neighbor entry (the
// router has its link-local addresses and the IsLocal6 overlay in place).
func TestForwarding6ZeroAllocs(t *testing.T) {
	for _, framing := range []string{"ip", "ethernet"} {
		for _, size := range []int{62, 1400} {
			t.Run(fmt.Sprintf("%s/%dB", framing, size), func(t *testing.T) {
				clock := pt.NewManualClock()
				r := pt.NewNode(t, "router", routerConfig(framing, ""), pipeline.Options{Clock: clock})
				a, b := r.Link(t, "a"), r.Link(t, "b")
				clock.Advance(0)
				clock.Advance(1100 * time.Millisecond) // DAD done
				pt.Drain(a)
				pt.Drain(b)
				pkt := udp6("2001:db8:1::2", "2001:db8:2::2", 1000, 2000, 64, make([]byte, size-48))
				eth := framing == "ethernet"
				if eth {
					pkt = frame(mac(macRA), mac(macA), pkt)
					nic, _ := r.Stack.NIC("b")
					nic.Neighbors().Set(pipeline.NeighborEntry{Addr: mustAddr("2001:db8:2::2"), LinkAddr: mac(macB), State: pipeline.NeighborReachable})
				}
				pt.ForwardZeroAllocs(t, r, a, b, pkt, func(d []byte) error {
					if eth {
						d = d[wire.EthernetHeaderSize:]
					}
					if wire.IPv6(d).HopLimit() != 63 {
						return errors.New("hop limit not decremented")
					}
					return nil
				}, func() {
					if !eth {
						return
					}
					if e, _ := r.Stack.Generation().Neighbors(2).Entry(mustAddr("2001:db8:2::2")); e.State != pipeline.NeighborReachable {
						t.Fatalf("neighbor %v, want REACHABLE", e.State)
					}
				})
			})
		}
	}
}
