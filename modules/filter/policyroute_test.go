package filter_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// policyRouter has two ways out: b (the main table's default routes) and
// c (table 100's); packets marked 1 in mangle take table 100 — DNS from
// the inside (PREROUTING) and the router's own echo replies (OUTPUT).
const policyRouter = `
name: r
modules: [network.ipv4, network.ipv6]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24, "2001:db8:2::1/64"]}
  - {name: c, module: link.channel, addresses: [10.0.3.1/24, "2001:db8:3::1/64"]}
forwarding: {ipv4: true, ipv6: true}
routes:
  - {to: default, via: 10.0.2.254, link: b}
  - {to: default, via: "2001:db8:2::fe", link: b}
  - {to: default, via: 10.0.3.254, link: c, table: 100}
  - {to: default, via: "2001:db8:3::fe", link: c, table: 100}
route_rules:
  - {fwmark: "0x1/0xff", table: 100, priority: 100}
filter:
  mangle:
    prerouting:
      rules: ["-i a -p udp --dport 53 -j MARK --set-mark 0x101"]
    output:
      rules: ["-p icmp --icmp-type echo-reply -j MARK --set-mark 1", "-p icmpv6 --icmpv6-type echo-reply -j MARK --set-mark 1"]
`

// out injects p on from and says which of the links it left by (and the
// packet), nil when none.
func out(t *testing.T, from *channel.Endpoint, p []byte, links map[string]*channel.Endpoint) (string, []byte) {
	t.Helper()
	from.InjectFrames([][]byte{p})
	var name string
	var got []byte
	for n, l := range links {
		for _, b := range pipelinetest.Drain(l) {
			if name != "" {
				t.Fatalf("left by %s and %s", name, n)
			}
			name, got = n, b
		}
	}
	return name, got
}

// TestPolicyRoutingByMark: a mark set in mangle PREROUTING chooses table
// 100 for forwarded packets, IPv4 and IPv6; unmarked ones take the main
// table; a mark set in mangle OUTPUT routes the router's own packet again
// (ip_route_me_harder); a reload without the rule routes everything by
// the main table.
func TestPolicyRoutingByMark(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", policyRouter, pipeline.Options{})
	links := map[string]*channel.Endpoint{"a": n.Link(t, "a"), "b": n.Link(t, "b"), "c": n.Link(t, "c")}
	a := links["a"]
	dns := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 53, Payload: 8}.Bytes()
	web := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 80, Payload: 8}.Bytes()
	dns6 := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:99::53", SrcPort: 1000, DstPort: 53, Payload: 8}.Bytes()
	web6 := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:1::2", Dst: "2001:db8:99::53", SrcPort: 1000, DstPort: 80, Payload: 8}.Bytes()
	for _, c := range []struct {
		name string
		p    []byte
		want string
	}{{"marked DNS", dns, "c"}, {"web", web, "b"}, {"marked DNS again", dns, "c"}, {"IPv6 marked DNS", dns6, "c"}, {"IPv6 web", web6, "b"}} {
		if got, _ := out(t, a, c.p, links); got != c.want {
			t.Errorf("%s left by %q, want %q (%s)", c.name, got, c.want, n.DumpCounters())
		}
	}
	// The router's own echo reply to 192.0.2.7 (main table: b) is
	// marked in mangle OUTPUT and leaves by c.
	ping := filtertest.Packet{Proto: filtertest.ICMP, Src: "192.0.2.7", Dst: "10.0.2.1", ICMPType: 8, Payload: 8}.Bytes()
	if got, p := out(t, links["b"], ping, links); got != "c" || len(p) < 20 || netip.AddrFrom4([4]byte(p[16:20])).String() != "192.0.2.7" {
		t.Errorf("the echo reply left by %q, want c", got)
	}
	ping6 := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:99::7", Dst: "2001:db8:2::1", ICMPType: 128, Payload: 8}.Bytes()
	if got, _ := out(t, links["b"], ping6, links); got != "c" {
		t.Errorf("the IPv6 echo reply left by %q, want c", got)
	}
	// Without the rule, table 100 is not consulted.
	if err := n.Reload(strings.Replace(policyRouter, "route_rules:\n  - {fwmark: \"0x1/0xff\", table: 100, priority: 100}\n", "", 1)); err != nil {
		t.Fatal(err)
	}
	if got, _ := out(t, a, dns, links); got != "b" {
		t.Errorf("after the reload without the rule the DNS packet left by %q, want b", got)
	}
}

// TestPolicyRoutingOrder: rules in priority order, the first whose table
// has a route wins; a rule naming the main table (254) ends the search;
// a rule's table without a route for the destination falls through.
func TestPolicyRoutingOrder(t *testing.T) {
	cfg := strings.Replace(policyRouter, `route_rules:
  - {fwmark: "0x1/0xff", table: 100, priority: 100}`, `  - {to: 198.51.100.0/24, via: 10.0.1.254, link: a, table: 200}
route_rules:
  - {fwmark: "0x1/0xff", table: 100, priority: 100}
  - {fwmark: "0x100/0x100", table: 254, priority: 50}
  - {fwmark: "0x1", table: 200, priority: 10}`, 1)
	n := pipelinetest.NewNode(t, "r", strings.Replace(cfg, "--set-mark 0x101", "--set-mark 0x1", 1), pipeline.Options{})
	links := map[string]*channel.Endpoint{"a": n.Link(t, "a"), "b": n.Link(t, "b"), "c": n.Link(t, "c")}
	// Mark 1, to 192.0.2.53: table 200 has no route for it, table 100 does.
	dns := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 53, Payload: 8}.Bytes()
	if got, _ := out(t, links["a"], dns, links); got != "c" {
		t.Errorf("mark 1 to 192.0.2.53 left by %q, want c (table 100)", got)
	}
	// Mark 1, to 198.51.100.9: table 200 (priority 10) sends it back to a.
	dns2 := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "198.51.100.9", SrcPort: 1000, DstPort: 53, Payload: 8}.Bytes()
	if got, _ := out(t, links["a"], dns2, links); got != "a" {
		t.Errorf("mark 1 to 198.51.100.9 left by %q, want a (table 200)", got)
	}
	// Mark 0x101 (the main rule at 50 matches first): main, b.
	n2 := pipelinetest.NewNode(t, "r2", cfg, pipeline.Options{})
	l2 := map[string]*channel.Endpoint{"a": n2.Link(t, "a"), "b": n2.Link(t, "b"), "c": n2.Link(t, "c")}
	if got, _ := out(t, l2["a"], dns, l2); got != "b" {
		t.Errorf("mark 0x101 left by %q, want b (the main rule first)", got)
	}
}

// TestPolicyRoutingConfigErrors: broken rules and tables are refused with
// the file's line.
func TestPolicyRoutingConfigErrors(t *testing.T) {
	base := "name: r\nmodules: [network.ipv4]\nlinks:\n  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}\nroutes:\n  - {to: default, via: 10.0.1.254, link: a, table: 100}\nroute_rules:\n"
	for _, c := range []struct{ rule, want string }{
		{"  - {fwmark: 1, table: 7}\n", "r.yaml:8:5: route_rules: table 7 has no routes"},
		{"  - {fwmark: 1}\n", "r.yaml:8:5: route_rules: route rule has no table"},
		{"  - {fwmark: 1, table: 255}\n", "table 255 is Linux's local table"},
		{"  - {fwmark: x1, table: 100}\n", "fwmark: \"x1\" is not a 32-bit number"},
		{"  - {fwmark: 0x3/0x1, table: 100}\n", "value bits outside the mask"},
		{"  - {fwmark: 1, table: 100, family: 5}\n", "family 5"},
		{"  - {fwmark: 1, table: 100, iif: a}\n", "r.yaml:8:29: route_rules: unknown field \"iif\""},
	} {
		_, err := pipeline.ParseConfig("r.yaml", []byte(base+c.rule))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.rule, err, c.want)
		}
	}
}

// BenchmarkPolicyRouting: forwarding 64-packet batches routed by the main
// table (no rules), by table 100 chosen by a mark the mangle table set, and
// by the main table with the rules present but not matching.
func BenchmarkPolicyRouting(b *testing.B) {
	noRules := strings.Replace(policyRouter, "route_rules:\n  - {fwmark: \"0x1/0xff\", table: 100, priority: 100}\n", "", 1)
	dns := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 53, Payload: 18}.Bytes()
	web := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "192.0.2.53", SrcPort: 1000, DstPort: 80, Payload: 18}.Bytes()
	for _, c := range []struct {
		name, cfg string
		pkt       []byte
		out       string
	}{{"main-no-rules", noRules, dns, "b"}, {"table100-by-mark", policyRouter, dns, "c"}, {"main-rules-unmatched", policyRouter, web, "b"}} {
		b.Run(c.name, func(b *testing.B) {
			n := pipelinetest.NewNode(b, "r", c.cfg, pipeline.Options{})
			in, out := n.Link(b, "a"), n.Link(b, c.out)
			frames := make([][]byte, 64)
			for i := range frames {
				frames[i] = c.pkt
			}
			buf := make([]*pipeline.Packet, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 64 {
				in.InjectFrames(frames)
				k := out.Read(buf)
				if k != 64 {
					b.Fatalf("forwarded %d", k)
				}
				pipeline.ReleaseBatch(buf[:k])
			}
		})
	}
}
