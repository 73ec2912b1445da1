package conntrack

import (
	"strings"
	"testing"
)

// dnatOnly forwards a port; without its filter section (a reload that
// drops the nat table, its bindings staying, as Linux's) the Postrouting
// hook runs nothing but conntrack's NAT rewrite and confirmation, which
// parse nothing (HookEntry.NoTuple): the rewrite of a reply's source must
// parse the packet itself.
const dnatOnly = `
name: r
modules:
  - network.ipv4
  - {module: netfilter.conntrack, max: 64}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  nat:
    prerouting:
      rules: ["-d 10.0.2.1 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.3:80"]
`

// TestReplyRewriteWithoutParsedTuple: after the reload, the port
// forward's reply leaves with the router's address and port as its
// source, checksums right, though no table at Postrouting asked for the
// tuple.
func TestReplyRewriteWithoutParsedTuple(t *testing.T) {
	nr := newNATRig(t, dnatOnly)
	out := nr.through(nr.b, nr.a, tcpPkt("10.0.2.2", "10.0.2.1", 5000, 8080, 0x02))
	if out == nil {
		t.Fatal("the SYN to the forwarded port was not forwarded")
	}
	if _, d := v4addrs(out); d != "10.0.1.3" {
		t.Fatalf("SYN went to %s, want 10.0.1.3", d)
	}
	if err := nr.n.Reload(dnatOnly[:strings.Index(dnatOnly, "filter:")]); err != nil {
		t.Fatal(err)
	}
	back := nr.through(nr.a, nr.b, tcpPkt("10.0.1.3", "10.0.2.2", 80, 5000, 0x12))
	if back == nil {
		t.Fatal("the SYN-ACK was not forwarded")
	}
	if s, d := v4addrs(back); s != "10.0.2.1" || d != "10.0.2.2" {
		t.Fatalf("reply %s -> %s, want 10.0.2.1 -> 10.0.2.2", s, d)
	}
	if sp, dp := ports(back); sp != 8080 || dp != 5000 {
		t.Fatalf("reply ports %d -> %d, want 8080 -> 5000", sp, dp)
	}
}
