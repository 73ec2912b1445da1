package bench

// Shared scenario for the TCP bulk benchmarks (BenchmarkTCPBulkPipestack,
// BenchmarkTCPBulkGVisor):
//
//	client 10.0.1.2:ephemeral ──(in-memory link, MTU 1500)── server 10.0.1.1:5001
//
// Two stacks joined by one in-memory link of bare IP packets, each
// direction moved by its own goroutine (as for the UDP echo). The client
// writes 64 KiB per b.N iteration through net.Conn.Write; the server
// goroutine reads and discards; the benchmark ends when the server has
// read everything. Reported: MB/s (b.SetBytes), ns/op, allocs/op over all
// goroutines. Like scenario_test.go, this file imports neither stack.

import (
	"io"
	"net"
	"testing"
)

const (
	bulkPort  = 5001
	bulkChunk = 64 << 10
)

// runBulk drives the transfer: client writes b.N chunks, server reads
// them all.
func runBulk(b *testing.B, client, server net.Conn) {
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
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-done; n != int64(b.N)*bulkChunk {
		b.Fatalf("server read %d of %d bytes", n, int64(b.N)*bulkChunk)
	}
	b.StopTimer()
}
