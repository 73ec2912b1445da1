package pipeline_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// superTCP builds a TCP super-packet as a TSO sender hands it to a device:
// total length over the whole thing, a partial checksum (pseudo-header sum)
// and the GSO metadata.
func superTCP(v6 bool, payload []byte, seg int, flags uint8) ([]byte, pipeline.GSO) {
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	tcpLen := 32 // with 12 bytes of options (NOP NOP timestamps)
	b := make([]byte, ipLen+tcpLen+len(payload))
	if v6 {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		b[6], b[7] = wire.ProtocolTCP, 64
		copy(b[8:], []byte{0xfd, 15: 2})
		copy(b[24:], []byte{0xfd, 0, 15: 3})
	} else {
		wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: 0xfff0, Flags: wire.IPv4FlagDontFragment,
			TTL: 64, Protocol: wire.ProtocolTCP, Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
	}
	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 80)
	binary.BigEndian.PutUint32(t[4:], 0xfffff000) // wraps inside the packet
	binary.BigEndian.PutUint32(t[8:], 77)
	t[12] = byte(tcpLen/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 512)
	copy(t[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	copy(t[tcpLen:], payload)
	binary.BigEndian.PutUint16(t[16:], pseudo(b, ipLen, wire.ProtocolTCP, len(t)))
	typ := pipeline.GSOTCPv4
	if v6 {
		typ = pipeline.GSOTCPv6
	}
	return b, pipeline.GSO{Type: typ, SegSize: uint16(seg), HdrLen: uint16(ipLen + tcpLen),
		NeedsCsum: true, CsumStart: uint16(ipLen), CsumOffset: 16}
}

func pseudo(b []byte, ipLen int, proto uint8, n int) uint16 {
	if ipLen == 40 {
		return wire.PseudoHeaderChecksum(proto, b[8:24], b[24:40], uint16(n))
	}
	return wire.PseudoHeaderChecksum(proto, b[12:16], b[16:20], uint16(n))
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

// checkSegments verifies segments cut from a TCP super-packet: lengths,
// checksums, sequence numbers, flags, IDs, and that the payloads add up.
func checkSegments(t *testing.T, v6 bool, segs []*pipeline.Packet, payload []byte, seg int, flags uint8) {
	t.Helper()
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	want := (len(payload) + seg - 1) / seg
	if len(segs) != want {
		t.Fatalf("%d segments, want %d", len(segs), want)
	}
	var got []byte
	for i, p := range segs {
		d := p.Data()
		if p.GSO != (pipeline.GSO{}) {
			t.Errorf("segment %d keeps GSO metadata %+v", i, p.GSO)
		}
		if v6 {
			if int(binary.BigEndian.Uint16(d[4:]))+40 != len(d) {
				t.Errorf("segment %d: payload length %d for %d bytes", i, binary.BigEndian.Uint16(d[4:]), len(d))
			}
		} else {
			ip := wire.IPv4(d)
			if ip.Check() != nil || int(ip.TotalLength()) != len(d) || !ip.IsChecksumValid() {
				t.Errorf("segment %d: bad IPv4 header (len %d of %d, checksum ok %v)", i, ip.TotalLength(), len(d), ip.IsChecksumValid())
			}
			if ip.ID() != 0xfff0+uint16(i) {
				t.Errorf("segment %d: ID %#x", i, ip.ID())
			}
		}
		tc := wire.TCP(d[ipLen:])
		if !tc.IsChecksumValid(pseudo(d, ipLen, wire.ProtocolTCP, len(tc))) {
			t.Errorf("segment %d: bad TCP checksum", i)
		}
		if s := tc.Seq(); s != 0xfffff000+uint32(i*seg) {
			t.Errorf("segment %d: seq %#x", i, s)
		}
		f := flags
		if i > 0 {
			f &^= 0x80
		}
		if i < len(segs)-1 {
			f &^= 0x09
		}
		if tc.Flags() != f {
			t.Errorf("segment %d: flags %#x, want %#x", i, tc.Flags(), f)
		}
		if i < len(segs)-1 && len(tc.Payload()) != seg {
			t.Errorf("segment %d: %d bytes of payload, want %d", i, len(tc.Payload()), seg)
		}
		got = append(got, tc.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("payloads differ from the super-packet's")
	}
}

func TestSegmentGSOTCP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		payload := pattern(10000)
		const flags = 0x80 | 0x10 | 0x08 | 0x01 // CWR ACK PSH FIN
		b, g := superTCP(v6, payload, 1448, flags)
		p := pipeline.DefaultPool.Get(len(b))
		p.SetData(b)
		p.GSO = g
		p.Mark = 42
		segs, ok := pipeline.SegmentGSO(p, nil, nil)
		if !ok {
			t.Fatalf("v6=%v: SegmentGSO refused a good super-packet", v6)
		}
		checkSegments(t, v6, segs, payload, 1448, flags)
		if segs[0].Mark != 42 {
			t.Errorf("metadata not copied")
		}
		if !bytes.Equal(p.Data(), b) {
			t.Errorf("SegmentGSO changed the super-packet")
		}
		pipeline.ReleaseBatch(segs)
		p.Release()
	}
}

func TestSegmentGSOUDP(t *testing.T) {
	payload := pattern(3000)
	b := make([]byte, 28+len(payload))
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: 1, TTL: 64, Protocol: wire.ProtocolUDP,
		Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
	wire.UDP(b[20:]).Encode(&wire.UDPFields{SrcPort: 5000, DstPort: 6000, Length: uint16(8 + len(payload))})
	copy(b[28:], payload)
	binary.BigEndian.PutUint16(b[26:], pseudo(b, 20, wire.ProtocolUDP, 8+len(payload)))
	p := pipeline.DefaultPool.Get(len(b))
	p.SetData(b)
	p.GSO = pipeline.GSO{Type: pipeline.GSOUDPL4, SegSize: 1200, HdrLen: 28, NeedsCsum: true, CsumStart: 20, CsumOffset: 6}
	segs, ok := pipeline.SegmentGSO(p, nil, nil)
	if !ok || len(segs) != 3 {
		t.Fatalf("ok %v, %d segments, want 3", ok, len(segs))
	}
	var got []byte
	for i, s := range segs {
		d := s.Data()
		u := wire.UDP(d[20:])
		if int(u.Length()) != len(d)-20 || !u.IsChecksumValid(pseudo(d, 20, wire.ProtocolUDP, len(d)-20)) || u.Checksum() == 0 {
			t.Errorf("segment %d: UDP length %d of %d, checksum %#x", i, u.Length(), len(d)-20, u.Checksum())
		}
		got = append(got, u.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("payloads differ")
	}
	pipeline.ReleaseBatch(segs)
	p.Release()
}

func TestCompleteChecksum(t *testing.T) {
	b := []byte(nil)
	b = append(b, pipelineUDP4(pattern(101))...)
	ok := binary.BigEndian.Uint16(b[26:])
	binary.BigEndian.PutUint16(b[26:], pseudo(b, 20, wire.ProtocolUDP, len(b)-20))
	p := pipeline.DefaultPool.Get(len(b))
	p.SetData(b)
	p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 6}
	if !pipeline.CompleteChecksum(p) || p.GSO.NeedsCsum {
		t.Fatal("CompleteChecksum failed")
	}
	if got := binary.BigEndian.Uint16(p.Data()[26:]); got != ok {
		t.Errorf("checksum %#x, want %#x", got, ok)
	}
	p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: 200, CsumOffset: 6}
	if pipeline.CompleteChecksum(p) {
		t.Error("offsets past the end accepted")
	}
	p.Release()
}

// pipelineUDP4 is an IPv4 UDP packet with a complete checksum.
func pipelineUDP4(payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: wire.ProtocolUDP,
		Src: [4]byte{10, 0, 1, 2}, Dst: [4]byte{10, 0, 2, 2}})
	wire.UDP(b[20:]).Encode(&wire.UDPFields{SrcPort: 1, DstPort: 2, Length: uint16(8 + len(payload))})
	copy(b[28:], payload)
	u := wire.UDP(b[20:])
	u.SetChecksum(u.CalculateChecksum(pseudo(b, 20, wire.ProtocolUDP, len(b)-20)))
	return b
}

// TestTransmitSegmentsForPlainLink: a super-packet forwarded to a link
// without CapGSO (a channel) leaves as wire-sized, fully checksummed
// segments, counted as such.
func TestTransmitSegmentsForPlainLink(t *testing.T) {
	st := pipeline.New(pipeline.Options{})
	defer st.Close()
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(routerYAML))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	la, _ := st.Link("a")
	lb, _ := st.Link("b")
	a, b := la.(*channel.Endpoint), lb.(*channel.Endpoint)

	payload := pattern(20000)
	raw, g := superTCP(false, payload, 1448, 0x18)
	p := pipeline.DefaultPool.Get(len(raw))
	p.SetData(raw)
	p.GSO = g
	a.InjectPackets([]*pipeline.Packet{p})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var segs []*pipeline.Packet
	buf := make([]*pipeline.Packet, 64)
	for len(segs) < 14 {
		n, err := b.ReadWait(ctx, buf)
		if err != nil {
			t.Fatalf("got %d segments: %v", len(segs), err)
		}
		segs = append(segs, buf[:n]...)
	}
	for _, s := range segs {
		s.SetNetworkHeader()
		if ttl := wire.IPv4(s.Data()).TTL(); ttl != 63 {
			t.Fatalf("TTL %d, want 63", ttl)
		}
	}
	// checkSegments expects the original TTL's header checksum to verify:
	// it does, every segment's header was recomputed after forwarding.
	checkSegments(t, false, segs, payload, 1448, 0x18)
	pipeline.ReleaseBatch(segs)
	nic, _ := st.NIC("b")
	if got := nic.Stats.TxPackets.Load(); got != 14 {
		t.Errorf("b tx_packets %d, want 14 (segments)", got)
	}
}

// FuzzSegmentGSO: any bytes with any metadata: no panic, and what comes out
// is either refused or consistent.
func FuzzSegmentGSO(f *testing.F) {
	b, g := superTCP(false, pattern(3000), 1000, 0x10)
	f.Add(b, uint8(g.Type), g.SegSize, g.CsumStart, g.CsumOffset, true)
	b6, g6 := superTCP(true, pattern(3000), 1000, 0x10)
	f.Add(b6, uint8(g6.Type), g6.SegSize, g6.CsumStart, g6.CsumOffset, true)
	f.Add(pipelineUDP4(pattern(500)), uint8(pipeline.GSOUDPL4), uint16(100), uint16(20), uint16(6), true)
	f.Fuzz(func(t *testing.T, data []byte, typ uint8, seg, start, off uint16, needs bool) {
		if len(data) > pipeline.LargeDataSize {
			return
		}
		p := pipeline.DefaultPool.Get(len(data))
		defer p.Release()
		p.SetData(data)
		p.GSO = pipeline.GSO{Type: pipeline.GSOType(typ % 4), SegSize: seg, NeedsCsum: needs, CsumStart: start, CsumOffset: off}
		if seg != 0 && len(data)/int(seg) > 4096 {
			return
		}
		segs, ok := pipeline.SegmentGSO(p, nil, nil)
		total := 0
		for _, s := range segs {
			total += s.Len()
		}
		if ok && total < len(data) {
			t.Errorf("segments hold %d bytes of %d", total, len(data))
		}
		pipeline.ReleaseBatch(segs)
		pipeline.CompleteChecksum(p)
	})
}
