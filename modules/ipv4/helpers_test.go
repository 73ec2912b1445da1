package ipv4_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func init() { pipeline.RegisterModule(new(rejectModule)) }

// rejectModule (transport.reject_test) is a test transport that answers
// every packet of its protocol through NetworkEndpoint.ReturnError with a
// configured kind: how UDP (port unreachable), a filter target (admin
// prohibited) or ARP (host unreachable) use the network layer.
type rejectModule struct {
	Protocol int    `yaml:"protocol"`
	Kind     string `yaml:"kind"`
}

var rejectKinds = map[string]pipeline.TransportErrorKind{
	"port": pipeline.ErrorPortUnreachable, "admin": pipeline.ErrorAdminProhibited,
	"host": pipeline.ErrorHostUnreachable, "net": pipeline.ErrorNetUnreachable,
	"proto": pipeline.ErrorProtocolUnreachable, "ttl": pipeline.ErrorTTLExceeded,
	"too_big": pipeline.ErrorPacketTooBig,
}

func (*rejectModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "transport.reject_test", Summary: "test only", New: func() pipeline.Module { return new(rejectModule) }}
}

func (m *rejectModule) Validate() error {
	if _, ok := rejectKinds[m.Kind]; !ok {
		return errors.New("unknown kind")
	}
	return nil
}

func (m *rejectModule) TransportProtocol() pipeline.TransportProtocol {
	return &rejectProto{num: pipeline.TransportProtocolNumber(m.Protocol), kind: rejectKinds[m.Kind]}
}

type rejectProto struct {
	num  pipeline.TransportProtocolNumber
	kind pipeline.TransportErrorKind
}

func (p *rejectProto) Number() pipeline.TransportProtocolNumber { return p.num }
func (p *rejectProto) ParsePorts([]byte) (uint16, uint16, bool) { return 0, 0, false }
func (p *rejectProto) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	for i, pkt := range pkts {
		if pkt == nil {
			continue
		}
		pkts[i] = nil
		b.Gen.NetworkEndpoint(pkt.InNIC, pipeline.IPv4ProtocolNumber).ReturnError(b, pkt, p.kind)
	}
}

// lab is a router (links a 10.0.1.1/24, b 10.0.2.1/24 with MTU 1400, c
// 10.0.3.1/24; 192.168.0.0/16 via 10.0.3.2 on c) whose links the test
// drives by hand.
type lab struct {
	r       *pt.Node
	a, b, c *channel.Endpoint
	clock   *pt.ManualClock
}

func newLab(t *testing.T, modules string) *lab {
	t.Helper()
	clock := pt.NewManualClock()
	cfg := fmt.Sprintf(`
name: router
modules: [%s]
links:
  - {name: a, module: link.channel, mtu: 9000, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1400, addresses: [10.0.2.1/24]}
  - {name: c, module: link.channel, addresses: [10.0.3.1/24]}
forwarding: {ipv4: true}
routes:
  - {to: 192.168.0.0/16, via: 10.0.3.2, link: c}
`, modules)
	r := pt.NewNode(t, "router", cfg, pipeline.Options{Clock: clock})
	return &lab{r: r, a: r.Link(t, "a"), b: r.Link(t, "b"), c: r.Link(t, "c"), clock: clock}
}

func (l *lab) inject(ep *channel.Endpoint, frames ...[]byte) { ep.InjectFrames(frames) }

func (l *lab) counter(name string) uint64 { return l.r.Counter("ipv4", name) }

func (l *lab) wantCounters(t *testing.T, want map[string]uint64) {
	t.Helper()
	l.r.WantCounters(t, "ipv4", want)
}

// withHeader rewrites an IPv4 packet's header with f applied (checksum
// recomputed).
func withHeader(pkt []byte, f func(h wire.IPv4)) []byte {
	p := append([]byte(nil), pkt...)
	f(wire.IPv4(p))
	wire.IPv4(p).SetChecksum(wire.IPv4(p).CalculateChecksum())
	return p
}

// withOptions rebuilds an IPv4 packet with options in its header.
func withOptions(pkt []byte, opts []byte) []byte {
	h := wire.IPv4(pkt)
	hl := wire.IPv4HeaderSize(len(opts))
	out := make([]byte, hl+len(h.Payload()))
	wire.IPv4(out).Encode(&wire.IPv4Fields{TOS: h.TOS(), TotalLength: uint16(len(out)), ID: h.ID(), TTL: h.TTL(),
		Protocol: h.Protocol(), Src: h.Src(), Dst: h.Dst(), Options: opts})
	copy(out[hl:], h.Payload())
	return out
}

// fragmentsOf cuts an IPv4 packet into fragments of the given payload sizes
// (each but the last a multiple of 8; the rest goes in the last).
func fragmentsOf(pkt []byte, sizes ...int) [][]byte {
	h := wire.IPv4(pkt)
	pl := h.Payload()
	var out [][]byte
	off := 0
	for i := 0; off < len(pl); i++ {
		n := len(pl) - off
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		out = append(out, fragment(pkt, off, pl[off:off+n], off+n < len(pl)))
		off += n
	}
	return out
}

// fragment builds one fragment of pkt carrying data at byte offset off.
func fragment(pkt []byte, off int, data []byte, mf bool) []byte {
	h := wire.IPv4(pkt)
	f := make([]byte, wire.IPv4MinimumSize+len(data))
	var flags uint8
	if mf {
		flags = wire.IPv4FlagMoreFragments
	}
	wire.IPv4(f).Encode(&wire.IPv4Fields{TOS: h.TOS(), TotalLength: uint16(len(f)), ID: h.ID(), TTL: h.TTL(),
		Protocol: h.Protocol(), Src: h.Src(), Dst: h.Dst(), Flags: flags, FragmentOffset: uint16(off)})
	copy(f[wire.IPv4MinimumSize:], data)
	return f
}

// bigUDP is a UDP datagram with a recognisable payload.
func bigUDP(src, dst string, id uint16, size int) []byte {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + int(id))
	}
	p := pt.UDP4(src, dst, 4000, 5000, 64, payload)
	return withHeader(p, func(h wire.IPv4) { h.SetID(id) })
}

func addr4(s string) [4]byte { return netip.MustParseAddr(s).As4() }
