package udp

import (
	"encoding/binary"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// HandleError implements pipeline.TransportErrorHandler: an ICMP error about
// a datagram we sent goes to the socket that sent it (found by the quoted
// addresses and ports: the quoted source is ours), which reports it on its
// next read when it is connected (ECONNREFUSED for port unreachable).
func (p *Protocol) HandleError(b *pipeline.Batch, kind pipeline.TransportErrorKind, info uint32, quoted []byte, pkt *pipeline.Packet) {
	var src, dst netip.Addr
	var hl int
	switch quoted[0] >> 4 {
	case 4:
		hl = int(quoted[0]&0xf) * 4
		src = netip.AddrFrom4([4]byte(quoted[12:16]))
		dst = netip.AddrFrom4([4]byte(quoted[16:20]))
	case 6:
		var ok bool
		if hl, ok = udpOffset6(quoted); !ok {
			pkt.Release()
			return
		}
		src = netip.AddrFrom16([16]byte(quoted[8:24]))
		dst = netip.AddrFrom16([16]byte(quoted[24:40]))
	default:
		pkt.Release()
		return
	}
	if len(quoted) < hl+8 {
		pkt.Release()
		return
	}
	sport := binary.BigEndian.Uint16(quoted[hl:])
	dport := binary.BigEndian.Uint16(quoted[hl+2:])
	p.t.mu.RLock()
	e := p.t.lookup(src, sport, dst, dport)
	p.t.mu.RUnlock()
	if e == nil {
		pkt.Release()
		return
	}
	e.HandleError(kind, info, pkt)
}

// udpOffset6 finds the UDP header in a quoted IPv6 packet, past the
// extension headers that were quoted (at most 8 of them).
func udpOffset6(q []byte) (int, bool) {
	if len(q) < wire.IPv6HeaderSize {
		return 0, false
	}
	nh, off := q[6], wire.IPv6HeaderSize
	for i := 0; i < 8; i++ {
		switch nh {
		case wire.ProtocolUDP:
			return off, true
		case wire.ProtocolHopByHop, wire.ProtocolRouting, wire.ProtocolDestOptions:
			if off+8 > len(q) {
				return 0, false
			}
			nh, off = q[off], off+(int(q[off+1])+1)*8
		case wire.ProtocolFragment:
			if off+8 > len(q) || binary.BigEndian.Uint16(q[off+2:])&^7 != 0 {
				return 0, false
			}
			nh, off = q[off], off+wire.IPv6FragmentSize
		default:
			return 0, false
		}
	}
	return 0, false
}

var _ pipeline.TransportErrorHandler = (*Protocol)(nil)
