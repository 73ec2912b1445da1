package udp_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/pipestack/pipestack/modules/udp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// heapInUse is the live heap after a collection, with the pools' idle free
// buffers dropped (two trims: what the pool keeps is not what a socket
// holds).
func heapInUse() uint64 {
	var ms runtime.MemStats
	for range 2 {
		pipeline.DefaultPool.Trim()
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestQueuedMemory measures what full receive queues cost: 4 sockets, each
// with a full default queue (256) of 64-byte datagrams that the link read
// into large buffers (as TUN does with offloads on). A queued datagram
// must cost a small buffer (2 KiB and its Packet), not the 64 KiB buffer it
// arrived in: before compaction each socket held 16.9 MB, 66 KiB a datagram.
func TestQueuedMemory(t *testing.T) {
	const sockets = 4
	n := hostAlone(t, "")
	link := n.Link(t, "eth0")
	conns := make([]*udp.Conn, sockets)
	for i := range conns {
		conns[i] = listen(t, n, fmt.Sprintf("10.0.2.2:%d", 9000+i))
	}
	payload := make([]byte, 64)
	base := heapInUse()
	pkts := make([]*pipeline.Packet, 64)
	for s := range sockets {
		for sent := 0; sent < udp.DefaultReceiveQueue; sent += len(pkts) {
			for i := range pkts {
				p := pipeline.DefaultPool.Get(pipeline.LargeDataSize)
				p.SetData(pt.UDP4("10.0.9.9", "10.0.2.2", uint16(1000+i), uint16(9000+s), 64, payload))
				pkts[i] = p
			}
			link.InjectPackets(pkts)
		}
	}
	if q := n.Counter("udp", "delivered"); q != sockets*udp.DefaultReceiveQueue {
		t.Fatalf("%d datagrams queued, want %d (%s)", q, sockets*udp.DefaultReceiveQueue, n.DumpCounters())
	}
	used := heapInUse() - base
	per := float64(used) / (sockets * udp.DefaultReceiveQueue)
	t.Logf("%d sockets with %d queued 64-byte datagrams each (received in large buffers): %d bytes in use, %.1f MB a socket, %.0f bytes a datagram",
		sockets, udp.DefaultReceiveQueue, used, float64(used)/sockets/1e6, per)
	if per > 3072 {
		t.Errorf("%.0f bytes in use per queued datagram, want ≤ 3072 (a small buffer and its packet)", per)
	}
	buf := make([]byte, 2048)
	for _, c := range conns { // the copies read back whole, with their source
		k, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || k != 64 || from.Addr().String() != "10.0.9.9" || from.Port() != 1000 {
			t.Fatalf("read %d from %v: %v", k, from, err)
		}
	}
}
