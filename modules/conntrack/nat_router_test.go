package conntrack

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// natRouter: a is the inside (10.0.1.0/24, hosts .2 and .3, a server at
// .3:80), b the outside (the router is 10.0.2.1, a server 10.0.2.2).
// MASQUERADE towards b, a port forward 10.0.2.1:8080 → 10.0.1.3:80 from
// anywhere (hairpin included: the inside reaching the public address is
// masqueraded towards the server so its replies come back through the
// router).
const natRouter = `
name: r
modules:
  - network.ipv4
  - network.ipv6
  - {module: netfilter.conntrack, max: 1024}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24, "2001:db8:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
  nat:
    prerouting:
      rules:
        - "-d 10.0.2.1 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.3:80"
        - "-i b -p udp --dport 5353 -j DNAT --to-destination 10.0.1.3"
    postrouting:
      rules:
        - "-o b -j MASQUERADE"
        - "-o a -s 10.0.1.0/24 -d 10.0.1.3 -p tcp --dport 80 -j MASQUERADE"
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -j ACCEPT"
        - "-m conntrack --ctstate DNAT -j ACCEPT"
`

type natRig struct {
	t    *testing.T
	n    *pipelinetest.Node
	a, b *channel.Endpoint
	clk  *pipeline.ManualClock
}

func newNATRig(t *testing.T, cfg string) *natRig {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", cfg, pipeline.Options{Clock: clk})
	return &natRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk}
}

// through injects b on from and returns what came out of to (nil:
// nothing), its checksums verified.
func (nr *natRig) through(from, to *channel.Endpoint, b []byte) []byte {
	nr.t.Helper()
	return throughChecked(nr.t, from, to, b)
}

// throughChecked injects b on from and returns the first packet that came
// out of to (nil: nothing), its checksums verified by full recomputation.
func throughChecked(t testing.TB, from, to *channel.Endpoint, b []byte) []byte {
	t.Helper()
	from.InjectFrames([][]byte{b})
	buf := make([]*pipeline.Packet, 4)
	k := to.Read(buf)
	defer pipeline.ReleaseBatch(buf[:k])
	if k == 0 {
		return nil
	}
	out := append([]byte(nil), buf[0].Data()...)
	if err := filtertest.VerifyChecksums(out); err != nil {
		t.Fatalf("bad checksums: %v\n% x", err, out)
	}
	return out
}

func v4addrs(b []byte) (src, dst string) {
	return netip.AddrFrom4([4]byte(b[12:16])).String(), netip.AddrFrom4([4]byte(b[16:20])).String()
}

func ports(b []byte) (uint16, uint16) {
	hl := int(b[0]&0xf) * 4
	return binary.BigEndian.Uint16(b[hl:]), binary.BigEndian.Uint16(b[hl+2:])
}

func tcpPkt(src, dst string, sport, dport uint16, flags uint8) []byte {
	return filtertest.Packet{Proto: filtertest.TCP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, TCPFlags: flags, Payload: 0}.Bytes()
}

// TestMasquerade: an inside host's flow leaves from the router's outside
// address; the replies reach the host; a second host with the same source
// port gets another port; a TCP handshake goes through both ways.
func TestMasquerade(t *testing.T) {
	nr := newNATRig(t, natRouter)
	out := nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53))
	if out == nil {
		t.Fatal("the inside host's datagram was not forwarded")
	}
	if s, d := v4addrs(out); s != "10.0.2.1" || d != "10.0.2.2" {
		t.Fatalf("masqueraded datagram %s -> %s, want 10.0.2.1 -> 10.0.2.2", s, d)
	}
	if sp, _ := ports(out); sp != 4000 {
		t.Fatalf("source port %d, want 4000 kept", sp)
	}
	// The second host, same port: another port.
	out2 := nr.through(nr.a, nr.b, udp("10.0.1.3", "10.0.2.2", 4000, 53))
	if out2 == nil {
		t.Fatal("the second host's datagram was not forwarded")
	}
	sp2, _ := ports(out2)
	if s, _ := v4addrs(out2); s != "10.0.2.1" || sp2 == 4000 || sp2 < 1024 {
		t.Fatalf("second host: from %s port %d, want 10.0.2.1 and a port other than 4000 (>= 1024)", s, sp2)
	}
	// Replies to each.
	back := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4000))
	if back == nil {
		t.Fatal("the reply to the first host was dropped")
	}
	if s, d := v4addrs(back); s != "10.0.2.2" || d != "10.0.1.2" {
		t.Fatalf("reply %s -> %s", s, d)
	}
	if _, dp := ports(back); dp != 4000 {
		t.Fatalf("reply port %d", dp)
	}
	back2 := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, sp2))
	if back2 == nil {
		t.Fatal("the reply to the second host was dropped")
	}
	if _, d := v4addrs(back2); d != "10.0.1.3" {
		t.Fatalf("second reply to %s", d)
	}
	if _, dp := ports(back2); dp != 4000 {
		t.Fatalf("second reply port %d", dp)
	}
	// TCP: handshake through the NAT.
	syn := tcpPkt("10.0.1.2", "10.0.2.2", 40000, 443, 0x02)
	o := nr.through(nr.a, nr.b, syn)
	if o == nil {
		t.Fatal("SYN dropped")
	}
	if s, _ := v4addrs(o); s != "10.0.2.1" {
		t.Fatalf("SYN from %s", s)
	}
	synack := tcpPkt("10.0.2.2", "10.0.2.1", 443, 40000, 0x12)
	binary.BigEndian.PutUint32(synack[28:], 1) // ack the SYN's seq 0
	fixTCP(synack)
	if o := nr.through(nr.b, nr.a, synack); o == nil {
		t.Fatal("SYN/ACK dropped")
	} else if _, d := v4addrs(o); d != "10.0.1.2" {
		t.Fatalf("SYN/ACK to %s", d)
	}
	// Unsolicited traffic to the router's address is not forwarded in.
	if nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4001)) != nil {
		t.Fatal("unsolicited datagram forwarded")
	}
	var lines []string
	StackTable(nr.n.Stack).Each(func(r Ref, e *Entry) bool {
		k0, k1 := e.Tuple(0), e.Tuple(1)
		lines = append(lines, k0.String()+" | "+k1.String())
		return true
	})
	t.Log(strings.Join(lines, "\n"))
}

func fixTCP(b []byte) {
	ip := wire.IPv4(b)
	l4 := b[ip.HeaderLength():]
	wire.TCP(l4).SetChecksum(0)
	wire.TCP(l4).SetChecksum(wire.TCP(l4).CalculateChecksum(wire.IPv4PseudoChecksum(ip, uint16(len(l4)))))
}

// TestDNATPortForward: the router's 8080 from outside reaches the inside
// server's 80; its replies leave from the router's address and port; a
// UDP forward without a port keeps the port.
func TestDNATPortForward(t *testing.T) {
	nr := newNATRig(t, natRouter)
	in := nr.through(nr.b, nr.a, tcpPkt("10.0.2.2", "10.0.2.1", 50000, 8080, 0x02))
	if in == nil {
		t.Fatal("the forwarded SYN did not reach the inside")
	}
	if s, d := v4addrs(in); s != "10.0.2.2" || d != "10.0.1.3" {
		t.Fatalf("forwarded SYN %s -> %s", s, d)
	}
	if sp, dp := ports(in); sp != 50000 || dp != 80 {
		t.Fatalf("forwarded SYN ports %d -> %d", sp, dp)
	}
	synack := tcpPkt("10.0.1.3", "10.0.2.2", 80, 50000, 0x12)
	binary.BigEndian.PutUint32(synack[28:], 1)
	fixTCP(synack)
	out := nr.through(nr.a, nr.b, synack)
	if out == nil {
		t.Fatal("the server's SYN/ACK was dropped")
	}
	if s, d := v4addrs(out); s != "10.0.2.1" || d != "10.0.2.2" {
		t.Fatalf("SYN/ACK %s -> %s", s, d)
	}
	if sp, dp := ports(out); sp != 8080 || dp != 50000 {
		t.Fatalf("SYN/ACK ports %d -> %d", sp, dp)
	}
	// UDP, no port in the rule: the port stays.
	u := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 7000, 5353))
	if u == nil {
		t.Fatal("UDP forward dropped")
	}
	if _, d := v4addrs(u); d != "10.0.1.3" {
		t.Fatalf("UDP forward to %s", d)
	}
	if _, dp := ports(u); dp != 5353 {
		t.Fatalf("UDP forward port %d", dp)
	}
	// Not forwarded: another port.
	if nr.through(nr.b, nr.a, tcpPkt("10.0.2.2", "10.0.2.1", 50001, 8081, 0x02)) != nil {
		t.Fatal("a SYN to an unforwarded port reached the inside")
	}
}

// TestHairpinNAT: an inside host reaches the inside server through the
// router's public address: DNAT to the server and, leaving on a again,
// MASQUERADE to the router's inside address, so the server answers the
// router, which translates the answer back to the host.
func TestHairpinNAT(t *testing.T) {
	nr := newNATRig(t, natRouter)
	o := nr.through(nr.a, nr.a, tcpPkt("10.0.1.2", "10.0.2.1", 41000, 8080, 0x02))
	if o == nil {
		t.Fatal("the hairpinned SYN did not come back out of a")
	}
	if s, d := v4addrs(o); s != "10.0.1.1" || d != "10.0.1.3" {
		t.Fatalf("hairpinned SYN %s -> %s, want 10.0.1.1 -> 10.0.1.3", s, d)
	}
	sp, dp := ports(o)
	if dp != 80 {
		t.Fatalf("hairpinned SYN to port %d", dp)
	}
	synack := tcpPkt("10.0.1.3", "10.0.1.1", 80, sp, 0x12)
	binary.BigEndian.PutUint32(synack[28:], 1)
	fixTCP(synack)
	back := nr.through(nr.a, nr.a, synack)
	if back == nil {
		t.Fatal("the server's answer was not translated back to the host")
	}
	if s, d := v4addrs(back); s != "10.0.2.1" || d != "10.0.1.2" {
		t.Fatalf("answer %s -> %s, want 10.0.2.1 -> 10.0.1.2", s, d)
	}
	if s, d := ports(back); s != 8080 || d != 41000 {
		t.Fatalf("answer ports %d -> %d", s, d)
	}
}

// TestICMPThroughNAT: an echo's id is translated when it clashes (two
// hosts, one id), the replies reach each host with its own id; an ICMP
// error about a masqueraded flow is translated back (outer destination,
// quoted source address and port, every checksum).
func TestICMPThroughNAT(t *testing.T) {
	nr := newNATRig(t, natRouter)
	e1 := nr.through(nr.a, nr.b, echoSum("10.0.1.2", "10.0.2.2", 8, 77))
	e2 := nr.through(nr.a, nr.b, echoSum("10.0.1.3", "10.0.2.2", 8, 77))
	if e1 == nil || e2 == nil {
		t.Fatal("echo requests dropped")
	}
	id1, id2 := binary.BigEndian.Uint16(e1[24:]), binary.BigEndian.Uint16(e2[24:])
	if s, _ := v4addrs(e2); s != "10.0.2.1" || id1 != 77 || id2 == 77 {
		t.Fatalf("echo ids %d, %d from %s: want 77 kept and the second changed", id1, id2, s)
	}
	r2 := nr.through(nr.b, nr.a, echoSum("10.0.2.2", "10.0.2.1", 0, id2))
	if r2 == nil {
		t.Fatal("second echo reply dropped")
	}
	if _, d := v4addrs(r2); d != "10.0.1.3" || binary.BigEndian.Uint16(r2[24:]) != 77 {
		t.Fatalf("second reply to %s id %d", d, binary.BigEndian.Uint16(r2[24:]))
	}
	r1 := nr.through(nr.b, nr.a, echoSum("10.0.2.2", "10.0.2.1", 0, 77))
	if r1 == nil {
		t.Fatal("first echo reply dropped")
	}
	if _, d := v4addrs(r1); d != "10.0.1.2" {
		t.Fatalf("first reply to %s", d)
	}

	// A UDP flow of the second host (port 4000 → another port) and a
	// port unreachable from the server about it, as it saw it.
	nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53))
	u := nr.through(nr.a, nr.b, udp("10.0.1.3", "10.0.2.2", 4000, 53))
	if u == nil {
		t.Fatal("UDP dropped")
	}
	// The whole datagram quoted (so that its UDP checksum can be checked).
	errPkt := filtertest.Packet{Proto: filtertest.ICMP, Src: "10.0.2.2", Dst: "10.0.2.1", ICMPType: 3, ICMPCode: 3, Payload: len(u)}.Bytes()
	copy(errPkt[28:], u)
	fixICMP(errPkt)
	got := nr.through(nr.b, nr.a, errPkt)
	if got == nil {
		t.Fatal("the ICMP error about the NATed flow was dropped")
	}
	if _, d := v4addrs(got); d != "10.0.1.3" {
		t.Fatalf("error to %s, want 10.0.1.3", d)
	}
	q := got[28:]
	if s, d := v4addrs(q); s != "10.0.1.3" || d != "10.0.2.2" {
		t.Fatalf("quoted packet %s -> %s", s, d)
	}
	if sp, _ := ports(q); sp != 4000 {
		t.Fatalf("quoted source port %d, want 4000", sp)
	}
	if !wire.IPv4(q).IsChecksumValid() {
		t.Fatal("quoted IPv4 header checksum")
	}
	// The quoted UDP checksum over the quoted datagram (it is whole here).
	ql := q[20:]
	if !wire.UDP(ql).IsChecksumValid(wire.IPv4PseudoChecksum(wire.IPv4(q), uint16(len(ql)))) {
		t.Fatal("quoted UDP checksum")
	}
	if n := nr.n.Counter("conntrack", "nat_icmp_translated"); n != 1 {
		t.Fatalf("nat_icmp_translated = %d", n)
	}
}

func fixICMP(b []byte) {
	m := b[20:]
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:], ^wire.Checksum(m, 0))
}

// echoSum is echo with its ICMP checksum valid.
func echoSum(src, dst string, typ uint8, id uint16) []byte {
	b := echo(src, dst, typ, id)
	fixICMP(b)
	return b
}

// TestNATNoLeakAtMax: new flows flooding a full table (early drop, which
// may free a batch's own unconfirmed entries): every packet that leaves
// is masqueraded; none leaks with the inside address.
func TestNATNoLeakAtMax(t *testing.T) {
	nr := newNATRig(t, strings.Replace(natRouter, "max: 1024", "max: 64", 1))
	frames := natFlood(64*50, 2000)
	buf := make([]*pipeline.Packet, 64)
	out := 0
	for i := 0; i < 50; i++ {
		nr.a.InjectFrames(frames[i*64 : (i+1)*64])
		k := nr.b.Read(buf)
		for _, p := range buf[:k] {
			if d := p.Data(); [4]byte(d[12:16]) != [4]byte{10, 0, 2, 1} {
				t.Fatalf("a packet left un-NATed from % x", d[12:16])
			}
		}
		out += k
		pipeline.ReleaseBatch(buf[:k])
	}
	stale := nr.n.Counter("conntrack", "nat_stale_drops")
	if out+int(stale)+int(nr.n.Counter("conntrack", "table_full_drops")) != 64*50 || out == 0 {
		t.Fatalf("%d forwarded + %d stale + table full ≠ %d (%s)", out, stale, 64*50, nr.n.DumpCounters())
	}
	t.Logf("%d forwarded, %d dropped as stale", out, stale)
}

// TestNATRulesRefused: NAT targets where iptables refuses them, bad
// ranges, with the rule's position.
func TestNATRulesRefused(t *testing.T) {
	base := "name: r\nmodules: [network.ipv4, {module: netfilter.conntrack, max: 16}]\nlinks:\n  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}\nfilter:\n"
	for _, c := range []struct{ sec, want string }{
		{"  nat:\n    prerouting:\n      rules: [\"-j SNAT --to-source 10.0.0.1\"]\n", "rule 1): SNAT target: used from hooks PREROUTING"},
		{"  nat:\n    postrouting:\n      rules: [\"-j DNAT --to-destination 10.0.0.1\"]\n", "DNAT target: used from hooks POSTROUTING"},
		{"  nat:\n    output:\n      rules: [\"-j MASQUERADE\"]\n", "MASQUERADE target: used from hooks OUTPUT"},
		{"  filter:\n    forward:\n      rules: [\"-j MASQUERADE\"]\n", "MASQUERADE target: only valid in nat table"},
		{"  nat:\n    postrouting:\n      rules: [\"-j SNAT --to-source 10.0.0.9-10.0.0.1\"]\n", "bad address range"},
		{"  nat:\n    postrouting:\n      rules: [\"-j SNAT --to-source 10.0.0.1:0\"]\n", "bad port"},
		{"  nat:\n    postrouting:\n      rules: [\"-j SNAT\"]\n", "give --to-source"},
		{"  nat:\n    prerouting:\n      rules: [\"-j REDIRECT --to-ports 90-80\"]\n", "bad port range"},
	} {
		cfg, err := pipeline.ParseConfig("r.yaml", []byte(base+c.sec))
		if err == nil {
			s := pipeline.New(pipeline.Options{})
			_, err = s.Apply(cfg)
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.sec, err, c.want)
		}
	}
}

// TestMasqueradeIPv6 and REDIRECT: the same binding over IPv6; a
// REDIRECT's reply key names the in-link's address and the new port.
func TestMasqueradeIPv6AndRedirect(t *testing.T) {
	cfg := strings.Replace(natRouter, `        - "-i b -p udp --dport 5353 -j DNAT --to-destination 10.0.1.3"`,
		`        - "-i b -p udp --dport 5353 -j DNAT --to-destination 10.0.1.3"
        - "-i a -p udp --dport 53 -j REDIRECT --to-ports 5300"`, 1)
	nr := newNATRig(t, cfg)
	p := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", SrcPort: 3333, DstPort: 4444, Payload: 5}.Bytes()
	out := nr.through(nr.a, nr.b, p)
	if out == nil {
		t.Fatal("IPv6 datagram dropped")
	}
	if s := netip.AddrFrom16([16]byte(out[8:24])); s != netip.MustParseAddr("2001:db8:2::1") {
		t.Fatalf("IPv6 masqueraded from %s", s)
	}
	back := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:2::2", Dst: "2001:db8:2::1", SrcPort: 4444, DstPort: 3333, Payload: 5}.Bytes()
	in := nr.through(nr.b, nr.a, back)
	if in == nil || netip.AddrFrom16([16]byte(in[24:40])) != netip.MustParseAddr("2001:db8:1::2") {
		t.Fatalf("IPv6 reply not translated: % x", in)
	}
	// REDIRECT: delivered to the router itself (no socket: nothing comes
	// out); its entry's reply key is the in-link's address, port 5300.
	nr.a.InjectFrames([][]byte{udp("10.0.1.2", "10.0.2.2", 7777, 53)})
	found := false
	StackTable(nr.n.Stack).Each(func(r Ref, e *Entry) bool {
		k := e.Tuple(1)
		if k.SrcAddr() == netip.MustParseAddr("10.0.1.1") && k.SPort == 5300 && k.DPort == 7777 && e.Status()&StatusDstNAT != 0 {
			found = true
		}
		return true
	})
	if !found {
		t.Fatal("no entry redirected to 10.0.1.1:5300")
	}
}

// natFlood makes n UDP frames a → b, each a new flow (source ports from
// base), checksums valid.
func natFlood(n, base int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = udp("10.0.1.2", "10.0.2.2", uint16(base+i), 1)
	}
	return out
}

// TestNATOptionsAccepted: every option of the NAT targets builds, and the
// canonical text reads as iptables-save prints it.
func TestNATOptionsAccepted(t *testing.T) {
	cfg := strings.Replace(natRouter, `        - "-o b -j MASQUERADE"`, `        - "-o b -p tcp -j MASQUERADE --to-ports 20000-30000 --random"
        - "-o b -s 10.0.9.0/24 -j SNAT --to-source 10.0.2.5-10.0.2.9:2000-3000 --persistent --random-fully"
        - "-o b -s 2001:db8:9::/64 -j SNAT --to-source [2001:db8:2::5]-[2001:db8:2::9]:80-90"
        - "-o b -j MASQUERADE"`, 1)
	nr := newNATRig(t, cfg)
	pc, err := pipeline.ParseConfig("r.yaml", []byte(cfg))
	if err != nil || pipeline.Check(pc) != nil {
		t.Fatal(err, pipeline.Check(pc))
	}
	var texts []string
	for _, mc := range pc.Modules {
		if rl, ok := mc.Module.(pipeline.RuleLister); ok {
			for _, l := range rl.ListRules() {
				for _, r := range l.Rules {
					texts = append(texts, r.Rule)
				}
			}
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"-j MASQUERADE --to-ports 20000-30000 --random", "-j SNAT --to-source 10.0.2.5-10.0.2.9:2000-3000 --random-fully --persistent",
		"-j SNAT --to-source [2001:db8:2::5]-[2001:db8:2::9]:80-90", "-j DNAT --to-destination 10.0.1.3:80"} {
		if !strings.Contains(all, want) {
			t.Errorf("no rule %q in\n%s", want, all)
		}
	}
	// A TCP flow takes a port of the MASQUERADE range.
	o := nr.through(nr.a, nr.b, tcpPkt("10.0.1.2", "10.0.2.2", 40000, 443, 0x02))
	if o == nil {
		t.Fatal("SYN dropped")
	}
	if sp, _ := ports(o); sp < 20000 || sp > 30000 {
		t.Fatalf("source port %d outside --to-ports 20000-30000", sp)
	}
	// The SNAT pool: 10.0.9.x gets an address of 10.0.2.5-9, port 2000-3000.
	o = nr.through(nr.a, nr.b, udp("10.0.9.7", "10.0.2.2", 555, 53))
	if o == nil {
		t.Fatal("pool datagram dropped")
	}
	s, _ := v4addrs(o)
	sp, _ := ports(o)
	if a := netip.MustParseAddr(s); a.Less(netip.MustParseAddr("10.0.2.5")) || netip.MustParseAddr("10.0.2.9").Less(a) || sp < 2000 || sp > 3000 {
		t.Fatalf("pool: from %s:%d", s, sp)
	}
}

// TestDNATInOutputReroutes: a locally generated packet DNATed in OUTPUT
// leaves through the link of its new destination (re-routed), not the
// one its first route chose.
func TestDNATInOutputReroutes(t *testing.T) {
	cfg := strings.Replace(natRouter, "    postrouting:\n", `    output:
      rules: ["-d 10.0.2.77 -p udp -j DNAT --to-destination 10.0.1.3:9999"]
    postrouting:
`, 1)
	nr := newNATRig(t, cfg)
	payload := make([]byte, 12)
	binary.BigEndian.PutUint16(payload[0:], 5000)
	binary.BigEndian.PutUint16(payload[2:], 53)
	binary.BigEndian.PutUint16(payload[4:], 12) // checksum 0: none (IPv4)
	if err := ipv4.Send(nr.n.Stack, netip.MustParseAddr("10.0.2.77"), pipeline.UDPProtocolNumber, payload); err != nil {
		t.Fatal(err)
	}
	buf := make([]*pipeline.Packet, 4)
	if k := nr.b.Read(buf); k != 0 {
		pipeline.ReleaseBatch(buf[:k])
		t.Fatal("the DNATed packet left through the old route's link b")
	}
	k := nr.a.Read(buf)
	if k != 1 {
		t.Fatalf("%d packets on link a, want the re-routed one (%s)", k, nr.n.DumpCounters())
	}
	defer pipeline.ReleaseBatch(buf[:k])
	d := buf[0].Data()
	if s, dst := v4addrs(d); s != "10.0.1.1" && s != "10.0.2.1" || dst != "10.0.1.3" {
		t.Fatalf("re-routed packet %s -> %s", s, dst)
	}
	if _, dp := ports(d); dp != 9999 {
		t.Fatalf("port %d, want 9999", dp)
	}
}

// TestNATRSTAnsweringSYN: a server's RST answering a masqueraded SYN
// reaches the client translated back (connection refused, not a timeout).
// conntrack ends such an entry (the only reply was an RST), but the RST
// itself still takes the entry's binding, as in Linux.
func TestNATRSTAnsweringSYN(t *testing.T) {
	nr := newNATRig(t, natRouter)
	syn := tcpPkt("10.0.1.2", "10.0.2.2", 40001, 81, 0x02)
	if o := nr.through(nr.a, nr.b, syn); o == nil {
		t.Fatal("SYN dropped")
	}
	rst := tcpPkt("10.0.2.2", "10.0.2.1", 81, 40001, 0x14)
	binary.BigEndian.PutUint32(rst[28:], 1) // ack the SYN's seq 0
	fixTCP(rst)
	o := nr.through(nr.b, nr.a, rst)
	if o == nil {
		t.Fatal("the RST answering the SYN was dropped")
	}
	if s, d := v4addrs(o); s != "10.0.2.2" || d != "10.0.1.2" {
		t.Fatalf("RST %s -> %s, want 10.0.2.2 -> 10.0.1.2", s, d)
	}
	if _, dp := ports(o); dp != 40001 {
		t.Fatalf("RST to port %d", dp)
	}
	// The client tries again: a new connection, masqueraded again.
	if o := nr.through(nr.a, nr.b, syn); o == nil {
		t.Fatal("second SYN dropped")
	}
}
