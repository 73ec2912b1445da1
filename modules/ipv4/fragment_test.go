package ipv4_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// reasmLab is a lab whose router collects the UDP datagrams delivered to it.
func reasmLab(t *testing.T, ipv4Config string) (*lab, *pt.Collector) {
	name := pt.UniqueName(t) + "-udp"
	l := newLab(t, ipv4Config+", {module: transport.collect, protocol: 17, name: "+name+"}")
	return l, pt.Collected(name)
}

func wantDelivered(t *testing.T, col *pt.Collector, want ...[]byte) {
	t.Helper()
	if col.Len() != len(want) {
		t.Fatalf("delivered %d datagrams, want %d", col.Len(), len(want))
	}
	for _, w := range want {
		got := col.Wait(t, time.Second)
		if !bytes.Equal(got, w) {
			t.Fatalf("reassembled datagram differs:\n got % x\nwant % x", got[:40], w[:40])
		}
	}
}

func TestReassembly(t *testing.T) {
	orig := bigUDP("10.0.1.2", "10.0.1.1", 77, 3000)
	frags := fragmentsOf(orig, 1000, 1000) // 3 fragments
	for _, tc := range []struct {
		name  string
		order [][]byte
	}{
		{"in order", frags},
		{"out of order", [][]byte{frags[2], frags[0], frags[1]}},
		{"last first", [][]byte{frags[2], frags[1], frags[0]}},
		{"duplicates", [][]byte{frags[0], frags[0], frags[2], frags[2], frags[1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, col := reasmLab(t, "network.ipv4")
			for _, f := range tc.order { // one batch per fragment
				l.inject(l.a, f)
			}
			wantDelivered(t, col, orig)
			// All in one batch too.
			l.inject(l.a, tc.order...)
			wantDelivered(t, col, orig)
			dups := uint64(len(tc.order)-3) * 2
			l.wantCounters(t, map[string]uint64{"reasm_ok": 2, "reasm_duplicate": dups, "delivered": 2})
			if got := l.counter("reasm_fragments"); got != uint64(2*len(tc.order)) {
				t.Errorf("reasm_fragments %d", got)
			}
		})
	}
}

// Overlapping fragments drop the whole datagram, including fragments that
// come later (RFC 5722 in spirit); so do inconsistent lengths.
func TestReassemblyOverlapAndInconsistent(t *testing.T) {
	orig := bigUDP("10.0.1.2", "10.0.1.1", 5, 3000)
	pl := wire.IPv4(orig).Payload()
	l, col := reasmLab(t, "network.ipv4")
	l.inject(l.a, fragment(orig, 0, pl[:1008], true), fragment(orig, 1000, pl[1000:2000], true))
	l.inject(l.a, fragment(orig, 2000, pl[2000:], false), fragment(orig, 1008, pl[1008:2000], true))
	if col.Len() != 0 {
		t.Fatal("delivered an overlapping datagram")
	}
	l.wantCounters(t, map[string]uint64{"reasm_overlap": 1, "reasm_discarded": 2, "reasm_ok": 0})

	// Two different ends.
	orig2 := bigUDP("10.0.1.2", "10.0.1.1", 6, 3000)
	pl2 := wire.IPv4(orig2).Payload()
	l.inject(l.a, fragment(orig2, 2000, pl2[2000:], false), fragment(orig2, 1000, pl2[1000:1504], false))
	// Data past the end.
	orig3 := bigUDP("10.0.1.2", "10.0.1.1", 7, 3000)
	pl3 := wire.IPv4(orig3).Payload()
	l.inject(l.a, fragment(orig3, 1000, pl3[1000:2000], false), fragment(orig3, 2000, pl3[2000:2504], true))
	// A non-last fragment that is not a multiple of 8.
	l.inject(l.a, fragment(orig3, 0, pl3[:1001], true))
	l.wantCounters(t, map[string]uint64{"reasm_inconsistent": 2, "reasm_malformed": 1})
	// Past 64 KiB (ping of death).
	l.inject(l.a, fragment(orig3, 65528, pl3[:100], false))
	l.wantCounters(t, map[string]uint64{"reasm_too_big": 1})
	if col.Len() != 0 {
		t.Fatal("delivered a bad datagram")
	}
	// The tombstones expire with their deadline, and memory is released.
	l.clock.Advance(31 * time.Second)
	assertReasmEmpty(t, l)
}

func assertReasmEmpty(t *testing.T, l *lab) {
	t.Helper()
	pt.WantReassemblyEmpty(t, l.r.Stack, "network.ipv4/reassembly")
}

// A datagram whose first fragment came but never completed gets ICMP time
// exceeded (reassembly) after the timeout; one whose first fragment never
// came gets nothing.
func TestReassemblyTimeout(t *testing.T) {
	l, col := reasmLab(t, "{module: network.ipv4, reassembly: {timeout: 10s}}")
	a := bigUDP("10.0.1.2", "10.0.1.1", 1, 3000)
	b := bigUDP("10.0.1.2", "10.0.1.1", 2, 3000)
	fa, fb := fragmentsOf(a, 1000, 1000), fragmentsOf(b, 1000, 1000)
	l.inject(l.a, fa[0], fa[1], fb[1])
	l.clock.Advance(9 * time.Second)
	if back := pt.Drain(l.a); len(back) != 0 {
		t.Fatal("timed out early")
	}
	l.clock.Advance(2 * time.Second)
	back := pt.Drain(l.a)
	if len(back) != 1 {
		t.Fatalf("got %d messages, want 1 time exceeded (%s)", len(back), l.r.DumpCounters())
	}
	pt.CheckIPv4(t, back[0], pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"),
		pt.ICMP(wire.ICMPv4TimeExceeded, wire.ICMPv4ReassemblyTimeout, pt.Quotes(fa[0])))
	l.wantCounters(t, map[string]uint64{"reasm_timeout": 2, "icmp_time_exceeded_out": 1})
	// The late last fragment starts a new datagram that never completes.
	l.inject(l.a, fa[2])
	if col.Len() != 0 {
		t.Fatal("delivered a timed-out datagram")
	}
	l.clock.Advance(11 * time.Second)
	assertReasmEmpty(t, l)
}

// A reload keeps datagrams in reassembly.
func TestReassemblySurvivesReload(t *testing.T) {
	name := pt.UniqueName(t)
	l := newLab(t, "network.ipv4, {module: transport.collect, protocol: 17, name: "+name+"}")
	col := pt.Collected(name)
	orig := bigUDP("10.0.1.2", "10.0.1.1", 3, 3000)
	frags := fragmentsOf(orig, 1000, 1000)
	l.inject(l.a, frags[0], frags[1])
	cfg := fmt.Sprintf(`
name: router
modules: [{module: network.ipv4, default_ttl: 60}, {module: transport.collect, protocol: 17, name: %s}]
links:
  - {name: a, module: link.channel, mtu: 9000, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1400, addresses: [10.0.2.1/24]}
  - {name: c, module: link.channel, addresses: [10.0.3.1/24]}
forwarding: {ipv4: true}
`, name)
	if err := l.r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	l.inject(l.a, frags[2])
	wantDelivered(t, col, orig)
}

// A fragment flood — never-completing datagrams far past the memory cap,
// from many sources or from one — does not keep a legitimate fragmented
// datagram from another source from getting through, whether it started
// before the flood or during it.
func TestFragmentFlood(t *testing.T) {
	for _, sources := range []int{1, 16} {
		t.Run(fmt.Sprintf("%d sources", sources), func(t *testing.T) {
			l, col := reasmLab(t, "{module: network.ipv4, reassembly: {max_memory: 524288, per_source_memory: 131072}}")
			legit := bigUDP("10.0.1.2", "10.0.1.1", 1, 4000)
			lf := fragmentsOf(legit, 1480, 1480)
			l.inject(l.a, lf[0])
			// 4000 fragments of 1480 bytes (~8 MiB of buffers) that
			// never complete, in batches of 64, the legitimate datagram's
			// second fragment in the middle.
			var batch [][]byte
			id := uint16(1000)
			for i := 0; i < 4000; i++ {
				src := fmt.Sprintf("10.0.1.%d", 100+i%sources)
				junk := bigUDP(src, "10.0.1.1", id, 3000)
				id++
				batch = append(batch, fragmentsOf(junk, 1480)[0])
				if len(batch) == 64 {
					l.inject(l.a, batch...)
					batch = batch[:0]
				}
				if i == 2000 {
					l.inject(l.a, lf[1])
				}
			}
			l.inject(l.a, lf[2])
			wantDelivered(t, col, legit)
			// A datagram that starts in the middle of the flood gets
			// through too.
			late := bigUDP("10.0.1.3", "10.0.1.1", 2, 4000)
			latef := fragmentsOf(late, 1480, 1480)
			for i, f := range latef {
				l.inject(l.a, f)
				for j := 0; j < 4; j++ {
					var b [][]byte
					for k := 0; k < 64; k++ {
						b = append(b, fragmentsOf(bigUDP(fmt.Sprintf("10.0.1.%d", 100+k%sources), "10.0.1.1", id, 3000), 1480)[0])
						id++
					}
					l.inject(l.a, b...)
				}
				_ = i
			}
			wantDelivered(t, col, late)
			mem, _ := pt.ReassemblyMemory(t, l.r.Stack, "network.ipv4/reassembly")
			if mem > 524288 {
				t.Fatalf("reassembly holds %d bytes, over its 512 KiB cap", mem)
			}
			if l.counter("reasm_evicted")+l.counter("reasm_source_limit") == 0 {
				t.Fatalf("no eviction under a flood (%s)", l.r.DumpCounters())
			}
			t.Logf("held %d bytes; evicted %d, source limit %d", mem, l.counter("reasm_evicted"), l.counter("reasm_source_limit"))
		})
	}
}

// A forwarded 4000-byte packet leaves a 1400-MTU link in fragments that
// reassemble to the original (TTL decremented).
func TestForwardFragmentation(t *testing.T) {
	l := newLab(t, "network.ipv4")
	orig := bigUDP("10.0.1.2", "10.0.2.2", 42, 4000-28)
	l.inject(l.a, orig)
	out := pt.Drain(l.b)
	if len(out) != 3 {
		t.Fatalf("%d fragments, want 3 (%s)", len(out), l.r.DumpCounters())
	}
	for i, f := range out {
		pt.CheckIPv4(t, f, pt.TTL(63))
		if len(f) > 1400 || wire.IPv4(f).ID() != 42 || (i < 2) != wire.IPv4(f).MoreFragments() {
			t.Errorf("fragment %d: %d bytes, id %d, MF %v", i, len(f), wire.IPv4(f).ID(), wire.IPv4(f).MoreFragments())
		}
	}
	l.wantCounters(t, map[string]uint64{"forwarded": 1, "frag_ok": 1, "frag_created": 3})
	want := withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) })
	checkReassembles(t, out, want)
}

// checkReassembles feeds fragments to a fresh host and compares what it
// delivers with want.
func checkReassembles(t *testing.T, frags [][]byte, want []byte) {
	t.Helper()
	name := pt.UniqueName(t) + "-host"
	h := pt.NewNode(t, "host", fmt.Sprintf(`
modules: [network.ipv4, {module: transport.collect, protocol: 17, name: %s}]
links:
  - {name: eth0, module: link.channel, addresses: [10.0.2.2/24]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
`, name), pipeline.Options{})
	for i := len(frags) - 1; i >= 0; i-- {
		h.Link(t, "eth0").InjectFrames(frags[i : i+1])
	}
	col := pt.Collected(name)
	if col.Len() != 1 {
		t.Fatalf("host delivered %d datagrams (%s)", col.Len(), h.DumpCounters())
	}
	if got := col.Wait(t, time.Second); !bytes.Equal(got, want) {
		t.Fatalf("reassembled datagram differs from the original")
	}
}

// Options: the first fragment carries them all, the others only the
// copied ones.
func TestForwardFragmentationOptions(t *testing.T) {
	l := newLab(t, "network.ipv4")
	opts := []byte{wire.IPv4OptionRecordRoute, 7, 4, 0, 0, 0, 0, wire.IPv4OptionNOP, wire.IPv4OptionRouterAlert, 4, 0, 0}
	orig := withOptions(bigUDP("10.0.1.2", "10.0.2.2", 43, 3000), opts)
	l.inject(l.a, orig)
	out := pt.Drain(l.b)
	if len(out) != 3 {
		t.Fatalf("%d fragments (%s)", len(out), l.r.DumpCounters())
	}
	if hl := wire.IPv4(out[0]).HeaderLength(); hl != 32 {
		t.Errorf("first fragment header %d bytes, want 32", hl)
	}
	for _, f := range out[1:] {
		pt.CheckIPv4(t, f)
		if o := wire.IPv4(f).Options(); !bytes.Equal(o, []byte{wire.IPv4OptionRouterAlert, 4, 0, 0}) {
			t.Errorf("later fragment options % x", o)
		}
	}
	checkReassembles(t, out, withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) }))
}

// Locally originated packets over the MTU are fragmented (what UDP relies
// on), with the Output hook seeing them whole.
func TestLocalFragmentation(t *testing.T) {
	l := newLab(t, "network.ipv4")
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i)
	}
	if err := ipv4.Send(l.r.Stack, netip.MustParseAddr("10.0.2.2"), pipeline.UDPProtocolNumber, payload); err != nil {
		t.Fatal(err)
	}
	out := pt.Drain(l.b)
	if len(out) != 4 {
		t.Fatalf("%d fragments, want 4 (%s)", len(out), l.r.DumpCounters())
	}
	first := wire.IPv4(out[0])
	want := make([]byte, 20+len(payload))
	wire.IPv4(want).Encode(&wire.IPv4Fields{TotalLength: uint16(len(want)), ID: first.ID(), TTL: 64, Protocol: wire.ProtocolUDP,
		Src: addr4("10.0.2.1"), Dst: addr4("10.0.2.2")})
	copy(want[20:], payload)
	checkReassembles(t, out, want)
	l.wantCounters(t, map[string]uint64{"sent": 1, "frag_ok": 1, "frag_created": 4, "too_big_local": 0})
}

// The defragmentation service a later stage (conntrack) calls on forwarded
// packets.
func TestDefragmentService(t *testing.T) {
	l := newLab(t, "network.ipv4")
	orig := bigUDP("10.0.1.2", "10.0.2.2", 11, 3000)
	frags := fragmentsOf(orig, 1000, 1000)
	nic, _ := l.r.Stack.NIC("a")
	var got [][]byte
	l.r.Stack.Do(func(b *pipeline.Batch) {
		d, ok := b.Gen.NetworkEndpoint(nic.ID(), pipeline.IPv4ProtocolNumber).(ipv4.Defragmenter)
		if !ok {
			t.Fatal("the IPv4 endpoint is no Defragmenter")
		}
		for _, f := range append([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("whole"))}, frags[2], frags[0], frags[1]) {
			pkt := l.r.Stack.Pool().Get(len(f))
			pkt.SetData(f)
			pkt.InNIC = nic.ID()
			if whole, ok := d.Defragment(b, pkt); ok {
				got = append(got, append([]byte(nil), whole.Data()...))
				whole.Release()
			}
		}
	})
	if len(got) != 2 || !bytes.Equal(got[1], orig) {
		t.Fatalf("got %d packets from the service", len(got))
	}
}

// With defragment_forwarded, forwarded fragments are reassembled before the
// Prerouting hook and leave cut to their largest fragment's size again
// (Linux's frag_max_size: ip_do_fragment takes the lesser of it and the
// egress MTU), not at the egress MTU.
func TestDefragmentForwarded(t *testing.T) {
	l := newLab(t, "{module: network.ipv4, reassembly: {defragment_forwarded: true}}")
	orig := bigUDP("10.0.1.2", "10.0.2.2", 12, 4000)
	frags := fragmentsOf(orig, 800, 800, 800, 800)
	l.inject(l.a, frags[:3]...)
	if len(pt.Drain(l.b)) != 0 {
		t.Fatal("forwarded before the datagram was whole")
	}
	l.inject(l.a, frags[3:]...)
	out := pt.Drain(l.b)
	if len(out) != len(frags) {
		t.Fatalf("%d fragments out, want %d, as they came (%s)", len(out), len(frags), l.r.DumpCounters())
	}
	largest := 0
	for _, f := range frags {
		largest = max(largest, len(f))
	}
	for i, f := range out {
		if len(f) > largest || i == 0 && len(f) != largest {
			t.Fatalf("fragment %d leaves with %d bytes; the largest came with %d", i, len(f), largest)
		}
	}
	l.wantCounters(t, map[string]uint64{"reasm_ok": 1, "forwarded": 1, "frag_created": uint64(len(frags))})
	checkReassembles(t, out, withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) }))
}

// Several workers reassemble at once (run with -race) while the clock moves;
// then the junk they left expires.
func TestReassemblyConcurrent(t *testing.T) {
	l, col := reasmLab(t, "network.ipv4")
	const workers, per = 4, 50
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < per; i++ {
				d := bigUDP(fmt.Sprintf("10.0.1.%d", 2+w), "10.0.1.1", uint16(i), 2500)
				f := fragmentsOf(d, 800, 800)
				l.inject(l.a, f[2], f[0])
				l.inject(l.a, fragmentsOf(bigUDP("10.0.1.99", "10.0.1.1", uint16(w*1000+i), 2500), 800)[0])
				l.inject(l.a, f[1])
			}
		}(w)
	}
	go func() {
		for i := 0; i < 20; i++ {
			l.clock.Advance(time.Second) // 20 s in all: nothing expires
		}
		done <- struct{}{}
	}()
	for w := 0; w <= workers; w++ {
		<-done
	}
	if col.Len() != workers*per {
		t.Fatalf("delivered %d, want %d (%s)", col.Len(), workers*per, l.r.DumpCounters())
	}
	l.clock.Advance(31 * time.Second)
	assertReasmEmpty(t, l)
	l.wantCounters(t, map[string]uint64{"reasm_timeout": workers * per})
	pt.Drain(l.a)
}

// A forwarded fragment too big for the egress link is fragmented further:
// offsets add up and only the last piece of the last fragment clears MF.
func TestForwardRefragmentation(t *testing.T) {
	l := newLab(t, "network.ipv4")
	orig := bigUDP("10.0.1.2", "10.0.2.2", 44, 4000)
	in := fragmentsOf(orig, 1480, 1480) // 1500, 1500, 1068 bytes
	l.inject(l.a, in...)
	out := pt.Drain(l.b)
	if len(out) != 5 {
		t.Fatalf("%d fragments out, want 5 (%s)", len(out), l.r.DumpCounters())
	}
	for i, f := range out {
		if mf := wire.IPv4(f).MoreFragments(); mf != (i < 4) || len(f) > 1400 {
			t.Errorf("fragment %d: MF %v, %d bytes", i, mf, len(f))
		}
	}
	checkReassembles(t, out, withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) }))
}
