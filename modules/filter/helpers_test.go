package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// testNICNames are the links of the generation load builds for (NIC ID →
// name), as Context.LinkIDs.
var testNICNames map[pipeline.NICID]string

// pk describes a test packet.
type pk struct {
	v6           bool
	proto        uint8
	src, dst     string
	sport, dport uint16
	flags        uint8
	opts         []byte // TCP options
	icmpType     uint8
	icmpCode     uint8
	ttl          uint8
	fragOff      uint16 // bytes (IPv4)
	mark         uint32
	l4len        int // bytes of transport data to keep (-1: all)
	payload      int
	in, out      pipeline.NICID
	hook         pipeline.Hook
}

func (p pk) bytes() []byte {
	var l4 []byte
	switch p.proto {
	case 6:
		l4 = make([]byte, 20+(len(p.opts)+3)&^3+p.payload)
		wire.TCP(l4).Encode(&wire.TCPFields{SrcPort: p.sport, DstPort: p.dport, Flags: p.flags, Window: 1000, Options: p.opts})
	case 17:
		l4 = make([]byte, 8+p.payload)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case 1, 58:
		l4 = make([]byte, 8+p.payload)
		l4[0], l4[1] = p.icmpType, p.icmpCode
	default:
		l4 = make([]byte, 8+p.payload)
	}
	if p.l4len > 0 && p.l4len < len(l4) || p.l4len == -2 {
		if p.l4len == -2 {
			l4 = l4[:0]
		} else {
			l4 = l4[:p.l4len]
		}
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	if p.v6 {
		b := make([]byte, 40+len(l4))
		wire.IPv6(b).Encode(&wire.IPv6Fields{PayloadLength: uint16(len(l4)), NextHeader: p.proto, HopLimit: ttl,
			Src: netip.MustParseAddr(p.src).As16(), Dst: netip.MustParseAddr(p.dst).As16()})
		copy(b[40:], l4)
		return b
	}
	b := make([]byte, 20+len(l4))
	ip := wire.IPv4(b)
	ip.Encode(&wire.IPv4Fields{TotalLength: uint16(len(b)), ID: 1, TTL: ttl, Protocol: p.proto, FragmentOffset: p.fragOff,
		Src: netip.MustParseAddr(p.src).As4(), Dst: netip.MustParseAddr(p.dst).As4()})
	ip.SetChecksum(ip.CalculateChecksum())
	copy(b[20:], l4)
	return b
}

// ctx makes the packet and its context as a hook would.
func (p pk) ctx(t testing.TB) *pipeline.PacketContext {
	t.Helper()
	if p.src == "" {
		p.src, p.dst = "10.0.1.2", "10.0.2.2"
		if p.v6 {
			p.src, p.dst = "2001:db8:1::2", "2001:db8:2::2"
		}
	}
	b := p.bytes()
	pkt := pipeline.DefaultPool.Get(len(b))
	pkt.SetData(b)
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	if p.v6 {
		pkt.NetProto = pipeline.IPv6ProtocolNumber
	}
	pkt.Mark, pkt.InNIC, pkt.OutNIC = p.mark, p.in, p.out
	t.Cleanup(pkt.Release)
	pc := &pipeline.PacketContext{Hook: p.hook, InNIC: p.in, OutNIC: p.out, Pkt: pkt}
	if !pipeline.ParseTuple(nil, pkt, pc) {
		t.Fatalf("test packet %+v does not parse", p)
	}
	return pc
}

// load decodes, provisions and validates a filter section.
func load(t testing.TB, section string) (*Module, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(section), &doc); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	m := new(Module)
	if err := pipeline.DecodeStrict(&doc, m); err != nil {
		return nil, err
	}
	ctx := &pipeline.Context{ModuleID: "filter", Instance: "filter", LinkIDs: map[string]pipeline.NICID{}}
	for id, name := range testNICNames {
		ctx.LinkIDs[name] = id
	}
	if err := m.Provision(ctx); err != nil {
		m.Cleanup()
		return nil, err
	}
	if err := m.Validate(); err != nil {
		m.Cleanup()
		return nil, err
	}
	t.Cleanup(func() { m.Cleanup() })
	return m, nil
}

func mustLoad(t testing.TB, section string) *Module {
	t.Helper()
	m, err := load(t, section)
	if err != nil {
		t.Fatalf("%v\n%s", err, section)
	}
	return m
}

// eval runs the module's tables at pc.Hook in priority order, as the stack
// composes them.
func eval(m *Module, pc *pipeline.PacketContext) pipeline.Verdict {
	for _, e := range m.HookTables() {
		if e.Hook != pc.Hook {
			continue
		}
		v := e.Table.Evaluate(pc)
		if v != pipeline.VerdictAccept {
			return v
		}
	}
	return pipeline.VerdictAccept
}

// matchOne builds one rule's matchers from an iptables string and reports
// match and hotdrop of the whole rule on pc.
func matchOne(t testing.TB, rule string, pc *pipeline.PacketContext) (bool, bool) {
	t.Helper()
	m := mustLoad(t, "filter:\n  forward:\n    rules:\n      - "+quoteYAML(rule)+"\n")
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
	for _, x := range r.matchers() {
		ok, hot := x.Match(pc)
		if hot {
			return false, true
		}
		if !ok {
			return false, false
		}
	}
	return true, false
}

func quoteYAML(s string) string {
	b, _ := yaml.Marshal(s)
	return string(b[:len(b)-1])
}
