package tcp

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// HandleError implements pipeline.TransportErrorHandler: an ICMP error
// about a segment we sent. It goes to the connection of the quoted
// addresses and ports only when the quoted sequence number lies in
// [SND.UNA, SND.MAX] (RFC 5927 §4.1: a blind attacker must guess it).
// Packet too big lowers the MSS to the path MTU and resends at once;
// unreachable errors end a connection still in the handshake (Linux's
// tcp_v4_err) and are kept as a soft error otherwise.
func (p *Protocol) HandleError(b *pipeline.Batch, kind pipeline.TransportErrorKind, info uint32, quoted []byte, pkt *pipeline.Packet) {
	defer pkt.Release()
	var src, dst netip.Addr
	var hl int
	if len(quoted) < 1 {
		return
	}
	switch quoted[0] >> 4 {
	case 4:
		if len(quoted) < wire.IPv4MinimumSize {
			return
		}
		hl = int(quoted[0]&0xf) * 4
		src = netip.AddrFrom4([4]byte(quoted[12:16]))
		dst = netip.AddrFrom4([4]byte(quoted[16:20]))
	case 6:
		if len(quoted) < wire.IPv6HeaderSize || quoted[6] != wire.ProtocolTCP {
			return
		}
		hl = wire.IPv6HeaderSize
		src = netip.AddrFrom16([16]byte(quoted[8:24]))
		dst = netip.AddrFrom16([16]byte(quoted[24:40]))
	default:
		return
	}
	if hl < 20 || len(quoted) < hl+8 {
		return
	}
	sport := binary.BigEndian.Uint16(quoted[hl:])
	dport := binary.BigEndian.Uint16(quoted[hl+2:])
	seq := binary.BigEndian.Uint32(quoted[hl+4:])
	c, _ := p.t.lookup(netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport))
	if c == nil {
		return
	}
	p.c.icmpErrors.Inc()
	now := p.t.now(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed || seqLT(seq, c.sndUna) || seqGT(seq, c.sndMax) {
		p.c.icmpOutOfWind.Inc()
		return
	}
	var err error
	switch kind {
	case pipeline.ErrorPacketTooBig:
		mtu := int(info)
		mss := mtu - c.headerOverhead()
		if c.tsOK {
			mss -= 12
		}
		if mss < 88 || mss >= c.sndMSS {
			return
		}
		p.c.pmtuUpdates.Inc()
		c.sndMSS = mss
		c.ccs.MSS = mss
		if c.rGen == b.Gen && c.riMTU > mtu {
			c.riMTU = mtu
		}
		// Resend what was sent at the old size (Linux's
		// tcp_simple_retransmit): back to SND.UNA, no congestion
		// response.
		c.sndNxt = c.sndUna
		c.rttTiming = false
		c.output(b, now)
		c.flush(b)
		c.resched(now)
		return
	case pipeline.ErrorPortUnreachable, pipeline.ErrorProtocolUnreachable:
		err = syscall.ECONNREFUSED
	case pipeline.ErrorNetUnreachable:
		err = syscall.ENETUNREACH
	case pipeline.ErrorHostUnreachable:
		err = syscall.EHOSTUNREACH
	case pipeline.ErrorAdminProhibited, pipeline.ErrorNetProhibited, pipeline.ErrorHostProhibited:
		err = syscall.EHOSTUNREACH
	default:
		return
	}
	switch c.state {
	case stateSynSent, stateSynRcvd:
		if c.passive {
			c.destroy(nil)
			return
		}
		p.c.attemptFails.Inc()
		c.destroy(err)
	default:
		c.softErr = err
	}
}
