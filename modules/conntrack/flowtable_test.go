package conntrack

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// flowRouter offloads established flows between a and b (flowtable ft);
// %NAT% is replaced by a nat table (or nothing).
const flowRouter = `
name: r
modules:
  - network.ipv4
  - network.ipv6
  - module: netfilter.conntrack
    max: 1024
    flowtables: [{name: ft, devices: [a, b]}]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24, "2001:db8:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
filter:
%NAT%
  filter:
    forward:
      policy: drop
      rules:
        - {id: offload, rule: "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"}
        - {id: est, rule: "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"}
        - {id: new, rule: "-i a -o b -m state --state NEW -j ACCEPT"}
`

const masqTable = `  nat:
    postrouting:
      rules: ["-o b -j MASQUERADE"]`

type flowRig struct {
	t    *testing.T
	nat  bool // masqueraded: replies go to 10.0.2.1
	n    *pipelinetest.Node
	a, b *channel.Endpoint
	clk  *pipeline.ManualClock
	r    *rig
}

func newFlowRig(t *testing.T, nat string) *flowRig {
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", strings.Replace(flowRouter, "%NAT%", nat, 1), pipeline.Options{Clock: clk})
	return &flowRig{t: t, nat: nat != "", n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk, r: &rig{t: t}}
}

// sc is a server → client segment, to the router's address when masqueraded.
func (fr *flowRig) sc(flags uint8, seq, ackn uint32, n int) seg {
	s := sc(flags, seq, ackn, n)
	if fr.nat {
		s.dst = "10.0.2.1"
	}
	return s
}

// through injects b on from and returns what came out of to (nil:
// nothing), its checksums verified by full recomputation.
func (fr *flowRig) through(from, to *channel.Endpoint, b []byte) []byte {
	fr.t.Helper()
	return throughChecked(fr.t, from, to, b)
}

// seg builds a TCP segment with valid checksums.
func (fr *flowRig) seg(s seg) []byte {
	b := fr.r.tcpBytes(s)
	fixTCP(b)
	return b
}

// rule returns the packet counter of the FORWARD rule with this id.
func (fr *flowRig) rule(id string) uint64 {
	fr.t.Helper()
	for _, mc := range fr.n.Stack.Generation().Config().Modules {
		if rl, ok := mc.Module.(pipeline.RuleLister); ok {
			for _, c := range rl.ListRules() {
				for _, r := range c.Rules {
					if r.ID == id {
						return r.Packets
					}
				}
			}
		}
	}
	fr.t.Fatalf("no rule %s", id)
	return 0
}

func (fr *flowRig) ct(name string) uint64 { return fr.n.Counter("conntrack", name) }

// handshake opens 10.0.1.2:40000 → 10.0.2.2:80; the ACK offloads it.
func (fr *flowRig) handshake() {
	fr.t.Helper()
	if fr.through(fr.a, fr.b, fr.seg(cs(syn, 1000, 0, 0))) == nil {
		fr.t.Fatal("SYN dropped")
	}
	if fr.through(fr.b, fr.a, fr.seg(fr.sc(syn|ack, 5000, 1001, 0))) == nil {
		fr.t.Fatal("SYN/ACK dropped")
	}
	if fr.through(fr.a, fr.b, fr.seg(cs(ack, 1001, 5001, 0))) == nil {
		fr.t.Fatal("ACK dropped")
	}
	if got := fr.ct("flow_offloaded"); got != 1 {
		fr.t.Fatalf("flow_offloaded = %d after the handshake, want 1", got)
	}
}

// entry is the single flow's entry.
func (fr *flowRig) entry() (Ref, *Entry) {
	var ref Ref
	var ent *Entry
	StackTable(fr.n.Stack).Each(func(r Ref, e *Entry) bool { ref, ent = r, e; return false })
	if ent == nil {
		fr.t.Fatal("no entry")
	}
	return ref, ent
}

func (fr *flowRig) nic(name string) *pipeline.NIC {
	n, ok := fr.n.Stack.NIC(name)
	if !ok {
		fr.t.Fatalf("no NIC %s", name)
	}
	return n
}

// TestFlowOffloadSkipsRules: once offloaded, a flow's packets (both
// ways) skip the rules but conntrack and the links count them; the TTL
// goes down; a FIN returns the flow to the slow path.
func TestFlowOffloadSkipsRules(t *testing.T) {
	fr := newFlowRig(t, "")
	fr.handshake()
	est := fr.rule("est")
	off := fr.rule("offload")
	ref, e := fr.entry()
	if !offloaded(fr.n.Stack, ref) {
		t.Fatal("flow not in the flowtable")
	}
	if l := Format(e, fr.clk.Now()); !strings.Contains(l, "[ASSURED] [OFFLOAD] mark=0") {
		t.Errorf("listing without [OFFLOAD]: %s", l)
	}
	e.Lock()
	p0, b0 := e.Counters(0)
	p1, _ := e.Counters(1)
	e.Unlock()
	txB, txA := fr.nic("b").Stats.TxPackets.Load(), fr.nic("a").Stats.TxPackets.Load()
	for i := 0; i < 10; i++ {
		o := fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1001+uint32(i)*100, 5001, 100)))
		if o == nil {
			t.Fatalf("data %d dropped (%s)", i, fr.n.DumpCounters())
		}
		if o[8] != 63 {
			t.Fatalf("TTL %d, want 63", o[8])
		}
		if fr.through(fr.b, fr.a, fr.seg(sc(ack, 5001, 1101+uint32(i)*100, 0))) == nil {
			t.Fatalf("ACK %d dropped", i)
		}
	}
	if got := fr.rule("est"); got != est {
		t.Errorf("ESTABLISHED rule counted %d offloaded packets", got-est)
	}
	if got := fr.rule("offload"); got != off {
		t.Errorf("FLOWOFFLOAD rule counted %d offloaded packets", got-off)
	}
	if got := fr.ct("flow_fastpath"); got != 20 {
		t.Errorf("flow_fastpath = %d, want 20", got)
	}
	e.Lock()
	q0, c0 := e.Counters(0)
	q1, _ := e.Counters(1)
	st := e.TCPState()
	e.Unlock()
	if q0-p0 != 10 || q1-p1 != 10 || c0-b0 != 10*140 {
		t.Errorf("conntrack counted %d/%d packets, %d bytes; want 10/10, 1400", q0-p0, q1-p1, c0-b0)
	}
	if st != TCPEstablished {
		t.Errorf("TCP state %v", st)
	}
	if d := fr.nic("b").Stats.TxPackets.Load() - txB; d != 10 {
		t.Errorf("link b sent %d, want 10", d)
	}
	if d := fr.nic("a").Stats.TxPackets.Load() - txA; d != 10 {
		t.Errorf("link a sent %d, want 10", d)
	}
	// The entry's timeout was refreshed: established, 5 days.
	if left := e.Expires().Sub(fr.clk.Now()); left < 119*time.Hour {
		t.Errorf("timeout %v left", left)
	}
	// FIN: back to the slow path (the rules see it), and it stays there.
	if fr.through(fr.a, fr.b, fr.seg(cs(fin|ack, 2001, 5001, 0))) == nil {
		t.Fatal("FIN dropped")
	}
	if offloaded(fr.n.Stack, ref) {
		t.Fatal("still offloaded after a FIN")
	}
	if l := Format(e, fr.clk.Now()); strings.Contains(l, "OFFLOAD") {
		t.Errorf("listing after the FIN: %s", l)
	}
	if fr.ct("flow_teardown") != 1 {
		t.Errorf("flow_teardown = %d", fr.ct("flow_teardown"))
	}
	if got := fr.rule("est"); got != est+1 {
		t.Errorf("the FIN did not pass the rules (%d)", got-est)
	}
	if fr.through(fr.b, fr.a, fr.seg(sc(ack, 5001, 2002, 0))) == nil {
		t.Fatal("ACK of the FIN dropped")
	}
	if got := fr.rule("est"); got != est+2 {
		t.Errorf("packets after the FIN skipped the rules (%d)", got-est)
	}
	if fr.ct("flow_offloaded") != 1 {
		t.Errorf("a closing flow was offloaded again")
	}
}

// TestFlowOffloadRST: an RST returns the flow to the slow path (and
// conntrack closes it).
func TestFlowOffloadRST(t *testing.T) {
	fr := newFlowRig(t, "")
	fr.handshake()
	ref, _ := fr.entry()
	if fr.through(fr.b, fr.a, fr.seg(sc(rst, 5001, 0, 0))) == nil {
		t.Fatal("RST dropped")
	}
	if offloaded(fr.n.Stack, ref) || fr.ct("flow_teardown") != 1 || fr.ct("flow_fastpath") != 0 {
		t.Fatalf("RST: offloaded %v, %s", offloaded(fr.n.Stack, ref), fr.n.DumpCounters())
	}
}

// TestFlowOffloadTimeout: idle past the flowtable's timeout (30 s, less
// than conntrack's), the flow goes through the rules again — and is
// offloaded again by them.
func TestFlowOffloadTimeout(t *testing.T) {
	fr := newFlowRig(t, "")
	fr.handshake()
	fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1001, 5001, 100)))
	if fr.ct("flow_fastpath") != 1 {
		t.Fatalf("not fast: %s", fr.n.DumpCounters())
	}
	est := fr.rule("est")
	fr.clk.Advance(29 * time.Second)
	fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1101, 5001, 100)))
	if fr.ct("flow_fastpath") != 2 || fr.rule("est") != est {
		t.Fatalf("29 s idle left the fast path: %s", fr.n.DumpCounters())
	}
	fr.clk.Advance(31 * time.Second)
	if fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1201, 5001, 100))) == nil {
		t.Fatal("dropped after the timeout")
	}
	if fr.ct("flow_fastpath") != 2 || fr.rule("est") != est+1 || fr.ct("flow_teardown") != 1 {
		t.Fatalf("31 s idle: still fast (%s)", fr.n.DumpCounters())
	}
	if fr.ct("flow_offloaded") != 2 {
		t.Fatalf("not offloaded again by the rule: %d", fr.ct("flow_offloaded"))
	}
	fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1301, 5001, 100)))
	if fr.ct("flow_fastpath") != 3 {
		t.Fatalf("re-offloaded flow not fast: %s", fr.n.DumpCounters())
	}
}

// TestFlowOffloadEntryExpiry: the conntrack entry's own timeout (UDP
// 30 s unreplied) ends the offload with the entry; the next packet is a
// new flow through the rules.
func TestFlowOffloadEntryExpiry(t *testing.T) {
	fr := newFlowRig(t, "")
	u := udp("10.0.1.2", "10.0.2.2", 1234, 53)
	fr.through(fr.a, fr.b, u)                                     // NEW, confirmed
	fr.through(fr.b, fr.a, udp("10.0.2.2", "10.0.1.2", 53, 1234)) // reply: ESTABLISHED, offloaded
	fr.through(fr.a, fr.b, u)
	if fr.ct("flow_offloaded") != 1 || fr.ct("flow_fastpath") != 1 {
		t.Fatalf("UDP flow not offloaded: %s", fr.n.DumpCounters())
	}
	ref, _ := fr.entry()
	// The entry's timeout (unreplied UDP's 30 s: the stream timeout only
	// after 2 s) is shorter than nothing else here: advance past it.
	fr.clk.Advance(31 * time.Second)
	StackTable(fr.n.Stack).Expire(fr.clk.Now())
	nw := fr.rule("new")
	if fr.through(fr.a, fr.b, u) == nil {
		t.Fatal("dropped after expiry")
	}
	if offloaded(fr.n.Stack, ref) || fr.rule("new") != nw+1 || fr.ct("flow_fastpath") != 1 {
		t.Fatalf("expired flow still fast: %s", fr.n.DumpCounters())
	}
}

// TestFlowOffloadReload: a reload that changes FORWARD returns the flows
// to the slow path (the new rules decide, here: drop); one that changes
// nothing the fast path skips keeps them.
func TestFlowOffloadReload(t *testing.T) {
	fr := newFlowRig(t, "")
	fr.handshake()
	fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1001, 5001, 100)))
	if fr.ct("flow_fastpath") != 1 {
		t.Fatal("not fast")
	}
	// Unchanged rules, a raw table added (it runs before the fast path):
	// the flow stays offloaded.
	same := strings.Replace(flowRouter, "%NAT%", "  raw:\n    prerouting:\n      rules: [\"-p udp --dport 9 -j DROP\"]", 1)
	if err := fr.n.Reload(same); err != nil {
		t.Fatal(err)
	}
	if fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1101, 5001, 100))) == nil || fr.ct("flow_fastpath") != 2 {
		t.Fatalf("a reload of the raw table took the flow off the fast path: %s", fr.n.DumpCounters())
	}
	// FORWARD now drops the flow's port.
	changed := strings.Replace(same, `        - {id: offload,`, `        - {id: block, rule: "-p tcp --dport 80 -j DROP"}
        - {id: offload,`, 1)
	if err := fr.n.Reload(changed); err != nil {
		t.Fatal(err)
	}
	if fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1201, 5001, 100))) != nil {
		t.Fatal("the new FORWARD rule was skipped")
	}
	if fr.ct("flow_fastpath") != 2 || fr.ct("flow_teardown") != 1 || fr.rule("block") != 1 {
		t.Fatalf("after the reload: %s", fr.n.DumpCounters())
	}
}

// TestFlowOffloadNAT: a masqueraded flow rewritten by the fast path is
// byte for byte what the slow path makes of the same segment (its
// checksums verified by full recomputation), both ways (IPv6:
// TestFlowOffloadNAT6).
func TestFlowOffloadNAT(t *testing.T) {
	fr := newFlowRig(t, masqTable+"\n")
	fr.handshake()
	// The first data segment and its ACK are forwarded by the fast path;
	// compare with the slow path: a second router, no flowtable.
	slow := newNATRig(t, strings.Replace(strings.Replace(flowRouter, "%NAT%", masqTable, 1), `        - {id: offload, rule: "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"}
`, "", 1))
	for _, s := range []seg{cs(syn, 1000, 0, 0), sc(syn|ack, 5000, 1001, 0), cs(ack, 1001, 5001, 0)} {
		from, to := slow.a, slow.b
		if s.src == "10.0.2.2" {
			from, to = slow.b, slow.a
			s.dst = "10.0.2.1"
		}
		if slow.through(from, to, fr.seg(s)) == nil {
			t.Fatalf("slow router dropped %+v", s)
		}
	}
	data := cs(psh|ack, 1001, 5001, 300)
	want := slow.through(slow.a, slow.b, fr.seg(data))
	got := fr.through(fr.a, fr.b, fr.seg(data))
	if fr.ct("flow_fastpath") != 1 {
		t.Fatalf("not through the fast path: %s", fr.n.DumpCounters())
	}
	if src, _ := v4addrs(got); src != "10.0.2.1" {
		t.Fatalf("not masqueraded: from %s", src)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fast path\n% x\nslow path\n% x", got, want)
	}
	reply := sc(ack, 5001, 1301, 0)
	reply.dst = "10.0.2.1"
	want = slow.through(slow.b, slow.a, fr.seg(reply))
	got = fr.through(fr.b, fr.a, fr.seg(reply))
	if fr.ct("flow_fastpath") != 2 {
		t.Fatalf("reply not through the fast path: %s", fr.n.DumpCounters())
	}
	if _, dst := v4addrs(got); dst != "10.0.1.2" || !bytes.Equal(got, want) {
		t.Fatalf("reply: fast path\n% x\nslow path\n% x", got, want)
	}
}

// udpFlow makes 10.0.1.2:1234 → 10.0.2.2:53 offloaded (its reply makes
// it ESTABLISHED, the rule offloads it) and returns a packet of it.
func (fr *flowRig) udpFlow(v6 bool) filtertest.Packet {
	fr.t.Helper()
	p := filtertest.Packet{IPv6: v6, Proto: filtertest.UDP, SrcPort: 1234, DstPort: 53, Payload: 10}
	r := p
	r.Src, r.Dst = "10.0.2.2", "10.0.1.2"
	if v6 {
		r.Src, r.Dst = "2001:db8:2::2", "2001:db8:1::2"
	}
	if fr.nat {
		r.Dst = map[bool]string{false: "10.0.2.1", true: "2001:db8:2::1"}[v6]
	}
	r.SrcPort, r.DstPort = 53, 1234
	n := fr.ct("flow_offloaded")
	fr.through(fr.a, fr.b, p.Bytes())
	if fr.through(fr.b, fr.a, r.Bytes()) == nil {
		fr.t.Fatalf("reply dropped: %s", fr.n.DumpCounters())
	}
	if fr.ct("flow_offloaded") != n+1 {
		fr.t.Fatalf("UDP flow not offloaded: %s", fr.n.DumpCounters())
	}
	return p
}

// TestFlowOffloadIPv6: an offloaded IPv6 flow has its hop limit
// decremented and skips the rules.
func TestFlowOffloadIPv6(t *testing.T) {
	fr := newFlowRig(t, "")
	p := fr.udpFlow(true)
	est := fr.rule("est")
	o := fr.through(fr.a, fr.b, p.Bytes())
	if o == nil || fr.ct("flow_fastpath") != 1 || fr.rule("est") != est {
		t.Fatalf("IPv6 packet not fast: %s", fr.n.DumpCounters())
	}
	if o[7] != 63 {
		t.Fatalf("hop limit %d", o[7])
	}
}

// TestFlowOffloadSlowPathPackets: packets of an offloaded flow that need
// the slow path take it (and stay offloaded): TTL 1 (the slow path sends
// time exceeded), over the out-link's MTU with DF (fragmentation needed),
// IPv4 options.
func TestFlowOffloadSlowPathPackets(t *testing.T) {
	fr := newFlowRig(t, "")
	p := fr.udpFlow(false)
	ttl1 := p
	ttl1.TTL = 1
	if fr.through(fr.a, fr.b, ttl1.Bytes()) != nil {
		t.Fatal("TTL 1 forwarded")
	}
	if k := fr.a.Read(make([]*pipeline.Packet, 4)); k != 1 {
		t.Fatalf("%d ICMP errors back on a, want 1", k)
	}
	if fr.n.Counter("ipv4", "ttl_exceeded") != 1 {
		t.Fatalf("no time exceeded from the slow path: %s", fr.n.DumpCounters())
	}
	big := p
	big.Payload = 1600
	bb := big.Bytes()
	bb[6] |= 0x40 // DF
	bb[10], bb[11] = 0, 0
	fixIPv4Sum(bb)
	if fr.through(fr.a, fr.b, bb) != nil {
		t.Fatal("too big with DF forwarded")
	}
	if fr.n.Counter("ipv4", "too_big") != 1 {
		t.Fatalf("no fragmentation needed from the slow path: %s", fr.n.DumpCounters())
	}
	fr.a.Read(make([]*pipeline.Packet, 4)) // the ICMP errors
	// A packet with an IPv4 option (NOP, padding to 4 bytes).
	ob := p.Bytes()
	opt := append(append(append([]byte(nil), ob[:20]...), 1, 1, 1, 0), ob[20:]...)
	opt[0] = 0x46
	opt[2], opt[3] = byte(len(opt)>>8), byte(len(opt))
	fixIPv4Sum(opt)
	est := fr.rule("est")
	if fr.through(fr.a, fr.b, opt) == nil || fr.rule("est") != est+1 {
		t.Fatalf("options: not through the slow path: %s", fr.n.DumpCounters())
	}
	if fr.ct("flow_fastpath") != 0 || fr.ct("flow_slowpath") != 3 || fr.ct("flow_teardown") != 0 {
		t.Fatalf("%s", fr.n.DumpCounters())
	}
	// Still offloaded: the next ordinary packet is fast.
	if fr.through(fr.a, fr.b, p.Bytes()) == nil || fr.ct("flow_fastpath") != 1 {
		t.Fatalf("flow left the fast path: %s", fr.n.DumpCounters())
	}
}

func fixIPv4Sum(b []byte) {
	b[10], b[11] = 0, 0
	var s uint32
	hl := int(b[0]&0xf) * 4
	for i := 0; i < hl; i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	b[10], b[11] = byte(^s>>8), byte(^s)
}

// TestFlowOffloadKeepsOrder: the packets after the one that offloads a
// flow, in the same batch, do not overtake it (the flow takes the fast
// path when the batch ends); the next batch is fast.
func TestFlowOffloadKeepsOrder(t *testing.T) {
	fr := newFlowRig(t, "")
	fr.through(fr.a, fr.b, fr.seg(cs(syn, 1000, 0, 0)))
	fr.through(fr.b, fr.a, fr.seg(sc(syn|ack, 5000, 1001, 0)))
	var frames [][]byte
	for i := 0; i < 8; i++ {
		frames = append(frames, fr.seg(cs(psh|ack, 1001+uint32(i)*10, 5001, 10)))
	}
	fr.a.InjectFrames(frames)
	buf := make([]*pipeline.Packet, 16)
	k := fr.b.Read(buf)
	defer pipeline.ReleaseBatch(buf[:k])
	if k != 8 {
		t.Fatalf("forwarded %d of 8", k)
	}
	for i, p := range buf[:k] {
		if seq := uint32(p.Data()[24])<<24 | uint32(p.Data()[25])<<16 | uint32(p.Data()[26])<<8 | uint32(p.Data()[27]); seq != 1001+uint32(i)*10 {
			t.Fatalf("packet %d has seq %d: reordered", i, seq)
		}
	}
	if fr.ct("flow_offloaded") != 1 || fr.ct("flow_fastpath") != 0 {
		t.Fatalf("in the offloading batch: %s", fr.n.DumpCounters())
	}
	if fr.through(fr.a, fr.b, fr.seg(cs(psh|ack, 1081, 5001, 10))) == nil || fr.ct("flow_fastpath") != 1 {
		t.Fatalf("next batch not fast: %s", fr.n.DumpCounters())
	}
}

// TestFlowOffloadConcurrent: workers send offloaded flows both ways
// while the table is flushed, the clock runs past the flowtable's timeout
// and the rules are reloaded: no race (under -race), and the flows are
// forwarded on one path or the other throughout.
func TestFlowOffloadConcurrent(t *testing.T) {
	fr := newFlowRig(t, masqTable+"\n")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			port := uint16(2000 + w)
			out := udp("10.0.1.2", "10.0.2.2", port, 53)
			back := udp("10.0.2.2", "10.0.2.1", 53, port)
			for i := 0; i < 400; i++ {
				fr.a.InjectFrames([][]byte{out, out})
				fr.b.InjectFrames([][]byte{back})
			}
		}(w)
	}
	drain := make(chan struct{})
	go func() {
		buf := make([]*pipeline.Packet, 64)
		for {
			select {
			case <-drain:
				return
			default:
			}
			pipeline.ReleaseBatch(buf[:fr.a.Read(buf)])
			pipeline.ReleaseBatch(buf[:fr.b.Read(buf)])
		}
	}()
	cfg := strings.Replace(flowRouter, "%NAT%", masqTable, 1)
	for i := 0; i < 20; i++ {
		switch i % 4 {
		case 0:
			StackTable(fr.n.Stack).Flush()
		case 1:
			fr.clk.Advance(31 * time.Second)
		case 2:
			if err := fr.n.Reload(strings.Replace(cfg, "-i a -o b -m state", fmt.Sprintf("-i a -o b -m comment --comment r%d -m state", i), 1)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	close(drain)
	if fr.ct("flow_offloaded") == 0 || fr.ct("flow_fastpath") == 0 {
		t.Fatalf("nothing offloaded: %s", fr.n.DumpCounters())
	}
	t.Logf("%s", fr.n.DumpCounters())
}

// TestFlowOffloadNAT6: a masqueraded IPv6 UDP flow, both ways: the fast
// path's packets are the slow path's, byte for byte.
func TestFlowOffloadNAT6(t *testing.T) {
	fr := newFlowRig(t, masqTable+"\n")
	p := fr.udpFlow(true)
	slowCfg := strings.Replace(strings.Replace(flowRouter, "%NAT%", masqTable, 1), `        - {id: offload, rule: "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"}
`, "", 1)
	slow := &flowRig{t: t, nat: true}
	slow.n = pipelinetest.NewNode(t, "s", slowCfg, pipeline.Options{Clock: pipeline.NewManualClock(time.Unix(1_000_000, 0))})
	slow.a, slow.b = slow.n.Link(t, "a"), slow.n.Link(t, "b")
	reply := filtertest.Packet{IPv6: true, Proto: filtertest.UDP, Src: "2001:db8:2::2", Dst: "2001:db8:2::1", SrcPort: 53, DstPort: 1234, Payload: 30}
	slow.through(slow.a, slow.b, p.Bytes())
	slow.through(slow.b, slow.a, reply.Bytes())
	p.Payload = 200
	want, got := slow.through(slow.a, slow.b, p.Bytes()), fr.through(fr.a, fr.b, p.Bytes())
	if fr.ct("flow_fastpath") != 1 {
		t.Fatalf("not fast: %s", fr.n.DumpCounters())
	}
	if got == nil || !bytes.Equal(got, want) || string(got[8:24]) != string(netip.MustParseAddr("2001:db8:2::1").AsSlice()) {
		t.Fatalf("fast path\n% x\nslow path\n% x", got, want)
	}
	want, got = slow.through(slow.b, slow.a, reply.Bytes()), fr.through(fr.b, fr.a, reply.Bytes())
	if fr.ct("flow_fastpath") != 2 {
		t.Fatalf("reply not fast: %s", fr.n.DumpCounters())
	}
	if got == nil || !bytes.Equal(got, want) || string(got[24:40]) != string(netip.MustParseAddr("2001:db8:1::2").AsSlice()) {
		t.Fatalf("reply: fast path\n% x\nslow path\n% x", got, want)
	}
}

// TestFlowOffloadRouteChange: the next hop cached in an offloaded flow is
// looked up again when the route tables change (here a reload that only
// changes a route: the flow stays offloaded, its packets go to the new
// gateway).
func TestFlowOffloadRouteChange(t *testing.T) {
	cfg := func(via string) string {
		return strings.Replace(strings.Replace(flowRouter, "%NAT%", "", 1), "forwarding: {ipv4: true, ipv6: true}",
			"forwarding: {ipv4: true, ipv6: true}\nroutes:\n  - {to: 198.51.100.0/24, via: "+via+", link: b}", 1)
	}
	clk := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	n := pipelinetest.NewNode(t, "r", cfg("10.0.2.2"), pipeline.Options{Clock: clk})
	fr := &flowRig{t: t, n: n, a: n.Link(t, "a"), b: n.Link(t, "b"), clk: clk, r: &rig{t: t}}
	out := udp("10.0.1.2", "198.51.100.7", 1234, 53)
	hop := func() string {
		t.Helper()
		fr.a.InjectFrames([][]byte{out})
		buf := make([]*pipeline.Packet, 4)
		k := fr.b.Read(buf)
		defer pipeline.ReleaseBatch(buf[:k])
		if k != 1 {
			t.Fatalf("forwarded %d (%s)", k, fr.n.DumpCounters())
		}
		return buf[0].NextHop.String()
	}
	hop()
	fr.through(fr.b, fr.a, udp("198.51.100.7", "10.0.1.2", 53, 1234))
	if h := hop(); h != "10.0.2.2" || fr.ct("flow_fastpath") != 1 {
		t.Fatalf("next hop %s, fast %d", h, fr.ct("flow_fastpath"))
	}
	if err := n.Reload(cfg("10.0.2.3")); err != nil {
		t.Fatal(err)
	}
	if h := hop(); h != "10.0.2.3" || fr.ct("flow_fastpath") != 2 || fr.ct("flow_teardown") != 0 {
		t.Fatalf("after the route changed: next hop %s (%s)", h, fr.n.DumpCounters())
	}
}

// FuzzFlowOffload: any bytes in place of a packet of an offloaded,
// masqueraded flow (seeds: its packets, both families, both ways) are
// forwarded, sent to the slow path or dropped, never a panic; what the
// fast path forwards keeps checksums that were valid valid.
func FuzzFlowOffload(f *testing.F) {
	seedRig := &flowRig{t: &testing.T{}, r: &rig{}}
	f.Add(udp("10.0.1.2", "10.0.2.2", 1234, 53), false)
	f.Add(udp("10.0.2.2", "10.0.2.1", 53, 1234), true)
	f.Add(seedRig.seg(cs(psh|ack, 1001, 5001, 20)), false)
	f.Add(filtertest.Packet{IPv6: true, Proto: filtertest.UDP, SrcPort: 1234, DstPort: 53, Payload: 10}.Bytes(), false)
	f.Fuzz(func(t *testing.T, b []byte, fromB bool) {
		fr := newFlowRig(t, masqTable+"\n")
		fr.udpFlow(false)
		fr.udpFlow(true)
		valid := filtertest.VerifyChecksums(b) == nil
		from, to := fr.a, fr.b
		if fromB {
			from, to = fr.b, fr.a
		}
		before := fr.ct("flow_fastpath")
		for i := 0; i < 2; i++ {
			from.InjectFrames([][]byte{b})
			buf := make([]*pipeline.Packet, 8)
			k := to.Read(buf)
			for _, p := range buf[:k] {
				if valid && fr.ct("flow_fastpath") > before {
					if err := filtertest.VerifyChecksums(p.Data()); err != nil {
						t.Errorf("fast path broke a checksum: %v", err)
					}
				}
			}
			pipeline.ReleaseBatch(buf[:k])
			fr.a.Read(make([]*pipeline.Packet, 8))
		}
	})
}
