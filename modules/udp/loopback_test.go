package udp_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// loopHost is a dual-stack host on one IP link with the hook spy at every
// hook.
func loopHost(t *testing.T) (*pt.Node, *pt.HookSpy) {
	t.Helper()
	spy := pt.NewHookSpy()
	n := pt.NewNodeWith(t, "host", `
name: host
modules: [network.ipv4, network.ipv6, transport.udp]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24, "fd00:2::2/64"]}
routes:
  - {to: default, via: 10.0.2.1, link: eth0}
  - {to: "::/0", via: "fd00:2::1", link: eth0}
`, pipeline.Options{}, spy.Install)
	return n, spy
}

// A UDP socket sending to the stack's own addresses (the link's, 127.0.0.1,
// another 127/8 address, ::1) reaches the socket bound there through the
// loopback NIC lo, as on Linux: the datagram comes from the address it was
// sent to, nothing leaves the link, and the filter sees it at Output and
// Postrouting going out lo, then at Prerouting and Input coming in on lo,
// in that order.
func TestLoopbackUDP(t *testing.T) {
	n, spy := loopHost(t)
	link := n.Link(t, "eth0")
	lo, ok := n.Stack.NIC(pipeline.LoopbackName)
	if !ok || !lo.IsLoopback() {
		t.Fatal("no loopback NIC")
	}
	// The source is the address itself, or for the rest of 127/8
	// 127.0.0.1 (Linux's local routes' preferred sources).
	for _, tc := range []struct{ network, bind, to, src string }{
		{"udp4", "10.0.2.2:9000", "10.0.2.2:9000", "10.0.2.2"},
		{"udp4", "0.0.0.0:9001", "127.0.0.1:9001", "127.0.0.1"},
		{"udp4", "0.0.0.0:9002", "127.3.4.5:9002", "127.0.0.1"},
		{"udp6", "[fd00:2::2]:9003", "[fd00:2::2]:9003", "fd00:2::2"},
		{"udp6", "[::]:9004", "[::1]:9004", "::1"},
	} {
		t.Run(tc.to, func(t *testing.T) {
			srv, err := udp.ListenPacket(n.Stack, tc.network, tc.bind)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			cl, err := udp.ListenPacket(n.Stack, tc.network, ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			to := netip.MustParseAddrPort(tc.to)
			rx0, tx0 := lo.Stats.RxPackets.Load(), lo.Stats.TxPackets.Load()
			if _, err := cl.WriteToUDPAddrPort([]byte("to myself"), to); err != nil {
				t.Fatal(err)
			}
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			k, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:k]) != "to myself" {
				t.Fatalf("read %q from %v: %v", buf[:k], from, err)
			}
			src := netip.MustParseAddr(tc.src)
			if from.Addr() != src || from.Port() != cl.LocalAddrPort().Port() {
				t.Errorf("datagram from %v, want %v port %d", from, src, cl.LocalAddrPort().Port())
			}
			// And the answer goes back the same way.
			if _, err := srv.WriteToUDPAddrPort([]byte("back"), from); err != nil {
				t.Fatal(err)
			}
			cl.SetReadDeadline(time.Now().Add(5 * time.Second))
			if k, back, err := cl.ReadFromUDPAddrPort(buf); err != nil || string(buf[:k]) != "back" || back != netip.AddrPortFrom(src, to.Port()) {
				t.Fatalf("answer %q from %v: %v", buf[:k], back, err)
			}
			if out := udpOut(pt.Drain(link)); len(out) != 0 {
				t.Errorf("%d datagrams left link eth0", len(out))
			}
			if rx, tx := lo.Stats.RxPackets.Load()-rx0, lo.Stats.TxPackets.Load()-tx0; rx != 2 || tx != 2 {
				t.Errorf("lo rx %d tx %d, want 2 and 2", rx, tx)
			}
			mine := func(s pt.Seen) bool {
				return s.Tuple.Proto == pipeline.UDPProtocolNumber && s.Tuple.DstPort == to.Port()
			}
			path := spy.Path(mine)
			want := []pipeline.Hook{pipeline.Output, pipeline.Postrouting, pipeline.Prerouting, pipeline.Input}
			if len(path) != len(want) {
				t.Fatalf("the datagram to %v passed %d hooks, want 4: %+v", to, len(path), path)
			}
			for i, hop := range path {
				if hop.Hook != want[i] {
					t.Errorf("hook %d: %v, want %v (Linux's order through lo)", i, hop.Hook, want[i])
				}
				switch hop.Hook {
				case pipeline.Output, pipeline.Postrouting:
					if hop.Out != lo.ID() {
						t.Errorf("%v: out NIC %d, want lo (%d)", hop.Hook, hop.Out, lo.ID())
					}
				default:
					if hop.In != lo.ID() || hop.Out != 0 {
						t.Errorf("%v: in NIC %d out %d, want in lo (%d)", hop.Hook, hop.In, hop.Out, lo.ID())
					}
				}
				if s := hop.Seen; s.Tuple.Src != src || s.Tuple.Dst != to.Addr() {
					t.Errorf("%v: %v → %v", hop.Hook, s.Tuple.Src, s.Tuple.Dst)
				}
			}
			if got := spy.Seen(pipeline.Forward, mine); len(got) != 0 {
				t.Errorf("forward saw %d", len(got))
			}
		})
	}
}

// A connected socket that sends to a closed port of its own stack learns
// it as Linux's does (ECONNREFUSED): the port unreachable the stack sends
// itself goes through the loopback NIC too.
func TestLoopbackUDPRefused(t *testing.T) {
	for _, tc := range []struct{ network, to string }{{"udp4", "10.0.2.2:9999"}, {"udp4", "127.0.0.1:9999"}, {"udp6", "[fd00:2::2]:9999"}, {"udp6", "[::1]:9999"}} {
		t.Run(tc.to, func(t *testing.T) {
			n, _ := loopHost(t)
			c, err := udp.Dial(n.Stack, tc.network, "", tc.to)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("anyone?")); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("read: %v, want ECONNREFUSED (%s)", err, n.DumpCounters())
			}
			if out := pt.Drain(n.Link(t, "eth0")); len(udpOut(out)) != 0 || len(out) > 1 {
				t.Errorf("%d packets left link eth0 (a router solicitation may)", len(out))
			}
		})
	}
}

// udpOut keeps the UDP datagrams and ICMP messages of packets read off an
// IP link (not IPv6's router solicitations).
func udpOut(frames [][]byte) [][]byte {
	var out [][]byte
	for _, f := range frames {
		switch {
		case len(f) >= 20 && f[0]>>4 == 4 && (f[9] == 17 || f[9] == 1),
			len(f) >= 40 && f[0]>>4 == 6 && f[6] == 17,
			len(f) >= 41 && f[0]>>4 == 6 && f[6] == 58 && f[40] < 128:
			out = append(out, f)
		}
	}
	return out
}

// The loopback NIC is the stack's: a reload keeps it (its ID and
// counters), and a datagram to the link-local address of the stack's own
// link, zone and all, is delivered through it too.
func TestLoopbackReloadAndLinkLocal(t *testing.T) {
	const cfg = `
name: host
modules: [network.ipv4, network.ipv6, transport.udp]
links:
  - {name: eth0, module: link.channel, framing: ethernet, mac: "02:00:00:00:0a:02", addresses: [10.0.2.2/24]}
`
	n := pt.NewNode(t, "host", cfg, pipeline.Options{})
	lo, _ := n.Stack.NIC(pipeline.LoopbackName)
	srv, err := udp.ListenPacket(n.Stack, "udp4", "10.0.2.2:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, _ := udp.ListenPacket(n.Stack, "udp4", ":0")
	defer cl.Close()
	if _, err := cl.WriteToUDPAddrPort([]byte("one"), netip.MustParseAddrPort("10.0.2.2:9000")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(cfg + "  - {name: eth1, module: link.channel, framing: ip, addresses: [10.0.3.2/24]}\n"); err != nil {
		t.Fatal(err)
	}
	lo2, ok := n.Stack.NIC(pipeline.LoopbackName)
	if !ok || lo2 != lo || lo2.ID() != lo.ID() || lo2.Stats.RxPackets.Load() != 1 {
		t.Fatalf("lo after the reload: %v %v (rx %d)", lo2, ok, lo2.Stats.RxPackets.Load())
	}
	if eth1, _ := n.Stack.NIC("eth1"); eth1.ID() <= lo.ID() {
		t.Errorf("eth1 (added later) has ID %d, lo %d", eth1.ID(), lo.ID())
	}
	if _, err := cl.WriteToUDPAddrPort([]byte("two"), netip.MustParseAddrPort("10.0.2.2:9000")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}

	// The link-local address of eth0 (after DAD), with its zone.
	var ll netip.Addr
	pt.Eventually(t, 5*time.Second, func() bool {
		ni, _ := n.Stack.Generation().NICByName("eth0")
		for _, a := range ni.Addresses(6) {
			if a.Prefix.Addr().IsLinkLocalUnicast() {
				// Usable once DAD is done: IsLocal6 is what routing reads.
				_, ok := n.Stack.Generation().IsLocal6(a.Prefix.Addr().As16())
				ll = a.Prefix.Addr()
				return ok
			}
		}
		return false
	}, "no usable link-local address")
	s6, err := udp.ListenPacket(n.Stack, "udp6", "[::]:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer s6.Close()
	c6, _ := udp.ListenPacket(n.Stack, "udp6", ":0")
	defer c6.Close()
	to := netip.AddrPortFrom(ll.WithZone("eth0"), 9001)
	if _, err := c6.WriteToUDPAddrPort([]byte("ll"), to); err != nil {
		t.Fatal(err)
	}
	s6.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, from, err := s6.ReadFromUDPAddrPort(buf); err != nil || string(buf[:k]) != "ll" || from.Addr().WithZone("") != ll {
		t.Fatalf("read %q from %v: %v (%s)", buf[:k], from, err, n.DumpCounters())
	}
}
