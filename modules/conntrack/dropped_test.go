package conntrack

import (
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// TestDroppedFirstPacketEvictable: the entry of a first packet the FORWARD
// policy drops is one early drop may free (Linux frees it with the skb): a
// flood of dropped new flows from outside (six times the table's size)
// does not keep the inside from opening flows — none is refused
// (table_full_drops 0), each takes the place of a dropped one — and
// confirmed, assured flows are not the ones freed.
func TestDroppedFirstPacketEvictable(t *testing.T) {
	const cfg = `
name: r
modules:
  - network.ipv4
  - {module: netfilter.conntrack, max: 64}
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
filter:
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-i a -o b -j ACCEPT"
`
	nr := newNATRig(t, cfg)
	for i := 0; i < 256; i++ {
		if nr.through(nr.b, nr.a, udp("10.0.2.2", "10.0.1.2", uint16(1000+i), 53)) != nil {
			t.Fatal("an outside flow got in")
		}
		if i%2 == 0 { // and TCP SYNs
			if nr.through(nr.b, nr.a, tcpPkt("10.0.2.2", "10.0.1.2", uint16(2000+i), 22, 0x02)) != nil {
				t.Fatal("an outside SYN got in")
			}
		}
	}
	tbl := StackTable(nr.n.Stack)
	if f := nr.n.Counter("conntrack", "table_full_drops"); f != 0 {
		t.Errorf("table_full_drops %d during the flood, want 0 (the dropped flows' entries make room for each other)", f)
	}
	if d := nr.n.Counter("conntrack", "unconfirmed_dropped"); d != 384 {
		t.Errorf("unconfirmed_dropped %d, want 384", d)
	}
	n := 0
	tbl.Each(func(Ref, *Entry) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d dropped flows listed (confirmed), want none", n)
	}
	for i := 0; i < 64; i++ {
		if nr.through(nr.a, nr.b, udp("10.0.1.2", "10.0.2.2", uint16(4000+i), 53)) == nil {
			t.Fatalf("inside flow %d dropped (entries %d, table_full_drops %d)", i, tbl.Count(), nr.n.Counter("conntrack", "table_full_drops"))
		}
	}
	n = 0
	tbl.Each(func(Ref, *Entry) bool { n++; return true })
	// Early drop looks near the new flow's bucket only (Linux's eviction
	// range): where no dropped flow is left in range, an unreplied
	// accepted one goes; nearly all accepted flows stay (without the
	// preference for dropped flows about half would have gone: 24-33 of
	// 64 stay then, 54-63 with it).
	if n < 45 || tbl.Count() != 64 {
		t.Errorf("%d of %d entries confirmed after 64 accepted flows, want nearly all (>= 45)", n, tbl.Count())
	}
}

// TestDroppedNewFlowsZeroAllocs: every packet a new flow from outside that
// the FORWARD policy drops, the table full of such flows after the first
// 1,024 (each new one frees a dropped one): no allocation, none refused.
func TestDroppedNewFlowsZeroAllocs(t *testing.T) {
	rr := newRouterRig(t, "1024")
	tmpl := udp("10.0.2.2", "10.0.1.2", 1, 1)
	frames := make([][]byte, 64*300)
	for i := range frames {
		f := append([]byte(nil), tmpl...)
		binary.BigEndian.PutUint16(f[20:], uint16(i))
		binary.BigEndian.PutUint16(f[22:], uint16(i>>16)+1)
		frames[i] = f
	}
	buf := make([]*pipeline.Packet, 64)
	run := func(from, batches int) {
		for i := 0; i < batches; i++ {
			rr.b.InjectFrames(frames[(from+i)*64 : (from+i+1)*64])
			if k := rr.a.Read(buf); k != 0 {
				t.Fatalf("forwarded %d dropped packets", k)
			}
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(0, 100)
	if m := pipelinetest.CountMallocs(func() { run(100, 200) }); m != 0 {
		t.Fatalf("%d mallocs over 12,800 dropped new flows", m)
	}
	if f := rr.n.Counter("conntrack", "table_full_drops"); f != 0 {
		t.Errorf("table_full_drops %d, want 0", f)
	}
	if rr.n.Counter("conntrack", "early_drop") == 0 || rr.table().Count() != 1024 {
		t.Errorf("early_drop %d, %d entries: want the dropped flows evicted at the maximum 1024", rr.n.Counter("conntrack", "early_drop"), rr.table().Count())
	}
}
