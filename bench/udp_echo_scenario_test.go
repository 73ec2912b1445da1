package bench

// Shared scenario for the UDP echo benchmarks (BenchmarkUDPEchoPipestack,
// BenchmarkUDPEchoGVisor):
//
//	client 10.0.1.2:ephemeral ──(in-memory link)── server 10.0.1.1:7
//
// Two stacks joined by one in-memory link of bare IP packets (no link
// header), each direction moved by its own goroutine, as a cable would. The
// server is a goroutine echoing every datagram (net.PacketConn ReadFrom, then
// WriteTo to the source). The benchmark goroutine is the client: WriteTo a
// 64-byte datagram, ReadFrom the echo, check it; one datagram in flight. One
// b.N iteration is one echo (two datagrams, four goroutine hand-offs).
// Reported: ns/op, echoes/s, B/op, allocs/op (all goroutines: client, server
// and the link movers).
//
// Like scenario_test.go, this file imports neither stack.

import (
	"bytes"
	"net"
	"testing"
)

const (
	echoPort        = 7
	echoPayloadSize = 64
	echoLinkMTU     = 1500
)

var (
	echoServerIP = [4]byte{10, 0, 1, 1}
	echoClientIP = [4]byte{10, 0, 1, 2}
)

// echoPayload is the datagram the client sends.
func echoPayload() []byte {
	p := make([]byte, echoPayloadSize)
	for i := range p {
		p[i] = payloadByte(i)
	}
	return p
}

// echoServe echoes every datagram on c until it fails (closed).
func echoServe(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if _, err := c.WriteTo(buf[:n], from); err != nil {
			return
		}
	}
}

// runEcho is the timed client loop, the same for both stacks.
func runEcho(b *testing.B, c net.PacketConn, server net.Addr) {
	msg := echoPayload()
	buf := make([]byte, 2048)
	once := func() {
		if _, err := c.WriteTo(msg, server); err != nil {
			b.Fatalf("write: %v", err)
		}
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if !bytes.Equal(buf[:n], msg) {
			b.Fatalf("echo of %d bytes from %v differs", n, from)
		}
	}
	// Warm up (pools, queues, ARP-free routes) outside the timer.
	for i := 0; i < 100; i++ {
		once()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		once()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "echoes/s")
}
