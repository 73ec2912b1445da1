// Package filtertest is a small kit for testing filter matchers and
// targets, built-in or custom: build a packet (IPv4 or IPv6; TCP, UDP,
// ICMP or ICMPv6) with valid checksums, a pipeline.PacketContext at a hook
// with its in and out links, provision a matcher or target from its YAML
// config, run it, and check the verdict and the rewritten bytes (every
// checksum verified).
//
//	m := filtertest.Module(t, "filter.match.prefixfile", "{src_file: blocked.txt}").(pipeline.Matcher)
//	pc := filtertest.Context(t, filtertest.Packet{Proto: 6, Src: "192.0.2.7", Dst: "10.0.0.1", DstPort: 22}, pipeline.Forward, 1, 2)
//	if ok, hot := m.Match(pc); !ok || hot { … }
//
// Links by name (for -i/-o and anything else that asks the generation)
// need a stack: NewLinks builds one with in-memory links and runs the
// packet inside one of its batches. Stealer is a matcher and target that
// steals packets and flushes once per batch, as an out-of-process filter
// does, for tests of Stack.Resume.
package filtertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// Protocol numbers for Packet.Proto.
const (
	ICMP   uint8 = 1
	TCP    uint8 = 6
	UDP    uint8 = 17
	ICMPv6 uint8 = 58
)

// Packet describes a test packet. Zero values give a UDP datagram from
// 10.0.1.2 to 10.0.2.2 (2001:db8:1::2 to 2001:db8:2::2 with IPv6) with
// TTL 64.
type Packet struct {
	IPv6             bool
	Proto            uint8 // TCP, UDP, ICMP, ICMPv6 or any other number (8 zero bytes of payload); 0: UDP
	Src, Dst         string
	SrcPort, DstPort uint16
	TCPFlags         uint8 // wire.TCPFlag…
	ICMPType         uint8
	ICMPCode         uint8
	TTL              uint8 // hop limit with IPv6; 0: 64
	TOS              uint8 // IPv4 TOS or IPv6 traffic class (DSCP<<2 | ECN)
	Payload          int   // bytes of transport payload (filled with 0x5a)
	Mark             uint32
}

func (p Packet) defaults() Packet {
	if p.Proto == 0 {
		p.Proto = UDP
	}
	if p.Src == "" {
		p.Src = map[bool]string{false: "10.0.1.2", true: "2001:db8:1::2"}[p.IPv6]
	}
	if p.Dst == "" {
		p.Dst = map[bool]string{false: "10.0.2.2", true: "2001:db8:2::2"}[p.IPv6]
	}
	if p.TTL == 0 {
		p.TTL = 64
	}
	return p
}

// Bytes is the packet from its network header on, with every checksum
// (IPv4 header, TCP, UDP, ICMP, ICMPv6) valid. It panics on an address
// that does not parse or is of the other family (a broken test).
func (p Packet) Bytes() []byte {
	p = p.defaults()
	src, dst := netip.MustParseAddr(p.Src), netip.MustParseAddr(p.Dst)
	if src.Is4() == p.IPv6 || dst.Is4() == p.IPv6 {
		panic(fmt.Sprintf("filtertest: addresses %s, %s are not IPv%d", p.Src, p.Dst, map[bool]int{false: 4, true: 6}[p.IPv6]))
	}
	var l4 []byte
	switch p.Proto {
	case TCP:
		l4 = make([]byte, wire.TCPMinimumSize+p.Payload)
		wire.TCP(l4).Encode(&wire.TCPFields{SrcPort: p.SrcPort, DstPort: p.DstPort, Flags: p.TCPFlags, Window: 1000})
	case UDP:
		l4 = make([]byte, wire.UDPHeaderSize+p.Payload)
		wire.UDP(l4).Encode(&wire.UDPFields{SrcPort: p.SrcPort, DstPort: p.DstPort, Length: uint16(len(l4))})
	default:
		l4 = make([]byte, 8+p.Payload)
		if p.Proto == ICMP || p.Proto == ICMPv6 {
			l4[0], l4[1] = p.ICMPType, p.ICMPCode
		}
	}
	hl := len(l4) - p.Payload
	for i := hl; i < len(l4); i++ {
		l4[i] = 0x5a
	}
	var b []byte
	if p.IPv6 {
		b = make([]byte, wire.IPv6HeaderSize+len(l4))
		wire.IPv6(b).Encode(&wire.IPv6Fields{TrafficClass: p.TOS, PayloadLength: uint16(len(l4)), NextHeader: p.Proto, HopLimit: p.TTL, Src: src.As16(), Dst: dst.As16()})
		copy(b[wire.IPv6HeaderSize:], l4)
	} else {
		b = make([]byte, wire.IPv4MinimumSize+len(l4))
		ip := wire.IPv4(b)
		ip.Encode(&wire.IPv4Fields{TOS: p.TOS, TotalLength: uint16(len(b)), ID: 1, TTL: p.TTL, Protocol: p.Proto, Src: src.As4(), Dst: dst.As4()})
		ip.SetChecksum(ip.CalculateChecksum())
		copy(b[wire.IPv4MinimumSize:], l4)
	}
	fixTransport(b)
	return b
}

// transport returns the packet's transport bytes, protocol and the
// pseudo-header sum for them.
func transport(b []byte) (l4 []byte, proto uint8, pseudo uint16, err error) {
	if len(b) == 0 {
		return nil, 0, 0, errors.New("empty packet")
	}
	switch b[0] >> 4 {
	case 4:
		ip := wire.IPv4(b)
		if err := ip.Check(); err != nil {
			return nil, 0, 0, fmt.Errorf("IPv4 header: %w", err)
		}
		l4 = b[ip.HeaderLength():ip.TotalLength()]
		return l4, ip.Protocol(), wire.IPv4PseudoChecksum(ip, uint16(len(l4))), nil
	case 6:
		ip := wire.IPv6(b)
		if err := ip.Check(); err != nil {
			return nil, 0, 0, fmt.Errorf("IPv6 header: %w", err)
		}
		l4 = b[wire.IPv6HeaderSize : wire.IPv6HeaderSize+int(ip.PayloadLength())]
		return l4, ip.NextHeader(), wire.IPv6PseudoChecksum(ip, ip.NextHeader(), uint32(len(l4))), nil
	}
	return nil, 0, 0, fmt.Errorf("IP version %d", b[0]>>4)
}

func fixTransport(b []byte) {
	l4, proto, pseudo, err := transport(b)
	if err != nil {
		panic("filtertest: " + err.Error())
	}
	switch proto {
	case TCP:
		wire.TCP(l4).SetChecksum(wire.TCP(l4).CalculateChecksum(pseudo))
	case UDP:
		wire.UDP(l4).SetChecksum(wire.UDP(l4).CalculateChecksum(pseudo))
	case ICMP:
		wire.ICMPv4(l4).SetChecksum(wire.ICMPv4(l4).CalculateChecksum())
	case ICMPv6:
		wire.ICMPv6(l4).SetChecksum(wire.ICMPv6(l4).CalculateChecksum(pseudo))
	}
}

// VerifyChecksums checks a packet from its network header on: a valid
// IPv4 or IPv6 header (the IPv4 header checksum verified) and the TCP,
// UDP, ICMP or ICMPv6 checksum (an IPv4 UDP datagram without a checksum
// passes; an IPv6 one does not).
func VerifyChecksums(b []byte) error {
	l4, proto, pseudo, err := transport(b)
	if err != nil {
		return err
	}
	if b[0]>>4 == 4 && !wire.IPv4(b).IsChecksumValid() {
		return fmt.Errorf("IPv4 header checksum %#04x, want %#04x", wire.IPv4(b).Checksum(), wire.IPv4(b).CalculateChecksum())
	}
	ok := true
	switch proto {
	case TCP:
		ok = len(l4) >= wire.TCPMinimumSize && wire.TCP(l4).IsChecksumValid(pseudo)
	case UDP:
		ok = len(l4) >= wire.UDPHeaderSize && int(wire.UDP(l4).Length()) <= len(l4) && wire.UDP(l4).IsChecksumValid(pseudo) &&
			!(b[0]>>4 == 6 && wire.UDP(l4).Checksum() == 0)
	case ICMP:
		ok = len(l4) >= 4 && wire.ICMPv4(l4).IsChecksumValid()
	case ICMPv6:
		ok = len(l4) >= 4 && wire.ICMPv6(l4).IsChecksumValid(pseudo)
	}
	if !ok {
		return fmt.Errorf("protocol %d checksum does not verify", proto)
	}
	return nil
}

// CheckChecksums fails the test when VerifyChecksums does.
func CheckChecksums(t testing.TB, b []byte) {
	t.Helper()
	if err := VerifyChecksums(b); err != nil {
		t.Errorf("%v\n% x", err, b)
	}
}

// Context makes the packet and its context as a hook does: a pooled
// packet (released when the test ends) with its network header set, the
// tuple parsed, at hook, received on NIC in and leaving through NIC out
// (0: not known at that hook). Its Batch is nil: for matchers that ask
// the generation (link names, local addresses) use NewLinks.
func Context(t testing.TB, p Packet, hook pipeline.Hook, in, out pipeline.NICID) *pipeline.PacketContext {
	t.Helper()
	return ContextOf(t, p.Bytes(), p.Mark, hook, in, out)
}

// ContextOf is Context for bytes made elsewhere (a capture, a malformed
// packet).
func ContextOf(t testing.TB, b []byte, mark uint32, hook pipeline.Hook, in, out pipeline.NICID) *pipeline.PacketContext {
	t.Helper()
	pkt := pipeline.DefaultPool.Get(len(b))
	if !pkt.SetData(b) {
		pkt.Release()
		t.Fatalf("filtertest: %d bytes do not fit a pooled packet", len(b))
	}
	t.Cleanup(pkt.Release)
	pkt.SetNetworkHeader()
	pkt.NetProto = pipeline.IPv4ProtocolNumber
	if len(b) > 0 && b[0]>>4 == 6 {
		pkt.NetProto = pipeline.IPv6ProtocolNumber
	}
	pkt.Mark, pkt.InNIC, pkt.OutNIC = mark, in, out
	pc := &pipeline.PacketContext{Hook: hook, InNIC: in, OutNIC: out, Pkt: pkt}
	if !pipeline.ParseTuple(nil, pkt, pc) {
		t.Fatalf("filtertest: the packet does not parse as a hook would\n% x", b)
	}
	return pc
}

// Module makes the registered module id ("filter.match.prefixfile"),
// decodes config (a YAML mapping, "" for none) strictly as a rule would,
// and runs its Provision and Validate with a context whose File is
// file.yaml in the test's working directory (relative paths in the config
// are from there). It is cleaned up when the test ends.
func Module(t testing.TB, id, config string) pipeline.Module {
	t.Helper()
	m, err := TryModule(id, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, ok := m.(pipeline.CleanerUpper); ok {
			c.Cleanup()
		}
	})
	return m
}

// TryModule is Module returning the error (for tests of bad configs).
func TryModule(id, config string) (pipeline.Module, error) {
	mi, ok := pipeline.LookupModule(id)
	if !ok {
		return nil, fmt.Errorf("filtertest: no module %s registered (blank-import its package)", id)
	}
	m := mi.New()
	if config != "" {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
			return nil, fmt.Errorf("filtertest: config of %s: %v", id, err)
		}
		if err := pipeline.DecodeStrict(&doc, m); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
	}
	ctx := &pipeline.Context{ModuleID: id, Instance: id, File: "file.yaml"}
	if p, ok := m.(pipeline.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			cleanup(m)
			return nil, fmt.Errorf("%s: %w", id, err)
		}
	}
	if v, ok := m.(pipeline.Validator); ok {
		if err := v.Validate(); err != nil {
			cleanup(m)
			return nil, fmt.Errorf("%s: %w", id, err)
		}
	}
	return m, nil
}

func cleanup(m pipeline.Module) {
	if c, ok := m.(pipeline.CleanerUpper); ok {
		c.Cleanup()
	}
}

// Match runs m on pc (twice: a matcher must answer the same for the same
// packet and must not change it) and returns its answer.
func Match(t testing.TB, m pipeline.Matcher, pc *pipeline.PacketContext) (matches, hotdrop bool) {
	t.Helper()
	before := append([]byte(nil), pc.Pkt.Data()...)
	ok, hot := m.Match(pc)
	ok2, hot2 := m.Match(pc)
	if ok != ok2 || hot != hot2 {
		t.Errorf("matcher %T answered (%v, %v) then (%v, %v) for the same packet", m, ok, hot, ok2, hot2)
	}
	if string(before) != string(pc.Pkt.Data()) {
		t.Errorf("matcher %T changed the packet (a matcher may only read it)", m)
	}
	return ok, hot
}

// Action runs target tg on pc and returns its verdict and chain index. For
// a verdict other than stolen it checks that the packet kept its length
// and that its checksums still verify if they did before.
func Action(t testing.TB, tg pipeline.Target, pc *pipeline.PacketContext) (pipeline.Verdict, int) {
	t.Helper()
	n := pc.Pkt.Len()
	valid := VerifyChecksums(pc.Pkt.Data()) == nil
	v, idx := tg.Action(pc)
	if v == pipeline.VerdictStolen {
		return v, idx
	}
	if pc.Pkt.Len() != n {
		t.Errorf("target %T changed the packet's length from %d to %d without stealing it", tg, n, pc.Pkt.Len())
	}
	if valid {
		if err := VerifyChecksums(pc.Pkt.Data()); err != nil {
			t.Errorf("target %T broke a checksum: %v", tg, err)
		}
	}
	return v, idx
}

// Allocs is the average number of heap allocations of one call of f, counted
// exactly over 10,000 calls after a warm-up (pipelinetest.CountMallocs:
// testing.AllocsPerRun rounds the average down, so 99 allocations in 100
// calls would read 0): a matcher or target must make none.
func Allocs(f func()) float64 {
	const runs = 10000
	f()
	n := pipelinetest.CountMallocs(func() {
		for range runs {
			f()
		}
	})
	return float64(n) / runs
}

// port reads a 16-bit field (for checks on rewritten bytes).
func port(b []byte, off int) uint16 { return binary.BigEndian.Uint16(b[off:]) }

// Ports returns the transport ports of a packet from its network header on.
func Ports(b []byte) (src, dst uint16, err error) {
	l4, proto, _, err := transport(b)
	if err != nil {
		return 0, 0, err
	}
	if proto != TCP && proto != UDP || len(l4) < 4 {
		return 0, 0, fmt.Errorf("protocol %d has no ports", proto)
	}
	return port(l4, 0), port(l4, 2), nil
}
