package afpacket

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// tcpSuper builds an IPv4/TCP packet with payload bytes of data and a
// partial checksum (the pseudo-header sum in the checksum field), as a
// sender with TSO hands it to its device.
func tcpSuper(payload int) []byte {
	b := make([]byte, 40+payload)
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: 7, TTL: 64, Protocol: wire.ProtocolTCP,
		Src: netip.MustParseAddr("10.9.0.2").As4(), Dst: netip.MustParseAddr("10.9.0.1").As4()})
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5001)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = 5 << 4
	tcp[13] = 0x18 // PSH|ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	for i := range payload {
		tcp[20+i] = byte(i)
	}
	copy(tcp[20:], "psaf-test-gso")
	binary.BigEndian.PutUint16(tcp[16:], wire.PseudoHeaderChecksum(wire.ProtocolTCP, b[12:16], b[16:20], uint16(len(tcp))))
	return b
}

// The virtio-net header of a TCPv4 TSO frame as the kernel writes it in
// front of an Ethernet frame, parsed into the stack's metadata (offsets from
// the network header, HdrLen from the TCP header) and written back.
func TestVnetHeader(t *testing.T) {
	raw := make([]byte, vnetHdrLen)
	raw[0], raw[1] = vnetFlagNeedsCsum, vnetGSOTCPv4|vnetGSOECN
	ne := binary.NativeEndian
	ne.PutUint16(raw[2:], 200) // skb_headlen: more than the headers
	ne.PutUint16(raw[4:], 1448)
	ne.PutUint16(raw[6:], 34)
	ne.PutUint16(raw[8:], 16)
	h := decodeVnetHdr(raw)
	nd := tcpSuper(3000) // IPv4 (20) + TCP (20) + payload
	nd[20+12] = 8 << 4   // TCP header with 12 bytes of options
	g, csumOK, ok := gsoFromVnet(h, 14, nd)
	want := pipeline.GSO{Type: pipeline.GSOTCPv4, SegSize: 1448, HdrLen: 52, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	if !ok || csumOK || g != want {
		t.Fatalf("got %+v ok=%t csumOK=%t, want %+v", g, ok, csumOK, want)
	}
	back := vnetFromGSO(&g, 14, nd)
	if back.flags != vnetFlagNeedsCsum || back.gsoType != vnetGSOTCPv4 || back.gsoSize != 1448 || back.csumStart != 34 || back.csumOffset != 16 || back.hdrLen != 66 {
		t.Fatalf("encoded back %+v", back)
	}
	var enc [vnetHdrLen]byte
	back.encode(enc[:])
	if decodeVnetHdr(enc[:]) != back {
		t.Fatal("encode/decode round trip")
	}
	// CWR set: the ECN bit goes with it.
	nd[20+13] |= 0x80
	if vnetFromGSO(&g, 14, nd).gsoType != vnetGSOTCPv4|vnetGSOECN {
		t.Fatal("no ECN bit for a super-packet with CWR")
	}
	// Impossible or unsupported: a checksum outside the frame, UFO, no
	// segment size.
	for _, bad := range []vnetHdr{
		{flags: vnetFlagNeedsCsum, csumStart: 14 + 3030, csumOffset: 16},
		{flags: vnetFlagNeedsCsum, csumStart: 10, csumOffset: 16},
		{gsoType: vnetGSOUDP, gsoSize: 1000},
		{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, csumStart: 34, csumOffset: 16},
		{gsoType: 9, gsoSize: 1000},
	} {
		if _, _, ok := gsoFromVnet(bad, 14, nd); ok {
			t.Errorf("accepted %+v", bad)
		}
	}
	// DATA_VALID alone: a verified checksum.
	if g, csumOK, ok := gsoFromVnet(vnetHdr{flags: vnetFlagDataValid}, 14, nd); !ok || !csumOK || g != (pipeline.GSO{}) {
		t.Fatalf("DATA_VALID: %+v %t %t", g, csumOK, ok)
	}
}

// Without a vnet header, a partial checksum and a frame over the MTU are
// recognised from the headers.
func TestPartialCsum(t *testing.T) {
	g, ok := partialCsum(tcpSuper(100), 1500)
	if !ok || g != (pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 16}) {
		t.Fatalf("small: %+v %t", g, ok)
	}
	g, ok = partialCsum(tcpSuper(5000), 1500)
	if !ok || g != (pipeline.GSO{Type: pipeline.GSOTCPv4, SegSize: 1460, HdrLen: 40, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}) {
		t.Fatalf("super: %+v %t", g, ok)
	}
	frag := tcpSuper(100)
	frag[6] = 0x20 // more fragments
	if _, ok := partialCsum(frag, 1500); ok {
		t.Fatal("accepted a fragment")
	}
}
