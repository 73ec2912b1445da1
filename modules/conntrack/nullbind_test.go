package conntrack

import (
	"testing"
)

// nullBindRouter masquerades towards b and forwards everything else that
// conntrack makes sense of, both ways (a routed inside network).
const nullBindRouter = `
name: r
modules:
  - network.ipv4
  - {module: netfilter.conntrack, max: 1024}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  nat:
    postrouting:
      rules: ["-o b -j MASQUERADE"]
  filter:
    forward:
      rules: ["-m conntrack --ctstate INVALID -j DROP"]
`

// TestNullBindingOnClash: a flow no rule NATs whose reply key is a NATed
// flow's (the outside sends to the inside host with the inverse of the
// masqueraded flow's original tuple) gets a null binding, as Linux's
// nf_nat_alloc_null_binding: its addresses stay, its source port changes
// (within 1–511 for port 53), and both flows' replies reach their own
// ends. Before, the clash made it INVALID and the rule dropped it.
func TestNullBindingOnClash(t *testing.T) {
	nr := newNATRig(t, nullBindRouter)
	// X: 10.0.1.2:4000 -> 10.0.2.2:53, masqueraded to 10.0.2.1:4000.
	if out := nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53)); out == nil {
		t.Fatal("X not forwarded")
	} else if s, _ := v4addrs(out); s != "10.0.2.1" {
		t.Fatalf("X leaves from %s", s)
	}
	// Y: 10.0.2.2:53 -> 10.0.1.2:4000, routed: its inverse is X's
	// original key.
	out := nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.1.2", 53, 4000))
	if out == nil {
		t.Fatalf("Y dropped (%s)", nr.n.DumpCounters())
	}
	s, d := v4addrs(out)
	sp, dp := ports(out)
	if s != "10.0.2.2" || d != "10.0.1.2" || dp != 4000 || sp == 53 || sp < 1 || sp > 511 {
		t.Fatalf("Y arrives as %s:%d -> %s:%d, want 10.0.2.2 with another port below 512 -> 10.0.1.2:4000", s, sp, d, dp)
	}
	// Y's reply goes back to 10.0.2.2:53, from the inside host itself.
	out = nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, sp))
	if out == nil {
		t.Fatal("Y's reply dropped")
	}
	if s, d := v4addrs(out); s != "10.0.1.2" || d != "10.0.2.2" {
		t.Fatalf("Y's reply leaves as %s -> %s", s, d)
	}
	if p1, p2 := ports(out); p1 != 4000 || p2 != 53 {
		t.Fatalf("Y's reply ports %d -> %d, want 4000 -> 53", p1, p2)
	}
	// X's reply still reaches X's host through the masquerade.
	out = nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4000))
	if out == nil {
		t.Fatal("X's reply dropped")
	}
	if s, d := v4addrs(out); s != "10.0.2.2" || d != "10.0.1.2" {
		t.Fatalf("X's reply arrives as %s -> %s", s, d)
	}
	if sp, dp := ports(out); sp != 53 || dp != 4000 {
		t.Fatalf("X's reply ports %d -> %d", sp, dp)
	}
	if c := nr.n.Counter("conntrack", "invalid"); c != 0 {
		t.Fatalf("invalid %d", c)
	}
	if c := nr.table().Count(); c != 2 {
		t.Fatalf("%d entries, want 2", c)
	}
}

func (nr *natRig) table() *Table { return StackTable(nr.n.Stack) }
