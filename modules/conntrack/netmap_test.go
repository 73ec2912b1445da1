package conntrack

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// netmapRouter maps the inside 10.0.1.0/24 (2001:db8:1::/64) 1:1 onto
// 192.0.2.0/24 (2001:db8:77::/64) towards b, both ways.
const netmapRouter = `
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
        - "-i b -d 192.0.2.0/24 -j NETMAP --to 10.0.1.0/24"
        - {in: b, dst: "2001:db8:77::/64", target: {netmap: {to: "2001:db8:1::/64"}}}
    postrouting:
      rules:
        - "-o b -s 10.0.1.0/24 -j NETMAP --to 192.0.2.0/24"
        - "-o b -s 2001:db8:1::/64 -j NETMAP --to 2001:db8:77::/64"
`

func v6addrs(b []byte) (src, dst string) {
	return netip.AddrFrom16([16]byte(b[8:24])).String(), netip.AddrFrom16([16]byte(b[24:40])).String()
}

// TestNetmap: NETMAP maps the destination in PREROUTING (as DNAT) and the
// source in POSTROUTING (as SNAT), keeping the host part and the ports;
// replies are translated back (IPv4 and IPv6).
func TestNetmap(t *testing.T) {
	nr := newNATRig(t, netmapRouter)
	// In: 10.0.2.2 -> 192.0.2.7:80 reaches 10.0.1.7:80.
	out := nr.through(nr.b, nr.a, tcpPkt("10.0.2.2", "192.0.2.7", 5000, 80, syn))
	if out == nil {
		t.Fatalf("inbound not forwarded (%s)", nr.n.DumpCounters())
	}
	if s, d := v4addrs(out); s != "10.0.2.2" || d != "10.0.1.7" {
		t.Fatalf("inbound %s -> %s, want 10.0.2.2 -> 10.0.1.7", s, d)
	}
	if _, dp := ports(out); dp != 80 {
		t.Fatalf("inbound port %d", dp)
	}
	// Its reply leaves from 192.0.2.7.
	out = nr.through(nr.a, nr.b, tcpPkt("10.0.1.7", "10.0.2.2", 80, 5000, syn|ack))
	if out == nil {
		t.Fatal("reply not forwarded")
	}
	if s, d := v4addrs(out); s != "192.0.2.7" || d != "10.0.2.2" {
		t.Fatalf("reply %s -> %s, want 192.0.2.7 -> 10.0.2.2", s, d)
	}
	// Out: 10.0.1.9:1234 leaves as 192.0.2.9:1234; the answer comes back.
	out = nr.through(nr.a, nr.b, udp("10.0.1.9", "10.0.2.2", 1234, 53))
	if out == nil {
		t.Fatal("outbound not forwarded")
	}
	if s, _ := v4addrs(out); s != "192.0.2.9" {
		t.Fatalf("outbound from %s, want 192.0.2.9", s)
	}
	if sp, _ := ports(out); sp != 1234 {
		t.Fatalf("outbound port %d, want 1234 kept", sp)
	}
	out = nr.through(nr.b, nr.a, udp("10.0.2.2", "192.0.2.9", 53, 1234))
	if out == nil {
		t.Fatal("answer not forwarded")
	}
	if _, d := v4addrs(out); d != "10.0.1.9" {
		t.Fatalf("answer to %s, want 10.0.1.9", d)
	}
	// IPv6: out from 2001:db8:1::abcd leaves as 2001:db8:77::abcd; in to
	// 2001:db8:77::5 reaches 2001:db8:1::5.
	p6 := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::abcd", Dst: "2001:db8:2::2", SrcPort: 3333, DstPort: 53, Payload: 5}.Bytes()
	out = nr.through(nr.a, nr.b, p6)
	if out == nil {
		t.Fatal("IPv6 outbound not forwarded")
	}
	if s, _ := v6addrs(out); s != "2001:db8:77::abcd" {
		t.Fatalf("IPv6 outbound from %s", s)
	}
	in6 := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:2::2", Dst: "2001:db8:77::5", SrcPort: 3333, DstPort: 53, Payload: 5}.Bytes()
	out = nr.through(nr.b, nr.a, in6)
	if out == nil {
		t.Fatal("IPv6 inbound not forwarded")
	}
	if _, d := v6addrs(out); d != "2001:db8:1::5" {
		t.Fatalf("IPv6 inbound to %s", d)
	}
}

// TestNPTTranslate: RFC 6296's own example (§3.1: FD01:0203:0405:0001::1234
// behind FD01:0203:0405::/48 is 2001:0DB8:0001:D550::1234 outside), the
// way back, and longer prefixes whose adjustment goes in the first word
// after the prefix that is not 0xffff; the address's one's-complement sum
// never changes.
func TestNPTTranslate(t *testing.T) {
	mk := func(src, dst string) *npt {
		n := new(npt)
		if err := n.provision("SNPT", src, dst); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sum := func(a [16]byte) uint32 {
		var s uint32
		for i := 0; i < 16; i += 2 {
			s += uint32(a[i])<<8 | uint32(a[i+1])
		}
		for s > 0xffff {
			s = s&0xffff + s>>16
		}
		if s == 0xffff {
			s = 0
		}
		return s
	}
	for _, c := range []struct{ src, dst, in, want string }{
		{"fd01:203:405::/48", "2001:db8:1::/48", "fd01:203:405:1::1234", "2001:db8:1:d550::1234"},
		{"2001:db8:1::/48", "fd01:203:405::/48", "2001:db8:1:d550::1234", "fd01:203:405:1::1234"},
		{"fd01:203:405:1::/64", "2001:db8:1:2::/64", "fd01:203:405:1::1234", ""},
		{"fd01:203:405:1::/64", "2001:db8:1:2::/64", "fd01:203:405:1:ffff::1234", ""},
		{"fd00::/56", "2001:db8:9900::/56", "fd00:0:0:7::1", ""},
	} {
		n := mk(c.src, c.dst)
		a := netip.MustParseAddr(c.in).As16()
		before := sum(a)
		if !n.translate(a[:]) {
			t.Fatalf("%s: not translated", c.in)
		}
		got := netip.AddrFrom16(a)
		if c.want != "" && got.String() != c.want {
			t.Errorf("%s via %s -> %s: %s, want %s", c.in, c.src, c.dst, got, c.want)
		}
		if !netip.MustParsePrefix(c.dst).Contains(got) || sum(a) != before {
			t.Errorf("%s -> %s: outside %s or not checksum-neutral (%#x, %#x)", c.in, got, c.dst, sum(a), before)
		}
		back := mk(c.dst, c.src)
		if !back.translate(a[:]) || netip.AddrFrom16(a).String() != netip.MustParseAddr(c.in).String() {
			t.Errorf("%s -> %s -> %s: not the way back", c.in, got, netip.AddrFrom16(a))
		}
	}
	// All of words 4-7 0xffff after a /64: nowhere to adjust.
	n := mk("fd01:203:405:1::/64", "2001:db8:1:2::/64")
	a := netip.MustParseAddr("fd01:203:405:1:ffff:ffff:ffff:ffff").As16()
	if n.translate(a[:]) {
		t.Fatal("translated an address with no word to adjust")
	}
}

// nptRouter: NPTv6 between the inside fd01:203:405::/48 and the outside
// 2001:db8:1::/48, stateless (no conntrack), in mangle as ip6tables.
const nptRouter = `
name: r
modules: [network.ipv6]
links:
  - {name: a, module: link.channel, addresses: ["fd01:203:405:1::1/64"]}
  - {name: b, module: link.channel, addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
routes:
  - {to: "fd01:203:405::/48", via: "fd01:203:405:1::2", link: a}
filter:
  mangle:
    prerouting:
      rules: ["-i b -d 2001:db8:1::/48 -j DNPT --src-pfx 2001:db8:1::/48 --dst-pfx fd01:203:405::/48"]
    postrouting:
      rules: ["-o b -s fd01:203:405::/48 -j SNPT --src-pfx fd01:203:405::/48 --dst-pfx 2001:db8:1::/48"]
`

// TestNPTv6Router: a packet from the inside leaves with the outside
// prefix and the checksum-neutral word (RFC 6296's example address), its
// UDP checksum untouched and still valid; the answer to that address is
// translated back to the inside host.
func TestNPTv6Router(t *testing.T) {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", nptRouter, pipeline.Options{Clock: clk})
	nr := &natRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk}
	p := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "fd01:203:405:1::1234", Dst: "2001:db8:2::2", SrcPort: 4000, DstPort: 53, Payload: 20}.Bytes()
	out := nr.through(nr.a, nr.b, p) // checksums verified
	if out == nil {
		t.Fatalf("not forwarded (%s)", n.DumpCounters())
	}
	if s, _ := v6addrs(out); s != "2001:db8:1:d550::1234" {
		t.Fatalf("leaves from %s, want 2001:db8:1:d550::1234", s)
	}
	if string(out[40:]) != string(p[40:]) {
		t.Fatal("the UDP header or payload changed: not checksum-neutral")
	}
	back := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:2::2", Dst: "2001:db8:1:d550::1234", SrcPort: 53, DstPort: 4000, Payload: 20}.Bytes()
	in := nr.through(nr.b, nr.a, back)
	if in == nil {
		t.Fatalf("answer not forwarded (%s)", n.DumpCounters())
	}
	if _, d := v6addrs(in); d != "fd01:203:405:1::1234" {
		t.Fatalf("answer to %s", d)
	}
}

// TestPrefixTargetsRefused: NETMAP, SNPT and DNPT where ip(6)tables refuses
// them and with bad prefixes: errors name the file and line.
func TestPrefixTargetsRefused(t *testing.T) {
	base := "name: r\nmodules: [network.ipv4, network.ipv6, {module: netfilter.conntrack, max: 16}]\nlinks:\n  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}\nfilter:\n"
	for _, c := range []struct{ sec, want string }{
		{"  nat:\n    prerouting:\n      rules: [\"-j NETMAP\"]\n", "give --to"},
		{"  nat:\n    prerouting:\n      rules: [\"-j NETMAP --to 10.0.1.0/33\"]\n", "bad prefix"},
		{"  nat:\n    prerouting:\n      rules: [\"-j NETMAP --to 10.0.1.0/255.0.255.0\"]\n", "not contiguous"},
		{"  filter:\n    forward:\n      rules: [\"-j NETMAP --to 10.0.1.0/24\"]\n", "only valid in nat table"},
		{"  nat:\n    postrouting:\n      rules: [\"-d 2001:db8::1 -j NETMAP --to 10.0.1.0/24\"]\n", "IPv"},
		{"  mangle:\n    prerouting:\n      rules: [\"-j SNPT --src-pfx fd00::/48 --dst-pfx 2001:db8::/48\"]\n", "SNPT target: used from hooks PREROUTING"},
		{"  mangle:\n    postrouting:\n      rules: [\"-j DNPT --src-pfx fd00::/48 --dst-pfx 2001:db8::/48\"]\n", "DNPT target: used from hooks POSTROUTING"},
		{"  nat:\n    postrouting:\n      rules: [\"-j SNPT --src-pfx fd00::/48 --dst-pfx 2001:db8::/48\"]\n", "only valid in mangle table"},
		{"  mangle:\n    postrouting:\n      rules: [\"-j SNPT --src-pfx fd00::/80 --dst-pfx 2001:db8::/48\"]\n", "at most /64"},
		{"  mangle:\n    postrouting:\n      rules: [\"-j SNPT --src-pfx fd00::1/48 --dst-pfx 2001:db8::/48\"]\n", "bits set past the prefix length"},
		{"  mangle:\n    postrouting:\n      rules: [\"-j SNPT --src-pfx 10.0.0.0/8 --dst-pfx 2001:db8::/48\"]\n", "bad IPv6 prefix"},
		{"  mangle:\n    postrouting:\n      rules: [\"-j SNPT --src-pfx fd00::/48\"]\n", "give --src-pfx and --dst-pfx"},
	} {
		cfg, err := pipeline.ParseConfig("r.yaml", []byte(base+c.sec))
		if err == nil {
			s := pipeline.New(pipeline.Options{})
			_, err = s.Apply(cfg)
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "r.yaml:") {
			t.Errorf("%q: error %v, want %q with r.yaml:line", c.sec, err, c.want)
		}
	}
}
