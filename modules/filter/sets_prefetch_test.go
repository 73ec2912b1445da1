package filter

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// TestPeek4: the fields the batch pass reads from the headers are those
// the lookup gets from ParseTuple (SetMatch.fields), for every
// combination of flags, over random IPv4 and IPv6 packets: TCP, UDP,
// SCTP, ICMP, GRE, non-first fragments, truncated transport headers.
func TestPeek4(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 17))
	protos := []uint8{6, 17, 132, 1, 47}
	for i := 0; i < 3000; i++ {
		p := pk{proto: protos[r.IntN(len(protos))], src: "10.1.2.3", dst: "192.0.2.77", sport: uint16(r.Uint32()), dport: uint16(r.Uint32())}
		switch r.IntN(6) {
		case 0:
			p.v6, p.src, p.dst = true, "2001:db8::1", "2001:db8::2"
			if p.proto == 1 {
				p.proto = 58
			}
		case 1:
			p.fragOff = uint16(8 * (1 + r.IntN(4)))
		case 2:
			p.l4len = 1 + r.IntN(3) // fewer than the 4 bytes of ports
		case 3:
			p.l4len = -2 // no transport header at all
		}
		pc := p.ctx(t)
		for _, dirs := range [][]bool{{false, false}, {true, true}, {true, false}, {false, true}} {
			m := &SetMatch{dirs: dirs}
			a, port, proto, ports, ok := peek4(pc.Pkt, dirs[0], dirs[1])
			if ok != pc.Tuple.Dst.Is4() {
				t.Fatalf("%+v: peek4 ok %v for a v4 %v packet", p, ok, pc.Tuple.Dst.Is4())
			}
			if !ok {
				continue
			}
			wa, wport, wproto, wports := m.fields(pc, setIPPort)
			if want := wa.As4(); a != uint32(want[0])<<24|uint32(want[1])<<16|uint32(want[2])<<8|uint32(want[3]) {
				t.Fatalf("%+v dirs %v: address %08x, the lookup's %s", p, dirs, a, wa)
			}
			if ports != wports || ports && (port != wport || proto != wproto) {
				t.Fatalf("%+v dirs %v: ports %v %d/%d, the lookup's %v %d/%d", p, dirs, ports, port, proto, wports, wport, wproto)
			}
		}
	}
	// Nothing past a short buffer is read.
	for n := 0; n < 24; n++ {
		pkt := pipeline.DefaultPool.Get(n)
		b := make([]byte, n)
		if n > 0 {
			b[0] = 0x4f // IHL 15: 60 bytes claimed
		}
		pkt.SetData(b)
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv4ProtocolNumber
		_, _, _, ports, ok := peek4(pkt, false, false)
		if ok != (n >= 20) || ports {
			t.Fatalf("%d bytes: ok %v ports %v", n, ok, ports)
		}
		pkt.Release()
	}
}

// TestSetPrefetch: the batch pass touches, for each packet, the slot the
// lookup of its fields probes first (its sum is the sum of the values
// there, computed here from ParseTuple's fields); hash:net and a set too
// small to leave the caches are not prefetched; the table's hook entry
// has the pass only where its rules look a hashed set up.
func TestSetPrefetch(t *testing.T) {
	dir := t.TempDir()
	m := mustLoad(t, bigSetsSection(t, dir, 100000)+`
  input:
    rules:
      - "-d 10.0.0.1 -j DROP"
  forward:
    rules:
      - "-p tcp -j jumpee"
  jumpee:
    rules:
      - "-m set --match-set big_net dst -j DROP"
      - "-m set --match-set big_ipport_plain dst,dst -j DROP"
      - "-m set --match-set ports dst -j ACCEPT"
`)
	var fwd, in *pipeline.HookEntry
	es := m.HookTables()
	for i := range es {
		switch es[i].Hook {
		case pipeline.Forward:
			fwd = &es[i]
		case pipeline.Input:
			in = &es[i]
		}
	}
	if fwd == nil || in == nil || fwd.Prepare == nil || in.Prepare != nil {
		t.Fatalf("forward entry %v, input %v: want a pass at forward only", fwd, in)
	}
	pkts := make([]*pipeline.Packet, 0, 64)
	var pcs []*pipeline.PacketContext
	for i := 0; i < 64; i++ {
		pc := bigSetFlow(i * 61).ctx(t)
		pcs = append(pcs, pc)
		pkts = append(pkts, pc.Pkt)
	}
	pkts = append(pkts, nil, pk{v6: true, proto: 6, src: "2001:db8::1", dst: "2001:db8:1::5", dport: 80}.ctx(t).Pkt)
	sn := m.sets["big_ipport_plain"].snap.Load()
	var want uint32
	for _, pc := range pcs {
		k := uint64(pc.Dst4)<<32 | uint64(pc.Tuple.DstPort)
		if sn.someProto {
			want += uint32(sn.ipp4.slots[sn.ipp4.home(k|uint64(pc.Tuple.Proto)<<16)].v)
		}
		if sn.anyProto {
			want += uint32(sn.ipp4.slots[sn.ipp4.home(k)].v)
		}
	}
	if got := sn.prefetch(pkts, false, false); got != want || want == 0 {
		t.Errorf("prefetch sum %d, the lookups' %d", got, want)
	}
	// hash:net keeps the addresses' order in its table: not prefetched.
	if got := m.sets["big_net"].snap.Load().prefetch(pkts, false, false); got != 0 {
		t.Errorf("hash:net prefetched (%d)", got)
	}
	fwd.Prepare(nil, pipeline.Forward, pkts) // the entry's pass runs them all
	small := mustLoad(t, `sets:
  s: {type: "addr . port", elements: ["172.16.0.0 . tcp:1"]}
filter:
  forward:
    rules: ["-m set --match-set s dst,dst -j DROP"]
`)
	if got := small.sets["s"].snap.Load().prefetch(pkts, false, false); got != 0 {
		t.Errorf("a one-element set prefetched (%d)", got)
	}
	nets := mustLoad(t, `sets:
  s: {type: hash:net, elements: ["10.0.0.0/8"]}
filter:
  forward:
    rules: ["-m set --match-set s dst -j DROP"]
`)
	for _, e := range nets.HookTables() {
		if e.Prepare != nil {
			t.Errorf("%s at %s: a batch pass for a hash:net set", e.Name, e.Hook)
		}
	}
}

// hookPrepare is the batch pass of m's table at hook h (nil: none).
func hookPrepare(m *Module, h pipeline.Hook) func(*pipeline.Batch, pipeline.Hook, []*pipeline.Packet) {
	for _, e := range m.HookTables() {
		if e.Hook == h {
			return e.Prepare
		}
	}
	return nil
}
