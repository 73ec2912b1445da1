package channel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// Options configure an Endpoint made without a pipeline file.
type Options struct {
	Name     string
	MTU      int
	Ethernet bool
	MAC      wire.MAC
	Queue    int
	Pool     *pipeline.Pool
	// Device names a simulated device (RemoveDevice, RestoreDevice); ""
	// for none.
	Device string
	// Offload declares GSO and checksum offload (CapGSO,
	// CapTXChecksumOffload, CapRXChecksumOffload) as a TUN link with
	// virtio-net headers does: written packets may be GSO super-packets
	// with partial checksums, which the reader sees as they are.
	Offload bool
}

// Endpoint is an in-memory link endpoint.
//
// Inbound: InjectFrames copies frames into pooled packets and delivers them
// as one batch on the caller's goroutine (run to completion, like a link's
// reader loop); InjectPackets hands over packets without a copy.
//
// Outbound: WritePackets (the stack's side) queues packets, whole frames with
// the link header pushed; Read and ReadWait take them out, and the reader
// owns (and must Release) what it gets.
type Endpoint struct {
	opts Options

	dmu  sync.RWMutex // held for reading while a batch is delivered
	disp pipeline.NetworkDispatcher

	lost atomic.Bool // the simulated device is gone (Lose)
	mtu  atomic.Int64

	mu     sync.Mutex
	ring   []*pipeline.Packet
	head   int
	n      int
	closed bool
	notify chan struct{}

	scratchMu sync.Mutex
	scratch   [][]*pipeline.Packet

	// Counters.
	RxInjected, RxDropped, RxMalformed, RxOtherHost atomic.Uint64
	TxQueued, TxDropped                             atomic.Uint64
}

// New returns an endpoint.
func New(o Options) *Endpoint {
	if o.MTU == 0 {
		o.MTU = 1500
	}
	if o.Queue == 0 {
		o.Queue = 1024
	}
	if o.Pool == nil {
		o.Pool = pipeline.DefaultPool
	}
	e := &Endpoint{opts: o, ring: make([]*pipeline.Packet, o.Queue), notify: make(chan struct{}, 1)}
	e.mtu.Store(int64(o.MTU))
	return e
}

// MTU implements pipeline.LinkEndpoint.
func (e *Endpoint) MTU() int { return int(e.mtu.Load()) }

// SetMTU implements pipeline.LinkMTUSetter (68..65535).
func (e *Endpoint) SetMTU(mtu int) error {
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("mtu %d out of range 68..65535", mtu)
	}
	e.mtu.Store(int64(mtu))
	return nil
}

// MaxHeaderLength implements pipeline.LinkEndpoint.
func (e *Endpoint) MaxHeaderLength() int {
	if e.opts.Ethernet {
		return wire.EthernetHeaderSize
	}
	return 0
}

// LinkAddress implements pipeline.LinkEndpoint.
func (e *Endpoint) LinkAddress() wire.MAC {
	if e.opts.Ethernet {
		return e.opts.MAC
	}
	return wire.MAC{}
}

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities {
	var c pipeline.LinkCapabilities
	if e.opts.Ethernet {
		c |= pipeline.CapResolutionRequired
	}
	if e.opts.Offload {
		c |= pipeline.CapGSO | pipeline.CapTXChecksumOffload | pipeline.CapRXChecksumOffload
	}
	return c
}

// Ethernet reports whether the endpoint frames packets as Ethernet.
func (e *Endpoint) Ethernet() bool { return e.opts.Ethernet }

// Attach implements pipeline.LinkEndpoint.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	e.dmu.Lock()
	e.disp = d
	e.dmu.Unlock()
}

func (e *Endpoint) getScratch() []*pipeline.Packet {
	e.scratchMu.Lock()
	var s []*pipeline.Packet
	if n := len(e.scratch); n > 0 {
		s = e.scratch[n-1]
		e.scratch = e.scratch[:n-1]
	}
	e.scratchMu.Unlock()
	return s[:0]
}

func (e *Endpoint) putScratch(s []*pipeline.Packet) {
	clear(s)
	e.scratchMu.Lock()
	e.scratch = append(e.scratch, s[:0])
	e.scratchMu.Unlock()
}

// InjectFrames delivers copies of frames (IP packets, or Ethernet frames for
// an Ethernet endpoint) as one received batch, on the calling goroutine. A
// frame too large for a packet buffer is counted in RxDropped.
func (e *Endpoint) InjectFrames(frames [][]byte) {
	pkts := e.getScratch()
	if cap(pkts) < len(frames) {
		pkts = make([]*pipeline.Packet, 0, len(frames))
	}
	pkts = pkts[:len(frames)]
	max := 0
	for _, f := range frames {
		if len(f) > max {
			max = len(f)
		}
	}
	if max > pipeline.LargeDataSize {
		max = pipeline.LargeDataSize
	}
	e.opts.Pool.GetBatch(pkts, max)
	for i, f := range frames {
		if !pkts[i].SetData(f) {
			e.RxDropped.Add(1)
			pkts[i].Release()
			pkts[i] = nil
		}
	}
	e.deliver(pkts)
	e.putScratch(pkts)
}

// InjectPackets delivers packets whose Data() holds a whole frame as one
// received batch and takes ownership of them; the slice stays the caller's.
func (e *Endpoint) InjectPackets(pkts []*pipeline.Packet) {
	e.deliver(pkts)
}

func (e *Endpoint) deliver(pkts []*pipeline.Packet) {
	n := 0
	for i, p := range pkts {
		if p == nil {
			continue
		}
		if !e.parse(p) {
			pkts[i] = nil
			p.Release()
			continue
		}
		n++
	}
	e.RxInjected.Add(uint64(n))
	e.dmu.RLock()
	if e.disp == nil || e.lost.Load() {
		e.dmu.RUnlock()
		e.RxDropped.Add(uint64(n))
		pipeline.ReleaseBatch(pkts)
		return
	}
	e.disp.DeliverNetworkPackets(pkts)
	e.dmu.RUnlock()
}

// parse reads the framing: sets NetProto, marks the link header and leaves
// Data() at the network header.
func (e *Endpoint) parse(p *pipeline.Packet) bool {
	if !e.opts.Ethernet {
		d := p.Data()
		if len(d) == 0 {
			e.RxMalformed.Add(1)
			return false
		}
		switch d[0] >> 4 {
		case 4:
			p.NetProto = pipeline.IPv4ProtocolNumber
		case 6:
			p.NetProto = pipeline.IPv6ProtocolNumber
		default:
			e.RxMalformed.Add(1)
			return false
		}
		p.SetLinkHeader()
		p.SetNetworkHeader()
		return true
	}
	eth := wire.Ethernet(p.Data())
	if eth.Check() != nil {
		e.RxMalformed.Add(1)
		return false
	}
	dst := eth.Dst()
	switch {
	case dst == e.opts.MAC:
		p.PktType = pipeline.PacketHost
	case dst.IsBroadcast():
		p.PktType = pipeline.PacketBroadcast
	case dst.IsMulticast():
		p.PktType = pipeline.PacketMulticast
	default:
		e.RxOtherHost.Add(1)
		return false
	}
	p.NetProto = pipeline.NetworkProtocolNumber(eth.Type())
	p.SetLinkHeader()
	p.Pull(wire.EthernetHeaderSize)
	p.SetNetworkHeader()
	return true
}

// WritePackets implements pipeline.LinkEndpoint: it pushes the Ethernet
// header (Ethernet framing) and queues the packets for Read. A full queue
// drops and counts.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	if e.opts.Ethernet {
		for i, p := range pkts {
			if p == nil {
				continue
			}
			h, ok := p.Push(wire.EthernetHeaderSize)
			if !ok {
				pkts[i] = nil
				e.TxDropped.Add(1)
				p.Release()
				continue
			}
			eth := wire.Ethernet(h)
			eth.SetDst(p.RemoteLinkAddr)
			eth.SetSrc(e.opts.MAC)
			eth.SetType(uint16(p.NetProto))
		}
	}
	sent, dropped := 0, 0
	e.mu.Lock()
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
		if e.closed || e.n == len(e.ring) || e.lost.Load() {
			dropped++
			p.Release()
			continue
		}
		e.ring[(e.head+e.n)%len(e.ring)] = p
		e.n++
		sent++
	}
	e.mu.Unlock()
	if sent > 0 {
		select {
		case e.notify <- struct{}{}:
		default:
		}
	}
	e.TxQueued.Add(uint64(sent))
	e.TxDropped.Add(uint64(dropped))
	return sent
}

// Read moves up to len(dst) queued outbound packets into dst and returns how
// many; it does not block. The caller owns the packets (Data() is the whole
// frame) and must Release them.
func (e *Endpoint) Read(dst []*pipeline.Packet) int {
	e.mu.Lock()
	k := 0
	for k < len(dst) && e.n > 0 {
		dst[k] = e.ring[e.head]
		e.ring[e.head] = nil
		e.head = (e.head + 1) % len(e.ring)
		e.n--
		k++
	}
	e.mu.Unlock()
	return k
}

// Pending is the number of queued outbound packets.
func (e *Endpoint) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// ReadWait is Read that blocks until at least one packet is queued, ctx is
// done (ctx.Err()) or the endpoint is closed (context.Canceled).
func (e *Endpoint) ReadWait(ctx context.Context, dst []*pipeline.Packet) (int, error) {
	for {
		if n := e.Read(dst); n > 0 {
			return n, nil
		}
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return 0, context.Canceled
		}
		select {
		case <-e.notify:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Lose simulates the loss of the device behind the endpoint: from now on
// it drops what is injected and written (counted in RxDropped, TxDropped)
// and it reports LinkDown(err) to its dispatcher once, as a TUN or
// AF_PACKET link does when its device disappears.
func (e *Endpoint) Lose(err error) {
	if !e.lost.CompareAndSwap(false, true) {
		return
	}
	e.dmu.RLock()
	d := e.disp
	e.dmu.RUnlock()
	if ld, ok := d.(pipeline.LinkStateDispatcher); ok {
		ld.LinkDown(err)
	}
}

// Lost reports whether Lose was called.
func (e *Endpoint) Lost() bool { return e.lost.Load() }

// Simulated devices: a link whose Options.Device (or config key device:) is
// set opens only while its device exists.
var devices struct {
	mu   sync.Mutex
	gone map[string]bool
	eps  map[string][]*Endpoint
}

// ErrNoDevice is OpenLink's error for a removed simulated device.
var ErrNoDevice = errors.New("no such device")

// RemoveDevice removes a simulated device: every open endpoint of it
// reports the loss (Lose), and opening it fails with ErrNoDevice until
// RestoreDevice.
func RemoveDevice(name string) {
	devices.mu.Lock()
	if devices.gone == nil {
		devices.gone = map[string]bool{}
	}
	devices.gone[name] = true
	eps := devices.eps[name]
	delete(devices.eps, name)
	devices.mu.Unlock()
	for _, e := range eps {
		e.Lose(fmt.Errorf("device %s removed", name))
	}
}

// RestoreDevice makes a removed simulated device exist again.
func RestoreDevice(name string) {
	devices.mu.Lock()
	delete(devices.gone, name)
	devices.mu.Unlock()
}

// openDevice registers an endpoint of a simulated device, or fails when
// the device is gone.
func openDevice(e *Endpoint) error {
	name := e.opts.Device
	if name == "" {
		return nil
	}
	devices.mu.Lock()
	defer devices.mu.Unlock()
	if devices.gone[name] {
		return fmt.Errorf("%s: %w", name, ErrNoDevice)
	}
	if devices.eps == nil {
		devices.eps = map[string][]*Endpoint{}
	}
	devices.eps[name] = append(devices.eps[name], e)
	return nil
}

func closeDevice(e *Endpoint) {
	name := e.opts.Device
	if name == "" {
		return
	}
	devices.mu.Lock()
	devices.eps[name] = slices.DeleteFunc(devices.eps[name], func(x *Endpoint) bool { return x == e })
	if len(devices.eps[name]) == 0 {
		delete(devices.eps, name)
	}
	devices.mu.Unlock()
}

// Close implements pipeline.LinkEndpoint: queued packets are released and
// later writes dropped.
func (e *Endpoint) Close() error {
	e.Attach(nil)
	closeDevice(e)
	e.mu.Lock()
	e.closed = true
	for e.n > 0 {
		e.ring[e.head].Release()
		e.ring[e.head] = nil
		e.head = (e.head + 1) % len(e.ring)
		e.n--
	}
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
	return nil
}

// Pipe connects two endpoints like a cable: what a writes, b receives and
// vice versa, in batches, on two goroutines, without copying. Both must use
// the same framing. stop ends the goroutines and waits for them.
func Pipe(a, b *Endpoint) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	move := func(from, to *Endpoint) {
		defer wg.Done()
		buf := make([]*pipeline.Packet, 64)
		for {
			n, err := from.ReadWait(ctx, buf)
			if err != nil {
				return
			}
			for _, p := range buf[:n] {
				p.ResetMeta()
			}
			to.deliver(buf[:n])
			clear(buf[:n])
		}
	}
	wg.Add(2)
	go move(a, b)
	go move(b, a)
	return func() { cancel(); wg.Wait() }
}

// LinkCounters implements pipeline.LinkCounterReader.
func (e *Endpoint) LinkCounters() []pipeline.CounterValue {
	return []pipeline.CounterValue{
		{Name: "rx_injected", Value: e.RxInjected.Load()}, {Name: "rx_dropped", Value: e.RxDropped.Load()},
		{Name: "rx_malformed", Value: e.RxMalformed.Load()}, {Name: "rx_other_host", Value: e.RxOtherHost.Load()},
		{Name: "tx_queued", Value: e.TxQueued.Load()}, {Name: "tx_dropped", Value: e.TxDropped.Load()},
	}
}

var (
	_ pipeline.LinkEndpoint      = (*Endpoint)(nil)
	_ pipeline.LinkMTUSetter     = (*Endpoint)(nil)
	_ pipeline.LinkCounterReader = (*Endpoint)(nil)
)
