package conntrack

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// rig is a tracker over a small table on a manual clock, driven packet
// by packet.
type rig struct {
	t     *testing.T
	clock *pipeline.ManualClock
	table *Table
	tr    *Tracker
	last  *pipeline.PacketContext
}

func newRig(t *testing.T, max int, tcp TCPConfig) *rig {
	clock := pipeline.NewManualClock(time.Unix(1_000_000, 0))
	cs := (&pipeline.Context{}).Counters("conntrack")
	tb := NewTable(max, 0, clock, cs)
	t.Cleanup(func() { tb.Close() })
	return &rig{t: t, clock: clock, table: tb, tr: NewTracker(tb, tcp, DefaultTimeouts())}
}

func (r *rig) now() int64 { return r.clock.Now().UnixNano() }

// advance moves the clock and runs the wheel.
func (r *rig) advance(d time.Duration) {
	r.clock.Advance(d)
	r.table.Expire(r.clock.Now())
}

// seg is a TCP segment from a to b ("10.0.1.2:1000").
type seg struct {
	src, dst     string
	sport, dport uint16
	flags        uint8
	seq, ack     uint32
	win          uint16
	payload      int
	opts         []byte
}

func (r *rig) tcpBytes(s seg) []byte {
	b := filtertest.Packet{Proto: filtertest.TCP, Src: s.src, Dst: s.dst, SrcPort: s.sport, DstPort: s.dport, TCPFlags: s.flags, Payload: s.payload}.Bytes()
	if len(s.opts) > 0 {
		// Insert options after the fixed header.
		n := make([]byte, 0, len(b)+len(s.opts))
		n = append(n, b[:40]...)
		n = append(n, s.opts...)
		n = append(n, b[40:]...)
		b = n
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[32] = byte((20+len(s.opts))/4) << 4
	}
	tcp := b[20:]
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	w := s.win
	if w == 0 {
		w = 65000
	}
	binary.BigEndian.PutUint16(tcp[14:], w)
	return b
}

// send tracks one packet and returns its state.
func (r *rig) send(b []byte) pipeline.CTInfo {
	r.t.Helper()
	pc := filtertest.ContextOf(r.t, b, 0, pipeline.Prerouting, 1, 0)
	if v := r.tr.Track(r.now(), pc); v != pipeline.VerdictAccept {
		r.t.Fatalf("verdict %d", v)
	}
	r.tr.Confirm(pc.Pkt)
	r.last = pc
	return pc.Pkt.CTInfo
}

func (r *rig) tcp(s seg) pipeline.CTInfo { return r.send(r.tcpBytes(s)) }

// state is the TCP state of the last packet's entry.
func (r *rig) state() TCPState {
	e := r.table.Entry(Ref(r.last.Pkt.ConnTrack))
	if e == nil {
		return 255
	}
	e.Lock()
	defer e.Unlock()
	return e.TCPState()
}

func (r *rig) entry() *Entry { return r.table.Entry(Ref(r.last.Pkt.ConnTrack)) }

const (
	syn = wire.TCPFlagSyn
	ack = wire.TCPFlagAck
	fin = wire.TCPFlagFin
	rst = wire.TCPFlagRst
	psh = wire.TCPFlagPsh
)

var (
	newS  = pipeline.CTNew
	estO  = pipeline.CTEstablished
	estR  = pipeline.CTEstablished | pipeline.CTReply
	inval = pipeline.CTInvalid
)

// c→s and s→c segments of one connection.
func cs(flags uint8, seq, ackn uint32, n int) seg {
	return seg{src: "10.0.1.2", dst: "10.0.2.2", sport: 40000, dport: 80, flags: flags, seq: seq, ack: ackn, payload: n}
}
func sc(flags uint8, seq, ackn uint32, n int) seg {
	return seg{src: "10.0.2.2", dst: "10.0.1.2", sport: 80, dport: 40000, flags: flags, seq: seq, ack: ackn, payload: n}
}

type step struct {
	s     seg
	info  pipeline.CTInfo
	state TCPState
}

func (r *rig) run(steps []step) {
	r.t.Helper()
	for i, st := range steps {
		got := r.tcp(st.s)
		if got != st.info {
			r.t.Fatalf("step %d (%+v): state info %#x, want %#x", i, st.s, got, st.info)
		}
		if st.info != inval {
			if s := r.state(); s != st.state {
				r.t.Fatalf("step %d (%+v): TCP state %v, want %v", i, st.s, s, st.state)
			}
		}
	}
}

// handshake: SYN, SYN/ACK, ACK → ESTABLISHED, assured after the first
// data ACK in ESTABLISHED.
func handshake() []step {
	return []step{
		{cs(syn, 1000, 0, 0), newS, TCPSynSent},
		{sc(syn|ack, 5000, 1001, 0), estR, TCPSynRecv},
		{cs(ack, 1001, 5001, 0), estO, TCPEstablished},
	}
}

func TestTCPHandshakeAndCloseFromClient(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.run(handshake())
	if r.entry().Status()&StatusAssured == 0 {
		t.Fatal("not assured after SYN_RECV → ESTABLISHED")
	}
	r.run([]step{
		{cs(psh|ack, 1001, 5001, 100), estO, TCPEstablished},
		{sc(ack, 5001, 1101, 0), estR, TCPEstablished},
		{cs(fin|ack, 1101, 5001, 0), estO, TCPFinWait},
		{sc(ack, 5001, 1102, 0), estR, TCPCloseWait},
		{sc(fin|ack, 5001, 1102, 0), estR, TCPLastAck},
		{cs(ack, 1102, 5002, 0), estO, TCPTimeWait},
	})
	e := r.entry()
	if got := e.Expires().Sub(r.clock.Now()); got != 2*time.Minute {
		t.Fatalf("TIME_WAIT timeout %v", got)
	}
	r.advance(2*time.Minute + time.Second)
	if r.table.Count() != 0 {
		t.Fatalf("%d entries after TIME_WAIT expired", r.table.Count())
	}
}

func TestTCPCloseFromServer(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.run(handshake())
	r.run([]step{
		{sc(fin|ack, 5001, 1001, 0), estR, TCPFinWait},
		{cs(ack, 1001, 5002, 0), estO, TCPCloseWait},
		{cs(fin|ack, 1001, 5002, 0), estO, TCPLastAck},
		{sc(ack, 5002, 1002, 0), estR, TCPTimeWait},
	})
}

func TestTCPRSTBothDirections(t *testing.T) {
	for _, fromServer := range []bool{false, true} {
		r := newRig(t, 64, DefaultTCP())
		r.run(handshake())
		s := cs(rst|ack, 1001, 5001, 0)
		info := estO
		if fromServer {
			s, info = sc(rst|ack, 5001, 1001, 0), estR
		}
		r.run([]step{{s, info, TCPClose}})
		if got := r.entry().Expires().Sub(r.clock.Now()); got != 10*time.Second {
			t.Fatalf("CLOSE timeout %v", got)
		}
		r.advance(11 * time.Second)
		if r.table.Count() != 0 {
			t.Fatal("closed entry not expired")
		}
	}
}

func TestTCPRSTAnsweringSYNKills(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.run([]step{{cs(syn, 1000, 0, 0), newS, TCPSynSent}})
	if got := r.tcp(sc(rst|ack, 0, 1001, 0)); got != estR {
		t.Fatalf("RST answering SYN: %#x", got)
	}
	// The entry expired at once (Linux kills it; ours stays for the RST's
	// own NAT rewrite): a new SYN on the tuple is a new connection, and
	// the wheel frees the old entry within its tick.
	if got := r.tcp(cs(syn, 7000, 0, 0)); got != newS {
		t.Fatalf("SYN after the RST: %#x, want NEW", got)
	}
	r.advance(2 * time.Second)
	if r.table.Count() != 1 {
		t.Fatalf("%d entries after the RST and a new SYN, want 1 (the old one gone)", r.table.Count())
	}
}

func TestTCPSimultaneousOpen(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.run([]step{
		{cs(syn, 1000, 0, 0), newS, TCPSynSent},
		{sc(syn, 5000, 0, 0), estR, TCPSynSent2},
		{cs(syn|ack, 1000, 5001, 0), estO, TCPSynRecv},
		{sc(syn|ack, 5000, 1001, 0), estR, TCPSynRecv},
		{sc(ack, 5001, 1001, 0), estR, TCPEstablished},
	})
}

func TestTCPOutOfWindowInvalidUnlessLiberal(t *testing.T) {
	for _, liberal := range []bool{false, true} {
		cfg := DefaultTCP()
		cfg.BeLiberal = liberal
		r := newRig(t, 64, cfg)
		r.run(handshake())
		// Far beyond what the server's window allows.
		got := r.tcp(cs(psh|ack, 1001+10_000_000, 5001, 100))
		if liberal && got != estO {
			t.Fatalf("liberal: %#x, want ESTABLISHED", got)
		}
		if !liberal && got != inval {
			t.Fatalf("strict: %#x, want INVALID", got)
		}
		// An ACK of data never sent.
		got = r.tcp(cs(ack, 1001, 5001+10_000_000, 0))
		if !liberal && got != inval {
			t.Fatalf("ack above: %#x, want INVALID", got)
		}
		// In-window traffic still flows.
		r.run([]step{{cs(psh|ack, 1001, 5001, 10), estO, TCPEstablished}})
	}
}

func TestTCPInvalidFirstPackets(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	for _, s := range []seg{
		cs(syn|fin, 1, 0, 0), // invalid flag combination
		cs(0, 1, 0, 0),       // no flags
		cs(syn|ack, 1, 1, 0), // SYN/ACK cannot start a flow
		cs(fin|ack, 1, 1, 0), // FIN neither
	} {
		if got := r.tcp(s); got != inval {
			t.Fatalf("%+v: %#x, want INVALID", s, got)
		}
	}
	if r.table.Count() != 0 {
		t.Fatalf("%d entries for invalid packets", r.table.Count())
	}
}

func TestTCPLoosePickup(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	if got := r.tcp(cs(ack, 1000, 2000, 10)); got != newS {
		t.Fatalf("loose: mid-stream ACK %#x, want NEW", got)
	}
	if s := r.state(); s != TCPEstablished {
		t.Fatalf("picked up as %v", s)
	}
	if got := r.entry().Expires().Sub(r.clock.Now()); got != 5*time.Minute {
		t.Fatalf("picked-up timeout %v, want the unacknowledged 5m", got)
	}
	cfg := DefaultTCP()
	cfg.Loose = false
	r = newRig(t, 64, cfg)
	if got := r.tcp(cs(ack, 1000, 2000, 10)); got != inval {
		t.Fatalf("not loose: %#x, want INVALID", got)
	}
}

func TestTCPReopenFromTimeWait(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	r.run(handshake())
	r.run([]step{
		{cs(fin|ack, 1001, 5001, 0), estO, TCPFinWait},
		{sc(fin|ack, 5001, 1002, 0), estR, TCPLastAck},
		{cs(ack, 1002, 5002, 0), estO, TCPTimeWait},
	})
	old := r.last.Pkt.ConnTrack
	// A new SYN on the same tuple: a new connection, a new entry.
	r.run([]step{{cs(syn, 90000, 0, 0), newS, TCPSynSent}})
	if r.last.Pkt.ConnTrack == old {
		t.Fatal("reopened flow kept the old entry")
	}
	if r.table.Entry(Ref(old)) != nil {
		t.Fatal("the old reference still resolves")
	}
}

func TestTCPWindowScaleTracked(t *testing.T) {
	r := newRig(t, 64, DefaultTCP())
	ws := []byte{1, 3, 3, 7} // NOP, window scale 7
	s1 := cs(syn, 1000, 0, 0)
	s1.opts = ws
	s2 := sc(syn|ack, 5000, 1001, 0)
	s2.opts = ws
	r.tcp(s1)
	r.tcp(s2)
	r.run([]step{{cs(ack, 1001, 5001, 0), estO, TCPEstablished}, {sc(ack, 5001, 1001, 0), estR, TCPEstablished}})
	// With scale 7 the server's 65000 window is 8 MB: 1 MB ahead is fine.
	big := cs(psh|ack, 1001+1_000_000, 5001, 100)
	if got := r.tcp(big); got != estO {
		t.Fatalf("scaled window: %#x", got)
	}
	// Without scaling the same jump is out of window.
	r = newRig(t, 64, DefaultTCP())
	r.run(handshake())
	r.run([]step{{sc(ack, 5001, 1001, 0), estR, TCPEstablished}})
	if got := r.tcp(big); got != inval {
		t.Fatalf("unscaled window: %#x, want INVALID", got)
	}
}
