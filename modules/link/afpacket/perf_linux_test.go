package afpacket

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

// counter is a NetworkDispatcher that counts and releases.
type counter struct{ n atomic.Uint64 }

func (c *counter) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	k := 0
	for _, p := range pkts {
		if p != nil {
			k++
		}
	}
	pipeline.ReleaseBatch(pkts)
	c.n.Add(uint64(k))
}

// pair opens endpoints on both veth ends: a sends, b receives.
func pair(t testing.TB, l *lab, v variant, pool *pipeline.Pool) (a, b *Endpoint, c *counter) {
	a = l.open(t, "va", Options{Mode: v.mode, VnetHdr: v.vnet, Pool: pool})
	b = l.open(t, "vb", Options{Mode: v.mode, VnetHdr: v.vnet, Pool: pool})
	c = &counter{}
	b.Attach(c)
	a.Attach(&counter{})
	return a, b, c
}

// sendBatch writes n copies of ip from a to b's MAC, in batches of 64.
func sendBatch(a *Endpoint, pool *pipeline.Pool, dst wire.MAC, ip []byte, batch []*pipeline.Packet, n int) {
	for n > 0 {
		k := min(n, len(batch))
		pool.GetBatch(batch[:k], len(ip))
		for _, p := range batch[:k] {
			d, _ := p.Append(len(ip))
			copy(d, ip)
			p.NetProto = pipeline.IPv4ProtocolNumber
			p.RemoteLinkAddr = dst
		}
		a.WritePackets(batch[:k])
		n -= k
	}
}

// No heap allocation per packet on either path: 20,000 packets written
// through one endpoint and read by another (its reader thread included).
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not exact under -race")
	}
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			l := newLab(t)
			pool := pipeline.NewPool(1 << 16)
			// The pool's working set grows with what is in flight (a ring
			// block holds many frames): fill it first, so that only what
			// happens per packet is counted.
			fill := make([]*pipeline.Packet, 4096)
			pool.GetBatch(fill, 100)
			pipeline.ReleaseBatch(fill)
			a, b, c := pair(t, l, v, pool)
			ip := markedUDP(1, 1)
			batch := make([]*pipeline.Packet, 64)
			// Warm up: pool, scratch, reader slots, until 5,000 frames got
			// through (newLab waited for the veth's queues to be active:
			// see wireReady).
			pipelinetest.Eventually(t, 10*time.Second, func() bool {
				sendBatch(a, pool, b.LinkAddress(), ip, batch, 500)
				time.Sleep(time.Millisecond)
				return c.n.Load()+b.KernelDrops() >= 5000
			}, "warm-up: %d received", c.n.Load())
			for last := uint64(0); c.n.Load() != last; { // the last ones in flight
				last = c.n.Load()
				time.Sleep(20 * time.Millisecond)
			}
			// The same traffic twice: the first run, not counted, warms up
			// what the runtime makes once (OS threads for the locked
			// readers); the second is one counted window (no best-of-N).
			const n = 20000
			traffic := func() {
				start := c.n.Load()
				deadline := time.Now().Add(10 * time.Second)
				for i := 0; i < n/1000; i++ {
					sendBatch(a, pool, b.LinkAddress(), ip, batch, 1000)
					for c.n.Load() < start+uint64(i+1)*1000-50 && time.Now().Before(deadline) {
						// spin: no timers, no channels
					}
				}
				for c.n.Load() < start+n && time.Now().Before(deadline) {
				}
				if got := c.n.Load() - start; got != n {
					t.Fatalf("received %d of %d frames (kernel drops %d, tx drops %d)", got, n, b.KernelDrops(), a.TxDropped.Load())
				}
			}
			traffic()
			allocs := pipelinetest.CountMallocs(traffic)
			if allocs != 0 {
				t.Logf("pool allocated %d buffers in all", pool.Allocated())
				t.Fatalf("%d heap allocations for %d packets sent and received", allocs, n)
			}
		})
	}
}

// BenchmarkRxTx measures frames through the link between two veth ends:
// one goroutine writes 46-byte IP packets through endpoint a (sendmmsg),
// endpoint b's reader delivers them to a counting dispatcher.
//
//	go test -run '^$' -bench RxTx -benchtime 2000000x ./modules/link/afpacket/
func BenchmarkRxTx(b *testing.B) {
	for _, v := range variants {
		b.Run(v.String(), func(b *testing.B) {
			l := newLab(b)
			pool := pipeline.NewPool(1 << 16)
			ea, eb, c := pair(b, l, v, pool)
			ip := pipelinetest.UDP4("10.9.0.2", "10.9.0.1", 1, 7, 64, make([]byte, 18)) // 46 bytes
			batch := make([]*pipeline.Packet, 64)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			t0 := time.Now()
			sent := 0
			for sent < b.N {
				k := min(b.N-sent, 4096)
				sendBatch(ea, pool, eb.LinkAddress(), ip, batch, k)
				sent += k
				// Keep at most ~one socket buffer in flight: measure the
				// link, not the kernel's drops.
				for uint64(sent)-c.n.Load()-eb.KernelDrops() > 8192 {
					time.Sleep(10 * time.Microsecond)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.n.Load()+eb.KernelDrops() < uint64(b.N) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(t0)
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
			got := c.n.Load()
			b.ReportMetric(float64(got)/el.Seconds(), "rx-pps")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(got, 1)), "cpu-ns/pkt")
			b.ReportMetric(float64(uint64(b.N)-got)/float64(b.N)*100, "loss-%")
			_ = fmt.Sprint()
		})
	}
}
