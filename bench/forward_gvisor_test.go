package bench

// gVisor's half of the IPv4 forwarding benchmark (scenario in scenario_test.go).

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gvisorRouter is a gVisor stack set up as a two-NIC IPv4 router.
type gvisorRouter struct {
	s       *stack.Stack
	in, out *channel.Endpoint // raw channel endpoints of nic 1 and nic 2
	eth     bool
	inProto tcpip.NetworkProtocolNumber
}

func newGVisorRouter(tb testing.TB, eth bool) *gvisorRouter {
	return newGVisorRouterWith(tb, eth, nil)
}

// newGVisorRouterWith is newGVisorRouter with transport protocols (the
// filter benchmarks need UDP's: gVisor parses a transport header only for a
// protocol the stack has, and its UDP matcher reads that header).
func newGVisorRouterWith(tb testing.TB, eth bool, transports []stack.TransportProtocolFactory) *gvisorRouter {
	tb.Helper()
	protos := []stack.NetworkProtocolFactory{ipv4.NewProtocol}
	if eth {
		// Ethernet NICs are CapabilityResolutionRequired: the IPv4 link
		// address resolver (and thus the neighbor table that
		// AddStaticNeighbor fills) is provided by the ARP protocol. Without
		// it AddStaticNeighbor returns ErrNotSupported and frames would go
		// out with an all-zero destination MAC.
		protos = append(protos, arp.NewProtocol)
	}
	s := stack.New(stack.Options{NetworkProtocols: protos, TransportProtocols: transports})
	tb.Cleanup(func() {
		s.Close()
		s.Wait()
	})

	r := &gvisorRouter{s: s, eth: eth, inProto: header.IPv4ProtocolNumber}
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
		addr uint32
	}{{1, r.in, nic1IP}, {2, r.out, nic2IP}}
	for _, n := range nics {
		var linkEP stack.LinkEndpoint = n.ep
		if eth {
			linkEP = ethernet.New(n.ep)
		}
		// Named as pipestack's links, for -i/-o rules (filter_mixed_test.go).
		if err := s.CreateNICWithOptions(n.id, linkEP, stack.NICOptions{Name: map[tcpip.NICID]string{1: "a", 2: "b"}[n.id]}); err != nil {
			tb.Fatalf("CreateNIC(%d): %s", n.id, err)
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip4(n.addr)), PrefixLen: 24},
		}
		if err := s.AddProtocolAddress(n.id, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress(%d, %v): %s", n.id, pa, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip4(nic1IP)), PrefixLen: 24}.Subnet(), NIC: 1},
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip4(nic2IP)), PrefixLen: 24}.Subnet(), NIC: 2},
		// The many-flow destinations (flows_scenario_test.go).
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip4(beyond4)), PrefixLen: beyond4Bits}.Subnet(),
			Gateway: tcpip.AddrFrom4(ip4(dstIP)), NIC: 2},
	})
	if err := s.SetForwardingDefaultAndAllNICs(ipv4.ProtocolNumber, true); err != nil {
		tb.Fatalf("SetForwardingDefaultAndAllNICs: %s", err)
	}
	if eth {
		if err := s.AddStaticNeighbor(2, ipv4.ProtocolNumber, tcpip.AddrFrom4(ip4(dstIP)), tcpip.LinkAddress(receiverMAC[:])); err != nil {
			tb.Fatalf("AddStaticNeighbor: %s", err)
		}
	}
	return r
}

// inject copies wire (an IP packet or an Ethernet frame) into a fresh pooled
// buffer, as a real link driver would, and hands it to nic 1.
func (r *gvisorRouter) inject(wire []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(wire)})
	// For eth the protocol argument is ignored: the ethernet endpoint
	// dispatches on the EtherType of the frame.
	r.in.InjectInbound(r.inProto, pkt)
	pkt.DecRef()
}

// drain reads exactly len(want) packets from nic 2, checks packet i against
// want[i], and releases it.
func (r *gvisorRouter) drain(tb testing.TB, want [][]byte, scratch []byte) {
	n := len(want)
	for i := 0; i < n; i++ {
		pkt := r.out.Read()
		if pkt == nil {
			tb.Fatalf("lost packet: got %d of %d forwarded packets in batch", i, n)
		}
		got := gatherPacket(pkt, scratch)
		if r.eth {
			checkEthHeader(tb, got, receiverMAC, nic2MAC)
			got = got[ethHeaderLen:]
		}
		checkForwarded(tb, got, want[i])
		pkt.DecRef()
	}
	if pkt := r.out.Read(); pkt != nil {
		pkt.DecRef()
		tb.Fatalf("unexpected extra packet on nic 2")
	}
}

// gatherPacket copies the whole outbound packet (link header included, if
// any) into scratch without allocating, and returns the filled prefix.
func gatherPacket(pkt *stack.PacketBuffer, scratch []byte) []byte {
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(scratch[n:], b[off:])
		off = 0
	}
	return scratch[:n]
}

func BenchmarkForwardGVisor(b *testing.B) {
	for _, framing := range []string{"ip", "eth"} {
		for _, size := range packetSizes {
			for _, flows := range flowCounts {
				b.Run(flowName(framing, size, flows), func(b *testing.B) {
					benchForwardGVisor(b, framing == "eth", size, flows)
				})
			}
		}
	}
}

func benchForwardGVisor(b *testing.B, eth bool, size, flows int) {
	r := newGVisorRouter(b, eth)
	fs := newFlowSet(flows, func(i int) ([]byte, []byte) {
		ip := flowPacket4(size, i, flows)
		if eth {
			return ip, buildEthFrame(nic1MAC, senderMAC, ip)
		}
		return ip, ip
	})
	runForwardGVisor(b, r, fs, size, r.drain)
}

// runForwardGVisor is the measured loop of gVisor's forwarding benchmarks
// (IPv4 and IPv6), the twin of runForward: batches of up to 64 frames, the
// flows of fs in round robin, each injected through a fresh packet buffer,
// then drained and checked; a warm-up pass over every flow first.
func runForwardGVisor(b *testing.B, r *gvisorRouter, fs *flowSet, size int, drain func(testing.TB, [][]byte, []byte)) {
	scratch := make([]byte, size+ethHeaderLen+64)
	pass := func(n int) {
		wire, want := fs.batch(n)
		for _, w := range wire {
			r.inject(w)
		}
		drain(b, want, scratch)
	}
	// Warm up (pools, neighbor/route state) and verify outside the timer.
	for range fs.warmBatches() {
		pass(batchSize)
	}
	fs.next = 0

	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batchSize, b.N-done)
		pass(n)
		done += n
	}
	b.StopTimer()
	reportRates(b, cpu0)
}
