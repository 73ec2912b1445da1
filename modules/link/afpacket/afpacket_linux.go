package afpacket

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

const supported = true

// Socket options newer than golang.org/x/sys knows by name.
const (
	fanoutFlagUniqueID       = 0x2000 // PACKET_FANOUT_FLAG_UNIQUEID
	fanoutFlagIgnoreOutgoing = 0x4000 // PACKET_FANOUT_FLAG_IGNORE_OUTGOING (Linux 6.8)

	ethPAll = 0x0003

	frameSize = 2048 // TPACKET_V3 frame_size: only its validity matters
)

// Endpoint is an AF_PACKET link endpoint. Its counters are fields, read
// with Load; KernelDrops adds what the kernel dropped for want of room.
type Endpoint struct {
	o           Options
	ifindex     int
	mac         wire.MAC
	devMTU      int
	mtuCap      atomic.Int64 // a reload's mtu (SetMTU); 0: mtu
	mtu         int
	vlen        int // virtio-net header length: 0 or vnetHdrLen
	auxdata     bool
	fanoutID    int
	fanoutFlags int

	queues []*queue
	efd    int // eventfd: readable once Close wants the readers gone

	disp      atomic.Pointer[dispatcher]
	startOnce sync.Once
	wg        sync.WaitGroup

	txmu   sync.RWMutex // held for reading while a socket is used to send
	closed bool
	once   sync.Once

	scratchMu sync.Mutex
	scratch   []*txScratch

	statsMu       sync.Mutex // guards the PACKET_STATISTICS totals
	kernelDrops   uint64
	kernelFreezes uint64
	removed       atomic.Bool
	ns            *netns.File // Options.Netns's file, nil without one
	linkDown      atomic.Bool

	// Receive counters.
	RxPackets, RxBytes atomic.Uint64
	// RxNotAttached: frames read while no dispatcher was attached.
	RxNotAttached atomic.Uint64
	// RxMalformed: shorter than an Ethernet header, or an 802.3 length
	// field instead of an EtherType.
	RxMalformed atomic.Uint64
	// RxTruncated: larger than the receive buffer.
	RxTruncated atomic.Uint64
	// RxOtherHost: for another MAC (seen in promiscuous mode or on a
	// bridge port) — delivered only when promiscuous is on.
	RxOtherHost atomic.Uint64
	// RxOutgoing: our own transmissions looped back (only when the kernel
	// cannot ignore them for us).
	RxOutgoing atomic.Uint64
	// RxVLAN: frames whose VLAN tag the device stripped (no VLAN support).
	RxVLAN atomic.Uint64
	// RxBadOffload: virtio-net metadata the stack cannot take (UFO, an
	// offset outside the frame).
	RxBadOffload atomic.Uint64
	// RxGSO: super-packets received (counted once each).
	RxGSO atomic.Uint64

	// Transmit counters.
	TxPackets, TxBytes atomic.Uint64
	// TxDropped: the socket was full (EAGAIN, ENOBUFS), the device is
	// down or gone, or the endpoint closed.
	TxDropped atomic.Uint64
	// TxErrors: frames the kernel refused (EMSGSIZE, EINVAL) or without
	// headroom for the link header.
	TxErrors atomic.Uint64
	// TxGSO: super-packets sent (counted once each).
	TxGSO atomic.Uint64
}

type dispatcher struct{ d pipeline.NetworkDispatcher }

// queue is one socket and its reader.
type queue struct {
	e    *Endpoint
	idx  int
	fd   int
	ring []byte
	mu   sync.Mutex // held while a batch is delivered

	// Delivered counts frames this queue delivered (fanout tests, stats).
	Delivered atomic.Uint64
}

type txScratch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	pkts []*pipeline.Packet
	lens []int
}

// New opens the link: the sockets are made (in Options.Netns), bound to the
// device and, in ring mode, their rings mapped. Reading starts with the
// first Attach.
func New(o Options) (*Endpoint, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	e := &Endpoint{o: o, efd: -1}
	if o.VnetHdr {
		e.vlen = vnetHdrLen
	}
	e.auxdata = o.Mode == ModeMmsg
	var ifi *net.Interface
	err := netns.Do(o.Netns, func() error {
		var err error
		ifi, err = net.InterfaceByName(o.Device)
		if err != nil {
			return fmt.Errorf("device %s: %w", o.Device, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("device %s is not an Ethernet device (link address %q)", o.Device, ifi.HardwareAddr)
		}
		e.ifindex = ifi.Index
		return e.openSockets()
	})
	if err != nil {
		e.closeFDs()
		if o.Netns != "" {
			return nil, fmt.Errorf("netns %s: %w", o.Netns, err)
		}
		return nil, err
	}
	copy(e.mac[:], ifi.HardwareAddr)
	e.devMTU = ifi.MTU
	e.mtu = ifi.MTU
	if o.MTU > 0 && o.MTU < e.mtu {
		e.mtu = o.MTU
	}
	if o.Netns != "" {
		if e.ns, err = netns.OpenFile(o.Netns); err != nil {
			e.closeFDs()
			return nil, fmt.Errorf("netns %s: %w", o.Netns, err)
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		e.closeFDs()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	e.efd = efd
	return e, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openSockets makes the queues' sockets, in the current namespace.
func (e *Endpoint) openSockets() error {
	o := &e.o
	for i := 0; i < o.Queues; i++ {
		// Protocol 0: nothing is queued until bind names the device.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("socket(AF_PACKET): %w", err)
		}
		q := &queue{e: e, idx: i, fd: fd}
		e.queues = append(e.queues, q)
		if err := e.setupSocket(q); err != nil {
			return err
		}
	}
	if o.Queues > 1 {
		for _, q := range e.queues {
			if err := unix.SetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
				return fmt.Errorf("SO_DETACH_FILTER: %w", err)
			}
		}
	}
	return nil
}

func (e *Endpoint) setupSocket(q *queue) error {
	o := &e.o
	fd := q.fd
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.SocketBuffer); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.SocketBuffer)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, o.SocketBuffer); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, o.SocketBuffer)
	}
	if o.VnetHdr {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
	}
	if e.auxdata {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return fmt.Errorf("PACKET_AUXDATA: %w", err)
		}
	}
	// Our own transmissions are not handed back to us. (Older kernels
	// lack the option; the readers drop PACKET_OUTGOING frames anyway.)
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if o.Queues > 1 {
		// Drop everything until every socket is in the fanout group, so
		// that no frame is read twice (once by the group, once by a socket
		// still on its own).
		prog := []unix.SockFilter{{Code: 0x06, K: 0}} // ret #0
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &prog[0]}); err != nil {
			return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
		}
	}
	switch o.Mode {
	case ModeRing:
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			return fmt.Errorf("PACKET_VERSION TPACKET_V2: %w", err)
		}
		bs, nb, fs := o.Ring.BlockSize, o.Ring.Blocks, o.Ring.FrameSize
		req := unix.TpacketReq{
			Block_size: uint32(bs),
			Block_nr:   uint32(nb),
			Frame_size: uint32(fs),
			Frame_nr:   uint32(bs / fs * nb),
		}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING (%d blocks of %d bytes, frames of %d): %w", nb, bs, fs, err)
		}
		// A frame too big for a slot is queued to the socket in full
		// (the slot says TP_STATUS_COPY) instead of being cut short.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1); err != nil {
			return fmt.Errorf("PACKET_COPY_THRESH: %w", err)
		}
		ring, err := unix.Mmap(fd, 0, bs*nb, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("mmap ring: %w", err)
		}
		q.ring = ring
	case ModeBlock:
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			return fmt.Errorf("PACKET_VERSION TPACKET_V3: %w", err)
		}
		bs, nb := o.Ring.BlockSize, o.Ring.Blocks
		req := unix.TpacketReq3{
			Block_size:     uint32(bs),
			Block_nr:       uint32(nb),
			Frame_size:     frameSize,
			Frame_nr:       uint32(bs / frameSize * nb),
			Retire_blk_tov: uint32(o.Ring.TimeoutMS),
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING (%d blocks of %d bytes): %w", nb, bs, err)
		}
		ring, err := unix.Mmap(fd, 0, bs*nb, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("mmap ring: %w", err)
		}
		q.ring = ring
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: e.ifindex}); err != nil {
		return fmt.Errorf("bind to %s: %w", o.Device, err)
	}
	if o.Queues > 1 {
		if err := e.joinFanout(q); err != nil {
			return err
		}
	}
	if o.Promiscuous && q.idx == 0 {
		mr := unix.PacketMreq{Ifindex: int32(e.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("promiscuous mode: %w", err)
		}
	}
	return nil
}

// joinFanout puts the queue's socket in the endpoint's PACKET_FANOUT_HASH
// group; the first socket asks the kernel for a unique group ID.
func (e *Endpoint) joinFanout(q *queue) error {
	flags := fanoutFlagIgnoreOutgoing
	if q.idx > 0 {
		flags = e.fanoutFlags
	}
	for {
		arg := e.fanoutID | (unix.PACKET_FANOUT_HASH|flags)<<16
		if q.idx == 0 {
			arg = (unix.PACKET_FANOUT_HASH | flags | fanoutFlagUniqueID) << 16
		}
		err := unix.SetsockoptInt(q.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg)
		if err == unix.EINVAL && flags != 0 && q.idx == 0 {
			flags = 0 // a kernel without FLAG_IGNORE_OUTGOING
			continue
		}
		if err != nil {
			return fmt.Errorf("PACKET_FANOUT: %w", err)
		}
		break
	}
	if q.idx == 0 {
		v, err := unix.GetsockoptInt(q.fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
		if err != nil {
			return fmt.Errorf("PACKET_FANOUT id: %w", err)
		}
		e.fanoutID = v & 0xffff
		e.fanoutFlags = flags
	}
	return nil
}

// MTU implements pipeline.LinkEndpoint: the device's MTU, capped by the
// stack's mtu.
func (e *Endpoint) MTU() int {
	if m := e.mtuCap.Load(); m != 0 {
		return int(m)
	}
	return e.mtu
}

// SetMTU implements pipeline.LinkMTUSetter for a reload that changes the
// link's mtu: the cap moves (up to the device's MTU as it was at open).
// The device itself is left alone, as at open: it is the kernel's (and
// the other side's) as much as the router's.
func (e *Endpoint) SetMTU(mtu int) error {
	if mtu > e.devMTU {
		e.mtuCap.Store(int64(e.devMTU))
		return fmt.Errorf("mtu %d is above device %s's %d; link.afpacket does not change the device", mtu, e.o.Device, e.devMTU)
	}
	e.mtuCap.Store(int64(mtu))
	return nil
}

// MaxHeaderLength implements pipeline.LinkEndpoint: Ethernet, plus the
// virtio-net header with vnet_hdr.
func (e *Endpoint) MaxHeaderLength() int { return wire.EthernetHeaderSize + e.vlen }

// LinkAddress implements pipeline.LinkEndpoint: the device's MAC.
func (e *Endpoint) LinkAddress() wire.MAC { return e.mac }

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities {
	c := pipeline.CapResolutionRequired
	if e.vlen > 0 {
		c |= pipeline.CapGSO | pipeline.CapTXChecksumOffload | pipeline.CapRXChecksumOffload
	} else {
		// The socket reports verified checksums (TP_STATUS_CSUM_VALID).
		c |= pipeline.CapRXChecksumOffload
	}
	return c
}

// Device is the interface name; Ifindex its index in its namespace.
func (e *Endpoint) Device() string { return e.o.Device }

// Ifindex is the device's index in its namespace.
func (e *Endpoint) Ifindex() int { return e.ifindex }

// Mode is the receive mode in use (ModeRing, ModeMmsg or ModeBlock).
func (e *Endpoint) Mode() string { return e.o.Mode }

// Removed reports whether the device went away under the link.
func (e *Endpoint) Removed() bool { return e.removed.Load() }

// QueueDelivered returns how many frames queue i has delivered.
func (e *Endpoint) QueueDelivered(i int) uint64 { return e.queues[i].Delivered.Load() }

// KernelDrops is how many frames the kernel dropped because a socket's
// buffer or ring was full (PACKET_STATISTICS tp_drops, summed over the
// queues and over time): frames that reached the device but never the
// stack. Shown as rx_kernel_dropped by LinkCounters.
func (e *Endpoint) KernelDrops() uint64 {
	drops, _ := e.kernelStats()
	return drops
}

// kernelStats reads PACKET_STATISTICS of every queue's socket and adds it
// to the totals kept here (the kernel resets its counters on each read):
// frames dropped for want of room (tp_drops) and, in mode block, how often
// a queue froze because every block of its ring was still ours
// (tp_freeze_q_cnt). It is read when the counters are (pipectl stats, the
// metrics, the stats log), never per packet. After Close the totals stay.
func (e *Endpoint) kernelStats() (drops, freezes uint64) {
	e.txmu.RLock()
	defer e.txmu.RUnlock()
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	if !e.closed {
		for _, q := range e.queues {
			if e.o.Mode == ModeBlock {
				if st, err := unix.GetsockoptTpacketStatsV3(q.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
					e.kernelDrops += uint64(st.Drops)
					e.kernelFreezes += uint64(st.Freeze_q_cnt)
				}
			} else if st, err := unix.GetsockoptTpacketStats(q.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				e.kernelDrops += uint64(st.Drops)
			}
		}
	}
	return e.kernelDrops, e.kernelFreezes
}

// Attach implements pipeline.LinkEndpoint. The first non-nil dispatcher
// starts the readers; Attach(nil) returns once no batch is being delivered.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	if d == nil {
		e.disp.Store(nil)
		for _, q := range e.queues {
			q.mu.Lock()
			q.mu.Unlock() //nolint:staticcheck // waits for a delivery in flight
		}
		return
	}
	e.disp.Store(&dispatcher{d})
	e.startOnce.Do(func() {
		e.txmu.RLock()
		defer e.txmu.RUnlock()
		if e.closed {
			return
		}
		for _, q := range e.queues {
			e.wg.Add(1)
			go q.run()
		}
	})
}

// deliver hands a received batch to the dispatcher and empties it.
func (q *queue) deliver(out []*pipeline.Packet) {
	if len(out) == 0 {
		return
	}
	e := q.e
	var bytes uint64
	for _, p := range out {
		bytes += uint64(p.Len() + wire.EthernetHeaderSize)
	}
	e.RxPackets.Add(uint64(len(out)))
	e.RxBytes.Add(bytes)
	q.Delivered.Add(uint64(len(out)))
	q.mu.Lock()
	if h := e.disp.Load(); h != nil {
		h.d.DeliverNetworkPackets(out)
	} else {
		e.RxNotAttached.Add(uint64(len(out)))
		pipeline.ReleaseBatch(out)
	}
	q.mu.Unlock()
	clear(out)
}

// run is a queue's reader: a goroutine locked to its thread.
func (q *queue) run() {
	defer q.e.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	switch q.e.o.Mode {
	case ModeRing:
		q.runRing()
	case ModeBlock:
		q.runBlock()
	default:
		q.runMmsg()
	}
}

// wait blocks until the socket is readable or the endpoint closes; false
// means stop reading.
func (q *queue) wait() bool {
	fds := [2]unix.PollFd{{Fd: int32(q.fd), Events: unix.POLLIN}, {Fd: int32(q.e.efd), Events: unix.POLLIN}}
	for {
		// While the device is down the socket says nothing more, not even
		// when the device is then removed: look every so often.
		timeout := -1
		if q.e.linkDown.Load() {
			timeout = 200
		} else if q.e.ns != nil {
			timeout = 1000 // an idle socket looks whether its namespace is still there
		}
		n, err := unix.Poll(fds[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return q.fail(err)
		}
		if n == 0 {
			if !q.bound() {
				return q.fail(unix.ENODEV)
			}
			if err := q.e.netnsGone(); err != nil {
				return q.fail(err)
			}
			continue
		}
		break
	}
	if fds[1].Revents != 0 {
		return false
	}
	r := fds[0].Revents
	if r&(unix.POLLHUP|unix.POLLNVAL) != 0 {
		return q.fail(unix.EBADF)
	}
	if r&unix.POLLERR != 0 {
		serr, err := unix.GetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return q.fail(err)
		}
		if serr != 0 {
			return q.fail(unix.Errno(serr))
		}
	}
	return true
}

// fail handles a read error: it reports whether the reader goes on. A
// device that is only down (ENETDOWN, still bound) keeps its reader — the
// socket resumes when the device comes up; a removed device (or a dead
// socket) stops it, reported once.
func (q *queue) fail(err error) bool {
	e := q.e
	if err == unix.EINTR || err == unix.EAGAIN {
		return true
	}
	if err == unix.ENETDOWN {
		if q.bound() {
			if e.linkDown.CompareAndSwap(false, true) {
				e.o.Logger.Warn().Str("link", e.o.Name).Str("device", e.o.Device).Msg("device is down; the link resumes when it comes up")
			}
			return true
		}
		err = unix.ENODEV
	}
	if e.removed.CompareAndSwap(false, true) {
		what := "device removed"
		switch {
		case errors.Is(err, errNetnsGone):
			what = "namespace gone"
		case err != unix.ENODEV && err != unix.ENXIO:
			what = "read failed"
		}
		e.o.Logger.Error().Err(err).Str("link", e.o.Name).Str("device", e.o.Device).Msg(what + "; the link stops receiving")
		// Tell the stack, which closes this endpoint and reopens the link
		// when a device of this name is back (LinkStateDispatcher).
		if h := e.disp.Load(); h != nil {
			if ld, ok := h.d.(pipeline.LinkStateDispatcher); ok {
				ld.LinkDown(fmt.Errorf("%s %s: %w", what, e.o.Device, err))
			}
		}
	}
	return false
}

var errNetnsGone = errors.New("namespace gone")

// netnsGone reports the namespace of the device removed (or replaced by
// another of that name) while the sockets, made in it, keep it and the
// device alive where nothing else reaches them: the link reports it gone
// and the stack reopens it in the namespace that now has the name.
func (e *Endpoint) netnsGone() error {
	same, err := e.ns.Same()
	if err != nil {
		return fmt.Errorf("%w: %s removed under the open sockets (%v)", errNetnsGone, e.o.Netns, err)
	}
	if !same {
		return fmt.Errorf("%w: %s replaced by another namespace of that name", errNetnsGone, e.o.Netns)
	}
	return nil
}

// bound reports whether the socket is still bound to the device (the
// kernel unbinds it when the device is unregistered).
func (q *queue) bound() bool {
	ifindex, ok := boundIfindex(q.fd)
	return ok && ifindex == q.e.ifindex
}

// WritePackets implements pipeline.LinkEndpoint: Ethernet header (and
// virtio-net header) pushed into the headroom, one sendmmsg per batch of
// Options.Batch frames. Every packet is released here.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	e.txmu.RLock()
	defer e.txmu.RUnlock()
	if e.closed {
		n := 0
		for i, p := range pkts {
			if p != nil {
				n++
				pkts[i] = nil
				p.Release()
			}
		}
		e.TxDropped.Add(uint64(n))
		return 0
	}
	s := e.getScratch()
	fd := e.queues[0].fd
	sent, n := 0, 0
	var gso uint64
	hl := wire.EthernetHeaderSize + e.vlen
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
		h, ok := p.Push(hl)
		if !ok {
			e.TxErrors.Add(1)
			p.Release()
			continue
		}
		if e.vlen > 0 {
			vh := vnetFromGSO(&p.GSO, wire.EthernetHeaderSize, h[hl:])
			vh.encode(h)
			if p.GSO.Type != pipeline.GSONone {
				gso++
			}
		}
		eth := wire.Ethernet(h[e.vlen:])
		eth.SetDst(p.RemoteLinkAddr)
		eth.SetSrc(e.mac)
		eth.SetType(uint16(p.NetProto))
		d := p.Data()
		s.pkts[n] = p
		s.lens[n] = len(d)
		s.iovs[n].Base = &d[0]
		s.iovs[n].SetLen(len(d))
		n++
		if n == len(s.pkts) {
			sent += e.flush(fd, s, n)
			n = 0
		}
	}
	if n > 0 {
		sent += e.flush(fd, s, n)
	}
	e.TxGSO.Add(gso)
	e.putScratch(s)
	return sent
}

// flush sends s's first n frames, retrying after partial sends, then
// releases them.
func (e *Endpoint) flush(fd int, s *txScratch, n int) int {
	sent := 0
	var bytes uint64
	for i := 0; i < n; {
		m, err := sendmmsg(fd, s.hdrs[i:n], 0)
		switch err {
		case nil:
			for _, l := range s.lens[i : i+m] {
				bytes += uint64(l)
			}
			sent += m
			i += m
		case unix.EINTR:
		case unix.EMSGSIZE, unix.EINVAL:
			e.TxErrors.Add(1)
			i++
		default:
			// Full (EAGAIN, ENOBUFS), down or gone (ENETDOWN, ENXIO): drop
			// the rest rather than wait.
			e.TxDropped.Add(uint64(n - i))
			i = n
		}
	}
	e.TxPackets.Add(uint64(sent))
	e.TxBytes.Add(bytes)
	pipeline.ReleaseBatch(s.pkts[:n])
	return sent
}

func (e *Endpoint) getScratch() *txScratch {
	e.scratchMu.Lock()
	var s *txScratch
	if k := len(e.scratch); k > 0 {
		s = e.scratch[k-1]
		e.scratch = e.scratch[:k-1]
	}
	e.scratchMu.Unlock()
	if s != nil {
		return s
	}
	b := e.o.Batch
	s = &txScratch{hdrs: make([]unix.Mmsghdr, b), iovs: make([]unix.Iovec, b), pkts: make([]*pipeline.Packet, b), lens: make([]int, b)}
	for i := range s.hdrs {
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	return s
}

func (e *Endpoint) putScratch(s *txScratch) {
	for i := range s.iovs {
		s.iovs[i].Base = nil
	}
	e.scratchMu.Lock()
	e.scratch = append(e.scratch, s)
	e.scratchMu.Unlock()
}

// Close implements pipeline.LinkEndpoint: the readers are woken through the
// eventfd and waited for, then the sockets closed and the rings unmapped.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		e.Attach(nil)
		var one [8]byte
		one[0] = 1 // native byte order on little-endian; any non-zero value wakes
		one[7] = 1
		unix.Write(e.efd, one[:])
		e.wg.Wait()
		e.txmu.Lock()
		e.closed = true
		e.closeFDs()
		e.txmu.Unlock()
	})
	return nil
}

func (e *Endpoint) closeFDs() {
	for _, q := range e.queues {
		if q.ring != nil {
			unix.Munmap(q.ring)
			q.ring = nil
		}
		if q.fd >= 0 {
			unix.Close(q.fd)
			q.fd = -1
		}
	}
	if e.efd >= 0 {
		unix.Close(e.efd)
		e.efd = -1
	}
}

var (
	_ pipeline.LinkEndpoint  = (*Endpoint)(nil)
	_ pipeline.LinkMTUSetter = (*Endpoint)(nil)
)

// LinkCounters implements pipeline.LinkCounterReader: the socket-level
// counters, shown by pipectl stats, and what the kernel dropped before
// our sockets (rx_kernel_dropped: ring or socket buffer full;
// rx_ring_freezes: mode block only; read from PACKET_STATISTICS here).
func (e *Endpoint) LinkCounters() []pipeline.CounterValue {
	drops, freezes := e.kernelStats()
	return []pipeline.CounterValue{
		{Name: "rx_kernel_dropped", Value: drops}, {Name: "rx_ring_freezes", Value: freezes},
		{Name: "rx_packets", Value: e.RxPackets.Load()}, {Name: "rx_bytes", Value: e.RxBytes.Load()},
		{Name: "rx_not_attached", Value: e.RxNotAttached.Load()}, {Name: "rx_malformed", Value: e.RxMalformed.Load()},
		{Name: "rx_truncated", Value: e.RxTruncated.Load()}, {Name: "rx_other_host", Value: e.RxOtherHost.Load()},
		{Name: "rx_outgoing", Value: e.RxOutgoing.Load()}, {Name: "rx_vlan", Value: e.RxVLAN.Load()},
		{Name: "rx_bad_offload", Value: e.RxBadOffload.Load()}, {Name: "rx_gso", Value: e.RxGSO.Load()},
		{Name: "tx_packets", Value: e.TxPackets.Load()}, {Name: "tx_bytes", Value: e.TxBytes.Load()},
		{Name: "tx_dropped", Value: e.TxDropped.Load()}, {Name: "tx_errors", Value: e.TxErrors.Load()},
		{Name: "tx_gso", Value: e.TxGSO.Load()},
	}
}

var _ pipeline.LinkCounterReader = (*Endpoint)(nil)
