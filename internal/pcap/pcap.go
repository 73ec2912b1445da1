// Package pcap reads and writes classic pcap files (not pcapng): both byte
// orders, microsecond and nanosecond timestamps, any link type (the
// constants name the ones pipestack's links produce). pipectl replay reads
// its input with it and writes what left the links; link.sniffer writes
// the same format from its own zero-allocation encoder.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Link types (tcpdump.org's LINKTYPE_ values).
const (
	LinkTypeEthernet = 1
	LinkTypeRaw      = 101 // bare IPv4 or IPv6, by the version nibble
	LinkTypeIPv4     = 228
	LinkTypeIPv6     = 229
)

const (
	magicMicro   = 0xa1b2c3d4
	magicNano    = 0xa1b23c4d
	fileHdrLen   = 24
	recordHdrLen = 16
	// MaxSnaplen bounds a record's captured length (as libpcap's
	// MAXIMUM_SNAPLEN); a longer one is a corrupt file.
	MaxSnaplen = 262144
)

// Record is one captured packet.
type Record struct {
	Time time.Time
	// Data is the captured bytes (Len or fewer); OrigLen is the length on
	// the wire.
	Data    []byte
	OrigLen int
}

// Reader reads records from a pcap stream.
type Reader struct {
	r        *bufio.Reader
	order    binary.ByteOrder
	nano     bool
	LinkType uint32
	Snaplen  uint32
}

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("pcap: malformed")

// NewReader reads the file header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	var h [fileHdrLen]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("%w: file header: %v", ErrFormat, err)
	}
	rd := &Reader{r: br}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == magicMicro:
		rd.order = binary.LittleEndian
	case binary.BigEndian.Uint32(h[:]) == magicMicro:
		rd.order = binary.BigEndian
	case binary.LittleEndian.Uint32(h[:]) == magicNano:
		rd.order, rd.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == magicNano:
		rd.order, rd.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%w: not a classic pcap file (magic %#08x; pcapng is not read)", ErrFormat, binary.BigEndian.Uint32(h[:]))
	}
	if major := rd.order.Uint16(h[4:]); major != 2 {
		return nil, fmt.Errorf("%w: version %d", ErrFormat, major)
	}
	rd.Snaplen = rd.order.Uint32(h[16:])
	rd.LinkType = rd.order.Uint32(h[20:]) & 0x0fffffff // the top bits are FCS flags
	return rd, nil
}

// Next returns the next record, io.EOF at the end of the file. The
// record's Data is its own.
func (rd *Reader) Next() (Record, error) {
	var h [recordHdrLen]byte
	if _, err := io.ReadFull(rd.r, h[:]); err != nil {
		if err == io.EOF {
			return Record{}, io.EOF
		}
		return Record{}, fmt.Errorf("%w: record header: %v", ErrFormat, err)
	}
	sec, frac := rd.order.Uint32(h[0:]), rd.order.Uint32(h[4:])
	capLen, orig := rd.order.Uint32(h[8:]), rd.order.Uint32(h[12:])
	if capLen > MaxSnaplen {
		return Record{}, fmt.Errorf("%w: record of %d bytes", ErrFormat, capLen)
	}
	ns := int64(frac)
	if !rd.nano {
		if frac >= 1e6 {
			return Record{}, fmt.Errorf("%w: %d microseconds", ErrFormat, frac)
		}
		ns *= 1000
	} else if frac >= 1e9 {
		return Record{}, fmt.Errorf("%w: %d nanoseconds", ErrFormat, frac)
	}
	data := make([]byte, capLen)
	if _, err := io.ReadFull(rd.r, data); err != nil {
		return Record{}, fmt.Errorf("%w: record body: %v", ErrFormat, err)
	}
	return Record{Time: time.Unix(int64(sec), ns).UTC(), Data: data, OrigLen: int(orig)}, nil
}

// Writer writes a little-endian pcap stream with microsecond timestamps.
type Writer struct {
	w       io.Writer
	snaplen int
}

// NewWriter writes the file header.
func NewWriter(w io.Writer, linkType uint32, snaplen int) (*Writer, error) {
	if snaplen <= 0 || snaplen > MaxSnaplen {
		snaplen = MaxSnaplen
	}
	var h [fileHdrLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], magicMicro)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], uint32(snaplen))
	le.PutUint32(h[20:], linkType)
	if _, err := w.Write(h[:]); err != nil {
		return nil, err
	}
	return &Writer{w: w, snaplen: snaplen}, nil
}

// Write writes one record of data at t (cut to the snaplen).
func (wr *Writer) Write(t time.Time, data []byte) error {
	n := min(len(data), wr.snaplen)
	var h [recordHdrLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], uint32(t.Unix()))
	le.PutUint32(h[4:], uint32(t.Nanosecond()/1000))
	le.PutUint32(h[8:], uint32(n))
	le.PutUint32(h[12:], uint32(len(data)))
	if _, err := wr.w.Write(h[:]); err != nil {
		return err
	}
	_, err := wr.w.Write(data[:n])
	return err
}
