package udp

import (
	"encoding/binary"
	"net/netip"

	"github.com/pipestack/pipestack/pipeline"
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
	e.HandleError(kind, pkt)
}

var _ pipeline.TransportErrorHandler = (*Protocol)(nil)
