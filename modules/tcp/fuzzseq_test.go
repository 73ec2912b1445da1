package tcp_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// FuzzConnSequence drives one connection deep: the input is a
// configuration byte (passive or active open; the peer's SACK,
// timestamps and window scaling; small buffers) and then a sequence of
// steps, each an opcode and its parameters:
//
//   - a segment from the peer whose seq and ack are relative to what the
//     stack has acknowledged and sent (most land in the window and reach
//     the data, SACK, FIN and RST paths), with flags, window, options
//     (timestamps, SACK blocks relative to the ack, MSS, window scale) and
//     a payload taken from a pattern by sequence number;
//   - in-order data, or an ACK of everything the stack sent;
//   - the clock advanced;
//   - the application's Write, Read, CloseWrite, Close, an expired read
//     deadline.
//
// The invariants, checked as the input plays:
//
//   - no panic, no hang (a watchdog);
//   - what the application reads is exactly the peer's stream in order;
//   - what the stack sends is well formed (the harness checks checksums),
//     its data is exactly what the application wrote at that offset, no
//     seq is beyond what was written (and the FIN), no ack beyond what the
//     peer sent;
//   - after Close and the clock run past every timer, the connection is
//     gone and the pool has every buffer back.
//
// Run it with
//
//	go test ./modules/tcp -run '^$' -fuzz '^FuzzConnSequence$' -fuzztime 10m -parallel 1
func FuzzConnSequence(f *testing.F) {
	for _, s := range connSeqSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2048 {
			data = data[:2048]
		}
		defer pt.Watchdog("FuzzConnSequence", 20*time.Second, data)()
		runConnSequence(t, data)
	})
}

// Steps of an input.
const (
	stSeg        = iota // flags, seq offset (2), ack offset (2), window, length, options, SACK start, SACK length
	stData              // in-order data: length
	stAckAll            // an ACK of all the stack sent
	stClock             // advance: index into seqDurations
	stWrite             // the application writes length×64 bytes
	stRead              // the application reads up to length×16 bytes (what is buffered)
	stCloseWrite        // the application's CloseWrite
	stClose             // the application's Close
	stDeadline          // a Read with an expired deadline
	numSteps
)

// Configuration bits (the input's first byte).
const (
	cfgActive = 1 << iota
	cfgSACK
	cfgTS
	cfgWS
	cfgSmallRcv
	cfgSmallSnd
)

var seqDurations = [...]time.Duration{time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond, 200 * time.Millisecond,
	time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}

// The two streams' patterns, by offset from the first byte.
func peerByte(off uint32) byte { return byte(off*7 + off>>8 + 1) }
func appByte(off uint32) byte  { return byte(off*13 + off>>9 + 3) }

type seqIn []byte

func (in *seqIn) u8() byte {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return b
}

func (in *seqIn) i16() int32 { return int32(int16(uint16(in.u8())<<8 | uint16(in.u8()))) }

// seqFuzz is the peer's view of the connection.
type seqFuzz struct {
	t            *testing.T
	p            *peer
	pool         *pipeline.Pool
	ln           *tcp.Listener
	c            *tcp.Conn
	sport, dport uint16 // the peer's, the stack's
	ts, sack, ws bool   // what the peer offered

	piss, pmax uint32 // the peer's ISS, its highest seq sent + 1
	ackd       uint32 // the highest ack from the stack
	siss, smax uint32 // the stack's ISS, its highest seq sent + 1
	stsval     uint32 // the stack's last TSval
	reinc      bool   // a SYN with another ISS: a new connection, not checked
	written    uint32 // bytes the application wrote
	read       uint32 // bytes the application read
	finSent    bool   // the stack sent its FIN (after written)
	closed     bool
	buf        []byte
}

func runConnSequence(t *testing.T, data []byte) {
	in := seqIn(data)
	cfg := in.u8()
	opts := ""
	if cfg&cfgSmallRcv != 0 {
		opts += ", receive_buffer: 16384, receive_buffer_initial: 16384, auto_tuning: false"
	}
	if cfg&cfgSmallSnd != 0 {
		opts += ", send_buffer: 16384, send_buffer_initial: 16384"
	}
	pool := pipeline.NewPoolLimits(1<<20, 1<<40)
	f := &seqFuzz{t: t, p: newPeerPool(t, opts, pool), pool: pool, ts: cfg&cfgTS != 0, sack: cfg&cfgSACK != 0, ws: cfg&cfgWS != 0,
		piss: 1000, buf: make([]byte, 8192)}
	f.pmax = f.piss + 1
	f.ackd = f.piss + 1
	if cfg&cfgActive != 0 {
		f.dial()
	} else {
		f.accept()
	}
	for len(in) > 0 {
		f.step(&in)
	}
	f.finish()
}

func (f *seqFuzz) synOpts(tsecr uint32) []byte {
	var ob wire.TCPOptionsBuilder
	ob.AddMSS(1460)
	switch {
	case f.sack && f.ts:
		ob.AddSACKPermittedTimestamps(f.tsval(), tsecr)
	case f.sack:
		ob.AddSACKPermitted()
	case f.ts:
		ob.AddTimestamps(f.tsval(), tsecr)
	}
	if f.ws {
		ob.AddWindowScale(7)
	}
	return append([]byte(nil), ob.Bytes()...)
}

// tsval is the peer's timestamp clock: 1 ms ticks of the manual clock.
func (f *seqFuzz) tsval() uint32 { return uint32(f.p.clock.Now().UnixMilli()) + 7 }

func (f *seqFuzz) accept() {
	f.ln = f.p.listen()
	f.sport, f.dport = 40000, 80
	f.p.send(seg{sport: f.sport, dport: f.dport, seq: f.piss, flags: syn, wnd: 65535, opts: f.synOpts(0)})
	f.collect()
	if f.siss == 0 && f.smax == 0 {
		f.t.Fatal("no SYN-ACK")
	}
	f.sendSeg(ack, f.pmax, f.smax, 65535, nil, 0)
	f.ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := f.ln.AcceptTCP()
	if err != nil {
		f.t.Fatal(err)
	}
	f.c = c
	f.collect()
}

func (f *seqFuzz) dial() {
	s, ch := f.p.dial(7, tcp.Dialer{})
	f.sport, f.dport = 7, s.sport
	f.check(s)
	f.pmax = f.piss // the SYN-ACK's SYN is counted by sendSeg
	f.sendSeg(syn|ack, f.piss, f.smax, 65535, f.synOpts(s.parsed.TSVal), 0)
	d := ch.wait(f.t)
	if d.err != nil {
		f.t.Fatal(d.err)
	}
	f.c = d.c
	f.collect()
}

// sendSeg sends a segment with the payload of the peer's stream at seq
// (a SYN's data starts after it) and extra options appended.
func (f *seqFuzz) sendSeg(flags uint8, seq, ackn uint32, wnd uint16, extra []byte, n int) {
	var ob wire.TCPOptionsBuilder
	if f.ts && flags&syn == 0 {
		ob.AddTimestamps(f.tsval(), f.stsval)
	}
	opts := append(append([]byte(nil), ob.Bytes()...), extra...)
	if len(opts) > 40 {
		opts = opts[:40]
	}
	start := seq
	if flags&syn != 0 {
		start++
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = peerByte(start + uint32(i) - (f.piss + 1))
	}
	f.p.send(seg{sport: f.sport, dport: f.dport, seq: seq, ack: ackn, flags: flags, wnd: wnd, opts: opts, data: payload})
	end := start + uint32(n)
	if flags&fin != 0 {
		end++
	}
	if seqGT(end, f.pmax) {
		f.pmax = end
	}
	f.collect()
}

func seqGT(a, b uint32) bool { return int32(a-b) > 0 }

// collect reads and checks what the stack sent.
func (f *seqFuzz) collect() {
	for _, s := range f.p.read() {
		f.check(s)
	}
}

func (f *seqFuzz) check(s seg) {
	t := f.t
	if s.sport != f.dport && f.dport != 0 || s.dport != f.sport && f.sport != 0 {
		return // not this connection (an answer to a fuzzed port)
	}
	if s.flags&rst != 0 {
		return // a reset's seq is the offending segment's ack
	}
	if s.flags&syn != 0 {
		if f.siss == 0 && f.smax == 0 {
			f.siss, f.smax = s.seq, s.seq+1
		} else if s.seq != f.siss {
			f.reinc = true
		}
	}
	if f.reinc {
		return
	}
	if s.parsed.HasTimestamps {
		f.stsval = s.parsed.TSVal
	}
	start := s.seq
	if s.flags&syn != 0 {
		start++
	}
	off := start - (f.siss + 1)
	if int32(off) < 0 && (len(s.data) > 0 || s.flags&fin != 0) {
		t.Fatalf("stack sent %v: data before its ISS %d", s, f.siss)
	}
	if int32(off) >= 0 {
		end := off + uint32(len(s.data))
		if s.flags&fin != 0 {
			f.finSent = true
		}
		if end > f.written && !(f.finSent && len(s.data) == 0 && end == f.written+1) {
			t.Fatalf("stack sent %v: beyond the %d bytes written", s, f.written)
		}
		if s.flags&fin != 0 && end != f.written {
			t.Fatalf("stack sent %v: FIN at offset %d, %d bytes written", s, end, f.written)
		}
		for i, b := range s.data {
			if want := appByte(off + uint32(i)); b != want {
				t.Fatalf("stack sent %v: byte %d is %#x, the application wrote %#x", s, off+uint32(i), b, want)
			}
		}
		e := start + uint32(len(s.data))
		if s.flags&fin != 0 {
			e++
		}
		if seqGT(e, f.smax) {
			f.smax = e
		}
	} else if s.seq != f.siss {
		// Below the first byte only sndUna-1 (a keepalive probe) may be.
		t.Fatalf("stack sent %v below its ISS %d", s, f.siss)
	}
	if s.flags&ack != 0 {
		if seqGT(s.ack, f.pmax) {
			t.Fatalf("stack sent %v: acks beyond the peer's %d", s, f.pmax)
		}
		if seqGT(s.ack, f.ackd) {
			f.ackd = s.ack
		}
	}
}

func (f *seqFuzz) step(in *seqIn) {
	switch in.u8() % numSteps {
	case stSeg:
		flags := in.u8()
		seq := f.ackd + uint32(in.i16())
		ackn := f.smax + uint32(in.i16())
		wb := in.u8()
		n := int(in.u8()) * 8
		ob := in.u8()
		sStart, sLen := in.u8(), in.u8()
		var extra []byte
		var w wire.TCPOptionsBuilder
		if ob&1 != 0 {
			// A second timestamps option, or a stale one (PAWS).
			w.AddTimestamps(f.tsval()-uint32(ob)<<16, f.stsval-uint32(ob>>4))
		}
		if k := int(ob>>1) & 3; k > 0 {
			blocks := make([]wire.TCPSACKBlock, k)
			l := ackn + uint32(int8(sStart))*64
			for i := range blocks {
				r := l + uint32(sLen)*16
				blocks[i] = wire.TCPSACKBlock{Left: l, Right: r}
				l = r + uint32(sLen&15)*64 + 1
			}
			w.AddSACK(blocks)
		}
		if ob&8 != 0 {
			w.AddMSS(uint16(sLen) * 8)
		}
		if ob&16 != 0 {
			w.AddWindowScale(sStart)
		}
		extra = append(extra, w.Bytes()...)
		if ob&32 != 0 {
			extra = append(extra, 1, byte(ob), sStart, sLen) // NOP and a raw option
		}
		if ob&64 != 0 {
			flags |= ack
		}
		f.sendSeg(flags, seq, ackn, uint16(wb)<<8|uint16(wb), extra, n)
	case stData:
		f.sendSeg(ack|psh, f.ackd, f.smax, 65535, nil, int(in.u8())*8)
	case stAckAll:
		f.sendSeg(ack, f.ackd, f.smax, 65535, nil, 0)
	case stClock:
		f.p.clock.Advance(seqDurations[int(in.u8())%len(seqDurations)])
		f.collect()
	case stWrite:
		n := int(in.u8()) * 64
		if f.closed {
			return
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = appByte(f.written + uint32(i))
		}
		// Not Write: it blocks when the send buffer is full.
		k, _ := tcp.WriteNow(f.c, p)
		f.written += uint32(k)
		f.collect()
	case stRead:
		n := max(int(in.u8())*16, 1)
		if f.closed {
			return
		}
		f.readSome(n)
	case stCloseWrite:
		if !f.closed {
			f.c.CloseWrite()
			f.collect()
		}
	case stClose:
		f.close()
	case stDeadline:
		if f.closed {
			return
		}
		f.c.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := f.c.Read(f.buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			f.t.Fatalf("read past its deadline: %v", err)
		}
		f.c.SetReadDeadline(time.Time{})
	}
}

// readSome reads what is buffered, at most n bytes, and checks it is the
// peer's stream.
func (f *seqFuzz) readSome(n int) {
	if tcp.Buffered(f.c) == 0 {
		return
	}
	k, err := f.c.Read(f.buf[:min(n, len(f.buf))])
	if err != nil && err != io.EOF {
		f.t.Fatalf("read with %d buffered: %v", tcp.Buffered(f.c), err)
	}
	for i, b := range f.buf[:k] {
		if want := peerByte(f.read + uint32(i)); b != want {
			f.t.Fatalf("read byte %d: %#x, the peer sent %#x (%s)", f.read+uint32(i), b, want, tcp.DebugState(f.c))
		}
	}
	f.read += uint32(k)
	f.collect()
}

func (f *seqFuzz) close() {
	if f.closed {
		return
	}
	f.closed = true
	f.c.Close()
	f.collect()
}

// finish closes the connection, runs the clock past every timer (the
// peer is silent: the FIN's retries run out) and checks the connection
// is gone and the pool has every buffer back.
func (f *seqFuzz) finish() {
	f.t.Logf("before Close: %s; read %d, written %d, peer sent %d", tcp.DebugState(f.c), f.read, f.written, f.pmax-f.piss-1)
	f.close()
	for i := 0; i < 200 && tcp.Conns(f.p.n.Stack) > 0; i++ {
		f.p.clock.Advance(time.Minute)
		f.collect()
	}
	if n := tcp.Conns(f.p.n.Stack); n != 0 {
		f.t.Fatalf("%d connections left after every timer: %s", n, tcp.DebugState(f.c))
	}
	if f.ln != nil {
		f.ln.Close()
	}
	f.collect()
	if o := pt.OutstandingBuffers(f.pool); o != 0 {
		var b strings.Builder
		for _, cs := range f.p.n.Stack.Counters() {
			for _, v := range cs.Snapshot() {
				if v.Value != 0 {
					fmt.Fprintf(&b, "%s.%s=%d ", cs.Name(), v.Name, v.Value)
				}
			}
		}
		f.t.Fatalf("%d pool buffers not back after the connection is gone; counters %s", o, b.String())
	}
}

// connSeqSeeds are handwritten sequences: handshake and data both ways,
// out of order with SACK, FINs in several states, a reset, a zero window.
func connSeqSeeds() [][]byte {
	seg := func(flags byte, seqOff, ackOff int16, wnd, n8, opt, sStart, sLen byte) []byte {
		b := []byte{stSeg, flags, 0, 0, 0, 0, wnd, n8, opt, sStart, sLen}
		binary.BigEndian.PutUint16(b[2:], uint16(seqOff))
		binary.BigEndian.PutUint16(b[4:], uint16(ackOff))
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	all := byte(cfgSACK | cfgTS | cfgWS)
	return [][]byte{
		// Passive, every option: data both ways, reads, a graceful close.
		cat([]byte{all}, []byte{stData, 100, stRead, 255, stWrite, 40, stAckAll, stClock, 2, stData, 10, stRead, 255},
			[]byte{stCloseWrite, stAckAll}, seg(fin|ack, 0, 0, 255, 0, 0, 0, 0), []byte{stRead, 1, stClose, stClock, 7}),
		// Active, plain: out of order then the hole filled.
		cat([]byte{cfgActive}, seg(ack|psh, 800, 0, 255, 100, 0, 0, 0), seg(ack, 2400, 0, 255, 50, 0, 0, 0),
			[]byte{stData, 100, stRead, 255, stRead, 255, stRead, 255}),
		// SACK blocks on the stack's data, a loss and its retransmit.
		cat([]byte{all | cfgActive}, []byte{stWrite, 100, stClock, 0}, seg(ack, 0, -6000, 255, 0, 2, 16, 90),
			seg(ack, 0, -6000, 255, 0, 4, 20, 90), seg(ack, 0, -6000, 255, 0, 6, 24, 90), []byte{stClock, 3, stClock, 4, stAckAll}),
		// A FIN out of order, data before it, FIN in FIN-WAIT-1.
		cat([]byte{cfgSACK}, seg(fin|ack, 400, 0, 255, 10, 0, 0, 0), []byte{stCloseWrite}, []byte{stData, 50, stRead, 255},
			[]byte{stAckAll, stRead, 255, stClock, 6}),
		// A reset in the window, and one at rcvNxt.
		cat([]byte{cfgTS}, []byte{stData, 30}, seg(rst, 10, 0, 0, 0, 0, 0, 0), seg(rst|ack, 0, 0, 0, 0, 0, 0, 0), []byte{stRead, 255}),
		// A zero window: the stack probes, then the window opens.
		cat([]byte{all | cfgSmallRcv | cfgSmallSnd}, seg(ack, 0, 0, 0, 0, 0, 0, 0), []byte{stWrite, 200, stClock, 4, stClock, 5, stClock, 5},
			[]byte{stAckAll, stData, 255, stData, 255, stData, 255, stRead, 100, stDeadline, stClock, 6, stWrite, 10, stClose}),
	}
}
