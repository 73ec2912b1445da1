package conntrack

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// statefulRouter forwards between a (10.0.1.0/24, the inside) and b (the
// outside) with a stateful FORWARD policy: drop, except replies and
// related packets, and new flows from a.
const statefulRouter = `
name: r
modules:
  - network.ipv4
  - network.ipv6
  - {module: netfilter.conntrack, max: %MAX%}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24, "2001:db8:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
  raw:
    prerouting:
      rules: ["-p udp --dport 9999 -j NOTRACK"]
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -m state --state NEW -j ACCEPT"
        - "-m conntrack --ctstate UNTRACKED -j ACCEPT"
`

type routerRig struct {
	t    *testing.T
	n    *pipelinetest.Node
	a, b *channel.Endpoint
	clk  *pipeline.ManualClock
	r    *rig // for the TCP byte builder
}

func newRouterRig(t *testing.T, max string) *routerRig {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", strings.ReplaceAll(statefulRouter, "%MAX%", max), pipeline.Options{Clock: clk})
	return &routerRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk, r: &rig{t: t}}
}

// pass injects b on from and reports whether it came out of to.
func (rr *routerRig) pass(from, to *channel.Endpoint, b []byte) bool {
	rr.t.Helper()
	from.InjectFrames([][]byte{b})
	buf := make([]*pipeline.Packet, 4)
	k := to.Read(buf)
	pipeline.ReleaseBatch(buf[:k])
	return k > 0
}

func (rr *routerRig) table() *Table { return StackTable(rr.n.Stack) }

func udp(src, dst string, sport, dport uint16) []byte {
	return filtertest.Packet{Proto: filtertest.UDP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Payload: 10}.Bytes()
}

func echo(src, dst string, typ uint8, id uint16) []byte {
	b := filtertest.Packet{Proto: filtertest.ICMP, Src: src, Dst: dst, ICMPType: typ}.Bytes()
	binary.BigEndian.PutUint16(b[24:], id)
	return b
}

// icmpError is an ICMP error from src about the quoted packet q.
func icmpError(src, dst string, typ, code uint8, q []byte) []byte {
	b := filtertest.Packet{Proto: filtertest.ICMP, Src: src, Dst: dst, ICMPType: typ, ICMPCode: code, Payload: 28}.Bytes()
	copy(b[28:], q[:28])
	return b
}

func TestStatefulForwardPolicy(t *testing.T) {
	rr := newRouterRig(t, "1024")
	// TCP: a opens, b answers, the flow is established both ways.
	if !rr.pass(rr.a, rr.b, rr.r.tcpBytes(cs(syn, 1000, 0, 0))) {
		t.Fatal("SYN from the inside dropped")
	}
	if !rr.pass(rr.b, rr.a, rr.r.tcpBytes(sc(syn|ack, 5000, 1001, 0))) {
		t.Fatal("SYN/ACK dropped")
	}
	if !rr.pass(rr.a, rr.b, rr.r.tcpBytes(cs(ack, 1001, 5001, 0))) {
		t.Fatal("ACK dropped")
	}
	if !rr.pass(rr.b, rr.a, rr.r.tcpBytes(sc(psh|ack, 5001, 1001, 100))) {
		t.Fatal("data from the outside on the established flow dropped")
	}
	// Out of window: INVALID, dropped.
	if rr.pass(rr.b, rr.a, rr.r.tcpBytes(sc(psh|ack, 5001+50_000_000, 1001, 100))) {
		t.Fatal("out-of-window segment forwarded")
	}
	// A new flow from the outside: dropped.
	if rr.pass(rr.b, rr.a, rr.r.tcpBytes(seg{src: "10.0.2.2", dst: "10.0.1.2", sport: 5555, dport: 22, flags: syn, seq: 1})) {
		t.Fatal("SYN from the outside forwarded")
	}
	// UDP: outgoing, its reply; an unsolicited datagram is dropped.
	if !rr.pass(rr.a, rr.b, udp("10.0.1.2", "10.0.2.2", 1234, 53)) || !rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.2", 53, 1234)) {
		t.Fatal("UDP flow and reply")
	}
	if rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.2", 53, 1235)) {
		t.Fatal("unsolicited UDP forwarded")
	}
	// NOTRACK in raw: untracked, accepted by its rule.
	if !rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.2", 1, 9999)) {
		t.Fatal("untracked datagram dropped")
	}
	// ICMP echo and reply; a reply with another id is dropped.
	if !rr.pass(rr.a, rr.b, echo("10.0.1.2", "10.0.2.2", 8, 77)) || !rr.pass(rr.b, rr.a, echo("10.0.2.2", "10.0.1.2", 0, 77)) {
		t.Fatal("echo and reply")
	}
	if rr.pass(rr.b, rr.a, echo("10.0.2.2", "10.0.1.2", 0, 78)) {
		t.Fatal("echo reply without a request forwarded")
	}
	// An ICMP error about the UDP flow: RELATED, forwarded; about a flow
	// that does not exist: INVALID, dropped.
	if !rr.pass(rr.b, rr.a, icmpError("10.0.2.2", "10.0.1.2", 3, 3, udp("10.0.1.2", "10.0.2.2", 1234, 53))) {
		t.Fatal("port unreachable about a tracked flow dropped")
	}
	if rr.pass(rr.b, rr.a, icmpError("10.0.2.2", "10.0.1.2", 3, 3, udp("10.0.1.2", "10.0.2.2", 4321, 53))) {
		t.Fatal("ICMP error about no flow forwarded")
	}
	if got := rr.n.Counter("conntrack", "related"); got != 1 {
		t.Fatalf("related = %d", got)
	}
	// The listing (the server's 100 bytes are unacknowledged: 300 s, as Linux).
	var lines []string
	rr.table().Each(func(r Ref, e *Entry) bool {
		lines = append(lines, Format(e, rr.clk.Now()))
		return true
	})
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"tcp      6 300 ESTABLISHED src=10.0.1.2 dst=10.0.2.2 sport=40000 dport=80 src=10.0.2.2 dst=10.0.1.2 sport=80 dport=40000 [ASSURED] mark=0 use=1",
		"udp      17 30 src=10.0.1.2 dst=10.0.2.2 sport=1234 dport=53 src=10.0.2.2 dst=10.0.1.2 sport=53 dport=1234 mark=0 use=1",
		"icmp     1 30 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=77 src=10.0.2.2 dst=10.0.1.2 type=0 code=0 id=77 mark=0 use=1",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("listing lacks\n%s\nhas\n%s", want, all)
		}
	}
	if strings.Contains(all, "dport=22") {
		t.Errorf("the dropped SYN's entry is listed (unconfirmed):\n%s", all)
	}
	// Timeouts: after 31 s the UDP and ICMP flows are gone, a late UDP
	// reply is dropped; TCP stays.
	rr.clk.Advance(31 * time.Second)
	if rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.2", 53, 1234)) {
		t.Fatal("UDP reply after the timeout forwarded")
	}
	if !rr.pass(rr.b, rr.a, rr.r.tcpBytes(sc(ack, 5101, 1001, 0))) {
		t.Fatal("TCP flow lost")
	}
}

func TestStatefulIPv6(t *testing.T) {
	rr := newRouterRig(t, "1024")
	v6 := func(src, dst string, sport, dport uint16) []byte {
		return filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport}.Bytes()
	}
	if !rr.pass(rr.a, rr.b, v6("2001:db8:1::2", "2001:db8:2::2", 1, 2)) || !rr.pass(rr.b, rr.a, v6("2001:db8:2::2", "2001:db8:1::2", 2, 1)) {
		t.Fatal("IPv6 UDP flow and reply")
	}
	if rr.pass(rr.b, rr.a, v6("2001:db8:2::2", "2001:db8:1::2", 3, 1)) {
		t.Fatal("unsolicited IPv6 forwarded")
	}
	ping := func(src, dst string, typ uint8) []byte {
		b := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: src, Dst: dst, ICMPType: typ}.Bytes()
		binary.BigEndian.PutUint16(b[44:], 9)
		return b
	}
	if !rr.pass(rr.a, rr.b, ping("2001:db8:1::2", "2001:db8:2::2", 128)) || !rr.pass(rr.b, rr.a, ping("2001:db8:2::2", "2001:db8:1::2", 129)) {
		t.Fatal("ICMPv6 echo and reply")
	}
	// Packet too big about the UDP flow: RELATED.
	q := v6("2001:db8:1::2", "2001:db8:2::2", 1, 2)
	e := filtertest.Packet{IPv6: true, Proto: filtertest.ICMPv6, Src: "2001:db8:2::2", Dst: "2001:db8:1::2", ICMPType: 2, Payload: len(q)}.Bytes()
	copy(e[48:], q)
	if !rr.pass(rr.b, rr.a, e) {
		t.Fatal("ICMPv6 error about a tracked flow dropped")
	}
}

// fragments4 splits an IPv4 packet into two fragments at payload offset 16.
func fragments4(b []byte) [][]byte {
	hl := int(b[0]&0xf) * 4
	pay := b[hl:]
	mk := func(off int, data []byte, more bool) []byte {
		f := append(append([]byte(nil), b[:hl]...), data...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		v := uint16(off / 8)
		if more {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], v)
		f[10], f[11] = 0, 0
		var sum uint32
		for i := 0; i < hl; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(f[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(f[10:], ^uint16(sum))
		return f
	}
	return [][]byte{mk(0, pay[:16], true), mk(16, pay[16:], false)}
}

// TestDefragBeforeTracking: forwarded fragments are reassembled at -400, so
// conntrack tracks the whole datagram (with its ports) and the reply's
// fragments pass the stateful policy as ESTABLISHED.
func TestDefragBeforeTracking(t *testing.T) {
	rr := newRouterRig(t, "64")
	big := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.1.2", Dst: "10.0.2.2", SrcPort: 7000, DstPort: 7001, Payload: 40}.Bytes()
	fr := fragments4(big)
	rr.a.InjectFrames(fr[:1])
	buf := make([]*pipeline.Packet, 4)
	if k := rr.b.Read(buf); k != 0 {
		t.Fatalf("the first fragment was forwarded alone (%d)", k)
	}
	rr.a.InjectFrames(fr[1:])
	k := rr.b.Read(buf)
	if k != 1 || buf[0].Len() != len(big) {
		t.Fatalf("got %d packets, want the whole %d-byte datagram", k, len(big))
	}
	pipeline.ReleaseBatch(buf[:k])
	var found bool
	rr.table().Each(func(_ Ref, e *Entry) bool {
		found = found || e.Tuple(0).SPort == 7000
		return true
	})
	if !found {
		t.Fatal("no entry with the datagram's ports")
	}
	reply := filtertest.Packet{Proto: filtertest.UDP, Src: "10.0.2.2", Dst: "10.0.1.2", SrcPort: 7001, DstPort: 7000, Payload: 40}.Bytes()
	rf := fragments4(reply)
	rr.b.InjectFrames(rf)
	if k := rr.a.Read(buf); k != 1 {
		t.Fatalf("reply fragments: %d packets out (%s)", k, rr.n.DumpCounters())
	} else {
		pipeline.ReleaseBatch(buf[:k])
	}
}

func TestConnlimitPerSourcePrefix(t *testing.T) {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", `
name: r
modules: [network.ipv4, {module: netfilter.conntrack, max: 64}]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      rules:
        - "-p udp -m connlimit --connlimit-above 2 --connlimit-mask 24 -j DROP"
`, pipeline.Options{Clock: clk})
	rr := &routerRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk}
	for i, c := range []struct {
		src  string
		port uint16
		want bool
	}{{"10.0.1.2", 1, true}, {"10.0.1.2", 2, true}, {"10.0.1.2", 1, true}, {"10.0.1.3", 3, false}, {"10.0.1.2", 4, false}} {
		if got := rr.pass(rr.a, rr.b, udp(c.src, "10.0.2.2", c.port, 53)); got != c.want {
			t.Fatalf("datagram %d (%s:%d): forwarded %v, want %v", i, c.src, c.port, got, c.want)
		}
	}
	// Another /24 has its own count.
	if !rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.9", 5, 53)) {
		t.Fatal("another prefix was limited")
	}
	// Once the flows expire the prefix may open new ones.
	clk.Advance(40 * time.Second)
	if !rr.pass(rr.a, rr.b, udp("10.0.1.2", "10.0.2.2", 6, 53)) {
		t.Fatal("still limited after the connections expired")
	}
}

// TestStateSurvivesReload: a reload (a new generation: here a changed
// timeout and one more rule) keeps the table and its entries; a reload
// that changes max starts an empty one.
func TestStateSurvivesReload(t *testing.T) {
	rr := newRouterRig(t, "1024")
	if !rr.pass(rr.a, rr.b, udp("10.0.1.2", "10.0.2.2", 1234, 53)) {
		t.Fatal("UDP out")
	}
	before := rr.table()
	cfg := strings.ReplaceAll(statefulRouter, "%MAX%", "1024") + "        - \"-p tcp --dport 1 -j DROP\"\n"
	if err := rr.n.Reload(strings.Replace(cfg, "max: 1024}", "max: 1024, timeouts: {udp: 45s}}", 1)); err != nil {
		t.Fatal(err)
	}
	if rr.table() != before || before.Count() != 1 {
		t.Fatalf("the reload replaced the table or lost entries (%d)", rr.table().Count())
	}
	if !rr.pass(rr.b, rr.a, udp("10.0.2.2", "10.0.1.2", 53, 1234)) {
		t.Fatal("the reply after the reload was dropped: the flow was forgotten")
	}
	e := (*Entry)(nil)
	rr.table().Each(func(_ Ref, x *Entry) bool { e = x; return false })
	if e == nil || e.Expires().Sub(rr.clk.Now()) != 45*time.Second {
		t.Fatal("the new generation's udp timeout did not apply to the next packet")
	}
	if err := rr.n.Reload(strings.ReplaceAll(statefulRouter, "%MAX%", "2048")); err != nil {
		t.Fatal(err)
	}
	if rr.table() == before || rr.table().Max() != 2048 || rr.table().Count() != 0 {
		t.Fatal("a new max did not start a new table")
	}
}
