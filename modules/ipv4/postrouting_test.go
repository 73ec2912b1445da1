package ipv4_test

import (
	"bytes"
	"fmt"
	"testing"

	_ "github.com/pipestack/pipestack/modules/arp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// hookLab is newLab's router (a MTU 9000, b MTU 1400, c 1500) with a
// HookSpy at every hook.
func hookLab(t *testing.T) (*lab, *pt.HookSpy) {
	t.Helper()
	spy := pt.NewHookSpy()
	clock := pt.NewManualClock()
	r := pt.NewNodeWith(t, "router", `
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, mtu: 9000, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1400, addresses: [10.0.2.1/24]}
  - {name: c, module: link.channel, addresses: [10.0.3.1/24]}
forwarding: {ipv4: true}
`, pipeline.Options{Clock: clock}, spy.Install)
	return &lab{r: r, a: r.Link(t, "a"), b: r.Link(t, "b"), c: r.Link(t, "c"), clock: clock}, spy
}

// reassembled checks that frames are the fragments of one datagram, in
// order, each at most mtu bytes, and returns the datagram they rebuild.
func reassembled(t *testing.T, frames [][]byte, mtu int) []byte {
	t.Helper()
	if len(frames) < 2 {
		t.Fatalf("%d packets left, want fragments", len(frames))
	}
	first := wire.IPv4(frames[0])
	var payload []byte
	for i, f := range frames {
		h := wire.IPv4(f)
		if h.Check() != nil || !h.IsChecksumValid() || len(f) > mtu || h.ID() != first.ID() ||
			h.MoreFragments() != (i < len(frames)-1) || int(h.FragmentOffset()) != len(payload) || h.DontFragment() {
			t.Fatalf("fragment %d of %d bad (%d bytes): % x", i, len(frames), len(f), f[:20])
		}
		payload = append(payload, h.Payload()...)
	}
	out := append([]byte(nil), first[:first.HeaderLength()]...)
	out = append(out, payload...)
	h := wire.IPv4(out)
	h.SetTotalLength(uint16(len(out)))
	h.SetFlagsFragmentOffset(0, 0)
	h.SetChecksum(0)
	h.SetChecksum(h.CalculateChecksum())
	return out
}

// wholeAt checks that hook h saw exactly one packet of size n (not a
// fragment).
func wholeAt(t *testing.T, spy *pt.HookSpy, h pipeline.Hook, n int) {
	t.Helper()
	seen := spy.Seen(h, func(s pt.Seen) bool { return s.Tuple.Proto == pipeline.UDPProtocolNumber })
	if len(seen) != 1 || seen[0].Len != n || seen[0].Fragment || seen[0].MF {
		t.Errorf("%v saw %+v, want one whole datagram of %d bytes", h, seen, n)
	}
}

// Postrouting sees a locally sent 4000-byte UDP datagram whole, once; it
// leaves through b (MTU 1400) in fragments that rebuild it.
func TestPostroutingSeesLocalDatagramWhole(t *testing.T) {
	l, spy := hookLab(t)
	msg := make([]byte, 4000)
	wire.UDP(msg).Encode(&wire.UDPFields{SrcPort: 1, DstPort: 9, Length: 4000})
	for i := 8; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	l.r.SendIPv4(t, "10.0.2.2", pipeline.UDPProtocolNumber, msg)
	got := reassembled(t, pt.Drain(l.b), 1400)
	if h := wire.IPv4(got); !bytes.Equal(h.Payload(), msg) || h.Src() != addr4("10.0.2.1") || h.Dst() != addr4("10.0.2.2") {
		t.Errorf("fragments rebuild another datagram")
	}
	wholeAt(t, spy, pipeline.Output, 4020)
	wholeAt(t, spy, pipeline.Postrouting, 4020)
	l.wantCounters(t, map[string]uint64{"frag_ok": 1, "frag_created": 3})
}

// Forwarded from a (MTU 9000) to b (MTU 1400): without DF, Forward and
// Postrouting see the datagram whole and it leaves in fragments; with DF it
// is answered with fragmentation needed at forwarding time, before the
// Forward hook, and only the ICMP error passes Postrouting.
func TestPostroutingSeesForwardedDatagramWhole(t *testing.T) {
	for _, df := range []bool{false, true} {
		t.Run(fmt.Sprintf("df=%v", df), func(t *testing.T) {
			l, spy := hookLab(t)
			orig := bigUDP("10.0.1.2", "10.0.2.2", 42, 4000)
			if df {
				orig = withHeader(orig, func(h wire.IPv4) { h.SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0) })
			}
			l.inject(l.a, orig)
			if df {
				if n := l.b.Pending(); n != 0 {
					t.Fatalf("%d packets left through b", n)
				}
				back := pt.Drain(l.a)
				if len(back) != 1 {
					t.Fatalf("%d packets back on a, want the ICMP error", len(back))
				}
				pt.CheckIPv4(t, back[0], pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, pt.NextHopMTU(1400)))
				c := spy.Counts(func(s pt.Seen) bool { return s.Tuple.Proto == pipeline.UDPProtocolNumber })
				if c[pipeline.Forward] != 0 || c[pipeline.Postrouting] != 0 || c[pipeline.Prerouting] != 1 {
					t.Errorf("the DF datagram passed %s", pt.FormatCounts(c))
				}
				if ic := spy.Seen(pipeline.Postrouting, func(s pt.Seen) bool { return s.ICMPType == wire.ICMPv4DstUnreachable }); len(ic) != 1 {
					t.Errorf("Postrouting saw %d ICMP errors, want 1", len(ic))
				}
				l.wantCounters(t, map[string]uint64{"too_big": 1, "forwarded": 0})
				return
			}
			got := reassembled(t, pt.Drain(l.b), 1400)
			want := withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) })
			if !bytes.Equal(got, want) {
				t.Errorf("fragments rebuild another datagram")
			}
			wholeAt(t, spy, pipeline.Forward, 4028)
			wholeAt(t, spy, pipeline.Postrouting, 4028)
			l.wantCounters(t, map[string]uint64{"forwarded": 1, "frag_ok": 1, "frag_created": 3})
		})
	}
}

// A DF datagram stolen at Forward and re-injected after a reload lowered
// the egress MTU below it is not fragmented at transmit: the sender gets
// fragmentation needed with the new MTU.
func TestFragmentRefusesDFAtTransmit(t *testing.T) {
	l, spy := hookLab(t)
	spy.StealAt(pipeline.Forward, 1, nil)
	orig := withHeader(bigUDP("10.0.1.2", "10.0.2.2", 43, 1300), func(h wire.IPv4) { h.SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0) })
	l.inject(l.a, orig)
	stolen := spy.Stolen()
	if len(stolen) != 1 {
		t.Fatalf("stolen %d", len(stolen))
	}
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(`
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, mtu: 9000, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, mtu: 1000, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	spy.Install(cfg)
	if _, err := l.r.Stack.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	l.r.Stack.Reinject(pipeline.ResumeAfterForward, stolen)
	if n := l.b.Pending(); n != 0 {
		t.Fatalf("%d packets left through b", n)
	}
	back := pt.Drain(l.a)
	if len(back) != 1 {
		t.Fatalf("%d packets back on a", len(back))
	}
	pt.CheckIPv4(t, back[0], pt.ICMP(wire.ICMPv4DstUnreachable, wire.ICMPv4FragmentationNeeded, pt.NextHopMTU(1000)))
}

// Over an Ethernet link fragmentation comes before neighbor resolution:
// a forwarded datagram too big for b waits for the neighbor as its
// fragments and they leave, each addressed, once the reply comes; the
// next datagram leaves in fragments at once. Postrouting sees each
// datagram whole, once.
func TestFragmentsResolvedOnEthernet(t *testing.T) {
	spy := pt.NewHookSpy()
	clock := pt.NewManualClock()
	macRA, macRB, macA, macB := wire.MAC{2, 0, 0, 0, 0x0a, 1}, wire.MAC{2, 0, 0, 0, 0x0b, 1}, wire.MAC{2, 0, 0, 0, 0x0a, 2}, wire.MAC{2, 0, 0, 0, 0x0b, 2}
	r := pt.NewNodeWith(t, "router", fmt.Sprintf(`
name: router
modules: [network.ipv4, network.arp]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: %q, mtu: 9000, addresses: [10.0.1.1/24],
     neighbors: [{ip: 10.0.1.2, mac: %q}]}
  - {name: b, module: link.channel, framing: ethernet, mac: %q, mtu: 1400, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
`, macRA, macA, macRB), pipeline.Options{Clock: clock}, spy.Install)
	a, b := r.Link(t, "a"), r.Link(t, "b")
	clock.Advance(0)
	pt.Drain(a)
	pt.Drain(b) // gratuitous announcements
	orig := bigUDP("10.0.1.2", "10.0.2.2", 44, 4000)
	a.InjectFrames([][]byte{pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, orig)})
	out := pt.Drain(b)
	if len(out) != 1 || wire.Ethernet(out[0]).Type() != wire.EtherTypeARP {
		t.Fatalf("%d frames on b, want one ARP request", len(out))
	}
	reply := make([]byte, wire.ARPSize)
	wire.ARP(reply).Encode(&wire.ARPFields{Op: wire.ARPReply, SenderMAC: macB, SenderIP: addr4("10.0.2.2"), TargetMAC: macRB, TargetIP: addr4("10.0.2.1")})
	b.InjectFrames([][]byte{pt.EthFrame(macRB, macB, wire.EtherTypeARP, reply)})
	want := withHeader(orig, func(h wire.IPv4) { h.SetTTL(63) })
	check := func() {
		t.Helper()
		frames := pt.Drain(b)
		var ips [][]byte
		for _, f := range frames {
			e := wire.Ethernet(f)
			if e.Dst() != macB || e.Src() != macRB || e.Type() != wire.EtherTypeIPv4 {
				t.Fatalf("frame to %v from %v type %#x", e.Dst(), e.Src(), e.Type())
			}
			ips = append(ips, e.Payload())
		}
		if got := reassembled(t, ips, 1400); !bytes.Equal(got, want) {
			t.Error("fragments rebuild another datagram")
		}
	}
	check()
	a.InjectFrames([][]byte{pt.EthFrame(macRA, macA, wire.EtherTypeIPv4, orig)})
	check()
	udp := func(s pt.Seen) bool { return s.Tuple.Proto == pipeline.UDPProtocolNumber }
	if seen := spy.Seen(pipeline.Postrouting, udp); len(seen) != 2 || seen[0].Len != 4028 || seen[1].Len != 4028 {
		t.Errorf("Postrouting saw %+v, want two whole datagrams", seen)
	}
	r.WantCounters(t, "ipv4", map[string]uint64{"forwarded": 2, "frag_ok": 2, "frag_created": 6})
}
