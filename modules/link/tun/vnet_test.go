package tun

import (
	"encoding/binary"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := vnetHdr{flags: 1, gsoType: vnetGSOTCPv4, hdrLen: 52, gsoSize: 1448, csumStart: 20, csumOffset: 16}
	b := make([]byte, vnetHdrLen)
	h.encode(b)
	if binary.NativeEndian.Uint16(b[4:]) != 1448 || b[1] != vnetGSOTCPv4 {
		t.Fatalf("layout: % x", b)
	}
	var g vnetHdr
	g.decode(b)
	if g != h {
		t.Fatalf("decode(encode(%+v)) = %+v", h, g)
	}
}

func TestVnetToPacket(t *testing.T) {
	seg := tcpSeg(1, 100, 0x10, fill(4000, 1)) // one "super-packet" of 4000 bytes
	p := packet(seg)
	defer p.Release()
	// hdr_len as the kernel's forwarding path may give it (wrong): ignored.
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 1500, gsoSize: 1448, csumStart: 20, csumOffset: 16}
	if r := h.toPacket(p.Data(), p); r != rxGSO {
		t.Fatalf("toPacket = %d, want rxGSO", r)
	}
	if p.GSO.HdrLen != 52 || p.GSO.SegSize != 1448 || p.GSO.Type != pipeline.GSOTCPv4 || !p.GSO.NeedsCsum || !p.CsumVerified {
		t.Errorf("GSO %+v verified %v", p.GSO, p.CsumVerified)
	}

	q := packet(tcpSeg(1, 100, 0x10, fill(1000, 1)))
	defer q.Release()
	if r := h.toPacket(q.Data(), q); r != rxPartial || q.GSO.Type != pipeline.GSONone || !q.GSO.NeedsCsum {
		t.Errorf("one segment: %d %+v, want a plain packet with a partial checksum", r, q.GSO)
	}

	bad := []vnetHdr{
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4 | vnetGSOECN, gsoSize: 1448, csumStart: 20, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv6, gsoSize: 1448, csumStart: 20, csumOffset: 16}, // IPv4 packet
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOUDP, gsoSize: 1448, csumStart: 20, csumOffset: 6},
		{flags: 0, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 20, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 0, csumStart: 20, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 9000, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, csumStart: 4050, csumOffset: 16},
	}
	for i, h := range bad {
		r := packet(seg)
		if got := h.toPacket(r.Data(), r); got != rxBad {
			t.Errorf("case %d (%+v): %d, want rxBad", i, h, got)
		}
		r.Release()
	}
}

func TestVnetFromPacket(t *testing.T) {
	p := packet(tcpSeg(1, 100, 0x90, fill(4000, 1))) // CWR|ACK
	defer p.Release()
	p.GSO = pipeline.GSO{Type: pipeline.GSOTCPv4, SegSize: 1448, HdrLen: 52, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	var h vnetHdr
	if !h.fromPacket(p) {
		t.Fatal("fromPacket refused")
	}
	want := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4 | vnetGSOECN, hdrLen: 52, gsoSize: 1448, csumStart: 20, csumOffset: 16}
	if h != want {
		t.Errorf("header %+v, want %+v", h, want)
	}
	p.GSO = pipeline.GSO{}
	if !h.fromPacket(p) || h != (vnetHdr{}) {
		t.Errorf("plain packet: %+v", h)
	}
	p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 4500}
	if h.fromPacket(p) {
		t.Error("checksum offset past the end accepted")
	}
}
