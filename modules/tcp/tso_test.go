package tcp_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// tsoBulk moves size bytes from host a to host b over in-memory links,
// by hand; offload declares GSO on a's link, and each super-packet a
// writes reaches b either whole (gro: as a TUN link with virtio-net
// headers delivers it) or cut by pipeline.SegmentGSO (as a NIC would).
// It reports the packets a wrote, the largest, and b's hash of the data.
func tsoBulk(t *testing.T, offload, gro bool, size int) (pkts, largest int, sum [32]byte, elapsed time.Duration) {
	return tsoBulkDrop(t, offload, gro, size, 0)
}

// lastRetransmits is the sender's retransmissions in the last lossy run.
var lastRetransmits uint64

// tsoBulkDrop is tsoBulk losing every dropEvery-th segment the NIC cuts
// (0: none).
func tsoBulkDrop(t *testing.T, offload, gro bool, size, dropEvery int) (pkts, largest int, sum [32]byte, elapsed time.Duration) {
	t.Helper()
	cfg := func(name, addr, off string) string {
		return strings.Replace(hostConfig(name, "a", addr, "10.0.1.1", ""), "framing: ip,", "framing: ip, offload: "+off+",", 1)
	}
	off := "false"
	if offload {
		off = "true"
	}
	// The manual clock moves only when nothing does: no timer fires
	// because the machine (or -race) is slow.
	clock := pt.NewManualClock()
	a := pt.NewNode(t, "host-a", cfg("host-a", "10.0.1.2/24", off), pipeline.Options{Clock: clock})
	b := pt.NewNode(t, "host-b", cfg("host-b", "10.0.1.3/24", off), pipeline.Options{Clock: clock})
	la, lb := a.Link(t, "a"), b.Link(t, "a")
	var segs, in []*pipeline.Packet
	cut, dropped := 0, 0
	hp := newHandPipe(la, lb)
	hp.toB = func(run []*pipeline.Packet) []*pipeline.Packet {
		in = in[:0]
		for _, p := range run {
			pkts++
			largest = max(largest, p.Len())
			g := p.GSO
			if g.Type != pipeline.GSONone && !gro {
				segs, _ = pipeline.SegmentGSO(p, nil, segs[:0])
				p.Release()
				for _, s := range segs {
					if cut++; dropEvery > 0 && cut%dropEvery == 0 {
						s.Release()
						dropped++
						continue
					}
					if s.Len() > 1500 {
						t.Fatalf("segment of %d bytes", s.Len())
					}
					s.ResetMeta()
					in = append(in, s)
				}
				continue
			}
			if g.Type == pipeline.GSONone && dropEvery > 0 && p.Len() > 1000 {
				if cut++; cut%dropEvery == 0 {
					p.Release()
					dropped++
					continue
				}
			}
			p.ResetMeta()
			if g.Type != pipeline.GSONone {
				p.GSO, p.CsumVerified = g, true
			}
			in = append(in, p)
		}
		return in
	}
	move := hp.move
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan *tcp.Conn, 1)
	go func() {
		c, err := tcp.Dial(a.Stack, "tcp4", "10.0.1.3:5001")
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	var c *tcp.Conn
	for c == nil {
		move()
		select {
		case c = <-dialed:
		default:
			time.Sleep(time.Millisecond)
		}
	}
	move()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("pipestack TSO "), size/14+1)[:size]
	go func() {
		c.Write(data)
		c.Close()
	}()
	h := sha256.New()
	rb := make([]byte, 256<<10)
	start := time.Now()
	got := 0
	for {
		moved := move()
		for tcp.Buffered(s) > 0 {
			n, _ := s.Read(rb)
			h.Write(rb[:n])
			got += n
		}
		if got == size {
			break
		}
		if moved == 0 {
			time.Sleep(50 * time.Microsecond) // the writer's turn
			if got < size && la.Pending() == 0 && lb.Pending() == 0 && tcp.Buffered(s) == 0 {
				clock.Advance(time.Millisecond)
			}
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%d of %d bytes after 20 s", got, size)
		}
	}
	elapsed = time.Since(start)
	s.SetReadDeadline(time.Now().Add(time.Second))
	move()
	if n, err := s.Read(rb); n != 0 || err != io.EOF {
		t.Fatalf("after the data: %d, %v", n, err)
	}
	copy(sum[:], h.Sum(nil))
	if offload {
		a.WantCounters(t, "tcp", map[string]uint64{"bad_checksum": 0})
		if a.Counter("tcp", "tso_sent") == 0 {
			t.Fatal("no TSO super-packet sent")
		}
		if gro && b.Counter("tcp", "gro_received") == 0 {
			t.Fatal("no GRO super-packet received")
		}
	}
	b.WantCounters(t, "tcp", map[string]uint64{"bad_checksum": 0})
	if dropped > 0 {
		re := a.Counter("tcp", "retransmits")
		lastRetransmits = re
		t.Logf("%d segments lost, %d retransmitted, %d RTOs, %d RACK-lost, %d probes, %d DSACKs", dropped, re, a.Counter("tcp", "rto_expired"),
			a.Counter("tcp", "rack_lost"), a.Counter("tcp", "tlp_probes"), a.Counter("tcp", "dsack_in"))
		if re < uint64(dropped) {
			t.Fatalf("%d segments lost, %d retransmitted", dropped, re)
		}
	}
	return pkts, largest, sum, elapsed
}

// TSO (transport.tcp over a link that offloads segmentation): the
// sender writes super-packets of many segments (with GSO metadata and a
// partial checksum) instead of MSS-sized segments; cut by a NIC
// (SegmentGSO) every segment fits the MTU with a valid checksum, and
// passed whole as GRO super-packets they are taken as one segment each;
// either way the data arrive intact. Without offload: MSS segments.
func TestTSOInMemory(t *testing.T) {
	const size = 16 << 20
	want := sha256.Sum256(bytes.Repeat([]byte("pipestack TSO "), size/14+1)[:size])
	plainPkts, plainMax, sum, plainT := tsoBulk(t, false, false, size)
	if sum != want || plainMax > 1500 {
		t.Fatalf("without offload: hash %x, largest packet %d", sum, plainMax)
	}
	segPkts, segMax, sum, segT := tsoBulk(t, true, false, size)
	if sum != want || segMax <= 1500 || segMax > 0xffff {
		t.Fatalf("TSO, segmented: hash %x, largest packet %d", sum, segMax)
	}
	groPkts, groMax, sum, groT := tsoBulk(t, true, true, size)
	if sum != want || groMax <= 1500 {
		t.Fatalf("TSO and GRO: hash %x, largest packet %d", sum, groMax)
	}
	t.Logf("16 MiB: MSS segments %d packets (largest %d) in %v; TSO cut by the NIC %d packets (largest %d) in %v; TSO+GRO %d packets in %v",
		plainPkts, plainMax, plainT, segPkts, segMax, segT, groPkts, groT)
	if groPkts*4 > plainPkts {
		t.Fatalf("TSO wrote %d packets, MSS segments %d: want far fewer", groPkts, plainPkts)
	}
	// Loss: one segment in 200 on the wire (of what the NIC cuts, with
	// TSO): the scoreboard keeps SACK marks per segment, so recovery with
	// TSO resends no more than with MSS segments. (On this frozen clock
	// RACK's RTT and reordering window are 0, so it takes many delivered
	// segments for lost before their SACK arrives: both runs resend
	// several times what was lost.)
	if _, _, sum, _ = tsoBulkDrop(t, false, false, size, 200); sum != want {
		t.Fatalf("with loss: hash %x", sum)
	}
	plainRe := lastRetransmits
	if _, _, sum, _ = tsoBulkDrop(t, true, false, size, 200); sum != want {
		t.Fatalf("TSO with loss: hash %x", sum)
	}
	if lastRetransmits > plainRe*3/2+20 {
		t.Fatalf("with TSO %d retransmissions, with MSS segments %d", lastRetransmits, plainRe)
	}
}
