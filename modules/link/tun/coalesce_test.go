package tun

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
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
	c.uso = true
	var pkts []*pipeline.Packet
	for i := 0; i < 64; i++ {
		pkts = append(pkts, packet(tcpSeg(uint16(i%3), uint32(i/3)*1448, 0x10, fill(1448, 0))))
	}
	for i := 0; i < 64; i++ { // and USO runs of small datagrams
		pkts = append(pkts, packet(udpDgram(uint16(i%2), uint16(i), fill(18, 0), false)))
	}
	run := func() {
		for _, p := range pkts {
			c.add(p)
		}
		c.flushAll()
	}
	run()
	m := pipelinetest.CountMallocs(func() {
		for i := 0; i < 80; i++ { // 10,240 packets
			run()
		}
	})
	if m != 0 {
		t.Errorf("%d allocations over 10,240 packets, want 0", m)
	}
	pipeline.ReleaseBatch(pkts)
}

// resegmentUDP cuts a USO frame back into datagrams the way the kernel
// will, after checking the super-packet's headers.
func resegmentUDP(t *testing.T, f frame, v6 bool) [][]byte {
	t.Helper()
	if f.h.gsoType == vnetGSONone {
		return [][]byte{f.data}
	}
	if f.h.gsoType != vnetGSOUDPL4 {
		t.Fatalf("frame header %+v: not USO", f.h)
	}
	mk, l4 := packet, 20
	if v6 {
		mk, l4 = packet6, 40
	}
	p := mk(f.data)
	defer p.Release()
	if r := f.h.toPacket(p.Data(), p); r != rxGSO {
		t.Fatalf("frame header %+v does not describe a super-packet (%d)", f.h, r)
	}
	d := p.Data()
	u := wire.UDP(d[l4:])
	if int(u.Length()) != len(d)-l4 {
		t.Errorf("super-packet UDP length %d, want %d (the whole run)", u.Length(), len(d)-l4)
	}
	if got, want := u.Checksum(), pseudoSumLen(d, wire.ProtocolUDP, len(d)-l4); got != want {
		t.Errorf("partial checksum %#x, want %#x", got, want)
	}
	if !v6 && (!wire.IPv4(d).IsChecksumValid() || int(wire.IPv4(d).TotalLength()) != len(d)) {
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

// TestCoalesceUDPRoundTrip: with USO, runs of same-flow datagrams (two
// IPv4 flows interleaved, one IPv6 flow, complete and partial checksums)
// become one super-packet per flow that the kernel's segmentation turns
// back into exactly the datagrams written.
func TestCoalesceUDPRoundTrip(t *testing.T) {
	var raw [][]byte
	var partial []bool
	var a, b, c6 [][]byte
	for i := 0; i < 30; i++ {
		size := 18
		if i == 29 {
			size = 7 // a short last datagram ends the run
		}
		da := udpDgram(1, uint16(100+i), fill(18, byte(i)), false)
		db := udpDgram(2, uint16(7000+i), fill(size, byte(i+50)), false)
		raw = append(raw, da, db)
		partial = append(partial, i%2 == 0, false)
		a, b = append(a, da), append(b, db)
	}
	for i := 0; i < 5; i++ {
		d := udpDgram6(3, fill(1200, byte(i)))
		raw = append(raw, d)
		partial = append(partial, false)
		c6 = append(c6, d)
	}
	s := &recordSink{keep: true}
	co := newCoalescer(s)
	co.uso = true
	pkts := make([]*pipeline.Packet, len(raw))
	for i, r := range raw {
		if r[0]>>4 == 6 {
			pkts[i] = packet6(r)
		} else {
			pkts[i] = packet(r)
		}
		if partial[i] {
			// As read from a TUN device: a partial checksum (the
			// pseudo-header sum in the field).
			p := pkts[i]
			d := p.Data()
			binary.BigEndian.PutUint16(d[26:], pseudoSumLen(d, wire.ProtocolUDP, len(d)-20))
			p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 6}
		}
		co.add(pkts[i])
	}
	co.flushAll()
	pipeline.ReleaseBatch(pkts)
	if len(s.frames) != 3 || s.frames[0].n != 30 || s.frames[1].n != 30 || s.frames[2].n != 5 {
		for _, f := range s.frames {
			t.Logf("frame %+v of %d packets", f.h, f.n)
		}
		t.Fatalf("%d frames, want 3 of 30, 30 and 5 packets", len(s.frames))
	}
	if co.sent != 65 || co.merged != 62 || co.frames != 3 {
		t.Errorf("sent %d merged %d frames %d", co.sent, co.merged, co.frames)
	}
	for fi, want := range [][][]byte{a, b, c6} {
		got := resegmentUDP(t, s.frames[fi], fi == 2)
		if len(got) != len(want) {
			t.Fatalf("flow %d: %d datagrams, want %d", fi, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("flow %d datagram %d differs after the round trip:\n got %x\nwant %x", fi, i, got[i], want[i])
			}
		}
	}
}

// TestCoalesceUDPBoundaries: what must not be merged is written alone, in
// order; without USO no datagram is merged.
func TestCoalesceUDPBoundaries(t *testing.T) {
	pl := fill(100, 3)
	corrupt := udpDgram(1, 3, pl, false)
	corrupt[len(corrupt)-1] ^= 0xff
	frag := udpDgram(1, 9, pl, false)
	frag[6] |= 0x20 // MF
	raw := [][]byte{
		udpDgram(1, 1, pl, false),
		udpDgram(1, 2, pl, false),
		corrupt,                             // bad checksum: alone, flushes
		udpDgram(1, 4, pl, false),           //
		udpDgram(1, 5, fill(120, 1), false), // larger than the run's size: new run
		udpDgram(1, 6, pl, true),            // no checksum: alone, flushes
		tcpSeg(1, 1000, 0x10, pl),           // TCP between UDP runs
		udpDgram(1, 7, pl, false),
		udpDgram(1, 8, fill(50, 1), false), // shorter: ends the run
		udpDgram(1, 8, pl, false),          // new run
		frag,                               // a fragment: alone
	}
	run := func(uso bool) []int {
		s := &recordSink{keep: true}
		c := newCoalescer(s)
		c.uso = uso
		write(c, raw)
		if c.sent != uint64(len(raw)) {
			t.Errorf("uso=%t: sent %d of %d", uso, c.sent, len(raw))
		}
		var sizes []int
		var flat [][]byte
		for _, f := range s.frames {
			sizes = append(sizes, f.n)
			if f.h.gsoType == vnetGSOUDPL4 {
				flat = append(flat, resegmentUDP(t, f, false)...)
			} else {
				flat = append(flat, f.data)
			}
		}
		// Every packet intact, and in order within its flow (flows may
		// interleave differently: runs are written in the order they
		// were opened).
		byFlow := func(pkts [][]byte) map[uint8][][]byte {
			m := map[uint8][][]byte{}
			for _, b := range pkts {
				m[b[9]] = append(m[b[9]], b)
			}
			return m
		}
		got, want := byFlow(flat), byFlow(raw)
		if len(flat) != len(raw) {
			t.Fatalf("uso=%t: %d packets after the round trip, want %d", uso, len(flat), len(raw))
		}
		for proto, w := range want {
			for i := range w {
				if i >= len(got[proto]) || !bytes.Equal(got[proto][i], w[i]) {
					t.Fatalf("uso=%t: protocol %d packet %d differs after the round trip", uso, proto, i)
				}
			}
		}
		return sizes
	}
	for _, tc := range []struct {
		uso  bool
		want []int
	}{
		{true, []int{2, 1, 1, 1, 1, 2, 1, 1, 1}}, // the UDP run the short datagram ends goes before the TCP run opened first
		{false, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	} {
		sizes := run(tc.uso)
		if len(sizes) != len(tc.want) {
			t.Fatalf("uso=%t: frames of %v packets, want %v", tc.uso, sizes, tc.want)
		}
		for i := range tc.want {
			if sizes[i] != tc.want[i] {
				t.Fatalf("uso=%t: frames of %v packets, want %v", tc.uso, sizes, tc.want)
			}
		}
	}
}
