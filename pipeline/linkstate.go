package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Link down and up, as Linux does it for a device that goes away.
//
// A link endpoint whose device disappears (a TUN device deleted, its
// namespace gone, a veth removed under AF_PACKET) calls LinkDown on the
// dispatcher it was attached with (LinkStateDispatcher, registration.go).
// That call only records the report and wakes the stack's link supervisor;
// the supervisor (reconcileLinks, on a goroutine of its own or the stack
// clock's timer goroutine, never a packet worker) then, under Stack.mu:
//
//   - replaces the NIC's endpoint with a downLink (which drops and counts
//     what it is given), detaches and closes the dead endpoint;
//   - withdraws every route through the NIC, connected and configured
//     ones and dynamic ones (Router Advertisements) alike: the running
//     generation's table is replaced by a filtered copy (Generation.Routes)
//     and the dynamic table is rebuilt without them, so a packet for a
//     destination behind the link gets the ICMP answer for no route (net
//     unreachable) from the IP module, or takes a less specific route
//     through another link;
//   - flushes the NIC's dynamic neighbor entries (static ones stay), as
//     Linux does on a device going down: the device that comes back may
//     have other peers;
//   - retries opening the link with the running configuration
//     (LinkModule.OpenLink of the running generation's module) on the
//     stack clock, with a backoff from linkRetryMin doubling to
//     linkRetryMax; `pipectl reload` of an unchanged file retries at once.
//     Every failed attempt is recorded in the NIC's LinkState (pipectl
//     stats shows it) and logged when its error changes.
//
// When the device is back, the new endpoint takes the NIC's place (same
// ID, counters, neighbor table, addresses), the file's routes return and
// the NIC's network endpoints that implement LinkUpListener are told
// (IPv6 solicits routers or advertises again).
// Linux does not restore the routes of a deleted device when one of that
// name comes back; pipestack does, since the pipeline file, not the
// device, says what the routes are.
//
// The NIC's addresses stay while it is down (they belong to the pipeline
// file, as a Linux address belongs to a device that is only down).

const (
	linkRetryMin = 100 * time.Millisecond
	linkRetryMax = 5 * time.Second
)

var errLinkGone = errors.New("device gone")

// LinkState is the state of a NIC's device, as pipectl stats shows it.
type LinkState struct {
	// Up is false while the device is gone.
	Up bool
	// Since is when the link last went down or came up (zero: up since it
	// was opened).
	Since time.Time
	// Reason is why the link went down (the endpoint's error).
	Reason string
	// Retry is the error of the last attempt to reopen it ("" before
	// the first); Attempts counts the attempts since it went down.
	Retry    string
	Attempts int
	// Downs counts how often the link went down.
	Downs uint64
}

// linkRetry is the supervisor's schedule for a down NIC.
type linkRetry struct {
	at      time.Time
	backoff time.Duration
}

// State returns the NIC's link state. Up changes once the routes and
// neighbors are in line with it.
func (n *NIC) State() LinkState {
	n.stMu.Lock()
	defer n.stMu.Unlock()
	return n.state
}

// Up reports whether the NIC's device is there.
func (n *NIC) Up() bool { return n.bound.Load().port != nil }

func (n *NIC) isDownLocked() bool { return n.bound.Load().port == nil }

// downLink stands in for the endpoint of a NIC whose device is gone: it
// keeps the lost endpoint's MTU and link address and drops every packet.
type downLink struct {
	nic  *NIC
	mtu  int
	hdr  int
	addr wire.MAC
}

func (d *downLink) MTU() int                       { return d.mtu }
func (d *downLink) MaxHeaderLength() int           { return d.hdr }
func (d *downLink) LinkAddress() wire.MAC          { return d.addr }
func (d *downLink) Capabilities() LinkCapabilities { return 0 }
func (d *downLink) Attach(NetworkDispatcher)       {}
func (d *downLink) Close() error                   { return nil }

// WritePackets drops everything: the device is gone.
func (d *downLink) WritePackets(pkts []*Packet) int {
	var n uint64
	for i, p := range pkts {
		if p != nil {
			n++
			p.Release()
			pkts[i] = nil
		}
	}
	d.nic.Stats.TxLinkDown.Add(n)
	return 0
}

// kickLinks wakes the supervisor: one pass runs on its own goroutine (a
// goroutine per link event, never per packet); kicks during a pass start
// one more.
func (s *Stack) kickLinks() {
	if s.closing.Load() {
		return
	}
	if s.linkKick.CompareAndSwap(false, true) {
		s.linkWG.Add(1)
		go func() {
			defer s.linkWG.Done()
			s.reconcileLinks()
		}()
	}
}

// reconcileLinks is one pass of the link supervisor: it takes down the
// NICs whose endpoint reported LinkDown, tries to reopen those whose retry
// is due, republishes the routes and arms the retry timer.
func (s *Stack) reconcileLinks() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.linkKick.Store(false)
	if s.closed {
		return
	}
	g := s.gen.Load()
	now := s.clock.Now()
	var next time.Time
	for _, n := range s.nics {
		if b := n.bound.Load(); b.port != nil && b.port.down.Load() {
			s.takeDown(n, b, now)
		}
		n.stMu.Lock()
		down := n.isDownLocked()
		due := down && !now.Before(n.retry.at)
		n.stMu.Unlock()
		if due && g != nil {
			if s.reopen(g, n, now) {
				continue
			}
		}
		if down {
			n.stMu.Lock()
			if next.IsZero() || n.retry.at.Before(next) {
				next = n.retry.at
			}
			n.stMu.Unlock()
		}
	}
	s.armLinkTimerLocked(next, now)
}

// armLinkTimerLocked schedules the next pass at at (zero: none).
func (s *Stack) armLinkTimerLocked(at, now time.Time) {
	if at.IsZero() {
		if s.linkTimer != nil {
			s.linkTimer.Stop()
		}
		return
	}
	d := max(at.Sub(now), 0)
	if s.linkTimer == nil {
		s.linkTimer = s.clock.AfterFunc(d, s.kickLinks)
		return
	}
	s.linkTimer.Reset(d)
}

// takeDown puts a NIC whose endpoint reported LinkDown in the down state
// (Stack.mu held).
func (s *Stack) takeDown(n *NIC, b *boundLink, now time.Time) {
	err := errLinkGone
	if e := b.port.err.Load(); e != nil {
		err = *e
	}
	d := &downLink{nic: n, mtu: b.ep.MTU(), hdr: b.ep.MaxHeaderLength(), addr: b.ep.LinkAddress()}
	n.bound.Store(&boundLink{ep: d, caps: b.caps})
	s.publishLinkRoutes(s.gen.Load())
	b.ep.Attach(nil)
	n.neigh.flushDynamic()
	if cerr := b.ep.Close(); cerr != nil {
		s.log.Debug().Err(cerr).Str("link", n.name).Msg("close of the lost endpoint")
	}
	n.stMu.Lock()
	n.state = LinkState{Since: now, Reason: err.Error(), Downs: n.state.Downs + 1}
	n.retry = linkRetry{at: now.Add(linkRetryMin), backoff: linkRetryMin}
	n.stMu.Unlock()
	s.log.Warn().Err(err).Str("link", n.name).Msg("link down: its routes are withdrawn; reopening it when the device is back")
	s.addrEvent(AddressEvent{NIC: n.id, Down: true})
}

// reopen tries to open a down NIC's link again with the running
// configuration; it reports whether the link is up again (Stack.mu held).
func (s *Stack) reopen(g *Generation, n *NIC, now time.Time) bool {
	ng := g.nic(n.id)
	var err error
	var ep LinkEndpoint
	if ng == nil || ng.nic != n {
		err = errors.New("not in the running generation")
	} else {
		lc := ng.cfg
		ctx := s.moduleContext(g.cfg, lc.ModuleID, lc.Name, lc.Line)
		ctx.LinkMTU = lc.MTU
		ep, err = lc.Module.OpenLink(ctx)
		if err == nil {
			if h := ep.MaxHeaderLength(); h > DefaultHeadroom {
				ep.Close()
				ep, err = nil, fmt.Errorf("link needs %d bytes of headroom, the stack gives %d", h, DefaultHeadroom)
			}
		}
	}
	n.stMu.Lock()
	n.state.Attempts++
	if err != nil {
		msg := err.Error()
		first := msg != n.state.Retry
		n.state.Retry = msg
		n.retry.backoff = min(2*n.retry.backoff, linkRetryMax)
		n.retry.at = now.Add(n.retry.backoff)
		attempts := n.state.Attempts
		n.stMu.Unlock()
		if first {
			s.log.Warn().Err(err).Str("link", n.name).Int("attempt", attempts).Msg("link still down: reopen failed; retrying")
		}
		return false
	}
	attempts := n.state.Attempts
	n.stMu.Unlock()
	if ep.MTU() != ng.mtu && (ng.cfg.MTU == 0 || ep.MTU() < ng.cfg.MTU) {
		s.log.Warn().Str("link", n.name).Int("mtu", ep.MTU()).Int("was", ng.mtu).Msg("the reopened device has another MTU; the next reload applies it")
	}
	n.bind(ep)
	s.publishLinkRoutes(g)
	for _, pe := range ng.endpoints {
		if l, ok := pe.ep.(LinkUpListener); ok {
			l.LinkUp()
		}
	}
	n.stMu.Lock()
	n.state = LinkState{Up: true, Since: now, Downs: n.state.Downs}
	n.retry = linkRetry{}
	n.stMu.Unlock()
	s.log.Info().Str("link", n.name).Int("attempt", attempts).Msg("link up again: its routes are back")
	return true
}

// publishLinkRoutes withdraws the routes through down NICs from g's table
// and the dynamic one, or restores them (Stack.mu held).
func (s *Stack) publishLinkRoutes(g *Generation) {
	down := map[NICID]bool{}
	for _, n := range s.nics {
		if !n.Up() {
			down[n.id] = true
		}
	}
	if g != nil {
		g.linkRoutes.Store(filterRoutes(g.routes, down))
	}
	s.routeMu.Lock()
	s.downNICs = down
	s.rebuildRoutesLocked()
	s.routeMu.Unlock()
}

// filterRoutes returns t without the routes through down NICs, or nil when
// none is down.
func filterRoutes(t *RouteTable, down map[NICID]bool) *RouteTable {
	if len(down) == 0 {
		return nil
	}
	kept := make([]Route, 0, len(t.routes))
	for _, r := range t.routes {
		if !down[r.NIC] {
			kept = append(kept, r)
		}
	}
	return NewRouteTable(kept)
}
