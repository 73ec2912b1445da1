package ipv6_test

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// fragWithUnfrag builds one fragment of pkt (no extension headers) at off
// whose unfragmentable part carries a Destination Options header of
// doLen bytes (0: none) before the Fragment header.
func fragWithUnfrag(pkt []byte, id uint32, off int, data []byte, more bool, doLen int) []byte {
	h := wire.IPv6(pkt)
	f := make([]byte, wire.IPv6HeaderSize+doLen+wire.IPv6FragmentSize+len(data))
	copy(f, pkt[:wire.IPv6HeaderSize])
	at := wire.IPv6HeaderSize
	if doLen > 0 {
		wire.IPv6(f).SetNextHeader(wire.ProtocolDestOptions)
		f[at] = wire.ProtocolFragment
		f[at+1] = uint8(doLen/8 - 1)
		f[at+2], f[at+3] = 1, uint8(doLen-4) // one PadN option fills it
		at += doLen
	} else {
		wire.IPv6(f).SetNextHeader(wire.ProtocolFragment)
	}
	wire.IPv6(f).SetPayloadLength(uint16(len(f) - wire.IPv6HeaderSize))
	wire.IPv6Fragment(f[at:]).Encode(&wire.IPv6FragmentFields{NextHeader: h.NextHeader(), FragmentOffset: uint16(off), More: more, ID: id})
	copy(f[at+wire.IPv6FragmentSize:], data)
	return f
}

// maxFragments6 are the fragments of a datagram whose fragmentable part
// ends at 65535 bytes (the last one at offset 65528), the first one with a
// doLen-byte Destination Options header in its unfragmentable part.
func maxFragments6(id uint32, doLen int) [][]byte {
	const end = 0xffff
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(2000, 5))
	data := make([]byte, end)
	copy(data, wire.IPv6(orig).Payload())
	var out [][]byte
	for off := 0; off < end; off += 1448 {
		n := min(1448, end-off)
		d := 0
		if off == 0 {
			d = doLen
		}
		out = append(out, fragWithUnfrag(orig, id, off, data[off:off+n], off+n < end, d))
	}
	return out
}

// The datagram is built with the first fragment's unfragmentable part: a
// first fragment with a 1000-byte Destination Options header and plain
// fragments up to offset 65528 would make a 66575-byte packet (the pool
// panicked on it, killing the process). It is dropped as too big, every
// fragment counted in the link's RX dropped. With a 0-byte unfragmentable
// extension, the 65535-byte payload is delivered.
func TestReassemblyFirstFragmentUnfragmentableTooBig(t *testing.T) {
	h := newIPHost(t, "")
	frags := maxFragments6(70, 1000)
	for _, f := range frags {
		h.l.InjectFrames([][]byte{f})
	}
	if h.udp.Len() != 0 {
		t.Fatal("delivered a datagram past a 65535-byte payload")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_too_big": 1, "reasm_ok": 0, "reasm_fragments": uint64(len(frags))})
	if got := rxDropped6(t, h, "eth0"); got != uint64(len(frags)) {
		t.Errorf("RX dropped %d, want %d (every fragment)", got, len(frags))
	}

	h.l.InjectFrames(maxFragments6(71, 0))
	if h.udp.Len() != 1 {
		t.Fatal("the 65535-byte datagram was not delivered")
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"reasm_too_big": 1, "reasm_ok": 1})
}

func rxDropped6(t *testing.T, h *ipHost, link string) uint64 {
	t.Helper()
	nic, ok := h.h.Stack.NIC(link)
	if !ok {
		t.Fatalf("no link %s", link)
	}
	return nic.Stats.RxDropped.Load()
}

// Every fragment reassembly refuses or discards counts in its link's RX
// dropped as well as under its reason.
func TestReassemblyDropsCountInRxDropped(t *testing.T) {
	orig := udp6("2001:db8:9::1", "2001:db8:1::2", 1000, 2000, 64, pattern(3000, 6))
	pl := wire.IPv6(orig).Payload()
	fr := frag6(orig, 50, 1000, 1000)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		wait   time.Duration // then advance the clock
		reason string
		count  uint64 // of reason
		drops  uint64 // RX dropped
	}{
		{"duplicate", [][]byte{fr[0], fr[0], fr[1]}, 0, "reasm_duplicate", 1, 1},
		{"malformed", [][]byte{fragAt(orig, 50, 0, pl[:1001], true)}, 0, "reasm_malformed", 1, 1},
		{"too big", [][]byte{fragAt(orig, 50, 65528, pl[:100], false)}, 0, "reasm_too_big", 1, 1},
		{"timed out", [][]byte{fr[0], fr[2]}, 61 * time.Second, "reasm_timeout", 1, 2},
		{"overlap", [][]byte{fr[0], fr[2], fragAt(orig, 50, 992, pl[992:2000], true)}, 0, "reasm_overlap", 1, 3},
		{"inconsistent", [][]byte{fr[2], fragAt(orig, 50, 1000, pl[1000:1504], false)}, 0, "reasm_inconsistent", 1, 2},
		{"after overlap", [][]byte{fr[0], fragAt(orig, 50, 992, pl[992:2000], true), fr[2]}, 0, "reasm_discarded", 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newIPHost(t, "")
			for _, f := range tc.frames {
				h.l.InjectFrames([][]byte{f})
			}
			if tc.wait > 0 {
				h.clock.Advance(tc.wait)
			}
			if h.udp.Len() != 0 {
				t.Fatal("delivered a datagram")
			}
			if got := h.h.Counter("ipv6", tc.reason); got != tc.count {
				t.Errorf("%s %d, want %d", tc.reason, got, tc.count)
			}
			if got := rxDropped6(t, h, "eth0"); got != tc.drops {
				t.Errorf("RX dropped %d, want %d (%s)", got, tc.drops, h.h.DumpCounters())
			}
		})
	}
}

// RFC 7112 (RFC 8200 §4.5): a first fragment without the whole header
// chain through the upper-layer header is dropped with Parameter Problem
// code 3 (pointer 0), not held for reassembly — as Linux does.
func TestFirstFragmentIncompleteHeaderChain(t *testing.T) {
	const src, dst = "2001:db8:9::1", "2001:db8:1::2"
	tcp := ip6(src, dst, wire.ProtocolTCP, 64, pattern(100, 7))
	udp := udp6(src, dst, 1000, 2000, 64, pattern(100, 8))
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		// 8 of TCP's 20 bytes.
		{"tcp header cut", fragAt(tcp, 80, 0, wire.IPv6(tcp).Payload()[:8], true)},
		// A complete Destination Options header after the Fragment
		// header, naming UDP, and nothing after it.
		{"nothing after destination options", func() []byte {
			f := fragAt(udp, 81, 0, optHeader(wire.ProtocolUDP), true)
			f[wire.IPv6HeaderSize] = wire.ProtocolDestOptions // the Fragment header's Next Header
			return f
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newIPHost(t, "")
			h.l.InjectFrames([][]byte{tc.frame})
			out := noNDP(pt.Drain(h.l))
			if len(out) != 1 {
				t.Fatalf("%d packets sent, want one Parameter Problem", len(out))
			}
			m := checkICMP6(t, out[0], dst, src, wire.ICMPv6ParamProblem, wire.ICMPv6IncompleteHeaderChain)
			if p := m.Pointer(); p != 0 {
				t.Errorf("pointer %d, want 0", p)
			}
			h.h.WantCounters(t, "ipv6", map[string]uint64{"malformed_incomplete_header_chain": 1, "icmp_param_problem_out": 1})
			if got := rxDropped6(t, h, "eth0"); got != 1 {
				t.Errorf("RX dropped %d, want 1", got)
			}
			if b, q := pt.ReassemblyMemory(t, h.h.Stack, "network.ipv6/reassembly"); b != 0 || q != 0 {
				t.Errorf("the fragment is held (%d bytes in %d queues)", b, q)
			}
		})
	}
	// A first fragment with the whole UDP header is held.
	h := newIPHost(t, "")
	h.l.InjectFrames([][]byte{fragAt(udp, 82, 0, wire.IPv6(udp).Payload()[:8], true)})
	if out := noNDP(pt.Drain(h.l)); len(out) != 0 {
		t.Errorf("%d packets sent about a complete first fragment", len(out))
	}
	h.h.WantCounters(t, "ipv6", map[string]uint64{"malformed_incomplete_header_chain": 0})
}
