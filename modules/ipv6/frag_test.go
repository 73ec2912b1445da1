package ipv6_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// frag6 cuts pkt (no extension headers) into fragments whose data sizes
// are given (multiples of 8 but the last; the rest goes in the last).
func frag6(pkt []byte, id uint32, sizes ...int) [][]byte {
	h := wire.IPv6(pkt)
	pl := h.Payload()
	var out [][]byte
	off := 0
	for i := 0; off < len(pl); i++ {
		n := len(pl) - off
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		out = append(out, fragAt(pkt, id, off, pl[off:off+n], off+n < len(pl)))
		off += n
	}
	return out
}

// fragAt builds one fragment of pkt carrying data at offset off.
func fragAt(pkt []byte, id uint32, off int, data []byte, more bool) []byte {
	h := wire.IPv6(pkt)
	f := make([]byte, wire.IPv6HeaderSize+wire.IPv6FragmentSize+len(data))
	copy(f, pkt[:wire.IPv6HeaderSize])
	wire.IPv6(f).SetNextHeader(wire.ProtocolFragment)
	wire.IPv6(f).SetPayloadLength(uint16(len(f) - wire.IPv6HeaderSize))
	wire.IPv6Fragment(f[wire.IPv6HeaderSize:]).Encode(&wire.IPv6FragmentFields{NextHeader: h.NextHeader(), FragmentOffset: uint16(off), More: more, ID: id})
	copy(f[wire.IPv6HeaderSize+wire.IPv6FragmentSize:], data)
	return f
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// Fragments are reassembled in any order; the datagram delivered is the
// original, without its Fragment header.
func TestReassembly(t *testing.T) {
	h := newIPHost(t, "")
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(3000, 1))
	fr := frag6(orig, 77, 1232, 1232)
	h.l.InjectFrames([][]byte{fr[2], fr[0]})
	if h.udp.Len() != 0 {
		t.Fatal("delivered before the last fragment")
	}
	h.l.InjectFrames([][]byte{fr[1]})
	got := h.udp.Wait(t, time.Second)
	if !bytes.Equal(got, orig) {
		t.Fatalf("reassembled %d bytes, want the original %d", len(got), len(orig))
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_fragments": 3, "reasm_ok": 1})
}

// RFC 5722: overlapping fragments drop the whole datagram, fragments that
// come later included.
func TestReassemblyOverlap(t *testing.T) {
	h := newIPHost(t, "")
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(2000, 2))
	pl := wire.IPv6(orig).Payload()
	first := fragAt(orig, 5, 0, pl[:1000], true)
	overlap := fragAt(orig, 5, 992, pl[992:1600], true)
	last := fragAt(orig, 5, 1600, pl[1600:], false)
	h.l.InjectFrames([][]byte{first, overlap})
	h.l.InjectFrames([][]byte{fragAt(orig, 5, 1000, pl[1000:1600], true), last})
	if h.udp.Len() != 0 {
		t.Fatal("delivered a datagram with overlapping fragments")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_overlap": 1, "reasm_discarded": 2, "reasm_ok": 0})
	// A duplicate is not an overlap.
	orig2 := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(1500, 3))
	fr := frag6(orig2, 6, 1024)
	h.l.InjectFrames([][]byte{fr[0], fr[0], fr[1]})
	if got := h.udp.Wait(t, time.Second); !bytes.Equal(got, orig2) {
		t.Error("datagram with a duplicate fragment not reassembled")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_duplicate": 1, "reasm_ok": 1})
}

// An atomic fragment (offset 0, M clear: RFC 6946) is delivered at once,
// outside reassembly.
func TestAtomicFragment(t *testing.T) {
	h := newIPHost(t, "")
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, []byte("atomic"))
	atomic := frag6(orig, 9)[0]
	h.l.InjectFrames([][]byte{atomic})
	got := h.udp.Wait(t, time.Second)
	if !bytes.Equal(got, atomic) {
		t.Errorf("atomic fragment delivered as %x", got)
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"atomic_fragments": 1, "reasm_fragments": 0, "delivered": 1})
}

// A datagram whose fragments do not all come in 60 s is dropped, with Time
// Exceeded (reassembly) to its source when the first fragment came.
func TestReassemblyTimeout(t *testing.T) {
	h := newIPHost(t, "")
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(2000, 4))
	fr := frag6(orig, 11, 1024)
	h.l.InjectFrames([][]byte{fr[0]})
	h.clock.Advance(59 * time.Second)
	if len(noNDP(pt.Drain(h.l))) != 0 {
		t.Fatal("error before the timeout")
	}
	h.clock.Advance(2 * time.Second)
	out := onlyICMP6(pt.Drain(h.l), false, wire.ICMPv6TimeExceeded)
	if len(out) != 1 {
		t.Fatalf("%d time exceeded (%s)", len(out), h.h.DumpCounters())
	}
	m := checkICMP6(t, out[0], "2001:db8:1::2", "2001:db8:9::1", wire.ICMPv6TimeExceeded, wire.ICMPv6ReassemblyTimeout)
	if !bytes.Equal(m[8:], fr[0]) {
		t.Error("the error does not quote the first fragment")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_timeout": 1})
	// A fragment whose length is not a multiple of 8 is refused with a
	// Parameter Problem pointing at the payload length.
	pl := wire.IPv6(orig).Payload()
	h.l.InjectFrames([][]byte{fragAt(orig, 12, 0, pl[:1001], true)})
	out = onlyICMP6(pt.Drain(h.l), false, wire.ICMPv6ParamProblem)
	if len(out) != 1 || wire.ICMPv6(wire.IPv6(out[0]).Payload()).Pointer() != 4 {
		t.Errorf("odd fragment: %d parameter problems", len(out))
	}
}

// Local packets larger than the link MTU leave in fragments; a Packet Too
// Big lowers the path MTU and later packets to that destination fit it.
func TestFragmentationAndPathMTU(t *testing.T) {
	h := newIPHost(t, "")
	dst := netip.MustParseAddr("2001:db8:2::9")
	payload := pattern(3000, 5)
	if err := ipv6.Send(h.h.Stack, dst, pipeline.ICMPv6ProtocolNumber, echoMessage(1, 1, payload)); err != nil {
		t.Fatal(err)
	}
	frags := noNDP(pt.Drain(h.l))
	if len(frags) != 3 {
		t.Fatalf("%d packets for a 3048-byte datagram over MTU 1500, want 3", len(frags))
	}
	var id uint32
	data := []byte{}
	for i, f := range frags {
		if len(f) > 1500 {
			t.Errorf("fragment %d: %d bytes", i, len(f))
		}
		ip := wire.IPv6(f)
		if ip.NextHeader() != wire.ProtocolFragment {
			t.Fatalf("fragment %d: next header %d", i, ip.NextHeader())
		}
		fh := wire.IPv6Fragment(ip.Payload())
		if i == 0 {
			id = fh.ID()
		}
		if fh.ID() != id || int(fh.FragmentOffset()) != len(data) || fh.More() != (i < 2) || fh.NextHeader() != wire.ProtocolICMPv6 {
			t.Errorf("fragment %d: id %d offset %d more %v", i, fh.ID(), fh.FragmentOffset(), fh.More())
		}
		data = append(data, ip.Payload()[8:]...)
	}
	if !bytes.Equal(data[8:], payload) {
		t.Error("fragments do not carry the datagram")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"frag_ok": 1, "frag_created": 3})

	// The path beyond the router carries 1280: Packet Too Big.
	quoted := echo6("2001:db8:1::2", "2001:db8:2::9", 63, 1, 2, pattern(1400, 6))
	ptb := ip6("2001:db8:1::1", "2001:db8:1::2", wire.ProtocolICMPv6, 64,
		icmp6("2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6PacketTooBig, 0, 1280, quoted[:1232]))
	h.l.InjectFrames([][]byte{ptb})
	h.h.WantCounters(t, "ipv6", map[string]uint64{"icmp_packet_too_big_in": 1, "pmtu_updates": 1})
	if err := ipv6.Send(h.h.Stack, dst, pipeline.ICMPv6ProtocolNumber, echoMessage(1, 2, pattern(1400, 6))); err != nil {
		t.Fatal(err)
	}
	out := noNDP(pt.Drain(h.l))
	if len(out) != 2 || len(out[0]) > 1280 || len(out[1]) > 1280 {
		t.Errorf("after Packet Too Big 1280: %d packets (first %d bytes)", len(out), len(out[0]))
	}
	// Other destinations keep the link MTU.
	if err := ipv6.Send(h.h.Stack, netip.MustParseAddr("2001:db8:3::9"), pipeline.ICMPv6ProtocolNumber, echoMessage(1, 3, pattern(1400, 6))); err != nil {
		t.Fatal(err)
	}
	if out := noNDP(pt.Drain(h.l)); len(out) != 1 {
		t.Errorf("another destination: %d packets, want 1", len(out))
	}
	// A Packet Too Big below 1280 does not lower it further.
	ptb = ip6("2001:db8:1::1", "2001:db8:1::2", wire.ProtocolICMPv6, 64,
		icmp6("2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6PacketTooBig, 0, 600, quoted[:1232]))
	h.l.InjectFrames([][]byte{ptb})
	if err := ipv6.Send(h.h.Stack, dst, pipeline.ICMPv6ProtocolNumber, echoMessage(1, 4, pattern(1200, 6))); err != nil {
		t.Fatal(err)
	}
	if out := noNDP(pt.Drain(h.l)); len(out) != 1 {
		t.Errorf("a 1248-byte packet after PTB 600: %d packets, want 1 (the minimum MTU is 1280)", len(out))
	}
	// The path MTU expires after 10 minutes.
	h.clock.Advance(11 * time.Minute)
	if err := ipv6.Send(h.h.Stack, dst, pipeline.ICMPv6ProtocolNumber, echoMessage(1, 5, pattern(1400, 6))); err != nil {
		t.Fatal(err)
	}
	if out := noNDP(pt.Drain(h.l)); len(out) != 1 {
		t.Errorf("after the path MTU expired: %d packets, want 1", len(out))
	}
}
