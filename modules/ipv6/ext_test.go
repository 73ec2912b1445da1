package ipv6_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// ipHost is a host on an IP-only link (no NDP, no DAD) that collects the
// UDP it receives; its link MTU is 1500.
type ipHost struct {
	h     *pt.Node
	l     *channel.Endpoint
	udp   *pt.Collector
	clock *pt.ManualClock
}

func newIPHost(t *testing.T, extra string) *ipHost {
	t.Helper()
	name := pt.UniqueName(t)
	clock := pt.NewManualClock()
	h := pt.NewNode(t, "host", `
name: host
modules: [{module: network.ipv6`+extra+`}, {module: transport.collect, protocol: 17, name: "`+name+`"}]
links:
  - {name: eth0, module: link.channel, mtu: 1500, addresses: ["2001:db8:1::2/64"]}
routes:
  - {to: default6, via: "2001:db8:1::1", link: eth0}
`, pipeline.Options{Clock: clock})
	return &ipHost{h: h, l: h.Link(t, "eth0"), udp: pt.Collected(name), clock: clock}
}

// withExt inserts extension headers (already encoded, chained by the
// caller) between the fixed header and the payload of pkt; first is the
// first header's type.
func withExt(pkt []byte, first uint8, ext []byte) []byte {
	h := wire.IPv6(pkt)
	out := make([]byte, 0, len(pkt)+len(ext))
	out = append(out, pkt[:wire.IPv6HeaderSize]...)
	out = append(out, ext...)
	out = append(out, h.Payload()...)
	wire.IPv6(out).SetNextHeader(first)
	wire.IPv6(out).SetPayloadLength(uint16(len(out) - wire.IPv6HeaderSize))
	return out
}

// optHeader encodes a Hop-by-Hop or Destination Options header.
func optHeader(next uint8, opts ...byte) []byte {
	b := make([]byte, wire.IPv6OptionsSize(len(opts)))
	wire.IPv6Options(b).Encode(&wire.IPv6OptionsFields{NextHeader: next, Options: opts})
	return b
}

// Unknown options act by their two high-order bits (RFC 8200 §4.2), in
// Hop-by-Hop headers (every node, routers included) and Destination
// Options headers (the destination).
func TestUnknownOptions(t *testing.T) {
	h := newIPHost(t, "")
	udp := udp6("2001:db8:9::1", "2001:db8:1::2", 1, 2, 64, []byte("options"))
	mcast := udp6("2001:db8:9::1", "ff02::1", 1, 2, 64, []byte("options"))
	for _, tc := range []struct {
		name      string
		pkt       []byte
		hdr       uint8
		opt       uint8
		delivered bool
		icmp      bool
	}{
		{"skip/hbh", udp, wire.ProtocolHopByHop, 0x1e, true, false},
		{"skip/dest", udp, wire.ProtocolDestOptions, 0x1e, true, false},
		{"discard", udp, wire.ProtocolDestOptions, 0x5e, false, false},
		{"icmp", udp, wire.ProtocolDestOptions, 0x9e, false, true},
		{"icmp/multicast", mcast, wire.ProtocolDestOptions, 0x9e, false, true},
		{"icmp-unicast", udp, wire.ProtocolHopByHop, 0xde, false, true},
		{"icmp-unicast/multicast", mcast, wire.ProtocolHopByHop, 0xde, false, false},
		{"router alert", udp, wire.ProtocolHopByHop, wire.IPv6OptionRouterAlert, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := []byte{tc.opt, 2, 0, 0}
			pkt := withExt(tc.pkt, tc.hdr, optHeader(wire.ProtocolUDP, opt...))
			before := h.udp.Len()
			h.l.InjectFrames([][]byte{pkt})
			if got := h.udp.Len() - before; (got == 1) != tc.delivered {
				t.Errorf("delivered %d (%s)", got, h.h.DumpCounters())
			}
			for h.udp.Len() > 0 {
				h.udp.Wait(t, time.Second)
			}
			out := onlyICMP6(pt.Drain(h.l), false, wire.ICMPv6ParamProblem)
			if (len(out) == 1) != tc.icmp {
				t.Fatalf("%d parameter problems", len(out))
			}
			if tc.icmp {
				m := checkICMP6(t, out[0], "2001:db8:1::2", "2001:db8:9::1", wire.ICMPv6ParamProblem, wire.ICMPv6UnrecognizedOption)
				if m.Pointer() != 42 {
					t.Errorf("pointer %d, want 42 (the option type)", m.Pointer())
				}
			}
		})
	}
}

// A router examines Hop-by-Hop options too; other headers pass untouched.
func TestForwardHopByHop(t *testing.T) {
	r, _ := routerAlone(t, "")
	a, b := r.Link(t, "a"), r.Link(t, "b")
	pkt := udp6("2001:db8:1::2", "2001:db8:2::2", 1, 2, 64, []byte("hbh"))
	a.InjectFrames([][]byte{withExt(pkt, wire.ProtocolHopByHop, optHeader(wire.ProtocolUDP, 0x9e, 2, 0, 0))})
	if len(pt.Drain(b)) != 0 {
		t.Error("forwarded a packet with an option that must be refused")
	}
	if out := onlyICMP6(pt.Drain(a), false, wire.ICMPv6ParamProblem); len(out) != 1 {
		t.Error("no parameter problem from the router")
	}
	ok := withExt(pkt, wire.ProtocolDestOptions, optHeader(wire.ProtocolUDP, 0x9e, 2, 0, 0))
	a.InjectFrames([][]byte{ok})
	out := pt.Drain(b)
	if len(out) != 1 || !bytes.Equal(out[0][8:], ok[8:]) || out[0][7] != 63 {
		t.Error("a destination option was examined by the router, or the packet changed")
	}
}

// Malformed and unsupported chains.
func TestExtensionHeaderErrors(t *testing.T) {
	h := newIPHost(t, "")
	udp := udp6("2001:db8:9::1", "2001:db8:1::2", 1, 2, 64, []byte("ext"))
	param := func(t *testing.T, pkt []byte, code uint8, ptr uint32) {
		t.Helper()
		h.l.InjectFrames([][]byte{pkt})
		out := onlyICMP6(pt.Drain(h.l), false, wire.ICMPv6ParamProblem)
		if len(out) != 1 {
			t.Fatalf("%d parameter problems (%s)", len(out), h.h.DumpCounters())
		}
		m := checkICMP6(t, out[0], "2001:db8:1::2", "2001:db8:9::1", wire.ICMPv6ParamProblem, code)
		if m.Pointer() != ptr {
			t.Errorf("pointer %d, want %d", m.Pointer(), ptr)
		}
	}
	t.Run("routing header with segments left", func(t *testing.T) {
		rh := make([]byte, 24)
		rh[0], rh[1], rh[2], rh[3] = wire.ProtocolUDP, 2, wire.IPv6RoutingType0, 1
		param(t, withExt(udp, wire.ProtocolRouting, rh), wire.ICMPv6ErroneousHeader, 42)
		rh[3] = 0 // segments left 0: ignored
		before := h.udp.Len()
		h.l.InjectFrames([][]byte{withExt(udp, wire.ProtocolRouting, rh)})
		if h.udp.Len() != before+1 {
			t.Error("routing header with no segments left not ignored")
		}
	})
	t.Run("unknown next header", func(t *testing.T) {
		param(t, ip6("2001:db8:9::1", "2001:db8:1::2", 253, 64, make([]byte, 8)), wire.ICMPv6UnrecognizedNextHeader, 6)
		param(t, withExt(ip6("2001:db8:9::1", "2001:db8:1::2", 253, 64, make([]byte, 8)), wire.ProtocolDestOptions, optHeader(253)), wire.ICMPv6UnrecognizedNextHeader, 40)
	})
	t.Run("hop-by-hop not first", func(t *testing.T) {
		ext := append(optHeader(wire.ProtocolHopByHop), optHeader(wire.ProtocolUDP)...)
		param(t, withExt(udp, wire.ProtocolDestOptions, ext), wire.ICMPv6UnrecognizedNextHeader, 40)
	})
	t.Run("too many", func(t *testing.T) {
		var ext []byte
		for i := 0; i < 9; i++ {
			next := uint8(wire.ProtocolDestOptions)
			if i == 8 {
				next = wire.ProtocolUDP
			}
			ext = append(ext, optHeader(next)...)
		}
		h.l.InjectFrames([][]byte{withExt(udp, wire.ProtocolDestOptions, ext)})
		if got := h.h.Counter("ipv6", "malformed_too_many_ext_headers"); got != 1 {
			t.Errorf("malformed_too_many_ext_headers %d", got)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		p := withExt(udp, wire.ProtocolDestOptions, optHeader(wire.ProtocolUDP))
		p[41] = 9 // runs past the payload
		h.l.InjectFrames([][]byte{p})
		if got := h.h.Counter("ipv6", "malformed_ext_header_truncated"); got != 1 {
			t.Errorf("malformed_ext_header_truncated %d", got)
		}
	})
	t.Run("bad payload length", func(t *testing.T) {
		p := append([]byte(nil), udp...)
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)))
		h.l.InjectFrames([][]byte{p})
		if got := h.h.Counter("ipv6", "malformed_bad_payload_length"); got != 1 {
			t.Errorf("malformed_bad_payload_length %d", got)
		}
	})
}
