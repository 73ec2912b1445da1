package conntrack

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// frag6At builds one IPv6 fragment of pkt (a packet without extension
// headers) carrying data at offset off.
func frag6At(pkt []byte, id uint32, off int, data []byte, more bool) []byte {
	f := make([]byte, wire.IPv6HeaderSize+wire.IPv6FragmentSize+len(data))
	copy(f, pkt[:wire.IPv6HeaderSize])
	wire.IPv6(f).SetNextHeader(wire.ProtocolFragment)
	wire.IPv6(f).SetPayloadLength(uint16(len(f) - wire.IPv6HeaderSize))
	wire.IPv6Fragment(f[wire.IPv6HeaderSize:]).Encode(&wire.IPv6FragmentFields{NextHeader: pkt[6], FragmentOffset: uint16(off), More: more, ID: id})
	copy(f[wire.IPv6HeaderSize+wire.IPv6FragmentSize:], data)
	return f
}

// fragments6 cuts pkt into fragments of at most size bytes (header
// included), as a sender with that path MTU does.
func fragments6(pkt []byte, id uint32, size int) [][]byte {
	pl := pkt[wire.IPv6HeaderSize:]
	per := (size - wire.IPv6HeaderSize - wire.IPv6FragmentSize) &^ 7
	var out [][]byte
	for off := 0; off < len(pl); off += per {
		n := min(per, len(pl)-off)
		out = append(out, frag6At(pkt, id, off, pl[off:off+n], off+n < len(pl)))
	}
	return out
}

// reassemble6 puts fragments (of a datagram without other extension
// headers, in order) back together, for the checks.
func reassemble6(t *testing.T, frags [][]byte) []byte {
	t.Helper()
	var data []byte
	for i, f := range frags {
		h := wire.IPv6(f)
		if h.Check() != nil || h.NextHeader() != wire.ProtocolFragment {
			t.Fatalf("fragment %d is not one: % x", i, f[:min(len(f), 48)])
		}
		fh := wire.IPv6Fragment(f[wire.IPv6HeaderSize:])
		if int(fh.FragmentOffset()) != len(data) || fh.More() != (i < len(frags)-1) {
			t.Fatalf("fragment %d: offset %d more %v, want %d", i, fh.FragmentOffset(), fh.More(), len(data))
		}
		data = append(data, f[wire.IPv6HeaderSize+wire.IPv6FragmentSize:]...)
	}
	out := append([]byte(nil), frags[0][:wire.IPv6HeaderSize]...)
	out = append(out, data...)
	wire.IPv6(out).SetNextHeader(frags[0][wire.IPv6HeaderSize])
	wire.IPv6(out).SetPayloadLength(uint16(len(data)))
	return out
}

func udp6(src, dst string, sport, dport uint16, n int) []byte {
	return filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Payload: n}.Bytes()
}

// newRouterRig6 is the stateful router with the MTUs of its links set.
func newRouterRig6(t *testing.T, mtuA, mtuB string) *routerRig {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	cfg := strings.ReplaceAll(statefulRouter, "%MAX%", "64")
	cfg = strings.Replace(cfg, "{name: a, module: link.channel,", "{name: a, module: link.channel, mtu: "+mtuA+",", 1)
	cfg = strings.Replace(cfg, "{name: b, module: link.channel,", "{name: b, module: link.channel, mtu: "+mtuB+",", 1)
	n := pipelinetest.NewNode(t, "r", cfg, pipeline.Options{Clock: clk})
	return &routerRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk, r: &rig{t: t}}
}

func sizes(frags [][]byte) []int {
	var s []int
	for _, f := range frags {
		s = append(s, len(f))
	}
	return s
}

// TestDefrag6BeforeTracking: forwarded IPv6 fragments are reassembled at
// -400, tracked as one datagram with its ports (the stateful policy's
// INVALID rule does not drop the non-first fragments), and leave cut to
// the sizes they came with; the reply's fragments pass as ESTABLISHED.
func TestDefrag6BeforeTracking(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 3000)
	fr := fragments6(big, 0x1234, 1280)
	rr.a.InjectFrames(fr[:2])
	if out := pipelinetest.Drain(rr.b); len(out) != 0 {
		t.Fatalf("fragments forwarded before the datagram was whole: %v", sizes(out))
	}
	rr.a.InjectFrames(fr[2:])
	out := pipelinetest.Drain(rr.b)
	if got, want := sizes(out), sizes(fr); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("out: fragments of %v bytes, want %v as they came (%s)", got, want, rr.n.DumpCounters())
	}
	want := append([]byte(nil), big...)
	want[7]-- // hop limit
	if got := reassemble6(t, out); !bytes.Equal(got, want) {
		t.Fatal("the refragmented datagram differs from the one sent")
	}
	var found bool
	rr.table().Each(func(_ Ref, e *Entry) bool {
		found = found || e.Tuple(0).SPort == 7000 && e.Tuple(0).Family == 6
		return true
	})
	if !found {
		t.Fatal("no entry with the datagram's ports")
	}
	if c := rr.n.Counter("ipv6", "too_big"); c != 0 {
		t.Fatalf("too_big %d: the reassembled datagram was answered with Packet Too Big", c)
	}
	reply := udp6("2001:db8:2::2", "2001:db8:1::2", 7001, 7000, 2000)
	rr.b.InjectFrames(fragments6(reply, 7, 1500))
	if out := pipelinetest.Drain(rr.a); len(out) != 2 || len(out[0]) != 1496 {
		t.Fatalf("reply fragments: %v out (%s)", sizes(out), rr.n.DumpCounters())
	}
	// An unsolicited fragmented datagram from the outside is NEW: dropped
	// whole by the policy.
	rr.b.InjectFrames(fragments6(udp6("2001:db8:2::2", "2001:db8:1::2", 7001, 9, 2000), 8, 1280))
	if out := pipelinetest.Drain(rr.a); len(out) != 0 {
		t.Fatalf("unsolicited fragments forwarded: %v", sizes(out))
	}
}

// TestDefrag6FragmentsOutOfOrder: the last fragment first, the first last;
// the datagram leaves in order, at the original sizes.
func TestDefrag6FragmentsOutOfOrder(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 4000)
	fr := fragments6(big, 99, 1400)
	for i := len(fr) - 1; i >= 0; i-- {
		rr.a.InjectFrames(fr[i : i+1])
	}
	out := pipelinetest.Drain(rr.b)
	if len(out) != len(fr) || len(out[0]) != 1400 {
		t.Fatalf("out %v, want %v", sizes(out), sizes(fr))
	}
	want := append([]byte(nil), big...)
	want[7]--
	if !bytes.Equal(reassemble6(t, out), want) {
		t.Fatal("datagram changed")
	}
}

// TestDefrag6TooBigForEgress: fragments larger than the egress MTU come
// back as Packet Too Big with that MTU (as Linux's ip6_pkt_too_big with
// frag_max_size), not cut smaller: a router does not fragment.
func TestDefrag6TooBigForEgress(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1280")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 2500)
	rr.a.InjectFrames(fragments6(big, 5, 1500))
	if out := pipelinetest.Drain(rr.b); len(out) != 0 {
		t.Fatalf("forwarded %v through an MTU of 1280", sizes(out))
	}
	back := pipelinetest.Drain(rr.a)
	if len(back) != 1 {
		t.Fatalf("%d packets back, want one Packet Too Big", len(back))
	}
	m := wire.ICMPv6(back[0][wire.IPv6HeaderSize:])
	if back[0][6] != wire.ProtocolICMPv6 || m.Type() != wire.ICMPv6PacketTooBig || binary.BigEndian.Uint32(back[0][44:]) != 1280 {
		t.Fatalf("not a Packet Too Big with MTU 1280: % x", back[0][:48])
	}
}

// TestDefrag6TinyFragments: fragments smaller than the minimum MTU leave
// cut at 1280 bytes (Linux's ip6_fragment raises frag_max_size to
// IPV6_MIN_MTU), not as the tiny pieces they came in.
func TestDefrag6TinyFragments(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 2000)
	fr := fragments6(big, 6, 104) // 48 bytes of data each
	rr.a.InjectFrames(fr)
	out := pipelinetest.Drain(rr.b)
	if len(out) != 2 || len(out[0]) != 1280 {
		t.Fatalf("out %v, want 1280 + the rest", sizes(out))
	}
	want := append([]byte(nil), big...)
	want[7]--
	if !bytes.Equal(reassemble6(t, out), want) {
		t.Fatal("datagram changed")
	}
	// A datagram that fits the smallest MTU after reassembly leaves whole.
	small := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 200)
	rr.a.InjectFrames(fragments6(small, 7, 104))
	if out := pipelinetest.Drain(rr.b); len(out) != 1 || len(out[0]) != len(small) {
		t.Fatalf("out %v, want the whole %d-byte datagram", sizes(out), len(small))
	}
}

// TestDefrag6AtomicFragment: an atomic fragment (offset 0, no M flag; RFC
// 6946) is no fragment to reassemble: it is tracked with its ports and
// forwarded as it came, Fragment header and all.
func TestDefrag6AtomicFragment(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	p := udp6("2001:db8:1::2", "2001:db8:2::2", 7100, 7101, 100)
	af := frag6At(p, 3, 0, p[wire.IPv6HeaderSize:], false)
	rr.a.InjectFrames([][]byte{af})
	out := pipelinetest.Drain(rr.b)
	if len(out) != 1 || len(out[0]) != len(af) || out[0][6] != wire.ProtocolFragment {
		t.Fatalf("out %v, want the atomic fragment as it came", sizes(out))
	}
	var found bool
	rr.table().Each(func(_ Ref, e *Entry) bool {
		found = found || e.Tuple(0).SPort == 7100
		return true
	})
	if !found {
		t.Fatal("the atomic fragment was not tracked with its ports")
	}
	if c := rr.n.Counter("ipv6", "reasm_fragments"); c != 0 {
		t.Fatalf("reasm_fragments %d: an atomic fragment went to reassembly", c)
	}
}

// TestDefrag6Overlap: overlapping fragments drop the datagram (RFC 5722)
// and its later fragments; nothing is forwarded, nothing sent back.
func TestDefrag6Overlap(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 2000)
	pl := big[wire.IPv6HeaderSize:]
	rr.a.InjectFrames([][]byte{
		frag6At(big, 11, 0, pl[:1000], true),
		frag6At(big, 11, 992, pl[992:1600], true), // overlaps the first
		frag6At(big, 11, 1600, pl[1600:], false),
	})
	if out := pipelinetest.Drain(rr.b); len(out) != 0 {
		t.Fatalf("forwarded %v from an overlapping datagram", sizes(out))
	}
	if back := pipelinetest.Drain(rr.a); len(back) != 0 {
		t.Fatalf("%d packets sent back", len(back))
	}
	if rr.n.Counter("ipv6", "reasm_overlap") != 1 || rr.n.Counter("ipv6", "reasm_discarded") != 1 {
		t.Fatalf("counters: %s", rr.n.DumpCounters())
	}
}

// TestDefrag6TimeoutSilent: a datagram whose fragments never all come
// times out silently (no ICMPv6 time exceeded from a router's
// defragmentation, as Linux's nf_defrag_ipv6), and its memory is freed.
func TestDefrag6TimeoutSilent(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	big := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 2000)
	rr.a.InjectFrames(fragments6(big, 12, 1280)[:1])
	rr.clk.Advance(61 * time.Second)
	if back := pipelinetest.Drain(rr.a); len(back) != 0 {
		t.Fatalf("%d packets sent back on the timeout (time exceeded?)", len(back))
	}
	if c := rr.n.Counter("ipv6", "reasm_timeout"); c != 1 {
		t.Fatalf("reasm_timeout %d (%s)", c, rr.n.DumpCounters())
	}
	if b, q := pipelinetest.ReassemblyMemory(t, rr.n.Stack, "network.ipv6/reassembly"); b != 0 || q != 0 {
		t.Fatalf("reassembly holds %d bytes in %d queues after the timeout", b, q)
	}
}

// TestDefrag6Bounded: a source flooding incomplete datagrams fills no more
// than its share; a datagram from another source in progress still
// completes and is forwarded.
func TestDefrag6Bounded(t *testing.T) {
	rr := newRouterRig6(t, "1500", "1500")
	legit := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 2000)
	lf := fragments6(legit, 1, 1280)
	rr.a.InjectFrames(lf[:1])
	for id := uint32(0); id < 20000; id++ {
		f := udp6("2001:db8:1:1::66", "2001:db8:2::2", 1, 2, 2000)
		rr.a.InjectFrames(fragments6(f, id, 1280)[:1])
	}
	b, q := pipelinetest.ReassemblyMemory(t, rr.n.Stack, "network.ipv6/reassembly")
	if b > 5<<20 {
		t.Fatalf("reassembly holds %d bytes in %d queues under a flood", b, q)
	}
	rr.a.InjectFrames(lf[1:])
	if out := pipelinetest.Drain(rr.b); len(out) != 2 {
		t.Fatalf("the legitimate datagram: %v out (%s)", sizes(out), rr.n.DumpCounters())
	}
	if rr.n.Counter("ipv6", "reasm_source_limit")+rr.n.Counter("ipv6", "reasm_evicted") == 0 {
		t.Fatalf("the flood was not limited: %s", rr.n.DumpCounters())
	}
}

// fuzzFragments6 turns fuzz input into IPv6 fragments from the inside to
// the outside, records of 5 bytes: flags (bit 0 M, bits 1-2 the datagram,
// bit 3 an atomic fragment, bit 4 a Destination Options header before the
// Fragment header), the offset in 8-byte units (13 bits), the data length
// (mod 4096). Up to 64 fragments of up to 4 datagrams.
func fuzzFragments6(in []byte) [][]byte {
	var out [][]byte
	base := udp6("2001:db8:1::2", "2001:db8:2::2", 7000, 7001, 0)
	for len(in) >= 5 && len(out) < 64 {
		r := in[:5]
		in = in[5:]
		off := int(binary.BigEndian.Uint16(r[1:])&0x1fff) * 8
		n := int(binary.BigEndian.Uint16(r[3:])) % 4096
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(off + i)
		}
		more := r[0]&1 != 0
		if r[0]&8 != 0 {
			off, more = 0, false
		}
		f := frag6At(base, uint32(r[0]>>1&3), off, data, more)
		if r[0]&16 != 0 {
			// Insert an 8-byte Destination Options header (PadN).
			g := make([]byte, len(f)+8)
			copy(g, f[:wire.IPv6HeaderSize])
			g[6] = wire.ProtocolDestOptions
			g[wire.IPv6HeaderSize] = wire.ProtocolFragment
			g[wire.IPv6HeaderSize+2], g[wire.IPv6HeaderSize+3] = 1, 4
			copy(g[wire.IPv6HeaderSize+8:], f[wire.IPv6HeaderSize:])
			wire.IPv6(g).SetPayloadLength(uint16(len(g) - wire.IPv6HeaderSize))
			f = g
		}
		out = append(out, f)
	}
	return out
}

func fuzzRecord(more bool, id, off, n int) []byte {
	b0 := byte(id&3) << 1
	if more {
		b0 |= 1
	}
	return []byte{b0, byte(off / 8 >> 8), byte(off / 8), byte(n >> 8), byte(n)}
}

// FuzzDefrag6 feeds the stateful router sequences of IPv6 fragments
// (overlaps, duplicates, gaps, atomic fragments, headers before the
// Fragment header, several datagrams). Invariants: no panic; everything
// the router forwards is a valid IPv6 packet within the egress MTU; after
// the timeout reassembly holds nothing; every pool buffer is back.
func FuzzDefrag6(f *testing.F) {
	var seed []byte
	for off := 0; off < 3000; off += 1000 {
		seed = append(seed, fuzzRecord(off+1000 < 3000, 0, off, 1000)...)
	}
	f.Add(seed)
	f.Add(append(fuzzRecord(true, 1, 0, 1232), fuzzRecord(false, 1, 1224, 100)...))
	f.Add(append(fuzzRecord(true, 2, 0, 8), fuzzRecord(false, 2, 8, 4000)...))
	f.Add([]byte{8, 0, 0, 0, 50})
	cfg := strings.ReplaceAll(statefulRouter, "%MAX%", "64")
	f.Fuzz(func(t *testing.T, in []byte) {
		clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
		pool := pipeline.NewPool(1 << 10)
		n := pipelinetest.NewNode(t, "r", cfg, pipeline.Options{Clock: clk, Pool: pool})
		a, b := n.Link(t, "a"), n.Link(t, "b")
		pipelinetest.InjectBatched(a, fuzzFragments6(in))
		for _, p := range pipelinetest.Drain(b) {
			h := wire.IPv6(p)
			if len(p) > 1500 || h.Check() != nil || wire.IPv6HeaderSize+int(h.PayloadLength()) != len(p) {
				t.Fatalf("forwarded a bad %d-byte packet", len(p))
			}
		}
		clk.Advance(61 * time.Second)
		pipelinetest.Drain(a)
		pipelinetest.Drain(b)
		pipelinetest.WantReassemblyEmpty(t, n.Stack, "network.ipv6/reassembly")
		pipelinetest.CloseWantBuffersBack(t, n, pool)
	})
}
