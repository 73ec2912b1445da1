package ipv4

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
)

// Send originates one IPv4 packet from stack s: payload is the transport
// message (an ICMP echo, a UDP datagram …) of protocol proto. It takes the
// normal local output path: route lookup, the primary address of the
// outgoing link as source, the IPv4 header, the Output and Postrouting hooks,
// neighbor resolution and the link; to one of the stack's own addresses
// (or 127/8) through the loopback NIC, from that address, received back
// (Prerouting, Input) when the batch flushes. It is what tools and tests use until
// transports give sockets.
func Send(s *pipeline.Stack, dst netip.Addr, proto pipeline.TransportProtocolNumber, payload []byte) error {
	dst = dst.Unmap()
	if !dst.Is4() {
		return fmt.Errorf("%s is not an IPv4 address", dst)
	}
	if len(payload) > pipeline.LargeDataSize-pipeline.DefaultHeadroom {
		return errors.New("payload too large")
	}
	r, ok := s.Route(dst)
	if !ok {
		return fmt.Errorf("no route to %s", dst)
	}
	var err error
	ran := s.Do(func(b *pipeline.Batch) {
		nic, found := b.Gen.NIC(r.NIC)
		ep := b.Gen.NetworkEndpoint(r.NIC, pipeline.IPv4ProtocolNumber)
		if !found || ep == nil {
			err = fmt.Errorf("route to %s leaves through NIC %d, which runs no IPv4", dst, r.NIC)
			return
		}
		src, found := nic.PrimaryAddress(4)
		if nic.NIC().IsLoopback() {
			// To one of our addresses: from it (loopback.go).
			var a netip.Addr
			a, found = nic.SourceAddress(dst)
			src = netip.PrefixFrom(a, 32)
		}
		if !found {
			err = fmt.Errorf("no IPv4 source address on link %s", nic.Name())
			return
		}
		pkt := s.Pool().Get(len(payload) + 64)
		body, _ := pkt.Append(len(payload))
		copy(body, payload)
		ri := pipeline.RouteInfo{NIC: r.NIC, LocalAddr: src.Addr(), RemoteAddr: dst, NextHop: r.NextHop(dst), MTU: nic.MTU()}
		ep.WritePackets(b, ri, pipeline.NetworkHeaderParams{Protocol: proto}, []*pipeline.Packet{pkt})
	})
	if !ran {
		return errors.New("the stack runs no pipeline")
	}
	return err
}
