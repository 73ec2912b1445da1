package ipv6

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// linkStatesKey is the Stack.Shared key of the per-link NDP state.
const linkStatesKey = "network.ipv6/links"

// Constants of RFC 4861 §10 and RFC 4862.
const (
	maxInitialRAs        = 3                // MAX_INITIAL_RTR_ADVERTISEMENTS
	maxInitialRAInterval = 16 * time.Second // MAX_INITIAL_RTR_ADVERT_INTERVAL
	minDelayBetweenRAs   = 3 * time.Second  // MIN_DELAY_BETWEEN_RAS
	rsInterval           = 4 * time.Second  // RTR_SOLICITATION_INTERVAL
	twoHours             = 2 * time.Hour    // RFC 4862 §5.5.3 (e)
	defaultRouterMetric  = 1024             // as Linux
	onLinkMetric         = 256
	startRetry           = 10 * time.Millisecond
	startTries           = 500
)

// linkStates holds the NDP state of every link, across generations
// (Context.Shared). peek is lock-free (copy-on-write map).
type linkStates struct {
	stack  *pipeline.Stack
	clock  pipeline.Clock
	secret [32]byte // default stable_secret, per stack

	mu     sync.Mutex
	m      map[pipeline.NICID]*linkState
	snap   atomic.Pointer[map[pipeline.NICID]*linkState]
	closed bool
}

func newLinkStates(s *pipeline.Stack, clock pipeline.Clock) *linkStates {
	r := &linkStates{stack: s, clock: clock, m: map[pipeline.NICID]*linkState{}}
	if rnd := s.Rand(); rnd.Seeded() {
		for i := range r.secret {
			r.secret[i] = byte(rnd.Uint32())
		}
	} else {
		rand.Read(r.secret[:])
	}
	return r
}

// get returns the state of a link, made on first use.
func (r *linkStates) get(id pipeline.NICID) *linkState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ls := r.m[id]; ls != nil {
		return ls
	}
	ls := &linkState{reg: r, id: id, routers: map[netip.Addr]time.Time{}, onlink: map[netip.Prefix]time.Time{}, rdnss: map[netip.Addr]time.Time{}}
	r.m[id] = ls
	snap := make(map[pipeline.NICID]*linkState, len(r.m))
	for k, v := range r.m {
		snap[k] = v
	}
	r.snap.Store(&snap)
	return ls
}

// peek returns the state of a link without locking, or nil.
func (r *linkStates) peek(id pipeline.NICID) *linkState {
	if m := r.snap.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

// byName finds a link's state by link name.
func (r *linkStates) byName(name string) *linkState {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ls := range r.m {
		ls.mu.Lock()
		n := ls.name
		ls.mu.Unlock()
		if n == name {
			return ls
		}
	}
	return nil
}

// Close stops every link's timer (the stack closes shared objects).
func (r *linkStates) Close() error {
	r.mu.Lock()
	r.closed = true
	all := make([]*linkState, 0, len(r.m))
	for _, ls := range r.m {
		all = append(all, ls)
	}
	r.mu.Unlock()
	for _, ls := range all {
		ls.mu.Lock()
		ls.closed = true
		if ls.timer != nil {
			ls.timer.Stop()
		}
		ls.mu.Unlock()
	}
	return nil
}

// origin says where an address comes from.
type origin uint8

const (
	originConfigured origin = iota // the pipeline file
	originLinkLocal                // made for the link
	originSLAAC                    // from a Router Advertisement's prefix
)

// addrState is the DAD and lifetime state of one address of a link.
type addrState struct {
	prefix     netip.Prefix
	origin     origin
	tentative  bool // DAD not finished
	duplicate  bool // DAD failed: stays tentative
	dadLeft    int  // solicitations still to send
	dadAt      time.Time
	valid      time.Time // SLAAC: end of the valid lifetime (zero: infinite)
	preferred  time.Time // SLAAC: end of the preferred lifetime (zero: infinite)
	deprecated bool
}

// linkState is the long-lived NDP state of one link: its addresses' DAD
// and lifetimes, what Router Advertisements taught it (host role) or its
// advertisement schedule (router role). One timer on the stack clock
// drives it all; its work runs in a batch of the running generation.
type linkState struct {
	reg *linkStates
	id  pipeline.NICID

	// raMTU and curHopLimit are read by the output path without locks.
	raMTU       atomic.Int32
	curHopLimit atomic.Int32

	mu      sync.Mutex
	name    string
	nic     *pipeline.NIC
	addrs   []*addrState
	routers map[netip.Addr]time.Time // default routers (zero: infinite)
	onlink  map[netip.Prefix]time.Time
	rdnss   map[netip.Addr]time.Time

	host   bool
	rsLeft int
	rsAt   time.Time
	gotRA  bool

	router    bool
	raNext    time.Time
	raInitial int
	raLast    time.Time

	timer   pipeline.Timer
	timerAt time.Time
	tries   int
	closed  bool
}

func (ls *linkState) find(a netip.Addr) *addrState {
	for _, s := range ls.addrs {
		if s.prefix.Addr() == a {
			return s
		}
	}
	return nil
}

// configure brings the link's state in line with a new generation's
// endpoint (called while the generation is built: nothing is sent here).
func (ls *linkState) configure(e *endpoint) {
	cfg := &e.p.cfg
	now := ls.reg.clock.Now()
	dad := cfg.dadTransmits > 0 && e.resolving
	ls.mu.Lock()
	ls.name = e.nic.Name()
	ls.nic = e.nic.NIC()
	ls.tries = 0
	nic := ls.nic

	// Configured addresses: new ones start DAD, removed ones are forgotten.
	dyn := nic.DynamicAddresses()
	isDyn := func(a netip.Addr) bool {
		return slices.ContainsFunc(dyn, func(d pipeline.AddressInfo) bool { return d.Prefix.Addr() == a })
	}
	var configured []netip.Prefix
	for _, a := range e.nic.Addresses(6) {
		if !isDyn(a.Prefix.Addr()) {
			configured = append(configured, a.Prefix)
		}
	}
	for _, p := range configured {
		if ls.find(p.Addr()) != nil {
			continue
		}
		s := &addrState{prefix: p, origin: originConfigured}
		ls.startDADLocked(e, s, dad, now)
		ls.addrs = append(ls.addrs, s)
		ls.publishLocked(s)
	}
	ls.addrs = slices.DeleteFunc(ls.addrs, func(s *addrState) bool {
		if s.origin != originConfigured || slices.ContainsFunc(configured, func(p netip.Prefix) bool { return p.Addr() == s.prefix.Addr() }) {
			return false
		}
		nic.SetAddressKind(s.prefix.Addr(), pipeline.Permanent)
		return true
	})

	// The link-local address (none on the loopback NIC, as Linux's lo).
	if cfg.linkLocal && !e.loop {
		ll := linkLocalAddress(e.nic, ls.reg.secret[:], cfg.secret)
		// A link reopened with another MAC (or secret) gets the new
		// address in place of the old one.
		ls.addrs = slices.DeleteFunc(ls.addrs, func(s *addrState) bool {
			if s.origin == originLinkLocal && s.prefix != ll {
				nic.RemoveDynamicAddress(s.prefix.Addr())
				return true
			}
			return false
		})
		if ls.find(ll.Addr()) == nil {
			s := &addrState{prefix: ll, origin: originLinkLocal}
			ls.startDADLocked(e, s, dad, now)
			ls.addrs = append(ls.addrs, s)
			ls.publishLocked(s)
		}
	} else {
		ls.addrs = slices.DeleteFunc(ls.addrs, func(s *addrState) bool {
			if s.origin == originLinkLocal {
				nic.RemoveDynamicAddress(s.prefix.Addr())
				return true
			}
			return false
		})
	}

	// Roles.
	router := cfg.ra[ls.name] != nil && e.nic.Forwarding(6) && !e.loop
	if router && !ls.router {
		ls.raInitial, ls.raNext = maxInitialRAs, now
	}
	ls.router = router
	host := !e.nic.Forwarding(6) && cfg.acceptRA && !e.loop
	routesChanged := false
	if host && !ls.host {
		ls.rsLeft, ls.rsAt, ls.gotRA = cfg.rsCount, now, false
	}
	if !host && ls.host {
		// A link that starts forwarding forgets what it learnt as a host.
		routesChanged = len(ls.routers)+len(ls.onlink) > 0
		clear(ls.routers)
		clear(ls.onlink)
		clear(ls.rdnss)
		ls.raMTU.Store(0)
		ls.curHopLimit.Store(0)
	}
	ls.host = host
	ls.armLocked(now, now)
	ls.mu.Unlock()
	if routesChanged {
		ls.publishRoutes()
	}
}

// linkUp restarts what a link that comes up does (RFC 4861 §6.3.7, §6.2.4):
// a host solicits routers again, a router advertises at once and then at
// the initial (fast) rate. Its addresses stay (they are the pipeline's,
// not the device's, as with Linux's keep_addr_on_down) but run duplicate
// address detection again, as Linux's addrconf does on NETDEV_UP
// (RFC 4862 §5.4: DAD runs whenever an interface is (re)initialised): the
// link behind the new device may hold another node with one of them. Each
// is tentative (not local, not a source) until DAD passes; one that failed
// before is tried again.
func (ls *linkState) linkUp(e *endpoint) {
	cfg := &e.p.cfg
	now := ls.reg.clock.Now()
	ls.mu.Lock()
	if cfg.dadTransmits > 0 && e.resolving {
		for _, s := range ls.addrs {
			s.duplicate = false
			ls.startDADLocked(e, s, true, now)
			ls.publishLocked(s)
		}
	}
	if ls.host {
		ls.rsLeft, ls.rsAt, ls.gotRA = cfg.rsCount, now, false
	}
	if ls.router {
		ls.raInitial, ls.raNext = maxInitialRAs, now
	}
	ls.tries = 0
	ls.armLocked(now, now)
	ls.mu.Unlock()
}

// startDADLocked makes s tentative for DAD, or usable at once.
func (ls *linkState) startDADLocked(e *endpoint, s *addrState, dad bool, now time.Time) {
	if !dad {
		return
	}
	s.tentative = true
	s.dadLeft = e.p.cfg.dadTransmits
	s.dadAt = now
	e.p.nc.dadStarted.Inc()
}

// publishLocked gives the NIC the address's current kind.
func (ls *linkState) publishLocked(s *addrState) {
	a := s.prefix.Addr()
	if s.origin == originConfigured {
		switch {
		case s.tentative:
			ls.nic.SetAddressKind(a, pipeline.PermanentTentative)
		case s.deprecated:
			ls.nic.SetAddressKind(a, pipeline.PermanentExpired)
		default:
			ls.nic.SetAddressKind(a, pipeline.Permanent)
		}
		return
	}
	kind := pipeline.Temporary
	switch {
	case s.tentative:
		kind = pipeline.PermanentTentative
	case s.deprecated:
		kind = pipeline.PermanentExpired
	}
	ls.nic.SetDynamicAddress(pipeline.AddressInfo{Prefix: s.prefix, Behavior: pipeline.CanBePrimaryEndpoint, Kind: kind})
}

// linkLocalLocked returns the link's usable link-local address.
func (ls *linkState) linkLocalLocked() ([16]byte, bool) {
	for _, s := range ls.addrs {
		if s.origin == originLinkLocal || s.prefix.Addr().IsLinkLocalUnicast() {
			if !s.tentative {
				return s.prefix.Addr().As16(), true
			}
		}
	}
	return [16]byte{}, false
}

// linkLocalPendingLocked reports whether a link-local address is still
// under DAD.
func (ls *linkState) linkLocalPendingLocked() bool {
	for _, s := range ls.addrs {
		if s.prefix.Addr().IsLinkLocalUnicast() && s.tentative && !s.duplicate {
			return true
		}
	}
	return false
}

// armLocked makes sure the timer fires no later than at.
func (ls *linkState) armLocked(at, now time.Time) {
	if ls.closed || at.IsZero() {
		return
	}
	if ls.timer != nil && !ls.timerAt.IsZero() && !at.Before(ls.timerAt) {
		return
	}
	d := at.Sub(now)
	if d < 0 {
		d = 0
	}
	ls.timerAt = at
	if ls.timer == nil {
		ls.timer = ls.reg.clock.AfterFunc(d, ls.fire)
		return
	}
	ls.timer.Reset(d)
}

// fire runs the link's due work in a batch of the running generation, with
// the configuration of the endpoint that generation has for the link.
func (ls *linkState) fire() {
	ls.mu.Lock()
	ls.timerAt = time.Time{}
	closed := ls.closed
	ls.mu.Unlock()
	if closed {
		return
	}
	ran := false
	ls.reg.stack.Do(func(b *pipeline.Batch) {
		e, ok := b.Gen.NetworkEndpoint(ls.id, pipeline.IPv6ProtocolNumber).(*endpoint)
		if !ok || e.ls != ls {
			return
		}
		ran = true
		ls.run(b, e)
	})
	if ran {
		return
	}
	// The generation that made this link is not running yet (or has no
	// IPv6 on it any more: then the next one's configure re-arms).
	ls.mu.Lock()
	if ls.tries++; ls.tries < startTries {
		now := ls.reg.clock.Now()
		ls.armLocked(now.Add(startRetry), now)
	}
	ls.mu.Unlock()
}

// run does the link's due work: DAD steps, lifetimes, router
// solicitations, periodic advertisements; then re-arms the timer.
func (ls *linkState) run(b *pipeline.Batch, e *endpoint) {
	now := b.Now
	cfg := &e.p.cfg
	nc := &e.p.nc
	ls.mu.Lock()
	ls.tries = 0
	var next time.Time
	soon := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	// DAD.
	for _, s := range ls.addrs {
		if !s.tentative || s.duplicate {
			continue
		}
		if now.Before(s.dadAt) {
			soon(s.dadAt)
			continue
		}
		if s.dadLeft > 0 {
			a := s.prefix.Addr().As16()
			e.sendNS(b, [16]byte{}, solicitedNode(a), a, wire.MAC{})
			s.dadLeft--
			s.dadAt = now.Add(cfg.dadRetrans)
			soon(s.dadAt)
			continue
		}
		s.tentative = false
		ls.publishLocked(s)
		nc.dadOK.Inc()
	}
	// Lifetimes of what was learnt.
	routes := false
	expired := 0
	ls.addrs = slices.DeleteFunc(ls.addrs, func(s *addrState) bool {
		if s.origin != originSLAAC {
			return false
		}
		if !s.valid.IsZero() && !now.Before(s.valid) {
			ls.nic.RemoveDynamicAddress(s.prefix.Addr())
			expired++
			return true
		}
		if !s.deprecated && !s.preferred.IsZero() && !now.Before(s.preferred) {
			s.deprecated = true
			ls.publishLocked(s)
		}
		soon(s.valid)
		if !s.deprecated {
			soon(s.preferred)
		}
		return false
	})
	for a, t := range ls.routers {
		if !t.IsZero() && !now.Before(t) {
			delete(ls.routers, a)
			routes = true
			expired++
		} else {
			soon(t)
		}
	}
	for p, t := range ls.onlink {
		if !t.IsZero() && !now.Before(t) {
			delete(ls.onlink, p)
			routes = true
			expired++
		} else {
			soon(t)
		}
	}
	for a, t := range ls.rdnss {
		if !t.IsZero() && !now.Before(t) {
			delete(ls.rdnss, a)
			expired++
		} else {
			soon(t)
		}
	}
	nc.expired.Add(uint64(expired))
	// Router solicitations, once the link-local address is usable.
	if ls.host && !ls.gotRA && ls.rsLeft > 0 {
		switch {
		case now.Before(ls.rsAt):
			soon(ls.rsAt)
		case ls.linkLocalPendingLocked():
			// DAD's completion runs this again.
		default:
			src, _ := ls.linkLocalLocked()
			e.sendRS(b, src)
			ls.rsLeft--
			ls.rsAt = now.Add(rsInterval)
			if ls.rsLeft > 0 {
				soon(ls.rsAt)
			}
		}
	}
	// Router advertisements.
	if ls.router {
		rc := cfg.ra[ls.name]
		switch {
		case rc == nil:
		case now.Before(ls.raNext):
			soon(ls.raNext)
		case ls.linkLocalPendingLocked():
		default:
			if e.sendRA(b, ls, rc, allNodes) {
				ls.raLast = now
			}
			ls.raNext = now.Add(raInterval(ls.reg.stack.Rand(), rc, &ls.raInitial))
			soon(ls.raNext)
		}
	}
	ls.armLocked(next, now)
	ls.mu.Unlock()
	if routes {
		ls.publishRoutes()
	}
}

// raInterval draws the time to the next unsolicited advertisement: uniform
// in [interval/3, interval], at most 16 s for the first three (RFC 4861
// §6.2.4).
func raInterval(r *pipeline.Rand, rc *RAConfig, initial *int) time.Duration {
	lo := rc.Interval / 3
	d := lo + time.Duration(r.Uint64()%uint64(rc.Interval-lo+1))
	if *initial > 0 {
		*initial--
		d = min(d, maxInitialRAInterval)
	}
	return d
}

// dadConflict marks a tentative address a duplicate: another node answered
// for it or probes for it too (RFC 4862 §5.4.3, §5.4.4). It stays
// tentative: never a source, never accepted.
func (ls *linkState) dadConflict(b *pipeline.Batch, e *endpoint, a netip.Addr) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.find(a)
	if s == nil || !s.tentative || s.duplicate {
		return
	}
	s.duplicate = true
	e.p.nc.dadFailed.Inc()
	e.p.log.Warn().Str("link", ls.name).Str("address", a.String()).Msg("duplicate address detected; the address stays unusable")
}

// notRouter forgets a default router that advertised itself as a host.
func (ls *linkState) notRouter(a netip.Addr) {
	ls.mu.Lock()
	_, ok := ls.routers[a]
	delete(ls.routers, a)
	ls.mu.Unlock()
	if ok {
		ls.publishRoutes()
	}
}

// publishRoutes hands the link's learnt routes to the stack: a default
// route via each router, an on-link route for each prefix.
func (ls *linkState) publishRoutes() {
	ls.mu.Lock()
	var rs []pipeline.Route
	routers := make([]netip.Addr, 0, len(ls.routers))
	for a := range ls.routers {
		routers = append(routers, a)
	}
	slices.SortFunc(routers, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, a := range routers {
		rs = append(rs, pipeline.Route{Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Via: a, NIC: ls.id, Metric: defaultRouterMetric})
	}
	for p := range ls.onlink {
		rs = append(rs, pipeline.Route{Dst: p, NIC: ls.id, Metric: onLinkMetric, Connected: true})
	}
	ls.mu.Unlock()
	ls.reg.stack.SetDynamicRoutes("network.ipv6/ra/"+strconv.Itoa(int(ls.id)), rs)
}

// linkLocalAddress is the link's fe80::/64 address: EUI-64 from its MAC,
// or a stable identifier hashed from its name on links without one.
func linkLocalAddress(nic pipeline.NetworkInterface, defSecret, secret []byte) netip.Prefix {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	if mac := nic.LinkAddress(); !mac.IsZero() {
		eui64(a[8:], mac)
	} else {
		stableIID(a[8:], a[:8], nic.Name(), nil, orSecret(secret, defSecret))
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

func orSecret(s, def []byte) []byte {
	if len(s) > 0 {
		return s
	}
	return def
}

// eui64 writes the modified EUI-64 interface identifier of mac (RFC 4291
// appendix A).
func eui64(dst []byte, mac wire.MAC) {
	dst[0], dst[1], dst[2] = mac[0]^0x02, mac[1], mac[2]
	dst[3], dst[4] = 0xff, 0xfe
	dst[5], dst[6], dst[7] = mac[3], mac[4], mac[5]
}

// stableIID writes an RFC 7217 identifier: the first 64 bits of
// SHA-256(Prefix | Net_Iface | Network_ID | DAD_Counter | secret_key), with
// the link name as Net_Iface, its MAC (if any) folded in, DAD_Counter 0.
func stableIID(dst []byte, prefix []byte, name string, mac []byte, secret []byte) {
	h := sha256.New()
	h.Write(prefix[:8])
	h.Write([]byte(name))
	h.Write(mac)
	h.Write([]byte{0})
	h.Write(secret)
	sum := h.Sum(nil)
	copy(dst[:8], sum[:8])
	if binary.BigEndian.Uint64(dst[:8]) == 0 {
		dst[7] = 1 // the subnet-router anycast identifier is reserved
	}
}
