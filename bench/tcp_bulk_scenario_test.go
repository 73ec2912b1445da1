package bench

// Shared scenarios for the TCP benchmarks, each run on both stacks
// (BenchmarkTCP{Bulk,Connect,Idle}{Pipestack,GVisor}):
//
//	client 10.0.1.2:ephemeral ──(in-memory link, MTU 1500 or 65,535)── server 10.0.1.1:5001
//
// Two stacks joined by one in-memory link of bare IP packets, each
// direction moved by its own goroutine (as for the UDP echo), with a link
// queue of tcpQueue packets so that the harness never drops a segment (a
// 1,024-packet queue behind a mover that moves one packet at a time
// dropped gVisor's segments under a full window: RTOs, 5–500 MB/s from
// run to run). Neither link offloads anything: both stacks compute every
// checksum on send and verify it on receive in software (the receiver's
// check that the data arrived intact) and send MTU-sized segments (no
// TSO/GSO); each stack's file checks its link's capabilities. Both
// stacks run with SACK and their defaults otherwise (gVisor: moderate
// receive buffer on, as Tailscale and wireguard-go's netstack configure
// it). Like scenario_test.go, this file imports
// neither stack.
//
//   - Bulk: the client writes 64 KiB per b.N iteration through
//     net.Conn.Write; the server goroutine reads and discards; MB/s and
//     cpu-ns/op (the process's CPU time per 64 KiB).
//   - Connect: b.N connections, from 1 or 8 dialer goroutines; each
//     dials, the server accepts and closes at once, the dialer reads the
//     EOF and closes (the server's end goes to TIME-WAIT, the client's
//     port is free again). conns/s and allocs per connection.
//   - Idle: idleConns connections established and left idle; the live
//     heap (runtime.ReadMemStats HeapAlloc after two GCs) before and
//     after, per connection, both ends: B/conn (once per call).

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	bulkPort  = 5001
	bulkChunk = 64 << 10
	tcpQueue  = 1 << 16
	idleConns = 2000
)

// tcpPair is a server and a client stack, joined.
type tcpPair struct {
	ln   net.Listener
	dial func(ctx context.Context) (net.Conn, error)
}

// runBulk drives the transfer: client writes b.N chunks, server reads
// them all.
func runBulk(b *testing.B, client, server net.Conn) { runBulkWrites(b, client, server, bulkChunk) }

// runBulkWrites is runBulk with each 64 KiB chunk written in Writes of
// size bytes (io.Copy's 32 KiB buffer, say); an op is still one chunk.
func runBulkWrites(b *testing.B, client, server net.Conn, size int) {
	b.Helper()
	chunk := make([]byte, bulkChunk)
	for i := range chunk {
		chunk[i] = payloadByte(i)
	}
	done := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, server, int64(b.N)*bulkChunk)
		done <- n
	}()
	b.SetBytes(bulkChunk)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		for off := 0; off < bulkChunk; off += size {
			if _, err := client.Write(chunk[off:min(off+size, bulkChunk)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if n := <-done; n != int64(b.N)*bulkChunk {
		b.Fatalf("server read %d of %d bytes", n, int64(b.N)*bulkChunk)
	}
	b.StopTimer()
	// The process's CPU time (both stacks, the movers, the writer and
	// the reader, the garbage collector) per 64 KiB: unlike MB/s it does
	// not count the time spent waiting for a CPU the machine's other work
	// held, so its ratio holds on a loaded machine (as reportRates').
	if cpu := processCPU() - cpu0; cpu0 > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// bulk accepts one connection of p and runs the transfer on it.
func bulk(b *testing.B, p tcpPair) {
	cli, srv := establish(b, p)
	runBulk(b, cli, srv)
}

// bulkWrites32K is bulk in 32 KiB Writes (io.Copy's buffer): at MTU
// 65,535 a segment of half a segment's size.
func bulkWrites32K(b *testing.B, p tcpPair) {
	cli, srv := establish(b, p)
	runBulkWrites(b, cli, srv, 32<<10)
}

// establish dials one connection of p and accepts it; both ends are
// closed when tb ends.
func establish(tb testing.TB, p tcpPair) (cli, srv net.Conn) {
	tb.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := p.ln.Accept()
		accepted <- c
	}()
	cli, err := p.dial(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	srv = <-accepted
	if srv == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { srv.Close() })
	return cli, srv
}

// runConnect opens and closes b.N connections from dialers goroutines.
func runConnect(b *testing.B, p tcpPair, dialers int) {
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer func() { p.ln.Close(); <-srvDone }()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, dialers)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for d := 0; d < dialers; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var one [1]byte
			for next.Add(1) <= int64(b.N) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := p.dial(ctx)
				cancel()
				if err != nil {
					errs <- err
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(one[:]); err != io.EOF {
					errs <- err
					c.Close()
					return
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "conns/s")
}

// liveHeap is the heap in use after the garbage is collected.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// runIdle reports the live heap per idle established connection (both
// ends), over idleConns connections, measured once per call whatever b.N
// (more connections would only add TIME-WAIT leftovers to the
// measurement, and 200 rounds of them would run out of ports).
func runIdle(b *testing.B, p tcpPair) {
	accepted := make(chan net.Conn, idleConns)
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	cli := make([]net.Conn, 0, idleConns)
	srv := make([]net.Conn, 0, idleConns)
	before := liveHeap()
	for j := 0; j < idleConns; j++ {
		c, err := p.dial(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		cli = append(cli, c)
		srv = append(srv, <-accepted)
	}
	time.Sleep(100 * time.Millisecond) // delayed ACKs out, queues drained
	after := liveHeap()
	perConn := float64(int64(after)-int64(before)) / idleConns
	for j := range cli {
		cli[j].Close()
		srv[j].Close()
	}
	b.ReportMetric(perConn, "B/conn")
}
