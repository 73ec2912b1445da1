package ipv4_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// fuzzRecord4 is the size of the input record one fragment is made from:
// flags (bit 0 MF, bits 1-2 the datagram, bits 3-6 options words), the
// offset in 8-byte units (13 bits), the data length (mod 8192).
const fuzzRecord4 = 5

// fuzzFragments4 turns the fuzz input into IPv4 fragments to 10.0.1.1:
// up to 64 of them, of up to 4 datagrams.
func fuzzFragments4(in []byte) [][]byte {
	var out [][]byte
	for len(in) >= fuzzRecord4 && len(out) < 64 {
		r := in[:fuzzRecord4]
		in = in[fuzzRecord4:]
		mf := r[0]&1 != 0
		id := uint16(r[0]>>1&3) + 1
		opts := bytes.Repeat([]byte{wire.IPv4OptionNOP}, int(r[0]>>3&15)%11*4)
		off := int(binary.BigEndian.Uint16(r[1:])&0x1fff) * 8
		n := int(binary.BigEndian.Uint16(r[3:])) % 8192
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(off + i)
		}
		hl := wire.IPv4HeaderSize(len(opts))
		f := make([]byte, hl+n)
		var flags uint8
		if mf {
			flags = wire.IPv4FlagMoreFragments
		}
		wire.IPv4(f).Encode(&wire.IPv4Fields{TotalLength: uint16(len(f)), ID: id, TTL: 64, Protocol: wire.ProtocolUDP,
			Src: addr4("10.0.1.2"), Dst: addr4("10.0.1.1"), Flags: flags, FragmentOffset: uint16(off), Options: opts})
		copy(f[hl:], data)
		out = append(out, f)
	}
	return out
}

// record4 encodes one fuzz record (for the seeds).
func record4(mf bool, id, optWords, off, n int) []byte {
	b0 := byte(id&3)<<1 | byte(optWords)<<3
	if mf {
		b0 |= 1
	}
	return []byte{b0, byte(off / 8 >> 8), byte(off / 8), byte(n >> 8), byte(n)}
}

// FuzzReassembly4 feeds a router sequences of fragments derived from the
// input (offsets up to 65528, first fragments with up to 40 bytes of
// options, overlaps, duplicates, several datagrams). Invariants: no panic;
// every datagram delivered is at most 65535 bytes and its Total Length
// says so; after the timeout nothing is held; every pool buffer is back.
func FuzzReassembly4(f *testing.F) {
	var seed []byte
	for off := 0; off < 3000; off += 1000 {
		seed = append(seed, record4(off+1000 < 3000, 0, 0, off, 1000)...)
	}
	f.Add(seed)
	// The wrap-around attack: 40 bytes of options in the first fragment,
	// plain fragments whose data ends at 65515.
	seed = nil
	for off := 0; off < 65515; off += 8000 {
		n := min(8000, 65515-off)
		words := 0
		if off == 0 {
			words = 10
		}
		seed = append(seed, record4(off+n < 65515, 1, words, off, n)...)
	}
	f.Add(seed)
	f.Add(append(append(record4(true, 2, 1, 0, 1008), record4(true, 2, 0, 1000, 1000)...), record4(false, 2, 0, 2000, 5)...))
	f.Add(append(record4(false, 3, 0, 65528, 100), record4(true, 3, 0, 0, 1001)...))

	name := "fuzz-reasm4"
	col := pt.Collected(name)
	cfg := `
name: router
modules: [network.ipv4, {module: transport.collect, protocol: 17, name: ` + name + `}]
links:
  - {name: a, module: link.channel, mtu: 9000, addresses: [10.0.1.1/24]}
`
	f.Fuzz(func(t *testing.T, in []byte) {
		clock := pt.NewManualClock()
		pool := pipeline.NewPool(1 << 10)
		n := pt.NewNode(t, "router", cfg, pipeline.Options{Clock: clock, Pool: pool})
		a := n.Link(t, "a")
		pt.InjectBatched(a, fuzzFragments4(in))
		for col.Len() > 0 {
			d := col.Wait(t, time.Second)
			h := wire.IPv4(d)
			if len(d) > 0xffff || h.Check() != nil || int(h.TotalLength()) != len(d) {
				t.Fatalf("delivered a %d-byte datagram (Total Length %d)", len(d), h.TotalLength())
			}
		}
		clock.Advance(31 * time.Second)
		pt.Drain(a)
		pt.WantReassemblyEmpty(t, n.Stack, "network.ipv4/reassembly")
		pt.CloseWantBuffersBack(t, n, pool)
	})
}
