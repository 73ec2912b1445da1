package tun

import (
	"encoding/binary"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// tcpSeg builds an IPv4 TCP segment of flow (sport) with a complete
// checksum.
func tcpSeg(sport uint16, seq uint32, flags uint8, payload []byte) []byte {
	b := make([]byte, 20+32+len(payload))
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: uint16(seq), Flags: wire.IPv4FlagDontFragment,
		TTL: 63, Protocol: wire.ProtocolTCP, Src: [4]byte{10, 10, 2, 2}, Dst: [4]byte{10, 10, 1, 2}})
	t := wire.TCP(b[20:])
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], 40000)
	t.SetSeq(seq)
	t.SetAck(1000)
	t[12] = 8 << 4
	t.SetFlags(flags)
	t.SetWindow(500)
	copy(t[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	copy(t[32:], payload)
	t.SetChecksum(t.CalculateChecksum(wire.IPv4PseudoChecksum(wire.IPv4(b), uint16(len(t)))))
	return b
}

func packet(b []byte) *pipeline.Packet {
	p := pipeline.DefaultPool.Get(len(b))
	p.SetData(b)
	p.SetNetworkHeader()
	p.NetProto = pipeline.IPv4ProtocolNumber
	return p
}

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}

// udpDgram builds an IPv4 UDP datagram of flow (sport) with a complete
// checksum (or none, when noCsum), IP ID id.
func udpDgram(sport, id uint16, payload []byte, noCsum bool) []byte {
	b := make([]byte, 20+8+len(payload))
	wire.IPv4(b).Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: id, Flags: wire.IPv4FlagDontFragment,
		TTL: 63, Protocol: wire.ProtocolUDP, Src: [4]byte{10, 10, 1, 2}, Dst: [4]byte{10, 10, 2, 2}})
	u := wire.UDP(b[20:])
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], 9000)
	u.SetLength(uint16(len(u)))
	copy(u[8:], payload)
	if !noCsum {
		u.SetChecksum(u.CalculateChecksum(wire.IPv4PseudoChecksum(wire.IPv4(b), uint16(len(u)))))
	}
	return b
}

// udpDgram6 is udpDgram over IPv6.
func udpDgram6(sport uint16, payload []byte) []byte {
	b := make([]byte, 40+8+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b[6], b[7] = wire.ProtocolUDP, 64
	copy(b[8:], []byte{0xfd, 0, 1, 15: 2})
	copy(b[24:], []byte{0xfd, 0, 2, 15: 2})
	u := wire.UDP(b[40:])
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], 9000)
	u.SetLength(uint16(len(u)))
	copy(u[8:], payload)
	u.SetChecksum(u.CalculateChecksum(wire.PseudoHeaderChecksum(wire.ProtocolUDP, b[8:24], b[24:40], uint16(len(u)))))
	return b
}

func packet6(b []byte) *pipeline.Packet {
	p := packet(b)
	p.NetProto = pipeline.IPv6ProtocolNumber
	return p
}
