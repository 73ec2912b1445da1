package tcp_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// wsConn is an accepted connection whose peer offers window scaling
// (shift 7), MSS 1000 and SACK; the stack's shift is 5 (1 MiB buffers).
func wsConn(t *testing.T, tcpOpts string) (*peer, *pconn) {
	t.Helper()
	p := newPeer(t, tcpOpts)
	ln := p.listen()
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1000)
	ob.AddSACKPermitted()
	ob.AddWindowScale(7)
	pc := p.accept(ln, 41000, append([]byte(nil), ob.Bytes()...))
	return p, pc
}

// fill sends the stack what its window offers (up to edge, moved by
// the ACKs), in 1000-byte segments, and returns the right edge the ACKs
// advertised.
func fill(t *testing.T, p *peer, pc *pconn, edge uint32) uint32 {
	t.Helper()
	for int32(edge-(pc.sndNxt+1000)) >= 0 {
		pc.sendData(bytes.Repeat([]byte{9}, 1000))
		edge = edgeOf(p.read(), edge)
	}
	return edge
}

// edgeOf is the right edge the ACKs in got advertise (at least edge).
func edgeOf(got []seg, edge uint32) uint32 {
	for _, a := range got {
		if e := a.ack + uint32(a.wnd)<<5; int32(e-edge) > 0 {
			edge = e
		}
	}
	return edge
}

func drain(t *testing.T, pc *pconn) {
	t.Helper()
	buf := make([]byte, 256<<10)
	for tcp.Buffered(pc.c) > 0 {
		if _, err := pc.c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// Receive buffer auto-tuning (Linux's tcp_rcv_space_adjust, DRS): the
// window starts at the 64 KiB initial buffer and, when the application
// reads what arrives, grows with what it read per round trip (here at
// once to the 1 MiB bound: a sender filling each window is growing
// fast); an application that does not read gets no larger window.
func TestReceiveAutoTuning(t *testing.T) {
	p, pc := wsConn(t, "")
	if r, _ := tcp.BufferSizes(pc.c); r != 64<<10 {
		t.Fatalf("initial receive buffer %d, want 64 KiB", r)
	}
	edge := pc.sndNxt + 64<<10 - 1000
	var wins []int
	for round := 0; round < 4; round++ {
		edge = fill(t, p, pc, edge)
		drain(t, pc)
		p.clock.Advance(rtt)
		// Reading made room: the window update says how much.
		edge = edgeOf(p.read(), edge)
		wins = append(wins, int(edge-pc.sndNxt))
	}
	if wins[len(wins)-1] < 900<<10 {
		t.Fatalf("windows per round %v, want growth to about 1 MiB", wins)
	}

	// Not reading: the buffer stays at its first size, the window closes.
	p, pc = wsConn(t, "")
	edge = pc.sndNxt + 64<<10 - 1000
	for round := 0; round < 4; round++ {
		edge = fill(t, p, pc, edge)
		p.clock.Advance(rtt)
	}
	if r, _ := tcp.BufferSizes(pc.c); r != 64<<10 || int(edge-pc.sndNxt) >= 1000 {
		t.Fatalf("an unread connection: buffer %d, window %d", r, int(edge-pc.sndNxt))
	}

	// auto_tuning: false: the whole buffer from the start (as before).
	p, pc = wsConn(t, ", auto_tuning: false")
	pc.sendData([]byte("x"))
	if a := p.one(); int(a.wnd)<<5 < 1<<20-2000 {
		t.Fatalf("window %d without auto-tuning, want 1 MiB", int(a.wnd)<<5)
	}
}

// Send buffer growth (Linux's tcp_sndbuf_expand): Write fills 64 KiB at
// first, then two congestion windows as cwnd grows, up to send_buffer;
// SetWriteBuffer fixes it.
func TestSendBufferExpands(t *testing.T) {
	p, pc := sackConn(t)
	if _, s := tcp.BufferSizes(pc.c); s != 64<<10 {
		t.Fatalf("initial send buffer %d", s)
	}
	go pc.c.Write(make([]byte, 8<<20))
	for round := 0; round < 5; round++ {
		var flight []seg
		for i := 0; i < 100; i++ {
			time.Sleep(time.Millisecond)
			flight = append(flight, p.read()...)
			if len(flight) > 0 && p.ep.Pending() == 0 {
				break
			}
		}
		p.clock.Advance(rtt)
		for _, s := range flight {
			p.send(pc.sackAck(s.seq + uint32(len(s.data))))
		}
	}
	cwnd, _ := tcp.Window(pc.c)
	_, snd := tcp.BufferSizes(pc.c)
	if snd <= 64<<10 || snd < cwnd || snd > 1<<20 {
		t.Fatalf("send buffer %d with cwnd %d, want about 2·cwnd", snd, cwnd)
	}
	pc.c.SetWriteBuffer(2 << 20)
	if _, s := tcp.BufferSizes(pc.c); s != 2<<20 {
		t.Fatalf("after SetWriteBuffer %d", s)
	}
}

// The stack-wide memory cap (Linux's tcp_mem): connections whose
// applications do not read hold their buffers; past memory_pressure
// the stack is under pressure (new connections are offered small
// windows), at memory_limit no buffer grows past 16 KiB and data is
// dropped and counted; what the connections hold stays bounded, and it
// all comes back when they are read and closed.
func TestMemoryLimit(t *testing.T) {
	p := newPeer(t, ", memory_limit: 1048576, memory_pressure: 524288, memory_low: 262144")
	ln := p.listen()
	// 24 connections offered 64 KiB windows each, then filled.
	var pcs []*pconn
	for i := 0; i < 24; i++ {
		pcs = append(pcs, p.accept(ln, uint16(42000+i), mssOpt(1000)))
	}
	for i, pc := range pcs {
		for sent := 0; sent < 64000; sent += 1000 {
			pc.sendData(bytes.Repeat([]byte{byte(i)}, 1000))
			p.read()
		}
	}
	used, pressure := tcp.MemoryInUse(p.n.Stack)
	if !pressure || used > 1<<20+24*16<<10 {
		t.Fatalf("%d bytes held (pressure %v), want pressure and at most the limit plus 16 KiB a connection", used, pressure)
	}
	if p.n.Counter("tcp", "mem_pressure") == 0 || p.n.Counter("tcp", "mem_drops") == 0 {
		t.Fatalf("counters: pressure %d drops %d", p.n.Counter("tcp", "mem_pressure"), p.n.Counter("tcp", "mem_drops"))
	}
	// Under pressure a new connection is offered four segments.
	p.send(seg{sport: 43000, dport: 80, seq: 1, flags: syn, wnd: 65535, opts: mssOpt(1000)})
	sa := p.one()
	if sa.wnd > 4*1000 {
		t.Fatalf("SYN-ACK window %d under pressure", sa.wnd)
	}
	// Out-of-order data that would need memory is not kept (Linux's
	// tcp_prune_ofo_queue): the duplicate ACK carries no SACK block.
	nc := &pconn{p: p, sport: 43000, dport: 80, sndNxt: 2, rcvNxt: sa.seq + 1}
	p.send(nc.seg(ack, nil))
	pruned := p.n.Counter("tcp", "ooo_pruned") // (segments after the dropped ones, too)
	ooo := nc.seg(ack|psh, bytes.Repeat([]byte{1}, 500))
	ooo.seq += 1000
	p.send(ooo)
	if a := p.one(); a.ack != 2 || a.parsed.NumSACK != 0 {
		t.Fatalf("answer to out-of-order data under pressure %v %+v", a, a.parsed)
	}
	if d := p.n.Counter("tcp", "ooo_pruned") - pruned; d != 1 {
		t.Fatalf("ooo_pruned +%d, want 1", d)
	}
	t.Logf("%d bytes held by 24 connections at a 1 MiB limit; %d segments dropped", used, p.n.Counter("tcp", "mem_drops"))
	for _, pc := range pcs {
		drain(t, pc)
		pc.c.Close()
	}
	p.clock.Advance(time.Second)
	used, pressure = tcp.MemoryInUse(p.n.Stack)
	if used != 0 || pressure {
		t.Fatalf("after closing: %d bytes held, pressure %v", used, pressure)
	}
}
