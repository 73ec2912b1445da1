package wire

import "encoding/binary"

// TCP option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018).
const (
	TCPOptionEOL           = 0
	TCPOptionNOP           = 1
	TCPOptionMSS           = 2
	TCPOptionWindowScale   = 3
	TCPOptionSACKPermitted = 4
	TCPOptionSACK          = 5
	TCPOptionTimestamps    = 8
)

// Option lengths.
const (
	TCPOptionMSSLength           = 4
	TCPOptionWindowScaleLength   = 3
	TCPOptionSACKPermittedLength = 2
	TCPOptionTimestampsLength    = 10
	// TCPMaxSACKBlocks is how many SACK blocks fit in 40 option bytes
	// (2 + 4*8 = 34).
	TCPMaxSACKBlocks = 4
	// TCPMaxWindowScale is the largest shift RFC 7323 §2.3 allows; a
	// larger one received is used as 14.
	TCPMaxWindowScale = 14
)

// TCPSACKBlock is one SACK block: the bytes [Left, Right) are held.
type TCPSACKBlock struct{ Left, Right uint32 }

// TCPOptions are the options of one segment, parsed. Has* say which were
// present with a valid length; an option whose length is wrong for its kind
// is ignored, as Linux's tcp_parse_options does.
type TCPOptions struct {
	HasMSS, HasWindowScale, SACKPermitted, HasTimestamps bool
	MSS                                                  uint16
	WindowScale                                          uint8 // as sent (not capped)
	TSVal, TSEcr                                         uint32
	NumSACK                                              int
	SACK                                                 [TCPMaxSACKBlocks]TCPSACKBlock
}

// ParseTCPOptions parses option bytes (TCP.Options(), at most 40 bytes, but
// any length is accepted). It never fails and never reads past opts: the
// walk stops at EOL, at a length below 2 or past the end (Linux's "silly
// options" and truncated ones); what was parsed before stays. ok is false
// when the walk stopped on a malformed option (for counters).
func ParseTCPOptions(opts []byte) (o TCPOptions, ok bool) {
	for i := 0; i < len(opts); {
		kind := opts[i]
		switch kind {
		case TCPOptionEOL:
			return o, true
		case TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return o, false
		}
		n := int(opts[i+1])
		if n < 2 || i+n > len(opts) {
			return o, false
		}
		v := opts[i+2 : i+n]
		switch kind {
		case TCPOptionMSS:
			if n == TCPOptionMSSLength {
				o.HasMSS, o.MSS = true, binary.BigEndian.Uint16(v)
			}
		case TCPOptionWindowScale:
			if n == TCPOptionWindowScaleLength {
				o.HasWindowScale, o.WindowScale = true, v[0]
			}
		case TCPOptionSACKPermitted:
			if n == TCPOptionSACKPermittedLength {
				o.SACKPermitted = true
			}
		case TCPOptionTimestamps:
			if n == TCPOptionTimestampsLength {
				o.HasTimestamps = true
				o.TSVal, o.TSEcr = binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
			}
		case TCPOptionSACK:
			if n >= 10 && (n-2)%8 == 0 {
				o.NumSACK = 0
				for j := 0; j+8 <= len(v) && o.NumSACK < TCPMaxSACKBlocks; j += 8 {
					o.SACK[o.NumSACK] = TCPSACKBlock{binary.BigEndian.Uint32(v[j:]), binary.BigEndian.Uint32(v[j+4:])}
					o.NumSACK++
				}
			}
		}
		i += n
	}
	return o, true
}

// TCPOptionsBuilder writes options into a buffer of at most 40 bytes,
// 4-byte aligned with NOPs the way Linux lays them out (NOP,NOP,TS; NOP,WS;
// NOP,NOP,SACK). Each Add reports false, writing nothing, when the option
// does not fit.
type TCPOptionsBuilder struct {
	buf [40]byte
	n   int
}

// Bytes returns the options written so far, padded to a multiple of 4 with
// EOL (zero) bytes. The slice aliases the builder.
func (w *TCPOptionsBuilder) Bytes() []byte {
	n := (w.n + 3) &^ 3
	clear(w.buf[w.n:n])
	return w.buf[:n]
}

// Len is the padded length of the options written so far.
func (w *TCPOptionsBuilder) Len() int { return (w.n + 3) &^ 3 }

func (w *TCPOptionsBuilder) room(n int) bool { return w.n+n <= len(w.buf) }

// AddMSS writes an MSS option (4 bytes).
func (w *TCPOptionsBuilder) AddMSS(mss uint16) bool {
	if !w.room(4) {
		return false
	}
	b := w.buf[w.n:]
	b[0], b[1] = TCPOptionMSS, TCPOptionMSSLength
	binary.BigEndian.PutUint16(b[2:], mss)
	w.n += 4
	return true
}

// AddSACKPermitted writes NOP,NOP,SACK-permitted (4 bytes): a SYN without
// timestamps.
func (w *TCPOptionsBuilder) AddSACKPermitted() bool {
	if !w.room(4) {
		return false
	}
	b := w.buf[w.n:]
	b[0], b[1], b[2], b[3] = TCPOptionNOP, TCPOptionNOP, TCPOptionSACKPermitted, TCPOptionSACKPermittedLength
	w.n += 4
	return true
}

// AddSACKPermittedTimestamps writes SACK-permitted followed by timestamps
// (12 bytes), Linux's layout on a SYN.
func (w *TCPOptionsBuilder) AddSACKPermittedTimestamps(val, ecr uint32) bool {
	if !w.room(12) {
		return false
	}
	b := w.buf[w.n:]
	b[0], b[1] = TCPOptionSACKPermitted, TCPOptionSACKPermittedLength
	b[2], b[3] = TCPOptionTimestamps, TCPOptionTimestampsLength
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	w.n += 12
	return true
}

// AddTimestamps writes NOP,NOP,timestamps (12 bytes).
func (w *TCPOptionsBuilder) AddTimestamps(val, ecr uint32) bool {
	if !w.room(12) {
		return false
	}
	b := w.buf[w.n:]
	b[0], b[1], b[2], b[3] = TCPOptionNOP, TCPOptionNOP, TCPOptionTimestamps, TCPOptionTimestampsLength
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	w.n += 12
	return true
}

// AddWindowScale writes NOP,window scale (4 bytes).
func (w *TCPOptionsBuilder) AddWindowScale(shift uint8) bool {
	if !w.room(4) {
		return false
	}
	b := w.buf[w.n:]
	b[0], b[1], b[2], b[3] = TCPOptionNOP, TCPOptionWindowScale, TCPOptionWindowScaleLength, shift
	w.n += 4
	return true
}

// AddSACK writes NOP,NOP,SACK with as many of blocks as fit (at most 4,
// 3 after timestamps) and returns how many it wrote.
func (w *TCPOptionsBuilder) AddSACK(blocks []TCPSACKBlock) int {
	k := min(len(blocks), (len(w.buf)-w.n-4)/8)
	if k <= 0 {
		return 0
	}
	b := w.buf[w.n:]
	b[0], b[1], b[2], b[3] = TCPOptionNOP, TCPOptionNOP, TCPOptionSACK, byte(2+8*k)
	for i := 0; i < k; i++ {
		binary.BigEndian.PutUint32(b[4+8*i:], blocks[i].Left)
		binary.BigEndian.PutUint32(b[8+8*i:], blocks[i].Right)
	}
	w.n += 4 + 8*k
	return k
}
