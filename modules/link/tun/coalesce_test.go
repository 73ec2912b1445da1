package tun

import (
	"bytes"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/pipelinetest"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// frame is what a frameSink was handed, flattened.
type frame struct {
	h    vnetHdr
	data []byte
	n    int // packets in it
}

type recordSink struct {
	frames []frame
	keep   bool
}

func (s *recordSink) writeFrame(h *vnetHdr, head []byte, tail []*pipeline.Packet, off int) bool {
	if !s.keep {
		return true
	}
	d := append([]byte(nil), head...)
	for _, p := range tail {
		d = append(d, p.Data()[off:]...)
	}
	s.frames = append(s.frames, frame{*h, d, 1 + len(tail)})
	return true
}

// write runs one WritePackets' worth of coalescing over raw packets.
func write(c *coalescer, raw [][]byte) {
	pkts := make([]*pipeline.Packet, len(raw))
	for i, b := range raw {
		pkts[i] = packet(b)
		c.add(pkts[i])
	}
	c.flushAll()
	pipeline.ReleaseBatch(pkts)
}

// resegment cuts a frame back into packets the way the kernel will.
func resegment(t *testing.T, f frame) [][]byte {
	t.Helper()
	if f.h.gsoType == vnetGSONone {
		return [][]byte{f.data}
	}
	p := packet(f.data)
	defer p.Release()
	if r := f.h.toPacket(p.Data(), p); r != rxGSO {
		t.Fatalf("frame header %+v does not describe a super-packet (%d)", f.h, r)
	}
	// The kernel completes the partial checksum: check it is the
	// pseudo-header sum of the whole super-packet.
	d := p.Data()
	if got, want := wire.TCP(d[20:]).Checksum(), pseudoSumLen(d, wire.ProtocolTCP, len(d)-20); got != want {
		t.Errorf("partial checksum %#x, want %#x", got, want)
	}
	if !wire.IPv4(d).IsChecksumValid() || int(wire.IPv4(d).TotalLength()) != len(d) {
		t.Errorf("super-packet IPv4 header invalid")
	}
	segs, ok := pipeline.SegmentGSO(p, nil, nil)
	if !ok {
		t.Fatal("SegmentGSO refused a coalesced frame")
	}
	var out [][]byte
	for _, s := range segs {
		out = append(out, append([]byte(nil), s.Data()...))
	}
	pipeline.ReleaseBatch(segs)
	return out
}

// TestCoalesceRoundTrip: runs of two interleaved flows coalesce into one
// super-packet per flow that the kernel's segmentation turns back into the
// same segments (but for IP IDs, checksums recomputed identically).
func TestCoalesceRoundTrip(t *testing.T) {
	var raw [][]byte
	seqA, seqB := uint32(0xfffffff0), uint32(5000)
	for i := 0; i < 20; i++ {
		raw = append(raw, tcpSeg(1, seqA, 0x10, fill(1448, byte(i))))
		seqA += 1448
		size := 1000
		if i == 19 {
			size = 300 // a short last segment ends the run
		}
		flags := uint8(0x10)
		if i == 19 {
			flags = 0x18
		}
		raw = append(raw, tcpSeg(2, seqB, flags, fill(size, byte(i+100))))
		seqB += uint32(size)
	}
	s := &recordSink{keep: true}
	c := newCoalescer(s)
	write(c, raw)
	if len(s.frames) != 2 || s.frames[0].n != 20 || s.frames[1].n != 20 {
		for _, f := range s.frames {
			t.Logf("frame %+v of %d packets", f.h, f.n)
		}
		t.Fatalf("%d frames, want 2 of 20 packets", len(s.frames))
	}
	if c.sent != 40 || c.merged != 38 || c.frames != 2 {
		t.Errorf("sent %d merged %d frames %d", c.sent, c.merged, c.frames)
	}
	var a, b [][]byte
	for i, r := range raw {
		if i%2 == 0 {
			a = append(a, r)
		} else {
			b = append(b, r)
		}
	}
	for fi, want := range [][][]byte{a, b} {
		got := resegment(t, s.frames[fi])
		if len(got) != len(want) {
			t.Fatalf("flow %d: %d segments, want %d", fi, len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			// Only the IP ID (and so the IP checksum) may differ.
			g4, w4 := wire.IPv4(g), wire.IPv4(w)
			if !bytes.Equal(g[20:], w[20:]) || g4.TotalLength() != w4.TotalLength() || g4.TTL() != w4.TTL() {
				t.Fatalf("flow %d segment %d differs after the round trip", fi, i)
			}
		}
	}
}

// TestCoalesceBoundaries: what must not be merged is written alone, in
// order.
func TestCoalesceBoundaries(t *testing.T) {
	pl := fill(1000, 3)
	corrupt := tcpSeg(1, 3000, 0x10, pl)
	corrupt[len(corrupt)-1] ^= 0xff
	raw := [][]byte{
		tcpSeg(1, 1000, 0x10, pl),
		tcpSeg(1, 2000, 0x18, pl), // PSH: ends the run
		corrupt,                   // bad checksum: alone
		tcpSeg(1, 4000, 0x10, pl),
		tcpSeg(1, 5000, 0x11, pl), // FIN: not a candidate, flushes
		tcpSeg(1, 6000, 0x10, pl),
		tcpSeg(1, 9000, 0x10, pl),             // not adjacent: new run
		tcpSeg(1, 10000, 0x10, fill(1200, 1)), // larger than the run's size
	}
	s := &recordSink{keep: true}
	c := newCoalescer(s)
	write(c, raw)
	var sizes []int
	for _, f := range s.frames {
		sizes = append(sizes, f.n)
	}
	want := []int{2, 1, 1, 1, 1, 1, 1}
	if len(sizes) != len(want) {
		t.Fatalf("frames of %v packets, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("frames of %v packets, want %v", sizes, want)
		}
	}
	if c.sent != uint64(len(raw)) {
		t.Errorf("sent %d of %d", c.sent, len(raw))
	}
}

// TestCoalesceZeroAllocs: the write path's coalescing allocates nothing
// (run outside -race by CI's zero-allocation step; harmless under it).
func TestCoalesceZeroAllocs(t *testing.T) {
	c := newCoalescer(&recordSink{})
	var pkts []*pipeline.Packet
	for i := 0; i < 64; i++ {
		pkts = append(pkts, packet(tcpSeg(uint16(i%3), uint32(i/3)*1448, 0x10, fill(1448, 0))))
	}
	run := func() {
		for _, p := range pkts {
			c.add(p)
		}
		c.flushAll()
	}
	run()
	m := pipelinetest.CountMallocs(func() {
		for i := 0; i < 160; i++ { // 10,240 packets
			run()
		}
	})
	if m != 0 {
		t.Errorf("%d allocations over 10,240 packets, want 0", m)
	}
	pipeline.ReleaseBatch(pkts)
}
