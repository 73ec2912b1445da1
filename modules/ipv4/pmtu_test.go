package ipv4_test

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

func init() { pipeline.RegisterModule(new(errSpyModule)) }

// errSpyModule (transport.errspy_test) is a test transport for one
// protocol that records the errors the network layer reports to it
// (TransportErrorHandler) and drops what it receives.
type errSpyModule struct {
	Protocol int    `yaml:"protocol"`
	Name     string `yaml:"name"`
}

type errReport struct {
	kind pipeline.TransportErrorKind
	info uint32
}

var errSpies sync.Map // name → *errSpy

type errSpy struct {
	mu  sync.Mutex
	got []errReport
}

func spyNamed(name string) *errSpy {
	v, _ := errSpies.LoadOrStore(name, &errSpy{})
	return v.(*errSpy)
}

func (s *errSpy) reports() []errReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]errReport(nil), s.got...)
}

func (*errSpyModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "transport.errspy_test", Summary: "test only", New: func() pipeline.Module { return new(errSpyModule) }}
}

func (m *errSpyModule) TransportProtocol() pipeline.TransportProtocol {
	return &errSpyProto{num: pipeline.TransportProtocolNumber(m.Protocol), s: spyNamed(m.Name)}
}

type errSpyProto struct {
	num pipeline.TransportProtocolNumber
	s   *errSpy
}

func (p *errSpyProto) Number() pipeline.TransportProtocolNumber { return p.num }
func (p *errSpyProto) ParsePorts(b []byte) (uint16, uint16, bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), true
}
func (p *errSpyProto) HandlePackets(b *pipeline.Batch, pkts []*pipeline.Packet) {
	pipeline.ReleaseBatch(pkts)
}
func (p *errSpyProto) HandleError(b *pipeline.Batch, kind pipeline.TransportErrorKind, info uint32, quoted []byte, pkt *pipeline.Packet) {
	p.s.mu.Lock()
	p.s.got = append(p.s.got, errReport{kind, info})
	p.s.mu.Unlock()
	pkt.Release()
}

var _ pipeline.TransportErrorHandler = (*errSpyProto)(nil)

// pmtuLab: host h (10.0.1.2, MTU 1500) — router r (a 10.0.1.1, b 10.0.2.1
// with MTU 1000) — host far (10.0.2.2, MTU 1000), on a manual clock. h's
// transport for protocol 17 records the errors it is told of; far
// collects what reaches it.
type pmtuLab struct {
	h, r, far *pt.Node
	spy       *errSpy
	got       *pt.Collector
	clock     *pt.ManualClock
}

func newPMTULab(t *testing.T, hostIPv4 string, connect bool) *pmtuLab {
	t.Helper()
	name := pt.UniqueName(t)
	clock := pt.NewManualClock()
	opts := pipeline.Options{Clock: clock}
	l := &pmtuLab{clock: clock, spy: spyNamed(name), got: pt.Collected(name + "-far")}
	l.h = pt.NewNode(t, "h", `
name: h
modules: [`+hostIPv4+`, {module: transport.errspy_test, protocol: 17, name: `+name+`}]
links:
  - {name: eth0, module: link.channel, mtu: 1500, addresses: [10.0.1.2/24]}
routes:
  - {to: default, via: 10.0.1.1, link: eth0}
`, opts)
	l.r = pt.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, mtu: 1500, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1000, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, opts)
	l.far = pt.NewNode(t, "far", `
name: far
modules: [network.ipv4, {module: transport.collect, protocol: 17, name: `+name+`-far}]
links:
  - {name: eth0, module: link.channel, mtu: 1000, addresses: [10.0.2.2/24]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`, opts)
	if connect {
		pt.Connect(t, l.h, "eth0", l.r, "a")
		pt.Connect(t, l.r, "b", l.far, "eth0")
	}
	return l
}

// datagram is a UDP-shaped message of n bytes (ports 4000 → 9000).
func datagram(n int) []byte {
	d := make([]byte, n)
	binary.BigEndian.PutUint16(d, 4000)
	binary.BigEndian.PutUint16(d[2:], 9000)
	binary.BigEndian.PutUint16(d[4:], uint16(n))
	return d
}

func (l *pmtuLab) pathMTU(t *testing.T, dst string) int {
	t.Helper()
	mtu := 0
	l.h.Stack.Do(func(b *pipeline.Batch) {
		nic, _ := b.Gen.NICByName("eth0")
		mtu = b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv4ProtocolNumber).(pipeline.PathMTUReporter).PathMTU(b, netip.MustParseAddr(dst), 0)
	})
	return mtu
}

// Path MTU discovery for the stack's own packets, as Linux's default
// (IP_PMTUDISC_WANT): a datagram that fits the link leaves with DF; the
// router before the smaller link answers fragmentation needed; the host
// lowers its path MTU to the destination (its transport is told the new
// value) and sends the next datagram of that size without DF, in
// fragments that fit; after path_mtu.timeout it tries the link's MTU
// again.
func TestPathMTUDiscovery(t *testing.T) {
	l := newPMTULab(t, "network.ipv4", true)
	if got := l.pathMTU(t, "10.0.2.2"); got != 1500 {
		t.Fatalf("path MTU %d before anything was learnt, want the link's 1500", got)
	}
	// A small datagram: DF set, delivered.
	l.h.SendIPv4(t, "10.0.2.2", pipeline.UDPProtocolNumber, datagram(100))
	small := l.got.Wait(t, 5*time.Second)
	if !wire.IPv4(small).DontFragment() {
		t.Error("a local datagram that fits went without DF")
	}
	// 1400 bytes: DF, too big for b: fragmentation needed from r.
	l.h.SendIPv4(t, "10.0.2.2", pipeline.UDPProtocolNumber, datagram(1400))
	pt.Eventually(t, 5*time.Second, func() bool { return len(l.spy.reports()) > 0 }, "no error reported to the transport (%s | %s)", l.h.DumpCounters(), l.r.DumpCounters())
	if got := l.spy.reports(); got[0] != (errReport{pipeline.ErrorPacketTooBig, 1000}) {
		t.Errorf("transport told %+v, want packet too big with path MTU 1000", got)
	}
	l.r.WantCounters(t, "ipv4", map[string]uint64{"too_big": 1})
	l.h.WantCounters(t, "ipv4", map[string]uint64{"icmp_frag_needed_in": 1, "pmtu_updates": 1, "pmtu_rejected": 0})
	if got := l.pathMTU(t, "10.0.2.2"); got != 1000 {
		t.Fatalf("path MTU %d after fragmentation needed, want 1000", got)
	}
	if got := l.pathMTU(t, "10.0.1.1"); got != 1500 {
		t.Errorf("path MTU to another destination %d, want 1500", got)
	}
	// Sent again it goes without DF, in fragments of at most 1000 bytes,
	// which r forwards and far reassembles.
	l.h.SendIPv4(t, "10.0.2.2", pipeline.UDPProtocolNumber, datagram(1400))
	whole := l.got.Wait(t, 5*time.Second)
	if len(whole) != 1420 {
		t.Fatalf("far got %d bytes, want the 1420-byte datagram", len(whole))
	}
	l.h.WantCounters(t, "ipv4", map[string]uint64{"frag_ok": 1, "frag_created": 2})
	l.r.WantCounters(t, "ipv4", map[string]uint64{"too_big": 1, "forwarded": 3})
	// The echo reply to a large ping from there is cut to the learnt path
	// MTU by h itself (ICMP has no DF, as Linux's ICMP socket).
	l.far.SendIPv4(t, "10.0.1.2", pipeline.ICMPv4ProtocolNumber, pt.Echo4("0.0.0.0", "0.0.0.0", 64, 9, 9, make([]byte, 1372))[20:])
	pt.Eventually(t, 5*time.Second, func() bool { return l.h.Counter("ipv4", "frag_ok") == 2 }, "h did not fragment its echo reply (%s)", l.h.DumpCounters())
	l.h.WantCounters(t, "ipv4", map[string]uint64{"icmp_echo_reply_out": 1, "frag_created": 4})
	// The path MTU expires (Linux's mtu_expires, 10 minutes).
	l.clock.Advance(10*time.Minute + time.Second)
	if got := l.pathMTU(t, "10.0.2.2"); got != 1500 {
		t.Errorf("path MTU %d after the timeout, want 1500 again", got)
	}
}

// fragNeeded is an ICMP fragmentation needed message from the router
// about a packet src → dst of total length total (DF as given), as the
// router's link a would deliver it to h.
func fragNeeded(src, dst string, total int, df bool, mtu uint16) []byte {
	q := make([]byte, 28)
	f := wire.IPv4Fields{TotalLength: uint16(total), TTL: 63, Protocol: wire.ProtocolUDP, Src: addr4(src), Dst: addr4(dst)}
	if df {
		f.Flags = wire.IPv4FlagDontFragment
	}
	wire.IPv4(q).Encode(&f)
	binary.BigEndian.PutUint16(q[20:], 4000)
	binary.BigEndian.PutUint16(q[22:], 9000)
	m := make([]byte, 8+len(q))
	wire.ICMPv4(m).Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4DstUnreachable, Code: wire.ICMPv4FragmentationNeeded, Rest: wire.ICMPv4FragNeededRest(mtu)})
	copy(m[8:], q)
	wire.ICMPv4(m).SetChecksum(wire.ICMPv4(m).CalculateChecksum())
	p := make([]byte, 20+len(m))
	wire.IPv4(p).Encode(&wire.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: wire.ProtocolICMP, Src: addr4("10.0.1.1"), Dst: addr4("10.0.1.2")})
	copy(p[20:], m)
	return p
}

// The checks a fragmentation needed message passes before it lowers a
// path MTU (RFC 1191, Linux): the quoted packet is ours and had DF, the
// reported MTU is below its length; a report below path_mtu.min (552 by
// default; 0 from an old router) sets the minimum and turns DF off for
// that destination; a larger report never raises what is known.
func TestPathMTUChecks(t *testing.T) {
	l := newPMTULab(t, "network.ipv4", false) // h alone: the test reads its link
	ep := l.h.Link(t, "eth0")
	for _, tc := range []struct {
		name      string
		msg       []byte
		rejected  bool
		want      int
		dst       string
		wantNoDF  bool
		wantTold  uint32
		wantCount uint64
	}{
		{name: "not from us", msg: fragNeeded("10.0.1.7", "10.0.2.2", 1400, true, 1000), rejected: true, dst: "10.0.2.2", want: 1500},
		{name: "no DF", msg: fragNeeded("10.0.1.2", "10.0.2.2", 1400, false, 1000), rejected: true, dst: "10.0.2.2", want: 1500},
		{name: "would have fitted", msg: fragNeeded("10.0.1.2", "10.0.2.2", 900, true, 1000), rejected: true, dst: "10.0.2.2", want: 1500},
		{name: "valid", msg: fragNeeded("10.0.1.2", "10.0.2.2", 1400, true, 1200), dst: "10.0.2.2", want: 1200, wantTold: 1200},
		{name: "larger never raises", msg: fragNeeded("10.0.1.2", "10.0.2.2", 1400, true, 1300), dst: "10.0.2.2", want: 1200, wantTold: 1200},
		{name: "below min", msg: fragNeeded("10.0.1.2", "10.0.3.3", 1400, true, 300), dst: "10.0.3.3", want: 552, wantNoDF: true, wantTold: 552},
		{name: "old router", msg: fragNeeded("10.0.1.2", "10.0.4.4", 1400, true, 0), dst: "10.0.4.4", want: 552, wantNoDF: true, wantTold: 552},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(l.spy.reports())
			rej := l.h.Counter("ipv4", "pmtu_rejected")
			ep.InjectFrames([][]byte{tc.msg})
			if got := l.h.Counter("ipv4", "pmtu_rejected") - rej; (got == 1) != tc.rejected {
				t.Errorf("pmtu_rejected +%d, rejected %v", got, tc.rejected)
			}
			if got := l.pathMTU(t, tc.dst); got != tc.want {
				t.Errorf("path MTU to %s %d, want %d", tc.dst, got, tc.want)
			}
			reports := l.spy.reports()[before:]
			switch {
			case tc.rejected && len(reports) != 0:
				t.Errorf("a rejected message reached the transport: %+v", reports)
			case !tc.rejected && (len(reports) != 1 || reports[0] != errReport{pipeline.ErrorPacketTooBig, tc.wantTold}):
				t.Errorf("transport told %+v, want packet too big %d", reports, tc.wantTold)
			}
			if tc.wantNoDF {
				pt.Drain(ep)
				l.h.SendIPv4(t, tc.dst, pipeline.UDPProtocolNumber, datagram(500))
				out := pt.Drain(ep)
				if len(out) != 1 || wire.IPv4(out[0]).DontFragment() {
					t.Errorf("after a report below the minimum: %d packets, DF %v; want one without DF", len(out), len(out) == 1 && wire.IPv4(out[0]).DontFragment())
				}
			}
		})
	}
}

// A packet of ours with DF that meets a link whose MTU is below what its
// sender assumed is not sent: as Linux's ip_fragment, fragmentation needed
// goes to ourselves (through the loopback NIC), so the path MTU cache and
// the transport learn the link's MTU.
func TestPathMTULocalTooBig(t *testing.T) {
	l := newPMTULab(t, "network.ipv4", false)
	ep := l.h.Link(t, "eth0")
	l.h.Stack.Do(func(b *pipeline.Batch) {
		nic, _ := b.Gen.NICByName("eth0")
		pkt := l.h.Stack.Pool().Get(2000)
		body, _ := pkt.Append(2000)
		copy(body, datagram(2000))
		pkt.SetTransportHeader()
		ri := pipeline.RouteInfo{NIC: nic.ID(), LocalAddr: netip.MustParseAddr("10.0.1.2"), RemoteAddr: netip.MustParseAddr("10.0.2.2"),
			NextHop: netip.MustParseAddr("10.0.1.1"), MTU: 9000} // a route MTU the link does not have
		b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv4ProtocolNumber).WritePackets(b, ri, pipeline.NetworkHeaderParams{Protocol: pipeline.UDPProtocolNumber}, []*pipeline.Packet{pkt})
	})
	if out := pt.Drain(ep); len(out) != 0 {
		t.Errorf("%d packets left the link, want none (DF, too big)", len(out))
	}
	if got := l.spy.reports(); len(got) != 1 || got[0] != (errReport{pipeline.ErrorPacketTooBig, 1500}) {
		t.Errorf("transport told %+v, want packet too big 1500", got)
	}
	if got := l.pathMTU(t, "10.0.2.2"); got != 1500 {
		t.Errorf("path MTU %d, want 1500", got)
	}
	l.h.WantCounters(t, "ipv4", map[string]uint64{"too_big_local": 1, "icmp_frag_needed_in": 1, "pmtu_updates": 1})
}
