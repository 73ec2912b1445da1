package afpacket

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

var other = wire.MAC{2, 0, 0, 0, 0, 0x99}

func markedUDP(i int, sport uint16) []byte {
	return pipelinetest.UDP4("10.9.0.2", "10.9.0.1", sport, 7, 64, []byte(fmt.Sprintf("psaf-test-%06d", i)))
}

// Frames the kernel side sends reach the stack whole, with their metadata;
// frames the stack writes reach the kernel side, and never come back to
// the link's own readers (PACKET_IGNORE_OUTGOING).
func TestReceiveTransmit(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			l := newLab(t)
			ep := l.open(t, "va", Options{Mode: v.mode, VnetHdr: v.vnet})
			defer func() {
				if t.Failed() {
					t.Logf("endpoint: TxPackets %d TxDropped %d TxErrors %d", ep.TxPackets.Load(), ep.TxDropped.Load(), ep.TxErrors.Load())
				}
			}()
			if ep.LinkAddress() != l.macA || ep.MTU() != 1500 {
				t.Fatalf("link address %s mtu %d, want %s 1500", ep.LinkAddress(), ep.MTU(), l.macA)
			}
			c := &collector{marker: []byte("psaf-test-")}
			ep.Attach(c)
			p := l.peer(t, false)

			const n = 300
			for i := 0; i < n; i++ {
				p.send(t, nil, pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, markedUDP(i, 1000)))
			}
			for i := 0; i < 5; i++ {
				p.send(t, nil, pipelinetest.EthFrame(wire.BroadcastMAC, l.macB, wire.EtherTypeIPv4, markedUDP(n+i, 1000)))
				p.send(t, nil, pipelinetest.EthFrame(other, l.macB, wire.EtherTypeIPv4, markedUDP(n+5+i, 1000)))
			}
			gotten := c.wait(t, n+5, 5*time.Second)
			for i, g := range gotten[:n] {
				want := pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, markedUDP(i, 1000))
				if !bytes.Equal(g.frame, want) {
					t.Fatalf("frame %d:\n got %x\nwant %x", i, g.frame, want)
				}
				if g.netProto != pipeline.IPv4ProtocolNumber || g.pktType != pipeline.PacketHost || g.gso != (pipeline.GSO{}) {
					t.Fatalf("frame %d: proto %#x type %d gso %+v", i, g.netProto, g.pktType, g.gso)
				}
			}
			for _, g := range gotten[n:] {
				if g.pktType != pipeline.PacketBroadcast {
					t.Fatalf("broadcast frame delivered as type %d", g.pktType)
				}
			}
			pipelinetest.Eventually(t, 2*time.Second, func() bool { return ep.RxOtherHost.Load() == 5 }, "RxOtherHost = %d, want 5", ep.RxOtherHost.Load())

			// Transmit, a batch at a time (the veth queues in the kernel's
			// backlog, which drops beyond 1000 frames).
			batch := make([]*pipeline.Packet, 0, 100)
			for i := 0; i < 2*n; i++ {
				pkt := pipeline.DefaultPool.Get(100)
				pkt.SetData(markedUDP(i, 2000))
				pkt.NetProto = pipeline.IPv4ProtocolNumber
				pkt.RemoteLinkAddr = l.macB
				batch = append(batch, pkt)
				if len(batch) < cap(batch) {
					continue
				}
				if sent := ep.WritePackets(batch); sent != len(batch) {
					t.Fatalf("WritePackets sent %d of %d", sent, len(batch))
				}
				for _, q := range batch {
					if q != nil {
						t.Fatal("WritePackets left a packet in the batch")
					}
				}
				for j := i + 1 - len(batch); j <= i; j++ {
					_, f, ok := p.tryRecv(t, 5*time.Second)
					if !ok {
						t.Fatalf("peer: frame %d not received in 5 s (va tx_dropped %d)", j, l.txDropped(t, "va"))
					}
					want := pipelinetest.EthFrame(l.macB, l.macA, wire.EtherTypeIPv4, markedUDP(j, 2000))
					if !bytes.Equal(f, want) {
						t.Fatalf("peer frame %d:\n got %x\nwant %x", j, f, want)
					}
				}
				batch = batch[:0]
			}
			if got := ep.TxPackets.Load(); got != 2*n {
				t.Fatalf("TxPackets %d, want %d", got, 2*n)
			}
			time.Sleep(20 * time.Millisecond)
			if k := c.n(); k != n+5 {
				t.Fatalf("the link read %d frames, want %d: its own transmissions came back", k, n+5)
			}
			if ep.RxOutgoing.Load() != 0 {
				t.Errorf("RxOutgoing = %d: PACKET_IGNORE_OUTGOING did not hold", ep.RxOutgoing.Load())
			}
			if err := ep.Close(); err != nil {
				t.Fatal(err)
			}
			// After Close, writes drop.
			pkt := pipeline.DefaultPool.Get(100)
			pkt.SetData(markedUDP(0, 1))
			if ep.WritePackets([]*pipeline.Packet{pkt}) != 0 || ep.TxDropped.Load() != 1 {
				t.Fatalf("a write after Close was not dropped")
			}
		})
	}
}

func tcpChecksumOK(p []byte) bool {
	tcp := p[20:]
	return wire.Checksum(tcp, wire.PseudoHeaderChecksum(wire.ProtocolTCP, p[12:16], p[16:20], uint16(len(tcp)))) == 0xffff
}

// A TSO super-packet from the kernel side crosses the veth whole. With
// vnet_hdr its virtio-net header becomes Packet.GSO; without it the link
// recognises the frame over the MTU and the partial checksum from the
// socket's status and says so in Packet.GSO all the same. With vnet_hdr the
// link writes a super-packet back in one frame.
func TestGSO(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			l := newLab(t)
			ep := l.open(t, "va", Options{Mode: v.mode, VnetHdr: v.vnet})
			c := &collector{marker: []byte("psaf-test-")}
			ep.Attach(c)
			p := l.peer(t, true)
			super := tcpSuper(3000)
			frame := pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, super)
			vh := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1000, csumStart: 34, csumOffset: 16}
			p.send(t, &vh, frame)
			// And a small frame with a partial checksum.
			small := tcpSuper(100)
			p.send(t, &vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16}, pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, small))
			gotten := c.wait(t, 2, 5*time.Second)
			g := gotten[0]
			if !bytes.Equal(g.frame, frame) {
				t.Fatalf("super-packet: got %d bytes, want %d", len(g.frame), len(frame))
			}
			want := pipeline.GSO{Type: pipeline.GSOTCPv4, SegSize: 1000, HdrLen: 40, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
			if !v.vnet {
				want.SegSize = 1500 - 40 // inferred from the MTU
			}
			if g.gso != want {
				t.Fatalf("GSO %+v, want %+v", g.gso, want)
			}
			if ep.RxGSO.Load() != 1 {
				t.Fatalf("RxGSO = %d", ep.RxGSO.Load())
			}
			wantSmall := pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
			if gotten[1].gso != wantSmall {
				t.Fatalf("small frame GSO %+v, want %+v", gotten[1].gso, wantSmall)
			}
			// The stack completes such a checksum when it must.
			pkt := pipeline.DefaultPool.Get(len(small))
			pkt.SetData(small)
			pkt.GSO = wantSmall
			if !pipeline.CompleteChecksum(pkt) || !tcpChecksumOK(pkt.Data()) {
				t.Fatal("completed checksum does not verify")
			}
			pkt.Release()

			if !v.vnet {
				return
			}
			// Send a super-packet: one frame, the header intact. On a
			// loaded machine the kernel now and then drops a frame at
			// va's transmit (noqueue, QDISC_DROP: counted in va's
			// tx_dropped, never reaching vb): only then it is sent again.
			var rvh vnetHdr
			var rf []byte
			for try := 1; ; try++ {
				dropped := l.txDropped(t, "va")
				out := pipeline.DefaultPool.Get(len(super))
				out.SetData(super)
				out.NetProto = pipeline.IPv4ProtocolNumber
				out.RemoteLinkAddr = l.macB
				out.GSO = pipeline.GSO{Type: pipeline.GSOTCPv4, SegSize: 1000, HdrLen: 40, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
				if ep.WritePackets([]*pipeline.Packet{out}) != 1 {
					t.Fatalf("super-packet not sent: TxErrors %d TxDropped %d", ep.TxErrors.Load(), ep.TxDropped.Load())
				}
				var ok bool
				if rvh, rf, ok = p.tryRecv(t, 2*time.Second); ok {
					break
				}
				now := l.txDropped(t, "va")
				if now == dropped || try == 3 {
					t.Fatalf("peer: no super-packet in 2 s (try %d; va tx_dropped %d → %d)", try, dropped, now)
				}
				t.Logf("the kernel dropped the super-packet at va's transmit (tx_dropped %d → %d): again", dropped, now)
			}
			if !bytes.Equal(rf, pipelinetest.EthFrame(l.macB, l.macA, wire.EtherTypeIPv4, super)) {
				t.Fatalf("peer got %d bytes, want the %d-byte super-packet", len(rf), 14+len(super))
			}
			if rvh.gsoType&^vnetGSOECN != vnetGSOTCPv4 || rvh.gsoSize != 1000 || rvh.flags&vnetFlagNeedsCsum == 0 || rvh.csumStart != 34 || rvh.csumOffset != 16 {
				t.Fatalf("peer virtio-net header %+v", rvh)
			}
		})
	}
}

// Deleting the device under a reading link stops its readers and logs it
// once; the process goes on and Close still works.
func TestDeviceRemoved(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, mode := range []string{ModeMmsg, ModeRing, ModeBlock} {
		for _, queues := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/queues=%d", mode, queues), func(t *testing.T) {
				l := newLab(t)
				var log logBuf
				ep := l.open(t, "va", Options{Mode: mode, Queues: queues, VnetHdr: true, Logger: log.logger()})
				c := &collector{marker: []byte("psaf-test-")}
				ep.Attach(c)
				p := l.peer(t, false)
				p.send(t, nil, pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, markedUDP(0, 1)))
				c.wait(t, 1, 5*time.Second)

				// Down is not gone.
				run(t, "ip", "-n", l.ns, "link", "set", "va", "down")
				run(t, "ip", "-n", l.ns, "link", "set", "va", "up")
				wireReady(t, l.ns, "va", "vb") // vb's carrier came back with va's
				p.send(t, nil, pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, markedUDP(1, 1)))
				c.wait(t, 2, 5*time.Second)
				if ep.Removed() {
					t.Fatal("a device set down was taken for removed")
				}

				run(t, "ip", "-n", l.ns, "link", "del", "va")
				pipelinetest.Eventually(t, 5*time.Second, ep.Removed, "the link did not notice the device going away")
				done := make(chan struct{})
				go func() { ep.wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("readers still running after the device went away")
				}
				if k := strings.Count(log.String(), "device removed"); k != 1 {
					t.Fatalf("logged %d times, want once:\n%s", k, log.String())
				}
				pkt := pipeline.DefaultPool.Get(100)
				pkt.SetData(markedUDP(0, 1))
				pkt.NetProto = pipeline.IPv4ProtocolNumber
				if ep.WritePackets([]*pipeline.Packet{pkt}) != 0 {
					t.Fatal("a write to a removed device succeeded")
				}
				if err := ep.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// Two queues in a fanout group share the frames of many flows: each frame
// is read exactly once and both queues read some.
func TestFanout(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, mode := range []string{ModeMmsg, ModeRing, ModeBlock} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			ep := l.open(t, "va", Options{Mode: mode, Queues: 2, VnetHdr: true})
			c := &collector{marker: []byte("psaf-test-")}
			ep.Attach(c)
			p := l.peer(t, false)
			d0 := backlogDrops(t)
			defer func() {
				if t.Failed() {
					t.Logf("kernel: %d frames dropped by full CPU backlogs (all namespaces) during the test; %d by the link's full sockets or rings", backlogDrops(t)-d0, ep.KernelDrops())
				}
			}()
			// Every frame is read exactly once or counted by the kernel as
			// dropped for want of room in a queue's ring (PACKET_STATISTICS
			// tp_drops): on a loaded machine a reader can fall behind, and
			// that is the kernel's loss, counted, not ours. Frames lost
			// without a count, or read twice, fail.
			const n = 2000
			accounted := func(want int) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for c.n()+int(ep.KernelDrops()) < want {
					if time.Now().After(deadline) {
						t.Fatalf("%d of %d frames read and %d dropped at the rings in 5s", c.n(), want, ep.KernelDrops())
					}
					time.Sleep(time.Millisecond)
				}
			}
			for i := 0; i < n; i++ {
				p.send(t, nil, pipelinetest.EthFrame(l.macA, l.macB, wire.EtherTypeIPv4, markedUDP(i, uint16(1000+i%64))))
				if i%250 == 249 {
					// Stay under the kernel's backlog (netdev_max_backlog,
					// 1000): the veth queues there, and drops beyond.
					accounted(i + 1 - 250)
				}
			}
			accounted(n)
			time.Sleep(20 * time.Millisecond)
			got, drops := c.n(), int(ep.KernelDrops())
			if got+drops != n {
				t.Fatalf("received %d frames and the rings dropped %d, want %d in all", got, drops, n)
			}
			if drops > n/10 {
				t.Fatalf("the rings dropped %d of %d frames", drops, n)
			}
			if drops > 0 {
				t.Logf("the rings dropped %d of %d frames (a reader fell behind on a loaded machine)", drops, n)
			}
			gotten := c.wait(t, got, time.Second)
			seen := make(map[string]bool, n)
			for _, g := range gotten {
				k := string(g.frame)
				if seen[k] {
					t.Fatalf("frame read twice")
				}
				seen[k] = true
			}
			q0, q1 := ep.QueueDelivered(0), ep.QueueDelivered(1)
			if q0 == 0 || q1 == 0 || q0+q1 != uint64(got) {
				t.Fatalf("queues delivered %d and %d", q0, q1)
			}
			// Our own transmissions are ignored by the group too.
			pkt := pipeline.DefaultPool.Get(100)
			pkt.SetData(markedUDP(n, 1))
			pkt.NetProto = pipeline.IPv4ProtocolNumber
			pkt.RemoteLinkAddr = l.macB
			ep.WritePackets([]*pipeline.Packet{pkt})
			p.recv(t, 2*time.Second)
			time.Sleep(20 * time.Millisecond)
			if c.n() != got {
				t.Fatalf("a transmitted frame came back to the fanout group")
			}
		})
	}
}

// In promiscuous mode frames for other MACs are delivered, marked.
func TestPromiscuous(t *testing.T) {
	l := newLab(t)
	ep := l.open(t, "va", Options{Mode: ModeMmsg, Promiscuous: true})
	c := &collector{marker: []byte("psaf-test-")}
	ep.Attach(c)
	if out := run(t, "ip", "-d", "-n", l.ns, "link", "show", "va"); !strings.Contains(out, "promiscuity 1") {
		t.Fatalf("device not promiscuous:\n%s", out)
	}
	p := l.peer(t, false)
	p.send(t, nil, pipelinetest.EthFrame(other, l.macB, wire.EtherTypeIPv4, markedUDP(0, 1)))
	g := c.wait(t, 1, 5*time.Second)
	if g[0].pktType != pipeline.PacketOtherHost {
		t.Fatalf("packet type %d, want PacketOtherHost", g[0].pktType)
	}
	ep.Close()
	if out := run(t, "ip", "-d", "-n", l.ns, "link", "show", "va"); !strings.Contains(out, "promiscuity 0") {
		t.Fatalf("device still promiscuous after Close:\n%s", out)
	}
}

func TestOpenErrors(t *testing.T) {
	l := newLab(t)
	if _, err := New(Options{Device: "nosuchdev", Netns: l.ns}); err == nil || !strings.Contains(err.Error(), "nosuchdev") {
		t.Fatalf("missing device: %v", err)
	}
	if _, err := New(Options{Device: "va", Netns: "psaf-no-such-ns"}); err == nil || !strings.Contains(err.Error(), "psaf-no-such-ns") {
		t.Fatalf("missing namespace: %v", err)
	}
	if _, err := New(Options{Device: "lo", Netns: l.ns}); err == nil {
		// loopback has a 6-byte all-zero address: accepted by the kernel,
		// but it is no Ethernet link worth having; either way no panic.
		t.Log("loopback accepted")
	}
	// The stack's mtu caps the device's.
	ep := l.open(t, "va", Options{MTU: 1280})
	if ep.MTU() != 1280 {
		t.Fatalf("MTU %d, want 1280", ep.MTU())
	}
	// The test process never left its own namespace.
	if out, _ := exec.Command("ip", "link", "show", "va").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("va visible outside its namespace: %s", out)
	}
}
