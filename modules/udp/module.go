// Package udp is the transport.udp module and its Go socket API.
//
// The module demultiplexes received datagrams to endpoints (sockets) —
// connected 4-tuple first, then a socket bound to the destination
// address and port, then one bound to the wildcard address and the port —
// verifies checksums (a zero checksum, "none", is accepted on IPv4, not on
// IPv6) and answers datagrams for closed ports with an ICMP port
// unreachable, except when they were sent to a broadcast or multicast
// address.
//
// A Go program uses the stack's UDP through ListenPacket and Dial, which
// return a *Conn: a net.PacketConn (and, when connected, a net.Conn) with
// deadlines, over a stack built from a pipeline file:
//
//	s := pipeline.New(pipeline.Options{})
//	s.Apply(cfg) // modules: [network.ipv4, network.ipv6, transport.udp]
//	c, err := udp.ListenPacket(s, "udp4", "10.0.1.2:9000")
//	n, from, err := c.ReadFrom(buf)
//	c.WriteTo(buf[:n], from)
//
// Where the state lives: the socket table is a long-lived object of the
// stack (Stack.Shared under "transport.udp/endpoints"); the per-generation
// protocol object only points at it, so sockets survive a reload, and they
// are closed (readers unblocked with net.ErrClosed) when the stack closes.
//
// Configuration (under modules:):
//
//   - module: transport.udp
//     receive_queue: 256   # datagrams queued per socket before drops (1..65536)
//
// Counters (set "udp"): rx, delivered, sent, no_port, broadcast_no_port,
// bad_checksum, malformed, receive_queue_full.
//
// IPv6: "udp6" sockets (and "udp" ones, which take either family) over
// network.ipv6; the checksum covers the IPv6 pseudo-header with the 32-bit
// length and a zero checksum is refused; the source address is chosen by
// scope (NetworkInterface.SourceAddress) and routes learnt from router
// advertisements are followed.
//
// Not yet: SO_REUSEADDR-style port sharing, multicast group membership.
package udp

import (
	"fmt"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is transport.udp's configuration.
type Module struct {
	// ReceiveQueue is how many datagrams a socket queues before it drops
	// (and counts receive_queue_full). Default 256.
	ReceiveQueue int `yaml:"receive_queue"`

	proto *Protocol
}

// DefaultReceiveQueue is receive_queue's default.
const DefaultReceiveQueue = 256

// maxReceiveQueue bounds receive_queue.
const maxReceiveQueue = 1 << 16

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "transport.udp",
		Summary: "UDP: demultiplexing to sockets, checksums, port unreachable; net.PacketConn API (udp.ListenPacket, udp.Dial)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// Provision sets defaults and builds the protocol object over the stack's
// long-lived socket table.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.ReceiveQueue == 0 {
		m.ReceiveQueue = DefaultReceiveQueue
	}
	c := newCounters(ctx.Counters("udp"))
	t := ctx.Shared(sharedKey, func() any { t := newTable(c); t.rand = ctx.Stack().Rand(); return t }).(*table)
	m.proto = &Protocol{t: t, c: c, pool: ctx.Pool, receiveQueue: m.ReceiveQueue}
	return nil
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.ReceiveQueue < 1 || m.ReceiveQueue > maxReceiveQueue {
		return fmt.Errorf("receive_queue %d out of range 1..%d", m.ReceiveQueue, maxReceiveQueue)
	}
	return nil
}

// Cleanup drops the protocol object; the socket table is the stack's.
func (m *Module) Cleanup() error {
	m.proto = nil
	return nil
}

// TransportProtocol implements pipeline.TransportModule.
func (m *Module) TransportProtocol() pipeline.TransportProtocol {
	if m.proto == nil {
		return nil
	}
	return m.proto
}

var (
	_ pipeline.TransportModule = (*Module)(nil)
	_ pipeline.Provisioner     = (*Module)(nil)
	_ pipeline.Validator       = (*Module)(nil)
	_ pipeline.CleanerUpper    = (*Module)(nil)
)
