//go:build linux

package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func supported() error { return nil }

const tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
const tunUSO = unix.TUN_F_USO4 | unix.TUN_F_USO6

// Endpoint is an open TUN device: one file descriptor per queue, each read
// by its own goroutine locked to an OS thread, and written by whichever
// worker sends (one writer state per queue, taken with a lock).
type Endpoint struct {
	name, device string
	mtu          int
	vnet         bool
	uso          bool
	created      bool
	caps         pipeline.LinkCapabilities
	batch        int
	bufSize      int
	pool         *pipeline.Pool
	log          zerolog.Logger

	queues []*queue
	wakeFD int // eventfd: wakes the readers' poll on Close
	wg     sync.WaitGroup

	disp      atomic.Pointer[dispatcher]
	closed    atomic.Bool
	removed   atomic.Bool // the device went away (reported once: gone)
	mtuMu     sync.Mutex  // serialises SetMTU
	mtuNow    atomic.Int64
	netns     string
	ns        *netns.File // netns's file, nil without one
	closeOnce sync.Once
	closeErr  error

	c counters

	// devStats is /proc/net/dev as the device's namespace shows it, opened
	// in that namespace (-1 if it could not be): its tx_drop column is
	// what the kernel could not queue to us. Guarded by statsMu.
	statsMu     sync.Mutex
	devStats    int
	devStatsBuf []byte
	txDropped   uint64 // the last value read
	// txDroppedBase is tx_dropped when the link opened (set before the
	// readers start, read-only afterwards).
	txDroppedBase uint64
}

type dispatcher struct{ d pipeline.NetworkDispatcher }

type counters struct {
	rxPackets, rxGSO, rxSegments, rxPartial, rxBatches *pipeline.Counter
	rxMalformed, rxDetached, rxErrors                  *pipeline.Counter
	txPackets, txFrames, txGSO, txCoalesced            *pipeline.Counter
	txMalformed, txErrors, txClosed                    *pipeline.Counter
}

// queue is one file descriptor of the device.
type queue struct {
	ep *Endpoint
	fd int
	dm sync.Mutex // held while a batch read from this queue is delivered

	wm     sync.Mutex // the writer state below
	closed bool
	iov    []unix.Iovec
	hdr    [vnetHdrLen]byte
	co     *coalescer
}

// open creates or attaches the device described by o.
func open(o options) (_ *Endpoint, err error) {
	if o.pool == nil {
		o.pool = pipeline.DefaultPool
	}
	e := &Endpoint{name: o.name, device: o.device, netns: o.netns, vnet: o.offload, batch: o.batch, pool: o.pool, wakeFD: -1, devStats: -1}
	if o.ctx != nil {
		e.log = o.ctx.Logger
		cs := o.ctx.Counters("tun " + o.name)
		e.c = counters{
			rxPackets: cs.Get("rx_packets"), rxGSO: cs.Get("rx_gso"), rxSegments: cs.Get("rx_gso_segments"),
			rxPartial: cs.Get("rx_csum_partial"), rxBatches: cs.Get("rx_batches"),
			rxMalformed: cs.Get("rx_malformed"), rxDetached: cs.Get("rx_detached"), rxErrors: cs.Get("rx_errors"),
			txPackets: cs.Get("tx_packets"), txFrames: cs.Get("tx_frames"), txGSO: cs.Get("tx_gso"),
			txCoalesced: cs.Get("tx_coalesced"), txMalformed: cs.Get("tx_malformed"),
			txErrors: cs.Get("tx_errors"), txClosed: cs.Get("tx_closed"),
		}
	} else {
		e.log = zerolog.Nop()
		e.c = counters{
			new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter),
			new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter),
			new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter),
			new(pipeline.Counter), new(pipeline.Counter), new(pipeline.Counter),
		}
	}
	var fds []int
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			if e.wakeFD >= 0 {
				unix.Close(e.wakeFD)
			}
			if e.devStats >= 0 {
				unix.Close(e.devStats)
			}
		}
	}()
	err = netns.Do(o.netns, func() error {
		ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		defer unix.Close(ctl)
		ifr, err := unix.NewIfreq(o.device)
		if err != nil {
			return err
		}
		e.created = unix.IoctlIfreq(ctl, unix.SIOCGIFINDEX, ifr) != nil
		flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
		if o.offload {
			flags |= unix.IFF_VNET_HDR
		}
		for i := 0; i < o.queues; i++ {
			fd, err := openQueue(o.device, flags)
			if errors.Is(err, unix.EINVAL) && i == 0 && !e.created && o.queues == 1 {
				// An existing single-queue device: attach without
				// IFF_MULTI_QUEUE (the flag must match the device's).
				flags &^= unix.IFF_MULTI_QUEUE
				fd, err = openQueue(o.device, flags)
			}
			if err != nil {
				if errors.Is(err, unix.EINVAL) && !e.created {
					return fmt.Errorf("attach %s (queue %d): %w (an existing device must be a TUN device with the same multi_queue setting; queues: %d)", o.device, i, err, o.queues)
				}
				return fmt.Errorf("open %s (queue %d): %w", o.device, i, err)
			}
			fds = append(fds, fd)
		}
		// The namespace's /proc/net/dev, read later from wherever we are
		// (a proc net file keeps the namespace it was opened in). Without
		// it the link still works; rx_kernel_dropped then stays 0.
		if fd, err := unix.Open("/proc/thread-self/net/dev", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			e.devStats = fd
		}
		if o.offload {
			if err := unix.IoctlSetPointerInt(fds[0], unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
				return fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
			}
			if err := unix.IoctlSetInt(fds[0], unix.TUNSETOFFLOAD, tunOffloads|tunUSO); err == nil {
				e.uso = true
			} else if err := unix.IoctlSetInt(fds[0], unix.TUNSETOFFLOAD, tunOffloads); err != nil {
				return fmt.Errorf("TUNSETOFFLOAD: %w", err)
			}
		}
		if !o.offload {
			// A persistent device keeps the offloads a previous user
			// set; without a vnet header they would hand us super-packets
			// we cannot tell apart.
			if err := unix.IoctlSetInt(fds[0], unix.TUNSETOFFLOAD, 0); err != nil {
				return fmt.Errorf("TUNSETOFFLOAD 0: %w", err)
			}
		}
		if o.mtu > 0 {
			ifr, _ := unix.NewIfreq(o.device)
			ifr.SetUint32(uint32(o.mtu))
			if err := unix.IoctlIfreq(ctl, unix.SIOCSIFMTU, ifr); err != nil {
				return fmt.Errorf("set mtu %d: %w", o.mtu, err)
			}
		}
		ifr, _ = unix.NewIfreq(o.device)
		if err := unix.IoctlIfreq(ctl, unix.SIOCGIFMTU, ifr); err != nil {
			return fmt.Errorf("get mtu: %w", err)
		}
		e.mtu = int(ifr.Uint32())
		if o.up {
			ifr, _ := unix.NewIfreq(o.device)
			if err := unix.IoctlIfreq(ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
				return fmt.Errorf("get flags: %w", err)
			}
			if ifr.Uint16()&unix.IFF_UP == 0 {
				ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
				if err := unix.IoctlIfreq(ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
					return fmt.Errorf("set up: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if o.netns != "" {
		if e.ns, err = netns.OpenFile(o.netns); err != nil {
			return nil, fmt.Errorf("netns %s: %w", o.netns, err)
		}
	}
	e.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, err
		}
	}

	if e.vnet {
		e.caps = pipeline.CapGSO | pipeline.CapTXChecksumOffload | pipeline.CapRXChecksumOffload
		e.bufSize = pipeline.LargeDataSize
	} else {
		e.bufSize = min(e.mtu, pipeline.LargeDataSize)
	}
	for _, fd := range fds {
		q := &queue{ep: e, fd: fd, iov: make([]unix.Iovec, 0, maxSegs+2)}
		if o.coalesce {
			q.co = newCoalescer(q)
			q.co.uso = e.uso
		} else {
			q.co = &coalescer{sink: q}
		}
		e.queues = append(e.queues, q)
	}
	// What the kernel dropped before we attached (a persistent device with
	// no reader drops everything routed to it) is not ours to report.
	e.txDroppedBase = e.kernelDropped()
	e.wg.Add(len(e.queues))
	for _, q := range e.queues {
		go q.readLoop()
	}
	e.log.Info().Str("device", o.device).Str("netns", o.netns).Bool("created", e.created).
		Int("queues", len(e.queues)).Int("mtu", e.mtu).Bool("vnet_hdr", e.vnet).Bool("uso", e.uso).Msg("tun open")
	return e, nil
}

// openQueue opens /dev/net/tun and attaches it to the device (creating the
// device in the calling thread's network namespace if it does not exist).
func openQueue(device string, flags uint16) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ifr, err := unix.NewIfreq(device)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// MTU implements pipeline.LinkEndpoint: the device's MTU when opened.
func (e *Endpoint) MTU() int {
	if m := e.mtuNow.Load(); m != 0 {
		return int(m)
	}
	return e.mtu
}

// MaxHeaderLength implements pipeline.LinkEndpoint: the virtio-net header
// goes out from the writer's own buffer, not the packet's headroom.
func (e *Endpoint) MaxHeaderLength() int { return 0 }

// LinkAddress implements pipeline.LinkEndpoint (an IP link has none).
func (e *Endpoint) LinkAddress() wire.MAC { return wire.MAC{} }

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities { return e.caps }

// Device is the interface name; Created reports whether the link created
// it (it then disappears on Close).
func (e *Endpoint) Device() string { return e.device }

// Created reports whether the link created the device.
func (e *Endpoint) Created() bool { return e.created }

// Attach implements pipeline.LinkEndpoint.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	if d == nil {
		e.disp.Store(nil)
	} else {
		e.disp.Store(&dispatcher{d})
	}
	for _, q := range e.queues { // wait for deliveries in flight
		q.dm.Lock()
		q.dm.Unlock() //nolint:staticcheck // an empty critical section is the point
	}
}

// readLoop reads the queue until the endpoint closes: non-blocking reads
// into pooled packets until the device has nothing more (or the batch is
// full), delivery of the batch, then poll(2) for more. Each read gives one
// packet or one GSO super-packet, read so that the IP header lands at the
// pool's default headroom.
func (q *queue) readLoop() {
	e := q.ep
	defer e.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	pkts := make([]*pipeline.Packet, e.batch)
	e.pool.GetBatch(pkts, e.bufSize)
	for _, p := range pkts {
		q.prepare(p)
	}
	defer pipeline.ReleaseBatch(pkts)
	pfd := []unix.PollFd{{Fd: int32(q.fd), Events: unix.POLLIN}, {Fd: int32(e.wakeFD), Events: unix.POLLIN}}
	var h vnetHdr
	for {
		n := 0
		var gso, segs, partial, bad, errs uint64
		stop := false
		for n < len(pkts) {
			p := pkts[n]
			buf := p.Data()
			m, err := read(q.fd, buf)
			if err != 0 {
				if err == unix.EINTR {
					continue
				}
				if err != unix.EAGAIN {
					errs++
					if err == unix.EBADFD || err == unix.EBADF || err == unix.EIO {
						e.gone(err)
						stop = true
					}
				}
				break
			}
			ok := true
			if e.vnet {
				if m < vnetHdrLen+1 {
					ok = false
				} else {
					h.decode(buf)
					p.Pull(vnetHdrLen)
					p.Truncate(m - vnetHdrLen)
					switch h.toPacket(p.Data(), p) {
					case rxGSO:
						gso++
						segs += uint64(p.GSO.Segments(p.Len() - int(p.GSO.HdrLen)))
					case rxPartial:
						partial++
					case rxBad:
						ok = false
					}
				}
			} else {
				p.Truncate(m)
				ok = m > 0
			}
			if ok {
				switch p.Data()[0] >> 4 {
				case 4:
					p.NetProto = pipeline.IPv4ProtocolNumber
				case 6:
					p.NetProto = pipeline.IPv6ProtocolNumber
				default:
					ok = false
				}
			}
			if !ok {
				bad++
				p.Release()
				pkts[n] = q.fresh()
				continue
			}
			p.SetLinkHeader()
			p.SetNetworkHeader()
			n++
		}
		if n > 0 {
			e.c.rxPackets.Add(uint64(n))
			e.c.rxBatches.Inc()
			q.deliver(pkts[:n])
			e.pool.GetBatch(pkts[:n], e.bufSize)
			for _, p := range pkts[:n] {
				q.prepare(p)
			}
		}
		if gso != 0 {
			e.c.rxGSO.Add(gso)
			e.c.rxSegments.Add(segs)
		}
		if partial != 0 {
			e.c.rxPartial.Add(partial)
		}
		if bad != 0 {
			e.c.rxMalformed.Add(bad)
		}
		if errs != 0 {
			e.c.rxErrors.Add(errs)
		}
		if stop {
			return
		}
		if n == len(pkts) {
			continue // a full batch: the device may hold more
		}
		// In another namespace, an idle queue looks once a second whether
		// that namespace is still the one of the name (netnsGone).
		timeout := -1
		if e.ns != nil {
			timeout = 1000
		}
		for {
			pfd[0].Revents, pfd[1].Revents = 0, 0
			k, err := unix.Poll(pfd, timeout)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				e.gone(err)
				return
			}
			if k == 0 {
				if err := e.netnsGone(); err != nil {
					e.gone(err)
					return
				}
				continue
			}
			break
		}
		if pfd[1].Revents != 0 || e.closed.Load() {
			return
		}
		if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && pfd[0].Revents&unix.POLLIN == 0 {
			e.gone(fmt.Errorf("poll revents %#x", pfd[0].Revents))
			return
		}
	}
}

// gone reports, once per endpoint (not once per queue), that the device
// went away: logged, and told to the stack (LinkStateDispatcher.LinkDown),
// which closes this endpoint and reopens the link when the device is back.
// The queues' readers stop; writes keep failing and being counted.
func (e *Endpoint) gone(err error) {
	if e.closed.Load() || !e.removed.CompareAndSwap(false, true) {
		return
	}
	e.log.Error().Err(err).Str("device", e.device).Msg("tun device gone; the link stops")
	if d := e.disp.Load(); d != nil {
		if ld, ok := d.d.(pipeline.LinkStateDispatcher); ok {
			ld.LinkDown(fmt.Errorf("tun %s: %w", e.device, err))
		}
	}
}

// netnsGone reports a namespace removed (or replaced by another of the
// same name) under the open device. The device then lives on only because
// the link's own sockets, made in that namespace, keep it alive: nothing
// can reach it any more, so the link reports it gone, and once the stack
// has closed it the old namespace ends and the link is reopened in the
// namespace that now has the name.
func (e *Endpoint) netnsGone() error {
	same, err := e.ns.Same()
	if err != nil {
		return fmt.Errorf("namespace %s removed under the open device: %w", e.netns, err)
	}
	if !same {
		return fmt.Errorf("namespace %s replaced by another of that name under the open device", e.netns)
	}
	return nil
}

// SetMTU implements pipeline.LinkMTUSetter: it sets the device's MTU
// (SIOCSIFMTU, in the device's namespace).
func (e *Endpoint) SetMTU(mtu int) error {
	e.mtuMu.Lock()
	defer e.mtuMu.Unlock()
	if mtu > e.bufSize {
		return fmt.Errorf("mtu %d exceeds the read buffers of %d bytes made at open (offload off): change it with a reopen", mtu, e.bufSize)
	}
	err := netns.Do(e.netns, func() error {
		ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(ctl)
		ifr, err := unix.NewIfreq(e.device)
		if err != nil {
			return err
		}
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(ctl, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("set mtu %d on %s: %w", mtu, e.device, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.mtuNow.Store(int64(mtu))
	return nil
}

// prepare makes p's whole buffer from the virtio-net header's place on
// readable: the header lands in the headroom, the IP packet at the default
// headroom.
func (q *queue) prepare(p *pipeline.Packet) {
	if q.ep.vnet {
		p.Push(vnetHdrLen)
	}
	p.Append(p.Tailroom())
}

func (q *queue) fresh() *pipeline.Packet {
	p := q.ep.pool.Get(q.ep.bufSize)
	q.prepare(p)
	return p
}

// deliver hands a batch to the dispatcher, or drops it when none is
// attached.
func (q *queue) deliver(pkts []*pipeline.Packet) {
	q.dm.Lock()
	if d := q.ep.disp.Load(); d != nil {
		d.d.DeliverNetworkPackets(pkts)
	} else {
		q.ep.c.rxDetached.Add(uint64(len(pkts)))
		pipeline.ReleaseBatch(pkts)
	}
	q.dm.Unlock()
	clear(pkts)
}

// WritePackets implements pipeline.LinkEndpoint: each packet (or run of
// coalesced TCP segments) is one writev of the virtio-net header and the
// packet. It takes ownership of every packet and never blocks on the device
// (a TUN write goes straight into the kernel's receive path).
//
// With several queues, every packet of a flow is written to the same queue,
// chosen by a symmetric hash of its addresses and ports: the kernel records
// the queue a flow last arrived on and sends that flow's packets back out
// through the same queue (tun's automatic steering), so each flow stays on
// one reader thread and is never reordered between two.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	if len(e.queues) == 1 {
		return e.queues[0].write(pkts, nil, 0)
	}
	n := uint32(len(e.queues))
	sent := 0
	var sel [256]uint8
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), len(sel))]
		var used uint64
		for i, p := range chunk {
			if p != nil {
				q := flowHash(p.Data()) % n
				sel[i] = uint8(q)
				used |= 1 << q
			}
		}
		for q := uint32(0); q < n; q++ {
			if used&(1<<q) != 0 {
				sent += e.queues[q].write(chunk, sel[:len(chunk)], uint8(q))
			}
		}
		pkts = pkts[len(chunk):]
	}
	return sent
}

// flowHash is a symmetric hash of an IP packet's addresses, protocol and
// (TCP/UDP) ports: both directions of a flow hash alike.
func flowHash(d []byte) uint32 {
	var h uint32
	switch {
	case len(d) >= 20 && d[0]>>4 == 4:
		h = binary.BigEndian.Uint32(d[12:]) ^ binary.BigEndian.Uint32(d[16:]) ^ uint32(d[9])
		if l4 := int(d[0]&0xf) * 4; (d[9] == 6 || d[9] == 17) && len(d) >= l4+4 && d[6]&0x1f|d[7] == 0 {
			h ^= uint32(binary.BigEndian.Uint16(d[l4:]) ^ binary.BigEndian.Uint16(d[l4+2:]))
		}
	case len(d) >= 40 && d[0]>>4 == 6:
		for i := 8; i < 40; i += 4 {
			h ^= binary.BigEndian.Uint32(d[i:])
		}
		h ^= uint32(d[6])
		if (d[6] == 6 || d[6] == 17) && len(d) >= 44 {
			h ^= uint32(binary.BigEndian.Uint16(d[40:]) ^ binary.BigEndian.Uint16(d[42:]))
		}
	}
	h ^= h >> 16
	h *= 0x45d9f3b
	h ^= h >> 16
	return h
}

// write sends the packets of pkts whose sel entry is idx (all of them when
// sel is nil) through this queue, takes ownership of them (their slots
// become nil) and returns how many the kernel took.
func (q *queue) write(pkts []*pipeline.Packet, sel []uint8, idx uint8) int {
	e := q.ep
	q.wm.Lock()
	co := q.co
	var gso, closed uint64
	for i, p := range pkts {
		if p == nil || sel != nil && sel[i] != idx {
			continue
		}
		if q.closed {
			closed++
			continue
		}
		if p.GSO.Type != pipeline.GSONone {
			gso++
		}
		if co.enabled {
			co.add(p)
		} else {
			co.single(p)
		}
	}
	co.flushAll()
	sent, frames, merged, malformed, errs := co.sent, co.frames, co.merged, co.malformed, co.errors
	co.sent, co.frames, co.merged, co.malformed, co.errors = 0, 0, 0, 0, 0
	q.wm.Unlock()
	if sel == nil {
		pipeline.ReleaseBatch(pkts)
	} else {
		for i, p := range pkts {
			if p != nil && sel[i] == idx {
				pkts[i] = nil
				p.Release()
			}
		}
	}
	e.c.txPackets.Add(sent)
	e.c.txFrames.Add(frames)
	if gso != 0 {
		e.c.txGSO.Add(gso)
	}
	if merged != 0 {
		e.c.txCoalesced.Add(merged)
	}
	if malformed != 0 {
		e.c.txMalformed.Add(malformed)
	}
	if errs != 0 {
		e.c.txErrors.Add(errs)
	}
	if closed != 0 {
		e.c.txClosed.Add(closed)
	}
	return int(sent)
}

// writeFrame implements frameSink: one writev of the header, head and the
// tails' bytes from tailOff. Called with q.wm held.
func (q *queue) writeFrame(h *vnetHdr, head []byte, tail []*pipeline.Packet, tailOff int) bool {
	iov := q.iov[:0]
	if q.ep.vnet {
		h.encode(q.hdr[:])
		iov = appendIovec(iov, q.hdr[:])
	}
	iov = appendIovec(iov, head)
	for _, p := range tail {
		iov = appendIovec(iov, p.Data()[tailOff:])
	}
	q.iov = iov
	for {
		_, errno := writev(q.fd, iov)
		if errno == unix.EINTR {
			continue
		}
		return errno == 0
	}
}

func appendIovec(iov []unix.Iovec, b []byte) []unix.Iovec {
	iov = append(iov, unix.Iovec{Base: &b[0]})
	iov[len(iov)-1].SetLen(len(b))
	return iov
}

// Close implements pipeline.LinkEndpoint: it stops delivery and the
// readers, waits for writes in flight and closes the queues (a device the
// link created disappears with its last queue).
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.Attach(nil)
		var one [8]byte
		one[0] = 1 // eventfd counter +1 (host order; any nonzero value wakes)
		unix.Write(e.wakeFD, one[:])
		e.wg.Wait()
		var errs []error
		for _, q := range e.queues {
			q.wm.Lock()
			q.closed = true
			if err := unix.Close(q.fd); err != nil {
				errs = append(errs, err)
			}
			q.wm.Unlock()
		}
		unix.Close(e.wakeFD)
		e.kernelDropped() // the last value, kept for counters read after Close
		e.statsMu.Lock()
		if e.devStats >= 0 {
			unix.Close(e.devStats)
			e.devStats = -1
		}
		e.statsMu.Unlock()
		e.closeErr = errors.Join(errs...)
		e.log.Info().Str("device", e.device).Bool("removed", e.created).Msg("tun closed")
	})
	return e.closeErr
}

// kernelDropped is the device's tx_dropped, read from /proc/net/dev of its
// namespace: packets the kernel routed to the device but could not queue
// to the link (its queue full because we did not read fast enough, or no
// queue attached). Read when the counters are, never per packet.
func (e *Endpoint) kernelDropped() uint64 {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	if e.devStats < 0 {
		return e.txDropped
	}
	if e.devStatsBuf == nil {
		e.devStatsBuf = make([]byte, 16<<10)
	}
	n := 0
	for {
		if n == len(e.devStatsBuf) {
			e.devStatsBuf = append(e.devStatsBuf, make([]byte, len(e.devStatsBuf))...)
		}
		k, err := unix.Pread(e.devStats, e.devStatsBuf[n:], int64(n))
		if err != nil {
			return e.txDropped
		}
		if k == 0 {
			break
		}
		n += k
	}
	if v, ok := netDevTxDropped(e.devStatsBuf[:n], e.device); ok {
		e.txDropped = v
	}
	return e.txDropped
}

// netDevTxDropped finds dev's line in /proc/net/dev text and returns its
// tx drop column (the 12th number: 8 receive columns, then tx bytes,
// packets, errs, drop).
func netDevTxDropped(text []byte, dev string) (uint64, bool) {
	for _, line := range strings.Split(string(text), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != dev {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 12 {
			return 0, false
		}
		v, err := strconv.ParseUint(f[11], 10, 64)
		return v, err == nil
	}
	return 0, false
}

// LinkCounters implements pipeline.LinkCounterReader: the device-level
// counters (also the counter set "tun <link>"), shown by pipectl stats,
// and rx_kernel_dropped, the device's tx_dropped (kernelDropped) since the
// link opened.
func (e *Endpoint) LinkCounters() []pipeline.CounterValue {
	c := &e.c
	return []pipeline.CounterValue{
		{Name: "rx_kernel_dropped", Value: e.kernelDropped() - e.txDroppedBase},
		{Name: "rx_packets", Value: c.rxPackets.Load()}, {Name: "rx_batches", Value: c.rxBatches.Load()},
		{Name: "rx_gso", Value: c.rxGSO.Load()}, {Name: "rx_gso_segments", Value: c.rxSegments.Load()},
		{Name: "rx_csum_partial", Value: c.rxPartial.Load()}, {Name: "rx_malformed", Value: c.rxMalformed.Load()},
		{Name: "rx_detached", Value: c.rxDetached.Load()}, {Name: "rx_errors", Value: c.rxErrors.Load()},
		{Name: "tx_packets", Value: c.txPackets.Load()}, {Name: "tx_frames", Value: c.txFrames.Load()},
		{Name: "tx_gso", Value: c.txGSO.Load()}, {Name: "tx_coalesced", Value: c.txCoalesced.Load()},
		{Name: "tx_malformed", Value: c.txMalformed.Load()}, {Name: "tx_errors", Value: c.txErrors.Load()},
		{Name: "tx_closed", Value: c.txClosed.Load()},
	}
}

var (
	_ pipeline.LinkEndpoint      = (*Endpoint)(nil)
	_ pipeline.LinkMTUSetter     = (*Endpoint)(nil)
	_ pipeline.LinkCounterReader = (*Endpoint)(nil)
)
