//go:build !race

// The race detector changes allocation behaviour, so the exact zero-alloc
// proofs run only without -race.

package udp_test

import (
	"net/netip"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestReceiveZeroAllocs proves that receiving allocates nothing per
// datagram once warm: injection, IPv4, UDP checksum and demux, the queue,
// and ReadFromUDPAddrPort's copy-out, over 12,800 datagrams.
func TestReceiveZeroAllocs(t *testing.T) {
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	c := listen(t, n, "10.0.2.2:9000")
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = pt.UDP4("10.0.9.9", "10.0.2.2", uint16(1000+i), 9000, 64, make([]byte, 64))
	}
	buf := make([]byte, 2048)
	run := func(batches int) {
		for b := 0; b < batches; b++ {
			link.InjectFrames(frames)
			for range frames {
				k, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || k != 64 || from.Port() < 1000 {
					t.Fatalf("read %d from %v: %v", k, from, err)
				}
			}
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	pt.SparePackets(n.Stack.Pool(), 128)
	const batches = 200
	if m := pt.CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d received datagrams, want 0", m, batches*len(frames))
	}
}

// TestReceiveLargeBuffersZeroAllocs: datagrams a link read into large
// buffers are compacted into small ones as they are queued (the large
// ones go back to the pool), and that allocates nothing either.
func TestReceiveLargeBuffersZeroAllocs(t *testing.T) {
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	c := listen(t, n, "10.0.2.2:9000")
	frame := pt.UDP4("10.0.9.9", "10.0.2.2", 1000, 9000, 64, make([]byte, 64))
	pkts := make([]*pipeline.Packet, 64)
	buf := make([]byte, 2048)
	run := func(batches int) {
		for b := 0; b < batches; b++ {
			pipeline.DefaultPool.GetBatch(pkts, pipeline.LargeDataSize)
			for _, p := range pkts {
				p.SetData(frame)
			}
			link.InjectPackets(pkts)
			for range pkts {
				k, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || k != 64 {
					t.Fatalf("read %d: %v", k, err)
				}
			}
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	pt.SparePackets(n.Stack.Pool(), 128)
	const batches = 200
	if m := pt.CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d received datagrams, want 0", m, batches*len(pkts))
	}
}

// TestSendZeroAllocs: WriteToUDPAddrPort (route, header, checksum, IPv4,
// link queue) allocates nothing per datagram once warm.
func TestSendZeroAllocs(t *testing.T) {
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	c := listen(t, n, ":0")
	to := netip.MustParseAddrPort("10.0.9.9:53")
	payload := make([]byte, 64)
	pkts := make([]*pipeline.Packet, 64)
	run := func(batches int) {
		for b := 0; b < batches; b++ {
			for range pkts {
				if _, err := c.WriteToUDPAddrPort(payload, to); err != nil {
					t.Fatal(err)
				}
			}
			if k := link.Read(pkts); k != len(pkts) {
				t.Fatalf("sent %d of %d", k, len(pkts))
			}
			pipeline.ReleaseBatch(pkts)
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	pt.SparePackets(n.Stack.Pool(), 128)
	const batches = 200
	if m := pt.CountMallocs(func() { run(batches) }); m != 0 {
		t.Fatalf("%d mallocs over %d sent datagrams, want 0", m, batches*len(pkts))
	}
}

// TestLoopbackZeroAllocs: a datagram to the stack's own address (the
// loopback NIC: Output, Postrouting, the batch's loopback queue, receive on
// lo, Prerouting, Input, the socket's queue) allocates nothing once warm.
func TestLoopbackZeroAllocs(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { loopbackZeroAllocs(t, "udp4", "10.0.2.2:9000") })
	t.Run("ipv6", func(t *testing.T) { loopbackZeroAllocs(t, "udp6", "[fd00:2::2]:9000") })
}

func loopbackZeroAllocs(t *testing.T, network, addr string) {
	n := pt.NewNode(t, "host", `
name: host
modules: [network.ipv4, network.ipv6, transport.udp]
links:
  - {name: eth0, module: link.channel, framing: ip, addresses: [10.0.2.2/24, "fd00:2::2/64"]}
`, pipeline.Options{})
	srv, err := udp.ListenPacket(n.Stack, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := udp.ListenPacket(n.Stack, network, ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	to := netip.MustParseAddrPort(addr)
	payload := make([]byte, 64)
	buf := make([]byte, 2048)
	run := func(rounds int) {
		for r := 0; r < rounds; r++ {
			for range 64 {
				if _, err := cl.WriteToUDPAddrPort(payload, to); err != nil {
					t.Fatal(err)
				}
			}
			for range 64 {
				if k, _, err := srv.ReadFromUDPAddrPort(buf); err != nil || k != 64 {
					t.Fatalf("read %d: %v", k, err)
				}
			}
		}
	}
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run(100)
	pt.SparePackets(n.Stack.Pool(), 128)
	const rounds = 200
	if m := pt.CountMallocs(func() { run(rounds) }); m != 0 {
		t.Fatalf("%d mallocs over %d datagrams to ourselves, want 0", m, rounds*64)
	}
}
