package conntrack

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// masqRouter is natRouter's MASQUERADE towards b, with b's address (and
// its device name) filled in, plus an SNAT rule to a fixed address for
// 10.0.1.9 (SNAT's bindings do not follow the link).
func masqRouter(dev, bAddr string) string {
	return `
name: r
modules:
  - network.ipv4
  - {module: netfilter.conntrack, max: 1024}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, device: ` + dev + `, addresses: [` + bAddr + `]}
forwarding: {ipv4: true}
filter:
  nat:
    prerouting:
      rules:
        - "-i b -p udp --dport 5353 -j DNAT --to-destination 10.0.1.3"
    postrouting:
      rules:
        - "-o b -s 10.0.1.9 -j SNAT --to-source 10.0.2.1"
        - "-o b -j MASQUERADE"
`
}

// flows lists the table's entries as "orig | reply".
func flows(t *testing.T, s *pipeline.Stack) string {
	t.Helper()
	var lines []string
	StackTable(s).Each(func(_ Ref, e *Entry) bool {
		k0, k1 := e.Tuple(0), e.Tuple(1)
		lines = append(lines, k0.String()+" | "+k1.String())
		return true
	})
	return strings.Join(lines, "\n")
}

// TestMasqueradeFollowsAddress: as Linux's nf_nat_masquerade, entries
// MASQUERADE bound to b's address are deleted when a reload takes that
// address from b (the flow's next packet leaves with the new address),
// and every entry masqueraded out of b when b's device goes; entries of
// other NAT (a port forward in, SNAT to a fixed address) stay.
func TestMasqueradeFollowsAddress(t *testing.T) {
	dev := pipelinetest.UniqueName(t)
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", masqRouter(dev, "10.0.2.1/24"), pipeline.Options{Clock: clk})
	nr := &natRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk}

	out := nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53))
	if out == nil {
		t.Fatal("not forwarded")
	}
	if s, _ := v4addrs(out); s != "10.0.2.1" {
		t.Fatalf("masqueraded to %s, want 10.0.2.1", s)
	}
	if nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 53, 4000)) == nil {
		t.Fatal("the reply did not come back")
	}
	if nr.through(nr.a, nr.b, udp("10.0.1.9", "10.0.2.2", 4001, 53)) == nil { // SNAT
		t.Fatal("SNAT flow not forwarded")
	}
	if nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.2.1", 6000, 5353)) == nil { // DNAT
		t.Fatal("port forward not forwarded")
	}
	tbl := StackTable(n.Stack)
	if c := tbl.Count(); c != 3 {
		t.Fatalf("%d entries, want 3:\n%s", c, flows(t, n.Stack))
	}
	deleted := n.Counter("conntrack", "deleted")

	// b's address changes: the masqueraded entry goes, the others stay.
	if err := n.Reload(masqRouter(dev, "10.0.2.7/24")); err != nil {
		t.Fatal(err)
	}
	list := flows(t, n.Stack)
	if tbl.Count() != 2 || strings.Contains(list, "10.0.1.2") || !strings.Contains(list, "10.0.1.9") || !strings.Contains(list, "10.0.1.3") {
		t.Fatalf("after b lost 10.0.2.1, want only the SNAT and DNAT entries:\n%s", list)
	}
	if d := n.Counter("conntrack", "deleted") - deleted; d != 1 {
		t.Errorf("deleted +%d, want +1", d)
	}
	// The flow goes on with b's new address.
	out = nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", 4000, 53))
	if out == nil {
		t.Fatal("not forwarded after the address change")
	}
	if s, _ := v4addrs(out); s != "10.0.2.7" {
		t.Fatalf("after the change masqueraded to %s, want 10.0.2.7", s)
	}
	// A reload that keeps the address keeps the entry.
	if err := n.Reload(masqRouter(dev, "10.0.2.7/24, 10.0.2.8/24")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flows(t, n.Stack), "10.0.2.7") {
		t.Fatalf("a reload that kept 10.0.2.7 flushed its entry:\n%s", flows(t, n.Stack))
	}

	// b's device goes: every entry masqueraded out of b goes with it.
	channel.RemoveDevice(dev)
	t.Cleanup(func() { channel.RestoreDevice(dev) })
	pipelinetest.Eventually(t, 5*time.Second, func() bool { return !strings.Contains(flows(t, n.Stack), "10.0.1.2") },
		"the masqueraded entry outlived b going down:\n%s", flows(t, n.Stack))
	list = flows(t, n.Stack)
	if !strings.Contains(list, "10.0.1.9") || !strings.Contains(list, "10.0.1.3") {
		t.Fatalf("b going down took other entries:\n%s", list)
	}
}

// TestEchoToRouterReplied: the router's echo reply (made in the request's
// buffer) is tracked as the reply of the request's entry, as Linux's fresh
// reply skb is: the entry has seen its reply and a second request is
// ESTABLISHED (IPv4 and IPv6).
func TestEchoToRouterReplied(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		nr := newNATRig(t, natRouter)
		src, dst := "10.0.1.2", "10.0.1.1"
		typ := uint8(8)
		if v6 {
			src, dst, typ = "2001:db8:1::2", "2001:db8:1::1", 128
		}
		proto := filtertest.ICMP
		if v6 {
			proto = filtertest.ICMPv6
		}
		ping := filtertest.Packet{IPv6: v6, Proto: proto, Src: src, Dst: dst, ICMPType: typ}.Bytes()
		// Echo id 7, as a real ping has one (an all-zero message would meet
		// RFC 1624 eqn. 3's -0 corner: a 0x0000 checksum on the reply).
		off := 20
		if v6 {
			off = 40
		}
		binary.BigEndian.PutUint16(ping[off+4:], 7)
		binary.BigEndian.PutUint16(ping[off+2:], wire.ChecksumUpdate16(binary.BigEndian.Uint16(ping[off+2:]), 0, 7))
		if nr.through(nr.a, nr.a, ping) == nil {
			t.Fatalf("v6 %v: no echo reply", v6)
		}
		n := 0
		StackTable(nr.n.Stack).Each(func(_ Ref, e *Entry) bool {
			n++
			if e.Status()&StatusSeenReply == 0 {
				t.Errorf("v6 %v: the echo entry saw no reply: %s", v6, Format(e, nr.clk.Now()))
			}
			return true
		})
		if n != 1 {
			t.Errorf("v6 %v: %d entries, want the echo's one", v6, n)
		}
	}
}

// TestNATResetAnsweringSYN: a reset that is a flow's only reply ends the
// flow (Linux's nf_ct_kill) but is itself still translated: the server's
// RST to a masqueraded SYN reaches the inside client (connection refused,
// not a timeout), and a new SYN of the same ports is a new flow. A REJECT
// --reject-with tcp-reset in FORWARD reaches the client too with a nat
// table configured (the reset was dropped as a stale NAT entry).
func TestNATResetAnsweringSYN(t *testing.T) {
	nr := newNATRig(t, natRouter)
	if nr.through(nr.a, nr.b, tcpPkt("10.0.1.2", "10.0.2.2", 40000, 443, 0x02)) == nil {
		t.Fatal("SYN not forwarded")
	}
	rst := tcpPkt("10.0.2.2", "10.0.2.1", 443, 40000, 0x14)
	binary.BigEndian.PutUint32(rst[28:], 1)
	fixTCP(rst)
	out := nr.through(nr.b, nr.a, rst)
	if out == nil {
		t.Fatalf("the server's RST did not reach the client (%s)", nr.n.DumpCounters())
	}
	if s, d := v4addrs(out); s != "10.0.2.2" || d != "10.0.1.2" {
		t.Fatalf("RST %s -> %s, want 10.0.2.2 -> 10.0.1.2", s, d)
	}
	if c := nr.n.Counter("conntrack", "nat_stale_drops"); c != 0 {
		t.Errorf("nat_stale_drops %d", c)
	}
	if nr.through(nr.a, nr.b, tcpPkt("10.0.1.2", "10.0.2.2", 40000, 443, 0x02)) == nil {
		t.Fatal("the next SYN of the same ports was not forwarded")
	}
	if l := flows(t, nr.n.Stack); strings.Count(l, "sport=40000") != 1 {
		t.Errorf("want one flow of port 40000 (the new one):\n%s", l)
	}

	rej := strings.Replace(natRouter, `        - "-m conntrack --ctstate INVALID -j DROP"`, `        - "-m conntrack --ctstate INVALID -j DROP"
        - "-p tcp --dport 4001 -m state --state NEW -m tcp ! --syn -j REJECT --reject-with tcp-reset"`, 1)
	nr = newNATRig(t, rej)
	out = nr.through(nr.a, nr.a, tcpPkt("10.0.1.2", "10.0.2.2", 20000, 4001, 0x10))
	if out == nil {
		t.Fatalf("REJECT's reset did not reach the client (%s)", nr.n.DumpCounters())
	}
	if s, _ := v4addrs(out); s != "10.0.2.2" {
		t.Errorf("REJECT's reset from %s, want 10.0.2.2", s)
	}
	ack6 := filtertest.Packet{IPv6: true, Proto: filtertest.TCP, Src: "2001:db8:1::2", Dst: "2001:db8:2::2", SrcPort: 20000, DstPort: 4001, TCPFlags: 0x10}.Bytes()
	if nr.through(nr.a, nr.a, ack6) == nil {
		t.Fatalf("IPv6: REJECT's reset did not reach the client (%s)", nr.n.DumpCounters())
	}
}
