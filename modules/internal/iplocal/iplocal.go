// Package iplocal has the steps of local delivery and local output that
// network.ipv4 and network.ipv6 take the same way: handing packets to their
// transport protocols by runs, handing ICMP messages to a raw ICMP transport
// and errors to the transport whose packet they quote, and queuing locally
// generated packets after the Output hook. What differs between the families
// (which ICMP message a protocol nobody handles gets, how an error maps to a
// pipeline.TransportErrorKind) is passed in.
// Nothing here allocates: the callbacks are closures on the caller's stack.
package iplocal

import "github.com/pipestack/pipestack/pipeline"

// Deliver hands packets addressed to the stack (Data() at their transport
// header, TransProto set; nil slots are skipped) to their transport
// protocols, each run of one protocol as a batch, and returns how many it
// handed over. The packets of a protocol the pipeline has no transport for
// are rewound to their network header and given to unknown, which takes
// ownership of them (an ICMP error, a drop). Every slot is nil on return.
func Deliver(b *pipeline.Batch, pkts []*pipeline.Packet, unknown func(*pipeline.Packet)) (delivered uint64) {
	for i := 0; i < len(pkts); {
		pkt := pkts[i]
		if pkt == nil {
			i++
			continue
		}
		proto := pkt.TransProto
		j := i + 1
		for j < len(pkts) && (pkts[j] == nil || pkts[j].TransProto == proto) {
			j++
		}
		if tp := b.TransportProtocol(proto); tp != nil {
			for _, q := range pkts[i:j] {
				if q != nil {
					delivered++
				}
			}
			tp.HandlePackets(b, pkts[i:j])
		} else {
			for k := i; k < j; k++ {
				if q := pkts[k]; q != nil {
					pkts[k] = nil
					q.RewindToNetwork()
					unknown(q)
				}
			}
		}
		clear(pkts[i:j])
		i = j
	}
	return delivered
}

// ICMP passes on an ICMP message addressed to the stack (Data() at its ICMP
// header) that the network module does not consume itself, and takes
// ownership of pkt. An error (isError) goes to the transport of the packet
// it quotes through toTransport, which takes ownership of the packet it is
// given when it returns true; every message also goes to the raw ICMP
// transport of protocol raw when the pipeline has one (ping sockets, a test
// collector), as a raw ICMP socket sees them all — the transport then gets
// a copy of an error (this is the error path only).
func ICMP(b *pipeline.Batch, pkt *pipeline.Packet, raw pipeline.TransportProtocolNumber, isError bool, toTransport func(*pipeline.Packet) bool) {
	rawTP := b.TransportProtocol(raw)
	if isError {
		if rawTP == nil {
			if toTransport(pkt) {
				return
			}
		} else if cp := pkt.Clone(); !toTransport(cp) {
			cp.Release()
		}
	}
	if rawTP != nil {
		one := [1]*pipeline.Packet{pkt}
		rawTP.HandlePackets(b, one[:])
		return
	}
	pkt.Release()
}

// ErrorToTransport hands an ICMP error (kind, info) about quote, the packet
// it quotes from its network header, to transport protocol proto when that
// protocol handles errors (pipeline.TransportErrorHandler), which takes
// ownership of pkt, the error message. It reports whether it did.
func ErrorToTransport(b *pipeline.Batch, proto uint8, kind pipeline.TransportErrorKind, info uint32, quote []byte, pkt *pipeline.Packet) bool {
	h, ok := b.TransportProtocol(pipeline.TransportProtocolNumber(proto)).(pipeline.TransportErrorHandler)
	if !ok {
		return false
	}
	h.HandleError(b, kind, info, quote, pkt)
	return true
}

// Output runs the Output hook over locally generated packets (routed, Data()
// at their network header, PathMTU set) and queues those that pass (Queue).
// Every slot is nil on return; it returns how many packets passed the hook.
func Output(b *pipeline.Batch, pkts []*pipeline.Packet) (sent uint64) {
	b.RunHook(pipeline.Output, pkts)
	return Queue(b, pkts)
}

// Queue hands packets past the Output hook to b.Output, whole: one larger
// than its path MTU is fragmented at transmit, after Postrouting (see
// pipeline.Fragmenter). It is where a packet stolen at Output resumes. Every
// slot is nil on return; it returns how many packets it queued.
func Queue(b *pipeline.Batch, pkts []*pipeline.Packet) (sent uint64) {
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		sent++
		b.Output(pkt)
	}
	return sent
}
