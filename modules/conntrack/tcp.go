package conntrack

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// TCPState is a tracked TCP connection's state (Linux's tcp_conntrack).
type TCPState uint8

// The states, in Linux's order (the transition table is indexed by them).
const (
	TCPNone TCPState = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2
	tcpMax    // sIV: invalid
	tcpIgnore // sIG: ignored
	// timeouts beyond the states
	tcpRetrans = tcpMax
	tcpUnack   = tcpMax + 1
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "?"
}

// The packet's flag class (the table's second index).
const (
	tcpSynSet = iota
	tcpSynAckSet
	tcpFinSet
	tcpAckSet
	tcpRstSet
	tcpNoneSet
)

const (
	sNO = TCPNone
	sSS = TCPSynSent
	sSR = TCPSynRecv
	sES = TCPEstablished
	sFW = TCPFinWait
	sCW = TCPCloseWait
	sLA = TCPLastAck
	sTW = TCPTimeWait
	sCL = TCPClose
	sS2 = TCPSynSent2
	sIV = tcpMax
	sIG = tcpIgnore
)

// tcpConntracks is Linux's transition table (nf_conntrack_proto_tcp.c):
// [direction][flag class][old state] → new state.
var tcpConntracks = [2][6][10]TCPState{
	{ // original
		/*          sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 */
		/*syn*/ {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		/*synack*/ {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		/*fin*/ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/*ack*/ {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		/*rst*/ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/*none*/ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{ // reply
		/*          sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 */
		/*syn*/ {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		/*synack*/ {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		/*fin*/ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/*ack*/ {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		/*rst*/ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/*none*/ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}

// Per-direction flags (IP_CT_TCP_FLAG_*).
const (
	tcpFlagWindowScale = 1 << iota
	tcpFlagSackPerm
	tcpFlagCloseInit
	tcpFlagBeLiberal
	tcpFlagDataUnacked
	tcpFlagMaxAckSet
)

// Connection flags (last_flags).
const (
	tcpExpChallengeAck = 1 << iota
	tcpSimultaneousOpen
)

// tcpSide is what the tracker knows of one direction's sender
// (ip_ct_tcp_state).
type tcpSide struct {
	end, maxend, maxwin, maxack uint32
	scale, flags                uint8
}

// tcpState is an entry's TCP part (ip_ct_tcp), guarded by the entry lock;
// state is also read atomically by early drop.
type tcpState struct {
	seen                                      [2]tcpSide
	state                                     uint32 // TCPState (atomic for early drop)
	lastDir, lastIndex, lastWscale, lastFlags uint8
	retrans                                   uint8
	lastWin                                   uint16
	lastSeq, lastAck, lastEnd                 uint32
}

func (s *tcpState) stateAtomic() TCPState { return TCPState(atomic.LoadUint32(&s.state)) }
func (s *tcpState) setState(v TCPState)   { atomic.StoreUint32(&s.state, uint32(v)) }

// tcpCanEarlyDrop: closing flows may be dropped even when assured.
func tcpCanEarlyDrop(s TCPState) bool {
	switch s {
	case TCPFinWait, TCPLastAck, TCPTimeWait, TCPClose, TCPCloseWait:
		return true
	}
	return false
}

// TCPConfig is the TCP tracker's configuration (Linux's sysctls).
type TCPConfig struct {
	// Loose picks up connections whose start was not seen
	// (nf_conntrack_tcp_loose, default on).
	Loose bool
	// BeLiberal accepts out-of-window packets instead of marking them
	// INVALID (nf_conntrack_tcp_be_liberal, default off).
	BeLiberal bool
	// MaxRetrans is how many identical retransmissions lower the timeout
	// to Timeouts[retrans] (nf_conntrack_tcp_max_retrans, 3).
	MaxRetrans uint8
	// Timeouts by state, then retrans and unacknowledged.
	Timeouts [tcpMax + 2]time.Duration
}

// DefaultTCP is Linux's defaults.
func DefaultTCP() TCPConfig {
	c := TCPConfig{Loose: true, MaxRetrans: 3}
	c.Timeouts = [tcpMax + 2]time.Duration{
		TCPNone:        0,
		TCPSynSent:     2 * time.Minute,
		TCPSynRecv:     60 * time.Second,
		TCPEstablished: 5 * 24 * time.Hour,
		TCPFinWait:     2 * time.Minute,
		TCPCloseWait:   60 * time.Second,
		TCPLastAck:     30 * time.Second,
		TCPTimeWait:    2 * time.Minute,
		TCPClose:       10 * time.Second,
		TCPSynSent2:    2 * time.Minute,
		tcpRetrans:     5 * time.Minute,
		tcpUnack:       5 * time.Minute,
	}
	return c
}

// tcpSeg is the parsed segment.
type tcpSeg struct {
	th      wire.TCP
	seq     uint32
	ack     uint32
	win     uint16
	flags   uint8
	dataLen uint32 // payload bytes
	index   int
}

// valid flag combinations (tcp_valid_flags); PSH, ECE, CWR always valid.
var tcpValidFlags = func() [64]bool {
	var v [64]bool
	const fin, syn, rst, ack, urg = wire.TCPFlagFin, wire.TCPFlagSyn, wire.TCPFlagRst, wire.TCPFlagAck, wire.TCPFlagUrg
	for _, f := range []uint8{syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg} {
		v[f] = true
	}
	return v
}()

// parseTCP checks the header (tcp_error) and classifies the segment.
// False: malformed or an invalid flag combination (INVALID).
func parseTCP(b []byte, seg *tcpSeg) bool {
	if len(b) < wire.TCPMinimumSize {
		return false
	}
	doff := int(b[12]>>4) * 4
	if doff < wire.TCPMinimumSize || len(b) < doff {
		return false
	}
	seg.th = wire.TCP(b)
	seg.flags = b[13]
	f := seg.flags &^ (wire.TCPFlagEce | wire.TCPFlagCwr | wire.TCPFlagPsh)
	if !tcpValidFlags[f&0x3f] || f&0xc0 != 0 {
		return false
	}
	seg.seq = binary.BigEndian.Uint32(b[4:])
	seg.ack = binary.BigEndian.Uint32(b[8:])
	seg.win = binary.BigEndian.Uint16(b[14:])
	seg.dataLen = uint32(len(b) - doff)
	switch {
	case f&wire.TCPFlagRst != 0:
		seg.index = tcpRstSet
	case f&wire.TCPFlagSyn != 0 && f&wire.TCPFlagAck != 0:
		seg.index = tcpSynAckSet
	case f&wire.TCPFlagSyn != 0:
		seg.index = tcpSynSet
	case f&wire.TCPFlagFin != 0:
		seg.index = tcpFinSet
	case f&wire.TCPFlagAck != 0:
		seg.index = tcpAckSet
	default:
		seg.index = tcpNoneSet
	}
	return true
}

func (s *tcpSeg) has(f uint8) bool { return s.flags&f != 0 }

// end is seq + length (+1 for SYN and FIN): segment_seq_plus_len.
func (s *tcpSeg) end() uint32 {
	e := s.seq + s.dataLen
	if s.has(wire.TCPFlagSyn) {
		e++
	}
	if s.has(wire.TCPFlagFin) {
		e++
	}
	return e
}

// options reads window scale and SACK-permitted into side (tcp_options).
func (s *tcpSeg) options(side *tcpSide) {
	opts := s.th[wire.TCPMinimumSize : int(s.th[12]>>4)*4]
	if len(opts) == 0 {
		return
	}
	side.scale = 0
	side.flags &= tcpFlagBeLiberal
	for len(opts) > 0 {
		switch opts[0] {
		case 0:
			return
		case 1:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return
		}
		n := int(opts[1])
		if n < 2 || n > len(opts) {
			return
		}
		switch {
		case opts[0] == 4 && n == 2:
			side.flags |= tcpFlagSackPerm
		case opts[0] == 3 && n == 3:
			side.scale = min(opts[2], 14)
			side.flags |= tcpFlagWindowScale
		}
		opts = opts[n:]
	}
}

// sack returns the highest right edge of the SACK blocks, or ack.
func (s *tcpSeg) sack(ack uint32) uint32 {
	opts := s.th[wire.TCPMinimumSize : int(s.th[12]>>4)*4]
	for len(opts) > 0 {
		switch opts[0] {
		case 0:
			return ack
		case 1:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return ack
		}
		n := int(opts[1])
		if n < 2 || n > len(opts) {
			return ack
		}
		if opts[0] == 5 && n >= 10 && (n-2)%8 == 0 {
			for i := 2; i+8 <= n; i += 8 {
				if r := binary.BigEndian.Uint32(opts[i+4:]); after(r, ack) {
					ack = r
				}
			}
			return ack
		}
		opts = opts[n:]
	}
	return ack
}

func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(b-a) < 0 }

// tcpNew initialises a new entry from its first segment (tcp_new): false
// when the segment cannot start a flow (INVALID).
func tcpNew(s *tcpState, seg *tcpSeg, cfg *TCPConfig) bool {
	ns := tcpConntracks[0][seg.index][TCPNone]
	if ns >= tcpMax {
		return false
	}
	*s = tcpState{}
	o := &s.seen[0]
	o.end = seg.end()
	o.maxwin = max(uint32(seg.win), 1)
	if ns == TCPSynSent {
		o.maxend = o.end
		seg.options(o)
	} else {
		if !cfg.Loose {
			return false
		}
		// Picked up mid-stream: history lost; assume SACK and be liberal.
		o.maxend = o.end + o.maxwin
		s.seen[0].flags = tcpFlagSackPerm | tcpFlagBeLiberal
		s.seen[1].flags = tcpFlagSackPerm | tcpFlagBeLiberal
	}
	s.lastIndex = tcpNoneSet
	return true
}

func initSender(sender, receiver *tcpSide, seg *tcpSeg, end uint32, win uint32, dir int) {
	sender.end, sender.maxend = end, end
	sender.maxwin = max(win, 1)
	seg.options(sender)
	if dir == 1 && !(sender.flags&tcpFlagWindowScale != 0 && receiver.flags&tcpFlagWindowScale != 0) {
		sender.scale, receiver.scale = 0, 0
	}
}

type tcpAction int

const (
	tcpActIgnore tcpAction = iota
	tcpActInvalid
	tcpActAccept
)

const maxAckWinConst = 66000

// inWindow is tcp_in_window: the window checks and their updates.
func (s *tcpState) inWindow(dir int, seg *tcpSeg, cfg *TCPConfig) tcpAction {
	sender, receiver := &s.seen[dir], &s.seen[dir^1]
	seq, ack := seg.seq, seg.ack
	sack := ack
	win := uint32(seg.win)
	end := seg.end()
	if receiver.flags&tcpFlagSackPerm != 0 {
		sack = seg.sack(ack)
	}
	if sender.maxwin == 0 {
		if seg.has(wire.TCPFlagSyn) {
			initSender(sender, receiver, seg, end, win, dir)
			if !seg.has(wire.TCPFlagAck) {
				return tcpActAccept // simultaneous open
			}
		} else {
			sender.end = end
			swin := win << sender.scale
			sender.maxwin = max(swin, 1)
			sender.maxend = end + sender.maxwin
			if receiver.maxwin == 0 {
				receiver.end, receiver.maxend = sack, sack
			} else if sack == receiver.end+1 {
				receiver.end++
			}
		}
	} else if seg.has(wire.TCPFlagSyn) && after(end, sender.end) &&
		(TCPState(s.state) == TCPSynSent || TCPState(s.state) == TCPSynRecv) {
		initSender(sender, receiver, seg, end, win, dir)
		if dir == 1 && !seg.has(wire.TCPFlagAck) {
			return tcpActAccept
		}
	}
	if !seg.has(wire.TCPFlagAck) {
		ack, sack = receiver.end, receiver.end
	} else if seg.flags&(wire.TCPFlagAck|wire.TCPFlagRst) == wire.TCPFlagAck|wire.TCPFlagRst && ack == 0 {
		ack, sack = receiver.end, receiver.end
	}
	if seg.has(wire.TCPFlagRst) && seq == 0 && TCPState(s.state) == TCPSynSent {
		seq, end = sender.end, sender.end
	}
	liberal := cfg.BeLiberal || sender.flags&tcpFlagBeLiberal != 0
	verdict := func(a tcpAction) tcpAction {
		if liberal {
			return tcpActAccept
		}
		return a
	}
	maxAckWin := uint32(maxAckWinConst)
	if sender.maxwin > maxAckWin {
		maxAckWin = sender.maxwin
	}
	if !before(seq, sender.maxend+1) {
		overshot := end - sender.maxend + 1
		ackOK := after(sack, receiver.end-maxAckWin-1)
		inRecv := receiver.maxwin != 0 && after(end, sender.end-receiver.maxwin-1)
		if inRecv && ackOK && overshot <= receiver.maxwin && before(sack, receiver.end+1) {
			sender.end = end
			sender.flags |= tcpFlagDataUnacked
			return verdict(tcpActIgnore)
		}
		return verdict(tcpActInvalid)
	}
	if !before(sack, receiver.end+1) {
		return verdict(tcpActInvalid)
	}
	if receiver.maxwin != 0 && !after(end, sender.end-receiver.maxwin-1) {
		return verdict(tcpActIgnore)
	}
	if !after(sack, receiver.end-maxAckWin-1) {
		return verdict(tcpActIgnore)
	}
	if !seg.has(wire.TCPFlagSyn) {
		win <<= sender.scale
	}
	if swin := win + (sack - ack); sender.maxwin < swin {
		sender.maxwin = swin
	}
	if after(end, sender.end) {
		sender.end = end
		sender.flags |= tcpFlagDataUnacked
	}
	if seg.has(wire.TCPFlagAck) {
		if sender.flags&tcpFlagMaxAckSet == 0 {
			sender.maxack = ack
			sender.flags |= tcpFlagMaxAckSet
		} else if after(ack, sender.maxack) {
			sender.maxack = ack
		}
	}
	if receiver.maxwin != 0 && after(end, sender.maxend) {
		receiver.maxwin += end - sender.maxend
	}
	if after(sack+win, receiver.maxend-1) {
		receiver.maxend = sack + win
		if win == 0 {
			receiver.maxend++
		}
	}
	if ack == receiver.end {
		receiver.flags &^= tcpFlagDataUnacked
	}
	if seg.index == tcpAckSet {
		if int(s.lastDir) == dir && s.lastSeq == seq && s.lastAck == ack && s.lastEnd == end && s.lastWin == seg.win {
			if s.retrans < 255 {
				s.retrans++
			}
		} else {
			s.lastDir, s.lastSeq, s.lastAck, s.lastEnd, s.lastWin, s.retrans = uint8(dir), seq, ack, end, seg.win, 0
		}
	}
	return tcpActAccept
}

// tcpResult is what tcpPacket decided.
type tcpResult int

const (
	tcpOK      tcpResult = iota // tracked; timeout set
	tcpInvalid                  // INVALID: the entry is unchanged
	tcpIgnored                  // accepted without a state change
	tcpKill                     // the entry must go: the packet is not part of it
	tcpReopen                   // kill and look up again (a new connection on the old tuple)
)

// tcpPacket is nf_conntrack_tcp_packet for an entry locked by the caller:
// the state transition, the window checks, the timeout to set and
// whether the entry became assured. seenReply is the entry's status bit
// before this packet.
func tcpPacket(s *tcpState, dir int, seg *tcpSeg, cfg *TCPConfig, seenReply, assured bool) (res tcpResult, timeout time.Duration, assure bool) {
	old := TCPState(s.state)
	idx := seg.index
	ns := tcpConntracks[dir][idx][old]
	switch ns {
	case TCPSynSent:
		if old < TCPTimeWait {
			break
		}
		if (s.seen[dir].flags|s.seen[dir^1].flags)&tcpFlagCloseInit != 0 ||
			(int(s.lastDir) == dir && s.lastIndex == tcpRstSet) {
			return tcpReopen, 0, false
		}
		fallthrough
	case tcpIgnore:
		if idx == tcpSynAckSet && s.lastIndex == tcpSynSet && int(s.lastDir) != dir && seg.ack == s.lastEnd {
			// The SYN/ACK answers a SYN we ignored: get in sync from it.
			old, ns = TCPSynSent, TCPSynRecv
			ld := s.lastDir & 1
			s.seen[ld].end, s.seen[ld].maxend = s.lastEnd, s.lastEnd
			s.seen[ld].maxwin = max(uint32(s.lastWin), 1)
			s.seen[ld].scale = s.lastWscale
			s.lastFlags &^= tcpExpChallengeAck
			s.seen[ld].flags = s.lastFlags
			s.seen[dir] = tcpSide{flags: s.seen[dir].flags & tcpFlagBeLiberal}
			break
		}
		s.lastIndex, s.lastDir = uint8(idx), uint8(dir)
		s.lastSeq, s.lastEnd, s.lastWin = seg.seq, seg.end(), seg.win
		if idx == tcpSynSet && dir == 0 {
			var seen tcpSide
			s.lastFlags, s.lastWscale = 0, 0
			seg.options(&seen)
			if seen.flags&tcpFlagWindowScale != 0 {
				s.lastFlags |= tcpFlagWindowScale
				s.lastWscale = seen.scale
			}
			if seen.flags&tcpFlagSackPerm != 0 {
				s.lastFlags |= tcpFlagSackPerm
			}
			if old == TCPLastAck {
				s.lastFlags |= tcpExpChallengeAck
			}
		}
		if old == TCPSynSent && idx == tcpAckSet && dir == 1 {
			s.lastAck = seg.ack
		}
		return tcpIgnored, 0, false
	case tcpMax:
		return tcpInvalid, 0, false
	case TCPTimeWait:
		if old == TCPLastAck && idx == tcpAckSet && int(s.lastDir) != dir && s.lastIndex == tcpSynSet && s.lastFlags&tcpExpChallengeAck != 0 {
			s.lastFlags &^= tcpExpChallengeAck
			return tcpIgnored, 0, false // a challenge ACK: no state change
		}
	case TCPSynSent2:
		s.lastFlags |= tcpSimultaneousOpen
	case TCPSynRecv:
		if dir == 1 && idx == tcpAckSet && s.lastFlags&tcpSimultaneousOpen != 0 {
			ns = TCPEstablished
		}
	case TCPClose:
		if idx != tcpRstSet {
			break
		}
		if tcpCanEarlyDrop(old) {
			goto inWindow
		}
		if s.seen[dir^1].flags&tcpFlagMaxAckSet != 0 && s.lastIndex != tcpSynSet {
			seq := seg.seq
			if seq == 0 && !(old == TCPEstablished && assured) {
				break
			}
			if before(seq, s.seen[dir^1].maxack) {
				return tcpInvalid, 0, false // an RST below what was acked
			}
			if !(old == TCPEstablished && assured) || seq == s.seen[dir^1].maxack {
				break
			}
			if s.lastIndex == tcpAckSet && int(s.lastDir) == dir && seq == s.lastEnd {
				break
			}
			ns = old // not an exact match: keep the state for a challenge ACK
		}
		if ((seenReply && s.lastIndex == tcpSynSet) || (!assured && s.lastIndex == tcpAckSet)) && seg.ack == s.lastEnd {
			goto inWindow
		}
		if old == TCPSynSent && s.lastIndex == tcpAckSet && s.lastDir == 1 && seg.seq == s.lastAck {
			goto inWindow
		}
	}
	switch s.inWindow(dir, seg, cfg) {
	case tcpActIgnore:
		return tcpIgnored, 0, false
	case tcpActInvalid:
		return tcpInvalid, 0, false
	}
inWindow:
	s.lastIndex, s.lastDir = uint8(idx), uint8(dir)
	s.setState(ns)
	if old != ns && ns == TCPFinWait {
		s.seen[dir].flags |= tcpFlagCloseInit
	}
	to := cfg.Timeouts
	switch {
	case s.retrans >= cfg.MaxRetrans && to[ns] > to[tcpRetrans]:
		timeout = to[tcpRetrans]
	case idx == tcpRstSet:
		timeout = to[TCPClose]
	case (s.seen[0].flags|s.seen[1].flags)&tcpFlagDataUnacked != 0 && to[ns] > to[tcpUnack]:
		timeout = to[tcpUnack]
	case s.lastWin == 0 && to[ns] > to[tcpRetrans]:
		timeout = to[tcpRetrans]
	default:
		timeout = to[ns]
	}
	if !seenReply {
		if seg.has(wire.TCPFlagRst) {
			return tcpKill, 0, false
		}
		if idx == tcpSynSet && old == TCPSynSent {
			return tcpOK, -1, false // a retransmitted SYN does not extend the entry
		}
		if ns == TCPEstablished && timeout > to[tcpUnack] {
			timeout = to[tcpUnack]
		}
	} else if !assured && (old == TCPSynRecv || old == TCPEstablished) && ns == TCPEstablished {
		assure = true
	}
	return tcpOK, timeout, assure
}
