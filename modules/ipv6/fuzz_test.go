package ipv6_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// fuzzRecord6 is the size of the input record one fragment is made from:
// flags (bit 0 M, bits 1-2 the datagram, bits 3-7 the length of a
// Destination Options header in the unfragmentable part, in 40-byte units),
// the offset in 8-byte units (13 bits), the data length (mod 8192), the
// upper-layer protocol (UDP, TCP, ICMPv6, No Next Header).
const fuzzRecord6 = 6

var fuzzProtos6 = [4]uint8{wire.ProtocolUDP, wire.ProtocolTCP, wire.ProtocolICMPv6, wire.ProtocolNoNextHeader}

// fuzzFragments6 turns the fuzz input into IPv6 fragments to the host: up
// to 64 of them, of up to 4 datagrams.
func fuzzFragments6(in []byte) [][]byte {
	var out [][]byte
	for len(in) >= fuzzRecord6 && len(out) < 64 {
		r := in[:fuzzRecord6]
		in = in[fuzzRecord6:]
		off := int(binary.BigEndian.Uint16(r[1:])&0x1fff) * 8
		n := int(binary.BigEndian.Uint16(r[3:])) % 8192
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(off + i)
		}
		pkt := ip6("2001:db8:9::1", "2001:db8:1::2", fuzzProtos6[r[5]&3], 64, nil)
		out = append(out, fragWithUnfrag(pkt, uint32(r[0]>>1&3)+1, off, data, r[0]&1 != 0, int(r[0]>>3)*40))
	}
	return out
}

// record6 encodes one fuzz record (for the seeds).
func record6(more bool, id, doUnits, off, n, proto int) []byte {
	b0 := byte(id&3)<<1 | byte(doUnits)<<3
	if more {
		b0 |= 1
	}
	return []byte{b0, byte(off / 8 >> 8), byte(off / 8), byte(n >> 8), byte(n), byte(proto)}
}

// FuzzReassembly6 feeds a host sequences of fragments derived from the input
// (offsets up to 65528, unfragmentable parts of up to 1240 bytes differing
// between fragments, overlaps, duplicates, first fragments with or without
// their upper-layer header, several datagrams). Invariants: no panic; every
// packet delivered is at most 40+65535 bytes and its Payload Length says
// so, and no reassembled datagram has truncated headers (a wrapped Payload
// Length); after the timeout nothing is held; every pool buffer is back.
func FuzzReassembly6(f *testing.F) {
	var seed []byte
	for off := 0; off < 3000; off += 1000 {
		seed = append(seed, record6(off+1000 < 3000, 0, 0, off, 1000, 0)...)
	}
	f.Add(seed)
	// The attack: a 1000-byte Destination Options header in the first
	// fragment, plain fragments up to offset 65528.
	seed = nil
	for off := 0; off < 0xffff; off += 8000 {
		n := min(8000, 0xffff-off)
		units := 0
		if off == 0 {
			units = 25
		}
		seed = append(seed, record6(off+n < 0xffff, 1, units, off, n, 0)...)
	}
	f.Add(seed)
	// The same with a 200-byte header: 65775 bytes, which the pool could
	// give (its Payload Length would wrap).
	seed = append([]byte(nil), seed...)
	seed[0] = seed[0]&7 | 5<<3
	f.Add(seed)
	f.Add(append(record6(true, 2, 0, 0, 8, 1), record6(false, 2, 0, 8, 100, 1)...))
	f.Add(append(append(record6(true, 3, 1, 0, 1008, 0), record6(true, 3, 0, 1000, 1000, 0)...), record6(false, 3, 2, 2000, 5, 0)...))

	name := "fuzz-reasm6"
	col := pt.Collected(name)
	cfg := `
name: host
modules: [{module: network.ipv6, dad: {transmits: 0}, router_solicitations: 0}, {module: transport.collect, protocol: 17, name: "` + name + `"}]
links:
  - {name: eth0, module: link.channel, mtu: 9000, addresses: ["2001:db8:1::2/64"]}
routes:
  - {to: default6, via: "2001:db8:1::1", link: eth0}
`
	f.Fuzz(func(t *testing.T, in []byte) {
		clock := pt.NewManualClock()
		pool := pipeline.NewPool(1 << 10)
		n := pt.NewNode(t, "host", cfg, pipeline.Options{Clock: clock, Pool: pool})
		l := n.Link(t, "eth0")
		pt.InjectBatched(l, fuzzFragments6(in))
		for col.Len() > 0 {
			d := col.Wait(t, time.Second)
			h := wire.IPv6(d)
			if len(d) > wire.IPv6HeaderSize+0xffff || h.Check() != nil || wire.IPv6HeaderSize+int(h.PayloadLength()) != len(d) {
				t.Fatalf("delivered a %d-byte packet", len(d))
			}
		}
		// The fragments' headers are whole, and so are those of a
		// datagram built from them — unless its Payload Length wrapped.
		if c := n.Counter("ipv6", "malformed_ext_header_truncated"); c != 0 {
			t.Fatalf("%d datagrams with truncated headers", c)
		}
		clock.Advance(61 * time.Second)
		pt.Drain(l)
		pt.WantReassemblyEmpty(t, n.Stack, "network.ipv6/reassembly")
		pt.CloseWantBuffersBack(t, n, pool)
	})
}
