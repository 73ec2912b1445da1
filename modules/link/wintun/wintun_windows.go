package wintun

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wintun"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

const supported = true

// Endpoint is a Wintun session as a link endpoint. Its counters are fields.
type Endpoint struct {
	adapter *wintun.Adapter
	session wintun.Session
	readEv  windows.Handle // the session's read-wait event (owned by the session)
	stopEv  windows.Handle // set by Close to wake the reader
	mtu     int
	batch   int
	pool    *pipeline.Pool
	log     zerolog.Logger
	name    string

	dmu       sync.Mutex // held while a batch is delivered
	disp      atomic.Pointer[dispatcher]
	startOnce sync.Once
	wg        sync.WaitGroup

	txmu   sync.RWMutex // held for reading while the session is used to send
	closed bool
	once   sync.Once

	// Counters.
	RxPackets, RxBytes, RxNotAttached, RxMalformed atomic.Uint64
	TxPackets, TxBytes, TxDropped, TxErrors        atomic.Uint64
}

type dispatcher struct{ d pipeline.NetworkDispatcher }

func open(ctx *pipeline.Context, m *Module) (pipeline.LinkEndpoint, error) {
	adapter, err := wintun.OpenAdapter(m.Device)
	if err != nil {
		if !m.create {
			return nil, fmt.Errorf("open adapter %s: %w", m.Device, err)
		}
		var guid *windows.GUID
		if m.GUID != "" {
			g, gerr := windows.GUIDFromString(normalizeGUID(m.GUID))
			if gerr != nil {
				return nil, fmt.Errorf("guid: %w", gerr)
			}
			guid = &g
		}
		adapter, err = wintun.CreateAdapter(m.Device, m.TunnelType, guid)
		if err != nil {
			return nil, fmt.Errorf("create adapter %s (is wintun.dll next to the executable, and are we Administrator?): %w", m.Device, err)
		}
	}
	session, err := adapter.StartSession(uint32(m.RingCapacity))
	if err != nil {
		adapter.Close()
		return nil, fmt.Errorf("start session on %s: %w", m.Device, err)
	}
	stop, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		session.End()
		adapter.Close()
		return nil, fmt.Errorf("CreateEvent: %w", err)
	}
	mtu := ctx.LinkMTU
	if mtu == 0 {
		mtu = 1500
	}
	pool := ctx.Pool
	if pool == nil {
		pool = pipeline.DefaultPool
	}
	return &Endpoint{
		adapter: adapter, session: session, readEv: session.ReadWaitEvent(), stopEv: stop,
		mtu: mtu, batch: m.Batch, pool: pool, log: ctx.Logger, name: m.name,
	}, nil
}

func normalizeGUID(s string) string {
	if s != "" && s[0] != '{' {
		return "{" + s + "}"
	}
	return s
}

// MTU implements pipeline.LinkEndpoint.
func (e *Endpoint) MTU() int { return e.mtu }

// MaxHeaderLength implements pipeline.LinkEndpoint: no link header.
func (e *Endpoint) MaxHeaderLength() int { return 0 }

// LinkAddress implements pipeline.LinkEndpoint: none (layer 3).
func (e *Endpoint) LinkAddress() wire.MAC { return wire.MAC{} }

// Capabilities implements pipeline.LinkEndpoint.
func (e *Endpoint) Capabilities() pipeline.LinkCapabilities { return 0 }

// LUID is the adapter's LUID (for winipcfg and the like).
func (e *Endpoint) LUID() uint64 { return e.adapter.LUID() }

// Attach implements pipeline.LinkEndpoint; the first dispatcher starts the
// reader.
func (e *Endpoint) Attach(d pipeline.NetworkDispatcher) {
	if d == nil {
		e.disp.Store(nil)
		e.dmu.Lock()
		e.dmu.Unlock() //nolint:staticcheck // waits for a delivery in flight
		return
	}
	e.disp.Store(&dispatcher{d})
	e.startOnce.Do(func() {
		e.txmu.RLock()
		defer e.txmu.RUnlock()
		if e.closed {
			return
		}
		e.wg.Add(1)
		go e.read()
	})
}

// read drains the receive ring in batches and sleeps on the read-wait
// event when it is empty.
func (e *Endpoint) read() {
	defer e.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	spare := make([]*pipeline.Packet, e.batch)
	nspare := 0
	out := make([]*pipeline.Packet, 0, e.batch)
	defer func() { pipeline.ReleaseBatch(spare[:nspare]) }()
	handles := []windows.Handle{e.readEv, e.stopEv}
	for {
		empty := false
		for len(out) < e.batch {
			b, err := e.session.ReceivePacket()
			if err == windows.ERROR_NO_MORE_ITEMS {
				empty = true
				break
			}
			if err != nil {
				e.deliver(out)
				if !errors.Is(err, windows.ERROR_HANDLE_EOF) {
					e.log.Error().Err(err).Str("link", e.name).Msg("wintun read failed; the link stops receiving")
				}
				return
			}
			if len(b) == 0 || len(b) > pipeline.LargeDataSize {
				e.session.ReleaseReceivePacket(b)
				e.RxMalformed.Add(1)
				continue
			}
			var p *pipeline.Packet
			if len(b) <= pipeline.SmallDataSize {
				if nspare == 0 {
					e.pool.GetBatch(spare, pipeline.SmallDataSize)
					nspare = len(spare)
				}
				nspare--
				p, spare[nspare] = spare[nspare], nil
			} else {
				p = e.pool.Get(len(b))
			}
			d, _ := p.Append(len(b))
			copy(d, b)
			e.session.ReleaseReceivePacket(b)
			switch d[0] >> 4 {
			case 4:
				p.NetProto = pipeline.IPv4ProtocolNumber
			case 6:
				p.NetProto = pipeline.IPv6ProtocolNumber
			default:
				e.RxMalformed.Add(1)
				p.Release()
				continue
			}
			p.SetLinkHeader()
			p.SetNetworkHeader()
			out = append(out, p)
		}
		e.deliver(out)
		out = out[:0]
		if !empty {
			continue
		}
		ev, err := windows.WaitForMultipleObjects(handles, false, windows.INFINITE)
		if err != nil || ev == windows.WAIT_OBJECT_0+1 {
			return
		}
	}
}

func (e *Endpoint) deliver(out []*pipeline.Packet) {
	if len(out) == 0 {
		return
	}
	var bytes uint64
	for _, p := range out {
		bytes += uint64(p.Len())
	}
	e.RxPackets.Add(uint64(len(out)))
	e.RxBytes.Add(bytes)
	e.dmu.Lock()
	if h := e.disp.Load(); h != nil {
		h.d.DeliverNetworkPackets(out)
	} else {
		e.RxNotAttached.Add(uint64(len(out)))
		pipeline.ReleaseBatch(out)
	}
	e.dmu.Unlock()
	clear(out)
}

// WritePackets implements pipeline.LinkEndpoint: one ring slot per packet;
// a full ring drops and counts.
func (e *Endpoint) WritePackets(pkts []*pipeline.Packet) int {
	e.txmu.RLock()
	defer e.txmu.RUnlock()
	sent := 0
	var bytes uint64
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
		if e.closed {
			e.TxDropped.Add(1)
			p.Release()
			continue
		}
		d := p.Data()
		b, err := e.session.AllocateSendPacket(len(d))
		switch {
		case err == nil:
			copy(b, d)
			e.session.SendPacket(b)
			sent++
			bytes += uint64(len(d))
		case errors.Is(err, windows.ERROR_BUFFER_OVERFLOW), errors.Is(err, windows.ERROR_HANDLE_EOF):
			e.TxDropped.Add(1)
		default:
			e.TxErrors.Add(1)
		}
		p.Release()
	}
	e.TxPackets.Add(uint64(sent))
	e.TxBytes.Add(bytes)
	return sent
}

// Close implements pipeline.LinkEndpoint: the reader is woken and waited
// for, then the session ended and the adapter closed (an adapter this link
// created goes away with it).
func (e *Endpoint) Close() error {
	var err error
	e.once.Do(func() {
		e.Attach(nil)
		windows.SetEvent(e.stopEv)
		e.wg.Wait()
		e.txmu.Lock()
		e.closed = true
		e.session.End()
		err = e.adapter.Close()
		windows.CloseHandle(e.stopEv)
		e.txmu.Unlock()
	})
	return err
}

var _ pipeline.LinkEndpoint = (*Endpoint)(nil)
