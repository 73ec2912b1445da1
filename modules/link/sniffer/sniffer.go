package sniffer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// pcap link types.
const (
	LinkTypeEthernet = 1
	LinkTypeRaw      = 101 // bare IPv4/IPv6
)

const (
	pcapMagic     = 0xa1b2c3d4 // microsecond timestamps
	globalHdrLen  = 24
	recordHdrLen  = 16
	maxChunkBytes = 4 << 20 // a batch beyond this is captured in part
)

// Options configure an Endpoint made without a pipeline file.
type Options struct {
	Snaplen int // default 262144
	Queue   int // batches buffered for the writer; default 256
	FlushMS int // default 1000
	Clock   pipeline.Clock
	Logger  zerolog.Logger
	Name    string
}

// Endpoint wraps a link endpoint and captures what crosses it. Everything
// but the capture is the wrapped endpoint's.
type Endpoint struct {
	inner    pipeline.LinkEndpoint
	eth      bool
	snaplen  int
	clock    pipeline.Clock
	log      zerolog.Logger
	linkType uint32

	mu      sync.RWMutex // held for reading while a chunk is queued
	closed  bool
	chunks  chan *chunk
	free    chan *chunk
	w       *bufio.Writer
	file    io.WriteCloser
	done    chan struct{}
	once    sync.Once
	errOnce sync.Once

	// Captured is the number of packets written to the file (both
	// directions); Dropped those not captured because the writer was
	// behind; Truncated those cut to snaplen; WriteErrors failed writes.
	Captured, Dropped, Truncated, WriteErrors atomic.Uint64
}

// chunk is one batch encoded as pcap records.
type chunk struct {
	b []byte
	n int // records
}

// New wraps inner and writes a pcap stream to w (closed by Close). The
// global header is written at once.
func New(inner pipeline.LinkEndpoint, w io.WriteCloser, o Options) (*Endpoint, error) {
	if o.Snaplen == 0 {
		o.Snaplen = DefaultSnaplen
	}
	if o.Queue == 0 {
		o.Queue = DefaultQueue
	}
	if o.FlushMS == 0 {
		o.FlushMS = DefaultFlushMS
	}
	if o.Clock == nil {
		o.Clock = pipeline.SystemClock{}
	}
	e := &Endpoint{
		inner:   inner,
		eth:     inner.Capabilities()&pipeline.CapResolutionRequired != 0,
		snaplen: o.Snaplen,
		clock:   o.Clock,
		log:     o.Logger,
		chunks:  make(chan *chunk, o.Queue),
		free:    make(chan *chunk, o.Queue),
		w:       bufio.NewWriterSize(w, 256<<10),
		file:    w,
		done:    make(chan struct{}),
	}
	e.linkType = LinkTypeRaw
	if e.eth {
		e.linkType = LinkTypeEthernet
	}
	for i := 0; i < o.Queue; i++ {
		e.free <- &chunk{b: make([]byte, 0, 4096)}
	}
	var h [globalHdrLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], pcapMagic)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], uint32(o.Snaplen))
	le.PutUint32(h[20:], e.linkType)
	if _, err := e.w.Write(h[:]); err != nil {
		return nil, err
	}
	if err := e.w.Flush(); err != nil {
		return nil, err
	}
	go e.writer(time.Duration(o.FlushMS) * time.Millisecond)
	return e, nil
}

// Inner returns the wrapped endpoint.
func (e *Endpoint) Inner() pipeline.LinkEndpoint { return e.inner }

// LinkType is the capture's pcap link type.
func (e *Endpoint) LinkType() uint32 { return e.linkType }

// MTU implements pipeline.LinkEndpoint (the wrapped link's).
func (e *Endpoint) MTU() int { return e.inner.MTU() }

// MaxHeaderLength implements pipeline.LinkEndpoint.
func (e *Endpoint) MaxHeaderLength() int { return e.inner.MaxHeaderLength() }

// LinkAddress implements pipeline.LinkEndpoint.
func (e *Endpoint) LinkAddress() wire.MAC { return e.inner.LinkAddress() }

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities { return e.inner.Capabilities() }

// tap sits between the wrapped link and the stack's dispatcher.
type tap struct {
	e *Endpoint
	d pipeline.NetworkDispatcher
}

// DeliverNetworkPackets captures the batch, then hands it on.
func (t *tap) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	t.e.capture(pkts, true)
	t.d.DeliverNetworkPackets(pkts)
}

// LinkDown passes the wrapped link's report on to the stack
// (pipeline.LinkStateDispatcher).
func (t *tap) LinkDown(err error) {
	if ld, ok := t.d.(pipeline.LinkStateDispatcher); ok {
		ld.LinkDown(err)
	}
}

// SetMTU implements pipeline.LinkMTUSetter when the wrapped link does.
func (e *Endpoint) SetMTU(mtu int) error {
	if ms, ok := e.inner.(pipeline.LinkMTUSetter); ok {
		return ms.SetMTU(mtu)
	}
	return fmt.Errorf("link %T cannot change its mtu", e.inner)
}

// Attach implements pipeline.LinkEndpoint.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	if d == nil {
		e.inner.Attach(nil)
		return
	}
	e.inner.Attach(&tap{e: e, d: d})
}

// WritePackets implements pipeline.LinkEndpoint: the batch is captured as
// it will leave (the link header the wrapped link pushes is built here the
// same way), then written by the wrapped link.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	e.capture(pkts, false)
	return e.inner.WritePackets(pkts)
}

// capture encodes the batch into one chunk and queues it for the writer.
func (e *Endpoint) capture(pkts []*pipeline.Packet, rx bool) {
	count := 0
	for _, p := range pkts {
		if p != nil {
			count++
		}
	}
	if count == 0 {
		return
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return
	}
	var c *chunk
	select {
	case c = <-e.free:
	default:
		e.Dropped.Add(uint64(count))
		return
	}
	now := e.clock.Now()
	sec, usec := uint32(now.Unix()), uint32(now.Nanosecond()/1000)
	b := c.b[:0]
	n := 0
	var trunc uint64
	for _, p := range pkts {
		if p == nil {
			continue
		}
		var link, body []byte
		var hdr [wire.EthernetHeaderSize]byte
		if rx {
			body = p.NetworkHeader()
			if body == nil {
				body = p.Data()
			}
			if e.eth {
				link = p.LinkHeader()
			}
		} else {
			body = p.Data()
			if e.eth {
				eth := wire.Ethernet(hdr[:])
				eth.SetDst(p.RemoteLinkAddr)
				eth.SetSrc(e.inner.LinkAddress())
				eth.SetType(uint16(p.NetProto))
				link = hdr[:]
			}
		}
		orig := len(link) + len(body)
		capLen := min(orig, e.snaplen)
		if len(b)+recordHdrLen+capLen > maxChunkBytes {
			e.Dropped.Add(uint64(count - n))
			break
		}
		if capLen < orig {
			trunc++
		}
		var rh [recordHdrLen]byte
		le := binary.LittleEndian
		le.PutUint32(rh[0:], sec)
		le.PutUint32(rh[4:], usec)
		le.PutUint32(rh[8:], uint32(capLen))
		le.PutUint32(rh[12:], uint32(orig))
		b = append(b, rh[:]...)
		k := min(len(link), capLen)
		b = append(b, link[:k]...)
		b = append(b, body[:capLen-k]...)
		n++
	}
	c.b, c.n = b, n
	e.Truncated.Add(trunc)
	e.chunks <- c // never blocks: there are as many chunks as slots
}

// writer writes queued chunks and flushes every interval and at the end.
func (e *Endpoint) writer(interval time.Duration) {
	defer close(e.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	dirty := false
	for {
		select {
		case c, ok := <-e.chunks:
			if !ok {
				e.flush()
				return
			}
			e.write(c)
			dirty = true
		case <-t.C:
			if dirty {
				e.flush()
				dirty = false
			}
		}
	}
}

func (e *Endpoint) write(c *chunk) {
	if _, err := e.w.Write(c.b); err != nil {
		e.WriteErrors.Add(uint64(c.n))
		e.logErr(err)
	} else {
		e.Captured.Add(uint64(c.n))
	}
	if cap(c.b) > 1<<20 {
		c.b = make([]byte, 0, 4096) // do not keep a huge one-off
	}
	c.b, c.n = c.b[:0], 0
	e.free <- c
}

func (e *Endpoint) flush() {
	if err := e.w.Flush(); err != nil {
		e.logErr(err)
	}
}

func (e *Endpoint) logErr(err error) {
	e.errOnce.Do(func() {
		e.log.Error().Err(err).Msg("pcap write failed; later errors are only counted")
	})
}

// Close closes the wrapped link, then writes what is queued, flushes and
// closes the file.
func (e *Endpoint) Close() error {
	var err error
	e.once.Do(func() {
		err = e.inner.Close()
		e.mu.Lock()
		e.closed = true
		close(e.chunks)
		e.mu.Unlock()
		<-e.done
		if cerr := e.file.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

var (
	_ pipeline.LinkEndpoint        = (*Endpoint)(nil)
	_ pipeline.LinkMTUSetter       = (*Endpoint)(nil)
	_ pipeline.LinkStateDispatcher = (*tap)(nil)
)
