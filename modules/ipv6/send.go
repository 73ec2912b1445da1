package ipv6

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
)

// Send originates one IPv6 packet from stack s: payload is the upper-layer
// message (an ICMPv6 echo, a UDP datagram …) of protocol proto, whose
// checksum Send fills in for ICMPv6 (the pseudo-header depends on the
// source address it picks). It takes the normal local output path: route
// (configured or learnt), the source address of the outgoing link for dst's
// scope (SelectSource6), the IPv6 header, fragmentation to the path MTU,
// the Output and Postrouting hooks, neighbor resolution and the link.
// Link-local and multicast destinations need a link: use SendVia.
func Send(s *pipeline.Stack, dst netip.Addr, proto pipeline.TransportProtocolNumber, payload []byte) error {
	return SendVia(s, "", dst, proto, payload)
}

// SendVia is Send through the link of this name (for link-local and
// multicast destinations; "" follows the routes).
func SendVia(s *pipeline.Stack, link string, dst netip.Addr, proto pipeline.TransportProtocolNumber, payload []byte) error {
	if !dst.Is6() || dst.Is4In6() {
		return fmt.Errorf("%s is not an IPv6 address", dst)
	}
	if len(payload) > 0xffff {
		return errors.New("payload too large")
	}
	var via pipeline.NICID
	if link != "" {
		n, ok := s.NIC(link)
		if !ok {
			return fmt.Errorf("no link %s", link)
		}
		via = n.ID()
	}
	var err error
	ran := s.Do(func(b *pipeline.Batch) {
		to := dst.As16()
		var nic pipeline.NetworkInterface
		var nh netip.Addr
		ok := false
		if via != 0 {
			nic, ok = b.Gen.NIC(via)
			nh = dst
			if r := b.Gen.LookupRoute6(to); ok && r != nil && r.NIC == via && !isLinkLocal(&to) && !isMulticast(&to) {
				nh = r.NextHop(dst)
			}
		} else if isLinkLocal(&to) || isMulticast(&to) {
			err = fmt.Errorf("%s needs a link: use SendVia", dst)
			return
		} else if r := b.Gen.LookupOutput6(to); r != nil { // ours: the loopback NIC
			nic, ok = b.Gen.NIC(r.NIC)
			nh = r.NextHop(dst)
		}
		if !ok {
			err = fmt.Errorf("no route to %s", dst)
			return
		}
		e, found := b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv6ProtocolNumber).(*endpoint)
		if !found {
			err = fmt.Errorf("link %s runs no IPv6", nic.Name())
			return
		}
		src, found := nic.SourceAddress(dst)
		if !found {
			err = fmt.Errorf("no usable IPv6 source address on link %s for %s", nic.Name(), dst)
			return
		}
		pkt := s.Pool().Get(len(payload))
		body, _ := pkt.Append(len(payload))
		copy(body, payload)
		if proto == pipeline.ICMPv6ProtocolNumber && len(body) >= 4 {
			setICMPv6Checksum(body, src.As16(), to)
		}
		pkt.SetTransportHeader()
		ri := pipeline.RouteInfo{NIC: nic.ID(), LocalAddr: src, RemoteAddr: dst, NextHop: nh, MTU: nic.MTU()}
		e.WritePackets(b, ri, pipeline.NetworkHeaderParams{Protocol: proto}, []*pipeline.Packet{pkt})
	})
	if !ran {
		return errors.New("the stack runs no pipeline")
	}
	return err
}
