package pipeline_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// hookedNode is a router from yaml with the spy's tables at every hook.
func hookedNode(t *testing.T, yaml string, s *pt.HookSpy) *pt.Node {
	t.Helper()
	return pt.NewNodeWith(t, "router", yaml, pipeline.Options{}, s.Install)
}

const ethResumeYAML = `
name: router-eth
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ethernet, mac: "02:00:00:00:0a:01", addresses: [10.0.1.1/24],
     neighbors: [{ip: 10.0.1.2, mac: "02:00:00:00:0a:02"}]}
  - {name: b, module: link.channel, framing: ethernet, mac: "02:00:00:00:0b:01", addresses: [10.0.2.1/24],
     neighbors: [{ip: 10.0.2.2, mac: "02:00:00:00:0b:02"}]}
forwarding: {ipv4: true}
`

// readOne reads the one frame a link must have sent and returns its IPv4
// packet.
func readOne(t *testing.T, ep *channel.Endpoint, eth bool, wantMAC wire.MAC) []byte {
	t.Helper()
	frames := pt.Drain(ep)
	if len(frames) != 1 {
		t.Fatalf("%d frames left, want 1", len(frames))
	}
	f := frames[0]
	if eth {
		e := wire.Ethernet(f)
		if len(f) < wire.EthernetHeaderSize || e.Type() != wire.EtherTypeIPv4 || e.Dst() != wantMAC {
			t.Fatalf("bad frame % x", f)
		}
		f = f[wire.EthernetHeaderSize:]
	}
	return f
}

// A forwarded packet stolen at Prerouting, Forward or Postrouting and
// re-injected right after that hook goes on from there: every hook on its
// path runs exactly once and it leaves once, as forwarded (TTL 63), through
// neighbor resolution on an Ethernet link.
func TestResumeForwarded(t *testing.T) {
	for _, eth := range []bool{false, true} {
		for _, at := range []pipeline.Hook{pipeline.Prerouting, pipeline.Forward, pipeline.Postrouting} {
			t.Run(fmt.Sprintf("eth=%v/%v", eth, at), func(t *testing.T) {
				s := pt.NewHookSpy()
				s.StealAt(at, 1, nil)
				yaml := routerYAML
				if eth {
					yaml = ethResumeYAML
				}
				r := hookedNode(t, yaml, s)
				a, b := r.Link(t, "a"), r.Link(t, "b")
				pkt := pt.UDP4("10.0.1.2", "10.0.2.2", 1000, 2000, 64, []byte("stolen and back"))
				if eth {
					pkt = pt.EthFrame(a.LinkAddress(), wire.MAC{2, 0, 0, 0, 0x0a, 2}, wire.EtherTypeIPv4, pkt)
				}
				a.InjectFrames([][]byte{pkt})
				stolen := s.Stolen()
				if len(stolen) != 1 || b.Pending() != 0 {
					t.Fatalf("stolen %d, sent %d", len(stolen), b.Pending())
				}
				r.Stack.Reinject(pipeline.ResumeAfter(at), stolen)
				if stolen[0] != nil {
					t.Error("Reinject left its slot set")
				}
				ip := readOne(t, b, eth, wire.MAC{2, 0, 0, 0, 0x0b, 2})
				pt.CheckIPv4(t, ip, pt.SrcAddr("10.0.1.2"), pt.DstAddr("10.0.2.2"), pt.TTL(63))
				if !bytes.HasSuffix(ip, []byte("stolen and back")) {
					t.Errorf("payload lost: % x", ip)
				}
				want := [pipeline.NumHooks]int{pipeline.Prerouting: 1, pipeline.Forward: 1, pipeline.Postrouting: 1}
				if got := s.Counts(nil); got != want {
					t.Errorf("hooks saw %s, want %s", pt.FormatCounts(got), pt.FormatCounts(want))
				}
				r.WantCounters(t, "ipv4", map[string]uint64{"rx": 1, "forwarded": 1})
				if n := pt.Drain(a); len(n) != 0 {
					t.Errorf("%d frames went back out of a", len(n))
				}
			})
		}
	}
}

// A ping to the router stolen at Prerouting or Input (the request) or at
// Output or Postrouting (the reply) and re-injected right after that hook:
// the request passes Prerouting and Input once, the reply Output and
// Postrouting once, and one reply leaves.
func TestResumeLocal(t *testing.T) {
	for _, at := range []pipeline.Hook{pipeline.Prerouting, pipeline.Input, pipeline.Output, pipeline.Postrouting} {
		t.Run(at.String(), func(t *testing.T) {
			s := pt.NewHookSpy()
			s.StealAt(at, 1, nil)
			r := hookedNode(t, routerYAML, s)
			a := r.Link(t, "a")
			a.InjectFrames([][]byte{pt.Echo4("10.0.1.2", "10.0.1.1", 64, 7, 1, []byte("ping"))})
			stolen := s.Stolen()
			if len(stolen) != 1 || a.Pending() != 0 {
				t.Fatalf("stolen %d, sent %d", len(stolen), a.Pending())
			}
			r.Stack.Reinject(pipeline.ResumeAfter(at), stolen)
			ip := readOne(t, a, false, wire.MAC{})
			pt.CheckIPv4(t, ip, pt.SrcAddr("10.0.1.1"), pt.DstAddr("10.0.1.2"), pt.ICMP(wire.ICMPv4EchoReply, 0))
			want := [pipeline.NumHooks]int{pipeline.Prerouting: 1, pipeline.Input: 1, pipeline.Output: 1, pipeline.Postrouting: 1}
			if got := s.Counts(nil); got != want {
				t.Errorf("hooks saw %s, want %s", pt.FormatCounts(got), pt.FormatCounts(want))
			}
			r.WantCounters(t, "ipv4", map[string]uint64{"rx": 1, "icmp_echo_in": 1})
		})
	}
}

// A locally sent datagram larger than the link's MTU stolen at Output or
// Postrouting: the hooks see it whole, once; it leaves in fragments after
// re-injection (fragmentation comes after Postrouting, so resuming after
// Output or Postrouting still fragments).
func TestResumeLocalFragments(t *testing.T) {
	for _, at := range []pipeline.Hook{pipeline.Output, pipeline.Postrouting} {
		t.Run(at.String(), func(t *testing.T) {
			s := pt.NewHookSpy()
			s.StealAt(at, 1, nil)
			r := hookedNode(t, routerYAML, s)
			b := r.Link(t, "b")
			r.SendIPv4(t, "10.0.2.2", pipeline.UDPProtocolNumber, make([]byte, 4000))
			stolen := s.Stolen()
			if len(stolen) != 1 || b.Pending() != 0 {
				t.Fatalf("stolen %d, sent %d", len(stolen), b.Pending())
			}
			r.Stack.Reinject(pipeline.ResumeAfter(at), stolen)
			frames := pt.Drain(b)
			if len(frames) != 3 {
				t.Fatalf("%d packets left, want 3 fragments", len(frames))
			}
			total := 0
			for i, f := range frames {
				h := wire.IPv4(f)
				if h.Check() != nil || len(f) > 1500 || h.MoreFragments() != (i < 2) || int(h.FragmentOffset()) != total {
					t.Fatalf("fragment %d: % x", i, f[:20])
				}
				total += len(h.Payload())
			}
			if total != 4000 {
				t.Errorf("fragments carry %d bytes, want 4000", total)
			}
			out, post := s.Seen(pipeline.Output, nil), s.Seen(pipeline.Postrouting, nil)
			if len(out) != 1 || out[0].Len != 4000+20 || len(post) != 1 || post[0].Len != 4000+20 {
				t.Errorf("Output saw %v, Postrouting %v: want one whole datagram of 4020 bytes each", out, post)
			}
		})
	}
}

// Packets of several NICs re-injected in one call go on each from its own
// NIC (runs split by NIC).
func TestResumeMixedBatch(t *testing.T) {
	s := pt.NewHookSpy()
	s.StealAt(pipeline.Prerouting, 4, nil)
	r := hookedNode(t, routerYAML, s)
	a, b := r.Link(t, "a"), r.Link(t, "b")
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("ab1"))})
	b.InjectFrames([][]byte{pt.UDP4("10.0.2.2", "10.0.1.2", 1, 2, 64, []byte("ba"))})
	a.InjectFrames([][]byte{pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, []byte("ab2")),
		pt.Echo4("10.0.1.2", "10.0.1.1", 64, 1, 1, nil)})
	stolen := s.Stolen()
	if len(stolen) != 4 {
		t.Fatalf("stolen %d", len(stolen))
	}
	r.Stack.Reinject(pipeline.ResumeAfterPrerouting, append([]*pipeline.Packet{nil}, stolen...))
	if na, nb := len(pt.Drain(a)), len(pt.Drain(b)); na != 2 || nb != 2 {
		t.Fatalf("a sent %d (want 1 forwarded + 1 echo reply), b %d (want 2)", na, nb)
	}
	if got := s.Counts(nil); got[pipeline.Prerouting] != 4 || got[pipeline.Forward] != 3 || got[pipeline.Input] != 1 || got[pipeline.Postrouting] != 4 {
		t.Errorf("hooks saw %s", pt.FormatCounts(got))
	}
}

// A point that is no stage of the path drops what it is given, counted.
func TestResumeUnknownPoint(t *testing.T) {
	r := hookedNode(t, routerYAML, pt.NewHookSpy())
	p := pipeline.DefaultPool.Get(64)
	p.SetData(pt.UDP4("10.0.1.2", "10.0.2.2", 1, 2, 64, nil))
	p.InNIC = 1
	r.Stack.Reinject(pipeline.ResumeAfter(pipeline.NumHooks), []*pipeline.Packet{p})
	if r.Counter("stack", "reinject_unsupported") != 1 {
		t.Fatalf("not counted: %s", r.DumpCounters())
	}
}

func TestResumePointHook(t *testing.T) {
	for h := pipeline.Hook(0); h < pipeline.NumHooks; h++ {
		if got, ok := pipeline.ResumeAfter(h).Hook(); !ok || got != h {
			t.Errorf("ResumeAfter(%v).Hook() = %v, %v", h, got, ok)
		}
	}
	for _, r := range []pipeline.ResumePoint{pipeline.ResumeReceive, pipeline.ResumeAfterResolution} {
		if _, ok := r.Hook(); ok {
			t.Errorf("%v comes after a hook", r)
		}
	}
}
