package ipv6_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// hookedRouter is routerConfig's router (b has MTU 1400) with a HookSpy at
// every hook.
func hookedRouter(t *testing.T, framing string) (*pt.Node, *pt.HookSpy, *pt.ManualClock) {
	t.Helper()
	spy := pt.NewHookSpy()
	clock := pt.NewManualClock()
	r := pt.NewNodeWith(t, "router", routerConfig(framing, ""), pipeline.Options{Clock: clock}, spy.Install)
	return r, spy, clock
}

func isNDP(s pt.Seen) bool {
	return s.Tuple.Proto == pipeline.ICMPv6ProtocolNumber && s.ICMPType >= wire.ICMPv6RouterSolicitation && s.ICMPType <= wire.ICMPv6Redirect
}

// The NDP messages the stack sends (multicast, or unicast to a link
// address it already knows: SetRemoteLinkAddr) pass Output and Postrouting,
// each once, like every other packet leaving a NIC.
func TestPostroutingSeesNDP(t *testing.T) {
	r, spy, clock := hookedRouter(t, "ethernet")
	settle(clock, 1500*time.Millisecond) // DAD: multicast solicitations from ::
	// A neighbor solicits the router's address (unicast answer to its MAC).
	target := a16("2001:db8:1::1")
	ns := icmp6("2001:db8:1::2", "ff02::1:ff00:1", wire.ICMPv6NeighborSolicitation, 0, 0,
		append(target[:], 1, 1, 2, 0, 0, 0, 0x0a, 2))
	frame := pt.EthFrame(wire.MAC{0x33, 0x33, 0xff, 0, 0, 1}, wire.MAC{2, 0, 0, 0, 0x0a, 2}, wire.EtherTypeIPv6,
		ip6("2001:db8:1::2", "ff02::1:ff00:1", wire.ProtocolICMPv6, 255, ns))
	r.Link(t, "a").InjectFrames([][]byte{frame})
	// The router resolves an on-link address (multicast solicitation).
	if err := ipv6.Send(r.Stack, mustAddr("2001:db8:2::9"), pipeline.ICMPv6ProtocolNumber, echoMessage(1, 1, nil)); err != nil {
		t.Fatal(err)
	}
	out := spy.Seen(pipeline.Output, isNDP)
	post := spy.Seen(pipeline.Postrouting, isNDP)
	types := map[uint8]int{}
	for _, s := range out {
		types[s.ICMPType]++
	}
	if types[wire.ICMPv6NeighborSolicitation] < 3 || types[wire.ICMPv6NeighborAdvertisement] != 1 {
		t.Fatalf("Output saw NDP %v, want DAD and resolution solicitations and one advertisement", types)
	}
	if len(post) != len(out) {
		t.Errorf("Postrouting saw %d NDP messages, Output %d: every one must pass both once", len(post), len(out))
	}
	for i := range post {
		if i < len(out) && post[i] != out[i] {
			t.Errorf("Postrouting saw %+v where Output saw %+v", post[i], out[i])
		}
	}
	// And they left: the solicitation to ff02::1:ff00:9 on b, the
	// advertisement on a.
	if got := onlyICMP6(pt.Drain(r.Link(t, "b")), true, wire.ICMPv6NeighborSolicitation); len(got) == 0 {
		t.Error("no solicitation left through b")
	}
	if got := onlyICMP6(pt.Drain(r.Link(t, "a")), true, wire.ICMPv6NeighborAdvertisement); len(got) != 1 {
		t.Errorf("%d advertisements left through a, want 1", len(got))
	}
}

// frags6 checks that frames are the fragments of one datagram, each at most
// mtu bytes, and returns the upper-layer data they carry.
func frags6(t *testing.T, frames [][]byte, mtu int, nh uint8) []byte {
	t.Helper()
	if len(frames) < 2 {
		t.Fatalf("%d packets left, want fragments", len(frames))
	}
	var id uint32
	var data []byte
	for i, f := range frames {
		ip := wire.IPv6(f)
		if ip.Check() != nil || len(f) > mtu || ip.NextHeader() != wire.ProtocolFragment {
			t.Fatalf("fragment %d: %d bytes, next header %d", i, len(f), ip.NextHeader())
		}
		fh := wire.IPv6Fragment(ip.Payload())
		if i == 0 {
			id = fh.ID()
		}
		if fh.ID() != id || int(fh.FragmentOffset()) != len(data) || fh.More() != (i < len(frames)-1) || fh.NextHeader() != nh {
			t.Fatalf("fragment %d: id %d offset %d more %v", i, fh.ID(), fh.FragmentOffset(), fh.More())
		}
		data = append(data, ip.Payload()[wire.IPv6FragmentSize:]...)
	}
	return data
}

// Output and Postrouting see a locally sent 4000-byte UDP datagram whole,
// once; it leaves through b (MTU 1400) in fragments that carry it.
func TestPostroutingSeesLocalDatagramWhole6(t *testing.T) {
	r, spy, _ := hookedRouter(t, "ip")
	msg := make([]byte, 4000)
	wire.UDP(msg).Encode(&wire.UDPFields{SrcPort: 1, DstPort: 9, Length: 4000})
	for i := 8; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	if err := ipv6.Send(r.Stack, mustAddr("2001:db8:2::2"), pipeline.UDPProtocolNumber, msg); err != nil {
		t.Fatal(err)
	}
	if got := frags6(t, noNDP(pt.Drain(r.Link(t, "b"))), 1400, wire.ProtocolUDP); !bytes.Equal(got, msg) {
		t.Error("fragments do not carry the datagram")
	}
	udp := func(s pt.Seen) bool { return s.Tuple.Proto == pipeline.UDPProtocolNumber }
	for _, h := range []pipeline.Hook{pipeline.Output, pipeline.Postrouting} {
		if seen := spy.Seen(h, udp); len(seen) != 1 || seen[0].Len != 4040 || seen[0].MF || seen[0].Fragment {
			t.Errorf("%v saw %+v, want one whole datagram of 4040 bytes", h, seen)
		}
	}
	r.WantCounters(t, "ipv6", map[string]uint64{"frag_ok": 1, "frag_created": 3})
}

// IPv6 packets stolen at each hook and re-injected right after it: every
// hook on the path runs once, and the packet arrives or leaves once.
func TestResumeIPv6(t *testing.T) {
	icmpOrUDP := func(s pt.Seen) bool { return !isNDP(s) }
	for _, at := range []pipeline.Hook{pipeline.Prerouting, pipeline.Forward, pipeline.Postrouting} {
		t.Run("forwarded/"+at.String(), func(t *testing.T) {
			r, spy, _ := hookedRouter(t, "ip")
			spy.StealAt(at, 1, func(pc *pipeline.PacketContext) bool { return pc.Tuple.Proto == pipeline.UDPProtocolNumber })
			r.Link(t, "a").InjectFrames([][]byte{udp6("2001:db8:1::2", "2001:db8:2::2", 1, 2, 64, []byte("six"))})
			stolen := spy.Stolen()
			if len(stolen) != 1 {
				t.Fatalf("stolen %d", len(stolen))
			}
			r.Stack.Reinject(pipeline.ResumeAfter(at), stolen)
			out := noNDP(pt.Drain(r.Link(t, "b")))
			if len(out) != 1 || wire.IPv6(out[0]).HopLimit() != 63 || !bytes.HasSuffix(out[0], []byte("six")) {
				t.Fatalf("%d packets left through b", len(out))
			}
			want := [pipeline.NumHooks]int{pipeline.Prerouting: 1, pipeline.Forward: 1, pipeline.Postrouting: 1}
			if got := spy.Counts(icmpOrUDP); got != want {
				t.Errorf("hooks saw %s, want %s", pt.FormatCounts(got), pt.FormatCounts(want))
			}
			r.WantCounters(t, "ipv6", map[string]uint64{"rx": 1, "forwarded": 1})
		})
	}
	for _, at := range []pipeline.Hook{pipeline.Prerouting, pipeline.Input, pipeline.Output, pipeline.Postrouting} {
		t.Run("local/"+at.String(), func(t *testing.T) {
			r, spy, _ := hookedRouter(t, "ip")
			spy.StealAt(at, 1, func(pc *pipeline.PacketContext) bool { return pc.Tuple.Proto == pipeline.ICMPv6ProtocolNumber })
			r.Link(t, "a").InjectFrames([][]byte{echo6("2001:db8:1::2", "2001:db8:1::1", 64, 5, 1, []byte("ping"))})
			stolen := spy.Stolen()
			if len(stolen) != 1 {
				t.Fatalf("stolen %d", len(stolen))
			}
			r.Stack.Reinject(pipeline.ResumeAfter(at), stolen)
			out := noNDP(pt.Drain(r.Link(t, "a")))
			if len(out) != 1 {
				t.Fatalf("%d packets back, want the echo reply", len(out))
			}
			checkEchoReply(t, out[0], "2001:db8:1::1", "2001:db8:1::2", 0, 5, 1, []byte("ping"))
			want := [pipeline.NumHooks]int{pipeline.Prerouting: 1, pipeline.Input: 1, pipeline.Output: 1, pipeline.Postrouting: 1}
			if got := spy.Counts(icmpOrUDP); got != want {
				t.Errorf("hooks saw %s, want %s", pt.FormatCounts(got), pt.FormatCounts(want))
			}
			r.WantCounters(t, "ipv6", map[string]uint64{"rx": 1, "icmp_echo_in": 1})
		})
	}
}

// A forwarded packet stolen at Forward and re-injected after a reload
// lowered the egress MTU below it is not fragmented at transmit (a router
// never fragments IPv6): the sender gets Packet Too Big with the new MTU.
func TestFragmentRefusesForwarded6(t *testing.T) {
	r, spy, _ := hookedRouter(t, "ip")
	spy.StealAt(pipeline.Forward, 1, nil)
	r.Link(t, "a").InjectFrames([][]byte{udp6("2001:db8:1::2", "2001:db8:2::2", 1, 2, 64, make([]byte, 1350))})
	stolen := spy.Stolen()
	if len(stolen) != 1 {
		t.Fatalf("stolen %d", len(stolen))
	}
	cfg, err := pipeline.ParseConfig("router.yaml", []byte(fmt.Sprintf(`
name: router
modules: [network.ipv6]
links:
  - {name: a, module: link.channel, addresses: ["2001:db8:1::1/64"]}
  - {name: b, module: link.channel, mtu: %d, addresses: ["2001:db8:2::1/64"]}
forwarding: {ipv6: true}
`, 1280)))
	if err != nil {
		t.Fatal(err)
	}
	spy.Install(cfg)
	if _, err := r.Stack.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	r.Stack.Reinject(pipeline.ResumeAfterForward, stolen)
	if out := noNDP(pt.Drain(r.Link(t, "b"))); len(out) != 0 {
		t.Fatalf("%d packets left through b", len(out))
	}
	back := onlyICMP6(pt.Drain(r.Link(t, "a")), false, wire.ICMPv6PacketTooBig)
	if len(back) != 1 {
		t.Fatalf("%d Packet Too Big back", len(back))
	}
	if m := checkICMP6(t, back[0], "2001:db8:1::1", "2001:db8:1::2", wire.ICMPv6PacketTooBig, 0); m.MTU() != 1280 {
		t.Errorf("MTU %d, want 1280", m.MTU())
	}
}
