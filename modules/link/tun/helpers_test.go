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
