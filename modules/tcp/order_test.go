package tcp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// pipeHost is a host on one link.channel link of bare IP packets whose
// queue never drops under a full window (as bench's TCP benchmarks).
func pipeHost(name, addr string, mtu int) string {
	return fmt.Sprintf(`
name: %s
modules: [network.ipv4, transport.tcp]
links:
  - {name: l, module: link.channel, framing: ip, mtu: %d, queue: 65536, addresses: [%s/24]}
`, name, mtu, addr)
}

// pipePair is a connection from host a to host b, joined by one link at
// mtu moved by goroutines (pt.Connect): c is a's end, s b's.
func pipePair(t *testing.T, mtu int) (a, b *pt.Node, c, s *tcp.Conn) {
	a = pt.NewNode(t, "a", pipeHost("a", "10.0.1.2", mtu), pipeline.Options{})
	b = pt.NewNode(t, "b", pipeHost("b", "10.0.1.1", mtu), pipeline.Options{})
	pt.Connect(t, a, "l", b, "l")
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err = tcp.Dial(a.Stack, "tcp4", "10.0.1.1:5001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return a, b, c, s
}

// TestBulkInOrderOnFIFOLink: two stacks on a lossless link that never
// reorders, the writer, the reader and both link movers on goroutines of
// their own (as in bench's BenchmarkTCPBulkPipestack). Every segment
// must arrive in order and none may be refused: the receiver counts no
// out-of-order segment and no PAWS drop, and the bytes arrive intact.
// Three bugs broke this: segments built by two batches one after the
// other (a Write and an ACK's run) reached the link in the other order;
// a batch that read the clock earlier sent an older TSval after a newer
// one (PAWS dropped it); and a segment within the advertised window but
// past receive_buffer (the window field rounds the edge up at each ACK)
// lost its tail. At MTU 65,535 the receive buffer must also grow past its
// first 64 KiB (one segment): a zero-ms timestamp echo taken as a 1 ns
// RTT kept DRS from ever growing it, and every segment waited for the
// 40 ms delayed ACK; and a window-based RTT sample that ended one window
// past RCV.NXT as what was left of the window (nothing, with the buffer
// full) measured one segment's spacing, and a two-segment window stayed
// two segments in one run of two.
func TestBulkInOrderOnFIFOLink(t *testing.T) {
	for _, tc := range []struct {
		mtu  int
		size int
	}{{1500, 48 << 20}, {65535, 96 << 20}} {
		t.Run(fmt.Sprintf("mtu=%d", tc.mtu), func(t *testing.T) {
			if testing.Short() {
				tc.size /= 8
			}
			a, b, c, s := pipePair(t, tc.mtu)
			s.SetDeadline(time.Now().Add(120 * time.Second))
			data := blob(tc.size)
			go func() {
				for p := data; len(p) > 0; p = p[min(len(p), 64<<10):] {
					if _, err := c.Write(p[:min(len(p), 64<<10)]); err != nil {
						return
					}
				}
			}()
			got := make([]byte, 0, len(data))
			buf := make([]byte, 8<<10) // io.Discard's reads, as the benchmark
			for len(got) < len(data) {
				n, err := s.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("after %d of %d bytes: %v", len(got), len(data), err)
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the bytes read differ from those written")
			}
			rcv, _ := tcp.BufferSizes(s)
			ooo, paws := b.Counter("tcp", "ooo_queued"), b.Counter("tcp", "paws_rejected")
			t.Logf("%d MiB: receive buffer %d, ooo %d, PAWS %d; sender: %s", tc.size>>20, rcv, ooo, paws, a.DumpCounters())
			if ooo != 0 || paws != 0 {
				t.Errorf("the receiver took %d segments out of order and refused %d by PAWS on a link that never reorders", ooo, paws)
			}
			if tc.mtu == 65535 && rcv <= 4*65535 {
				t.Errorf("receive buffer still %d bytes (at most four segments) after %d MiB", rcv, tc.size>>20)
			}
			// What the receive queue held is given back to the account.
			c.Close()
			if n, err := s.Read(buf); err != io.EOF {
				t.Fatalf("read %d bytes, %v after the data, want EOF", n, err)
			}
			s.Close()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if used, _ := tcp.MemoryInUse(b.Stack); used == 0 {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("%d bytes still charged to the receiver's account after both ends closed", used)
				}
			}
		})
	}
}

// TestSegmentsLeaveInOrderAcrossBatches: segments one batch built are on
// the link before those a later batch built, even when the later batch
// finishes first (flush: the first batch owns the connection's
// transmission until its segments are out), and their TSvals do not go
// back although the later batch read the clock 5 ms earlier (tsSend).
// Before, the second batch's segments went first, and the receiver took
// them out of order; in order, PAWS dropped them for their older TSval.
func TestSegmentsLeaveInOrderAcrossBatches(t *testing.T) {
	_, b, c, s := pipePair(t, 1500)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	data := blob(8 << 10) // within the first window: both batches send at once
	if !tcp.WriteInTwoBatches(c, data[:4<<10], data[4<<10:], 5*time.Millisecond) {
		t.Fatal("the writes did not fit the send buffer")
	}
	for deadline := time.Now().Add(5 * time.Second); tcp.Buffered(s) < len(data); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes arrived", tcp.Buffered(s), len(data))
		}
	}
	// In order and unread, the segments wait as their packets: Read
	// copies their bytes once.
	if n := tcp.HeldPackets(s); n != 6 {
		t.Errorf("%d segments held as packets, want 6 (8 KiB in segments of 1,448 bytes)", n)
	}
	got := make([]byte, len(data))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%v; the bytes read differ from those written: %t", err, !bytes.Equal(got, data))
	}
	if ooo := b.Counter("tcp", "ooo_queued"); ooo != 0 {
		t.Errorf("the receiver took %d segments out of order: the second batch's segments left first", ooo)
	}
	if paws := b.Counter("tcp", "paws_rejected"); paws != 0 {
		t.Errorf("the receiver refused %d segments by PAWS: the second batch sent an older TSval", paws)
	}
}

// TestSmallTailsJoinHeldPackets: at MTU 65,535 every 64 KiB write ends a
// little past a segment (MSS 65,495), and the sender sends that tail as a
// segment of its own (NoDelay). Behind the held large segments the receiver
// keeps each tail as a small copy in its receive queue (rxqCopy), not in
// the ring: the ring would first take in every held segment (rxqFlush),
// copying the large segments a second time for a few bytes.
// heldPair is a connected pair at MTU 65,535 whose receiver's window
// takes every write of the test, and a write that returns when the
// write's segments have arrived.
func heldPair(t *testing.T) (s *tcp.Conn, write func(p []byte)) {
	_, _, c, s := pipePair(t, 65535)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if err := s.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	return s, func(p []byte) {
		t.Helper()
		end := tcp.Buffered(s) + len(p)
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); tcp.Buffered(s) < end; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d bytes arrived", tcp.Buffered(s), end)
			}
		}
	}
}

// readAll reads want's length from s in io.Discard's 8 KiB reads and
// compares.
func readAll(t *testing.T, s *tcp.Conn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	for off := 0; off < len(got); {
		n, err := s.Read(got[off:min(off+8<<10, len(got))])
		if err != nil {
			t.Fatalf("after %d bytes: %v", off, err)
		}
		off += n
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read differ from those written")
	}
}

func TestSmallTailsJoinHeldPackets(t *testing.T) {
	s, write := heldPair(t)
	const writes = 3
	data := blob(writes<<16 + 30)
	for i := 0; i < writes; i++ {
		write(data[i<<16 : (i+1)<<16])
	}
	held, ring := tcp.HeldPackets(s), tcp.RingHeld(s)
	t.Logf("%d bytes unread: %d in the ring, the rest in %d held packets", tcp.Buffered(s), ring, held)
	if ring > 65535 || held < writes {
		t.Errorf("%d bytes in the ring and %d held packets, want the large segments held (at most the first write's tail in the ring)", ring, held)
	}
	// Two more small segments join the last tail's copy, which has room.
	write(data[writes<<16 : writes<<16+10])
	write(data[writes<<16+10:])
	if n := tcp.HeldPackets(s); n != held || tcp.RingHeld(s) != ring {
		t.Errorf("after two small segments: %d held packets (was %d), %d bytes in the ring (was %d); want them in the last copy", n, held, tcp.RingHeld(s), ring)
	}
	readAll(t, s, data)
}

// TestBulkZeroCopyLossy: at MTU 65,535 segments leave as handles of the
// send queue's packets (zero_copy_sent), also over a link that loses,
// duplicates and delays some: the retransmissions (of packets whose
// earlier handle may still be held on the way or by the peer) and the
// duplicates keep every byte intact.
func TestBulkZeroCopyLossy(t *testing.T) {
	a := pt.NewNode(t, "a", pipeHost("a", "10.0.1.2", 65535), pipeline.Options{})
	b := pt.NewNode(t, "b", pipeHost("b", "10.0.1.1", 65535), pipeline.Options{})
	la, lb := a.Link(t, "l"), b.Link(t, "l")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	move := func(from, to *channel.Endpoint, seed uint64) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		buf := make([]*pipeline.Packet, 64)
		var held []*pipeline.Packet // delayed behind the next batch
		for {
			n, err := from.ReadWait(ctx, buf)
			if err != nil {
				pipeline.ReleaseBatch(held)
				return
			}
			out := held[:0:0]
			for _, p := range buf[:n] {
				p.ResetMeta()
				switch r := rng.IntN(100); {
				case r < 2:
					p.Release() // lost
				case r < 4:
					out = append(out, p, p.Clone()) // duplicated
				case r < 6:
					held = append(held, p) // reordered
				default:
					out = append(out, p)
				}
			}
			if rng.IntN(4) == 0 {
				out = append(out, held...)
				held = held[:0]
			}
			to.InjectPackets(out)
			clear(buf[:n])
		}
	}
	wg.Add(2)
	go move(la, lb, 1)
	go move(lb, la, 2)
	t.Cleanup(func() { cancel(); wg.Wait() })
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := tcp.Dial(a.Stack, "tcp4", "10.0.1.1:5001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(120 * time.Second))
	data := blob(32 << 20)
	go func() {
		for p := data; len(p) > 0; p = p[min(len(p), 64<<10):] {
			if _, err := c.Write(p[:min(len(p), 64<<10)]); err != nil {
				return
			}
		}
	}()
	got := make([]byte, 0, len(data))
	buf := make([]byte, 8<<10)
	for len(got) < len(data) {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v; %s", len(got), len(data), err, a.DumpCounters())
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes read differ from those written")
	}
	zc, rtx := a.Counter("tcp", "zero_copy_sent"), a.Counter("tcp", "retransmits")
	t.Logf("sender: %s", a.DumpCounters())
	if zc == 0 || rtx == 0 {
		t.Errorf("zero_copy_sent %d, retransmits %d: want both > 0", zc, rtx)
	}
}

// TestHalfSegmentWritesHeld: at MTU 65,535 each 32 KiB write (io.Copy's
// buffer) arrives as a segment of 32 KiB in a 64 KiB buffer, under half
// of it; such segments of rxqHoldMin bytes or more are held as packets
// (each charged as its whole buffer) rather than copied into the ring,
// and Read returns every byte in order.
func TestHalfSegmentWritesHeld(t *testing.T) {
	s, write := heldPair(t)
	const writes = 6
	data := blob(writes << 15)
	for i := 0; i < writes; i++ {
		write(data[i<<15 : (i+1)<<15])
	}
	held, ring := tcp.HeldPackets(s), tcp.RingHeld(s)
	t.Logf("%d bytes unread: %d in the ring, the rest in %d held packets", tcp.Buffered(s), ring, held)
	if ring != 0 || held != writes {
		t.Errorf("%d bytes in the ring and %d held packets, want every 32 KiB segment held (%d)", ring, held, writes)
	}
	readAll(t, s, data)
}
