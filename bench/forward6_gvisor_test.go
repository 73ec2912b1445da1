package bench

// gVisor's half of the IPv6 forwarding benchmark (scenario in
// forward6_scenario_test.go).

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// newGVisorRouter6 is a gVisor stack set up as a two-NIC IPv6 router:
// ipv6.NewProtocol (NDP is part of it, so the eth/* static neighbor needs
// no other protocol; DAD is off in its default options), forwarding on for
// IPv6 on every NIC.
func newGVisorRouter6(tb testing.TB, eth bool) *gvisorRouter {
	tb.Helper()
	s := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv6.NewProtocol}})
	tb.Cleanup(func() {
		s.Close()
		s.Wait()
	})
	r := &gvisorRouter{s: s, eth: eth, inProto: header.IPv6ProtocolNumber}
	const ipMTU = 1500
	if eth {
		r.in = channel.New(queueSize, ipMTU+ethHeaderLen, tcpip.LinkAddress(nic1MAC[:]))
		r.out = channel.New(queueSize, ipMTU+ethHeaderLen, tcpip.LinkAddress(nic2MAC[:]))
	} else {
		r.in = channel.New(queueSize, ipMTU, "")
		r.out = channel.New(queueSize, ipMTU, "")
	}
	nics := []struct {
		id   tcpip.NICID
		ep   *channel.Endpoint
		addr [16]byte
	}{{1, r.in, nic16}, {2, r.out, nic26}}
	for _, n := range nics {
		var linkEP stack.LinkEndpoint = n.ep
		if eth {
			linkEP = ethernet.New(n.ep)
		}
		if err := s.CreateNIC(n.id, linkEP); err != nil {
			tb.Fatalf("CreateNIC(%d): %s", n.id, err)
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          ipv6.ProtocolNumber,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(n.addr), PrefixLen: 64},
		}
		if err := s.AddProtocolAddress(n.id, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress(%d, %v): %s", n.id, pa, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(nic16), PrefixLen: 64}.Subnet(), NIC: 1},
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(nic26), PrefixLen: 64}.Subnet(), NIC: 2},
		// The many-flow destinations (flows_scenario_test.go).
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(beyond6), PrefixLen: beyond6Bits}.Subnet(),
			Gateway: tcpip.AddrFrom16(dst6), NIC: 2},
	})
	if err := s.SetForwardingDefaultAndAllNICs(ipv6.ProtocolNumber, true); err != nil {
		tb.Fatalf("SetForwardingDefaultAndAllNICs: %s", err)
	}
	if eth {
		if err := s.AddStaticNeighbor(2, ipv6.ProtocolNumber, tcpip.AddrFrom16(dst6), tcpip.LinkAddress(receiverMAC[:])); err != nil {
			tb.Fatalf("AddStaticNeighbor: %s", err)
		}
	}
	// Whatever the stack sent on its own when its NICs came up.
	for p := r.out.Read(); p != nil; p = r.out.Read() {
		p.DecRef()
	}
	return r
}

// drain6 reads exactly len(want) packets from nic 2, checks packet i
// against want[i], and releases it.
func (r *gvisorRouter) drain6(tb testing.TB, want [][]byte, scratch []byte) {
	n := len(want)
	for i := 0; i < n; i++ {
		pkt := r.out.Read()
		if pkt == nil {
			tb.Fatalf("lost packet: got %d of %d forwarded packets in batch", i, n)
		}
		got := gatherPacket(pkt, scratch)
		if r.eth {
			checkEthHeader6(tb, got, receiverMAC, nic2MAC)
			got = got[ethHeaderLen:]
		}
		checkForwarded6(tb, got, want[i])
		pkt.DecRef()
	}
	if pkt := r.out.Read(); pkt != nil {
		pkt.DecRef()
		tb.Fatalf("unexpected extra packet on nic 2")
	}
}

func BenchmarkForward6GVisor(b *testing.B) {
	for _, framing := range []string{"ip", "eth"} {
		for _, size := range packetSizes6 {
			for _, flows := range flowCounts {
				b.Run(flowName(framing, size, flows), func(b *testing.B) {
					benchForward6GVisor(b, framing == "eth", size, flows)
				})
			}
		}
	}
}

func benchForward6GVisor(b *testing.B, eth bool, size, flows int) {
	r := newGVisorRouter6(b, eth)
	fs := newFlowSet(flows, func(i int) ([]byte, []byte) {
		ip := flowPacket6(size, i, flows)
		if eth {
			return ip, buildEthFrame6(nic1MAC, senderMAC, ip)
		}
		return ip, ip
	})
	runForwardGVisor(b, r, fs, size, r.drain6)
}
