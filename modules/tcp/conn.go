package tcp

import (
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// state is a connection's RFC 9293 state. LISTEN is a listener's, not a
// connection's.
type state uint8

const (
	stateClosed state = iota
	stateSynSent
	stateSynRcvd
	stateEstablished
	stateFinWait1
	stateFinWait2
	stateCloseWait
	stateClosing
	stateLastAck
	stateTimeWait
)

var stateNames = [...]string{"CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
	"CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

func (s state) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "?"
}

// synchronized: past the handshake (RFC 9293's "synchronized states").
func (s state) synchronized() bool { return s >= stateEstablished }

// Sequence number comparisons (modulo 2^32).
func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool  { return int32(a-b) > 0 }
func seqGEQ(a, b uint32) bool { return int32(a-b) >= 0 }

// Timer bounds (RFC 6298, with Linux's minimum).
const (
	initialRTO = time.Second
	minRTO     = 200 * time.Millisecond
	maxRTO     = 120 * time.Second
	// oowRateLimit is Linux's tcp_invalid_ratelimit: one ACK per 500 ms
	// per connection answers out-of-window segments without data.
	oowRateLimit = 500 * time.Millisecond
	maxOOO       = 32 // out-of-order ranges kept
	outBatch     = 16 // segments built before they are handed to the network layer
	// tsRecentValid: TS.Recent older than 24 days is invalid (RFC 7323 §5.5).
	tsRecentValid = 24 * 24 * time.Hour
	// pawsMSL is Linux's TCP_PAWS_MSL: in TIME-WAIT a reset that fails
	// PAWS is dropped while TS.Recent is younger than this.
	pawsMSL = 60 * time.Second
)

// oooRange is a range of out-of-order data held in the receive ring; at
// orders the ranges by when a segment last extended them (SACK blocks
// report the most recent first, RFC 2018 §4).
type oooRange struct{ left, right, at uint32 }

// conn is one connection: its state machine, buffers and timers. Every
// field below mu is guarded by it.
type conn struct {
	// The fields are grouped by size (8-byte words, then 4-byte
	// sequence numbers, then bytes) so that the struct carries no padding:
	// an idle connection is this struct, and TestConnSize pins its size
	// class.
	t  *table
	st *settings // of the generation that made it

	// wheel entry (guarded by the wheel's lock)
	wNext, wPrev *conn
	wTick        int64

	local, remote netip.AddrPort // fixed once registered
	wIn           bool           // wheel entry filed (the wheel's lock)
	sweeper       bool           // the table's TIME-WAIT sweeper, not a connection
	v6            bool

	mu       sync.Mutex
	iss      uint32    // (here: fills the word mu leaves)
	listener *listener // the listener of a passive open until accepted

	// send side
	sndMSS    int // payload bytes per segment (options excluded)
	sndBuf    sndQueue
	sndBufMax int

	// receive side
	rcvBuf    ring
	rcvBufMax int
	rcvMSS    int
	ooo       *[maxOOO]oooRange // made at the first out-of-order segment
	rxq       *rxQueue          // in-order segments held as packets (rxqueue.go), made at the first held
	txOwner   *pipeline.Batch   // the batch that took segments and has not sent them yet (flush)
	txq       *txQueue          // segments built in another batch meanwhile (flush)
	nooo      int
	oooLast   int // index of the range the latest segment went to

	// buffer auto-tuning (memory.go)
	rcvSpace   int // the receive buffer offered now (Linux's sk_rcvbuf), ≤ rcvBufMax
	sndLimit   int // the send buffer Write fills now (sk_sndbuf), ≤ sndBufMax
	rcvqSpace  int // bytes read in the last measured round trip
	rcvqTime   int64
	rcvRTT     int64 // the receiver's RTT estimate, ns (0: none)
	rcvRTTTime int64

	// options
	tsRecentAt int64
	peerMSS    int

	// RTT and timers (ns on the wheel's scale; 0: off)
	srtt, rttvar, rto int64
	rttStart          int64
	retries           int
	rtoAt             int64
	delackAt          int64
	persistAt         int64
	persistProbes     int
	persistBackoff    int
	maxOut            int // the most bytes in flight in the window that ends at cwndUsageSeq (cwndValidate)
	keepAt            int64
	keepIdle          time.Duration
	keepIntvl         time.Duration
	keepProbes        int
	keepSent          int
	lastRecv          int64
	closeAt           int64 // TIME-WAIT or orphaned FIN-WAIT-2 ends
	filedAt           int64 // when the wheel entry is filed (0: none)
	lastOOW           int64 // last ACK answering an out-of-window segment

	// ACK decisions
	rcvUnacked int // bytes received since the last ACK
	quickAcks  int
	linger     time.Duration

	// congestion control
	cc      CongestionControl
	ccs     CCState
	dupAcks int
	rk      rack // SACK scoreboard and RACK-TLP (sack.go)
	un      undo // the congestion episode's undo and PRR state (recovery.go)

	err     error // the connection's error (reset, timeout, refused)
	softErr error // an ICMP error reported while connecting

	// route cache, valid while rGen is the batch's generation
	rGen *pipeline.Generation
	ne   pipeline.NetworkEndpoint
	// the route's next hop and MTU (its NIC is riNIC below; the
	// addresses are the connection's own: routeInfo)
	riHop netip.Addr
	riMTU int
	// txSegSize is the segment size of the last TSO super-packet (its
	// scoreboard entries follow it).
	txSegSize int
	out       [outBatch]*pipeline.Packet
	nout      int

	// wakeups for the API (capacity 1); the end of the handshake sets
	// estabDone and wakes sndReady (waitHandshake)
	rcvReady, sndReady chan struct{}
	done               chan struct{} // closed when the connection is CLOSED; made by doneCh

	// 4-byte words
	sndUna, sndNxt, sndMax           uint32
	sndWnd, maxSndWnd                uint32
	sndWl1, sndWl2                   uint32
	irs, rcvNxt, rcvAdv, lastAckSent uint32
	oooTick                          uint32
	finAt                            uint32 // the sequence number of a FIN that arrived out of order
	rcvCopied                        uint32 // bytes the application has read (mod 2^32)
	rcvqSeq                          uint32 // rcvCopied when the measurement began
	rcvRTTSeq                        uint32
	tsOffset                         uint32
	tsRecent                         uint32
	tsLast                           uint32 // the highest TSval sent (tsSend)
	rttSeq                           uint32
	recover                          uint32
	roundEnd                         uint32 // a round trip ends when it is acknowledged (HyStart++)
	cwndUsageSeq                     uint32 // cwndLimited and maxOut describe the window up to here
	riNIC                            pipeline.NICID

	// bytes
	state                state
	passive              bool // made by a listener
	sndWScale, rcvWScale uint8
	finQueued            bool // CloseWrite: a FIN follows the data
	finAcked             bool // the peer acknowledged our FIN
	noDelay              bool
	finRcvd              bool
	finPending           bool // a FIN arrived out of order (at finAt)
	rcvLocked, sndLocked bool // SetReadBuffer, SetWriteBuffer: fixed sizes
	tsOK, sackOK, wsOK   bool
	rttTiming            bool
	keepalive            bool
	ackNow               bool
	inTimeWait           bool // counted in the table's TIME-WAIT total
	closeNow             bool // TIME-WAIT had no room: CLOSED once the last ACK is out
	userClosed           bool // Close was called: the application is gone
	rdShut               bool // CloseRead
	lingerSet            bool
	established          bool // counted as established
	inRecovery           bool
	inLoss               bool // after an RTO, until SND.UNA passes recover (Linux's TCP_CA_Loss)
	tso                  bool // the route's link takes TSO super-packets (output.go)
	estabDone            bool
	doneClosed           bool
	ackedFar             bool // 2^31 bytes or more acknowledged (RFC 5961 §5.2's bound is MAX.SND.WND alone)
	cwndLimited          bool // cwnd held the sender back in the window up to cwndUsageSeq
}

func newConn(t *table, st *settings, local, remote netip.AddrPort) *conn {
	c := &conn{
		t: t, st: st, local: local, remote: remote, v6: remote.Addr().Is6(),
		noDelay: true,
		cc:      st.cc, rto: int64(initialRTO),
		rcvReady: make(chan struct{}, 1), sndReady: make(chan struct{}, 1),
		keepIdle: st.defaultKeepIdle, keepIntvl: st.defaultKeepIntvl, keepProbes: st.defaultKeepProbes,
		quickAcks: 16,
	}
	c.initBuffers()
	return c
}

// windowShift is the window scale for a receive buffer: the smallest shift
// that lets the 16-bit field carry it.
func windowShift(buf int) uint8 {
	var s uint8
	for buf>>s > 0xffff && s < wire.TCPMaxWindowScale {
		s++
	}
	return s
}

// headerOverhead is the IP and TCP header bytes without options.
func (c *conn) headerOverhead() int {
	if c.v6 {
		return wire.IPv6HeaderSize + wire.TCPMinimumSize
	}
	return wire.IPv4MinimumSize + wire.TCPMinimumSize
}

// defaultMSS is the MSS assumed without the option (RFC 9293 §3.7.1).
func (c *conn) defaultMSS() int {
	if c.v6 {
		return 1220
	}
	return 536
}

// isn is RFC 6528's initial sequence number: a keyed hash of the 4-tuple
// plus a clock ticking every 64 ns (as Linux's).
func (t *table) isn(local, remote netip.AddrPort, now time.Time) uint32 {
	return uint32(t.isnKey.tupleHash(local, remote)) + uint32(now.UnixNano()>>6)
}

// tsNow is this connection's TSval at now: a 1 ms clock plus its offset.
func (c *conn) tsNow(now int64) uint32 { return uint32(now/int64(time.Millisecond)) + c.tsOffset }

// tsSend is the TSval of a segment built now: tsNow, never below one sent
// before (RFC 7323 §5.4: TSval increases). A batch reads the clock when it
// begins and may take the connection's lock after a batch that read it
// later (a Write against an ACK's run): without this the later segment
// carried the older TSval, and the peer's PAWS dropped it.
func (c *conn) tsSend(now int64) uint32 {
	ts := c.tsNow(now)
	if c.tsLast != 0 && seqLT(ts, c.tsLast) && c.tsLast-ts < 1<<30 {
		ts = c.tsLast
	}
	c.tsLast = ts
	return ts
}

// setMSS fixes the sender's MSS from the peer's option and the route:
// the path MTU the network layer learnt towards the peer (ICMP, RFC 1191
// and 8201; PathMTUReporter), not only the link's, as Linux's
// tcp_sync_mss takes dst_mtu — else a new connection to a destination
// whose path MTU is known sends segments the network layer fragments.
// (The MSS we advertise stays the link's: ourMSS.)
func (c *conn) setMSS(b *pipeline.Batch) {
	mss := c.peerMSS
	if mss == 0 {
		mss = c.defaultMSS()
	}
	if c.route(b) {
		mtu := c.pathMTU()
		if r, ok := c.ne.(pipeline.PathMTUReporter); ok {
			mtu = min(mtu, r.PathMTU(b, c.remote.Addr().WithZone(""), c.riMTU))
		}
		mss = min(mss, mtu-c.headerOverhead())
	}
	if c.tsOK {
		mss -= 12
	}
	c.sndMSS = max(mss, 64)
	c.ccs.MSS = c.sndMSS
}

// ourMSS is the MSS option we send: the route's MTU less the headers.
func (c *conn) ourMSS(b *pipeline.Batch) int {
	if c.route(b) {
		return min(c.pathMTU()-c.headerOverhead(), 0xffff)
	}
	return c.defaultMSS()
}

// pathMTU is the route's MTU as a packet can use it: an IPv4 packet's
// total length is 16 bits, so over lo (MTU 65536) the MSS is Linux's
// 65495; an IPv6 payload length is 16 bits and excludes the header.
func (c *conn) pathMTU() int {
	if c.v6 {
		return min(c.riMTU, 0xffff+wire.IPv6HeaderSize)
	}
	return min(c.riMTU, 0xffff)
}

// routeInfo is the cached route as the network layer takes it.
func (c *conn) routeInfo() pipeline.RouteInfo {
	return pipeline.RouteInfo{NIC: c.riNIC, LocalAddr: c.local.Addr(), RemoteAddr: c.remote.Addr().WithZone(""), NextHop: c.riHop, MTU: c.riMTU}
}

// route resolves the connection's route in the batch's generation (cached
// until the generation changes).
func (c *conn) route(b *pipeline.Batch) bool {
	if c.rGen == b.Gen && c.ne != nil {
		return true
	}
	c.rGen, c.ne = b.Gen, nil
	nic, nextHop, err := routeFor(b.Gen, c.remote.Addr())
	if err != nil {
		return false
	}
	proto := pipeline.IPv4ProtocolNumber
	if c.v6 {
		proto = pipeline.IPv6ProtocolNumber
	}
	ne := b.Gen.NetworkEndpoint(nic.ID(), proto)
	if ne == nil {
		return false
	}
	c.ne = ne
	const offload = pipeline.CapGSO | pipeline.CapTXChecksumOffload
	c.tso = c.st.tso && nic.Capabilities()&offload == offload
	c.riNIC, c.riHop, c.riMTU = nic.ID(), nextHop, nic.MTU()
	return true
}

// wake signals a waiting reader or writer.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// finishHandshake ends the wait of Dial (or of a forwarder's Accept):
// waitHandshake.
func (c *conn) finishHandshake() {
	if !c.estabDone {
		c.estabDone = true
		wake(c.sndReady)
	}
}

// closedChan is done for a connection CLOSED before anyone waited.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// doneCh is the channel closed when the connection is CLOSED, made by the
// first waiter (an idle connection does not carry one).
func (c *conn) doneCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.doneClosed {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// waitHandshake waits until the handshake has ended (established, or the
// connection is gone), abort is closed or expires fires: it reports
// whether the handshake ended. (A channel closed at the end of the
// handshake would cost every connection one more allocation for as long
// as it lives.)
func (c *conn) waitHandshake(abort <-chan struct{}, expires <-chan time.Time) bool {
	for {
		c.mu.Lock()
		done := c.estabDone
		c.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-c.sndReady: // destroy wakes it too
		case <-abort:
			return false
		case <-expires:
			return false
		}
	}
}

// destroy moves the connection to CLOSED: it leaves the table and the
// wheel, its waiters wake up with err (nil: a clean close). What was
// received stays readable; what was queued to send is dropped.
func (c *conn) destroy(err error) {
	if c.state == stateClosed && c.doneClosed {
		return
	}
	prev := c.state
	c.state = stateClosed
	if err != nil && c.err == nil {
		c.err = err
	}
	c.t.remove(c)
	c.t.wheel.schedule(c, 0)
	c.filedAt = 0
	if c.inTimeWait {
		c.inTimeWait = false
		c.t.leaveTimeWait()
	}
	if c.listener != nil {
		if prev == stateSynRcvd {
			c.listener.synDone()
		}
		c.listener = nil
	}
	c.sndBuf.release()
	c.nooo = 0
	if c.userClosed {
		c.releaseRcv()
	}
	c.finishHandshake()
	if !c.doneClosed {
		c.doneClosed = true
		if c.done != nil {
			close(c.done)
		}
	}
	wake(c.rcvReady)
	wake(c.sndReady)
	for i := 0; i < c.nout; i++ {
		c.out[i].Release()
		c.out[i] = nil
	}
	c.nout = 0
}

// errors given to the application
var (
	errReset    = syscall.ECONNRESET
	errRefused  = syscall.ECONNREFUSED
	errTimedOut = syscall.ETIMEDOUT
)
