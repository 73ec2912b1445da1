package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Generation is everything built from one pipeline file: the modules, the
// NICs as configured, routes, addresses and hooks. It is immutable once
// built; workers read it without locks. A reload builds a new generation,
// swaps it in and stops the old one once every worker has left it.
type Generation struct {
	seq   uint64
	cfg   *Config
	stack *Stack

	nics       []*nicGen // by NICID; nil where a NIC is not in this generation
	netProtos  []NetworkProtocol
	resolvers  []LinkAddressResolver
	transports [256]TransportProtocol
	routes     *RouteTable
	rtables    map[uint32]*RouteTable // policy routing's extra tables (policyroute.go)
	rrules     []RouteRule
	hooks      [NumHooks]*hookSet
	local4     map[uint32]localAddr
	local6     *addrSet6[localAddr]

	// The loopback NIC in this generation and the routes through it
	// (loopback.go); nil without an IP protocol.
	lo                 *nicGen
	loRoute4, loRoute6 *Route

	modules []*moduleInst
	// dropListeners are the modules that are told of a tracked packet's
	// drop (PacketDropListener, Batch.Drop).
	dropListeners []PacketDropListener
	refs          atomic.Int64
	// pins counts the resume tokens (resume.go) that name this
	// generation: a reload waits for them (Options.ResumeTimeout at most)
	// before it stops it. stale is set when it stops: a token of it then
	// resumes nowhere (dropped, resume_stale).
	pins   atomic.Int64
	stale  atomic.Bool
	inputs inputSet // files the modules read (Context.ReadFile)

	// linkRoutes is routes without the routes through NICs whose device
	// is gone (linkstate.go); nil while every link is up.
	linkRoutes atomic.Pointer[RouteTable]

	// stack-level drop counters
	hookDrops       [NumHooks]*Counter
	hookMalformed   *Counter
	hookNested      *Counter
	neighUnresolved *Counter
	noNIC           *Counter
	resumeStale     *Counter
	resumeNoToken   *Counter
	resumeBadAnswer *Counter
	loopRounds      *Counter
}

type localAddr struct {
	nic       NICID
	broadcast bool
}

type moduleInst struct {
	id        string
	instance  string
	mod       Module
	line, col int
}

// Seq is the generation's sequence number (1 for the first).
func (g *Generation) Seq() uint64 { return g.seq }

// Config is the configuration the generation was built from.
func (g *Generation) Config() *Config { return g.cfg }

// Routes is the generation's route table in force: the one built from the
// pipeline file, without the routes through links that are down.
func (g *Generation) Routes() *RouteTable {
	if t := g.linkRoutes.Load(); t != nil {
		return t
	}
	return g.routes
}

func (g *Generation) nic(id NICID) *nicGen {
	if int(id) < len(g.nics) {
		return g.nics[id]
	}
	return nil
}

// NIC returns the NetworkInterface of a NIC in this generation.
func (g *Generation) NIC(id NICID) (NetworkInterface, bool) {
	ng := g.nic(id)
	if ng == nil {
		return nil, false
	}
	return ng, true
}

// NICByName returns the NetworkInterface of the link of this name in this
// generation. Unlike Stack.NIC it takes no lock, so code running in a batch
// may call it.
func (g *Generation) NICByName(name string) (NetworkInterface, bool) {
	for _, ng := range g.nics {
		if ng != nil && ng.nic.name == name {
			return ng, true
		}
	}
	return nil, false
}

// NetworkEndpoint returns protocol num's endpoint on a NIC.
func (g *Generation) NetworkEndpoint(id NICID, num NetworkProtocolNumber) NetworkEndpoint {
	if ng := g.nic(id); ng != nil {
		return ng.endpoint(num)
	}
	return nil
}

// TransportProtocol returns the configured transport protocol, or nil.
func (g *Generation) TransportProtocol(n TransportProtocolNumber) TransportProtocol {
	return g.transports[n]
}

// IsLocal4 tells whether an IPv4 destination is one of the stack's
// addresses (or a subnet or limited broadcast address), and on which NIC.
func (g *Generation) IsLocal4(dst [4]byte) (nic NICID, broadcast, ok bool) {
	if dst == [4]byte{255, 255, 255, 255} {
		return 0, true, true
	}
	if len(g.local4) == 0 {
		return 0, false, false
	}
	la, ok := g.local4[binary.BigEndian.Uint32(dst[:])]
	if !ok && dst[0] == 127 && g.lo != nil {
		return g.lo.nic.id, false, true // all of 127.0.0.0/8 (loopback.go)
	}
	return la.nic, la.broadcast, ok
}

// IsLocal6 tells whether an IPv6 destination is one of the stack's unicast
// addresses, configured or dynamic (link-local, SLAAC), and on which NIC. A
// tentative address (duplicate address detection not finished, or failed)
// is not local. Multicast groups are the IPv6 module's business.
func (g *Generation) IsLocal6(dst [16]byte) (NICID, bool) {
	if m := g.stack.local6dyn.Load(); m != nil {
		if d, ok := m.get(dst); ok {
			return d.nic, d.usable
		}
	}
	la, ok := g.local6.get(dst)
	return la.nic, ok
}

func (g *Generation) resolver(num NetworkProtocolNumber) LinkAddressResolver {
	for _, r := range g.resolvers {
		if r.ResolvesFor() == num {
			return r
		}
	}
	return nil
}

// build assembles a generation from cfg. With open false it provisions and
// validates every module but opens no device (pipectl validate). On error
// everything made so far is released and the running generation is
// untouched.
func (s *Stack) build(cfg *Config, open bool) (_ *Generation, err error) {
	g := &Generation{cfg: cfg, stack: s, routes: NewRouteTable(nil)}
	s.building = &g.inputs
	// Every link's NIC ID before any module is provisioned
	// (Context.LinkIDs): a name the stack knows keeps its ID, a new one
	// gets the next (reserved for that name when opening, even if the
	// build fails: IDs are per name and never reused).
	links := make(map[string]NICID, len(cfg.Links))
	next := s.lastNIC
	for i := range cfg.Links {
		name := cfg.Links[i].Name
		id, ok := s.nicIDs[name]
		if !ok {
			next++
			id = next
			if open {
				s.lastNIC, s.nicIDs[name] = next, id
			}
		}
		links[name] = id
	}
	// The loopback NIC's too (addLoopback makes it with this ID), so that
	// -i lo / -o lo resolve: its ID follows the first generation's links.
	if id, ok := s.nicIDs[LoopbackName]; ok {
		links[LoopbackName] = id
	} else {
		next++
		if open {
			s.lastNIC, s.nicIDs[LoopbackName] = next, next
		}
		links[LoopbackName] = next
	}
	s.buildingLinks = links
	defer func() { s.building, s.buildingLinks = nil, nil }()
	var opened []LinkEndpoint
	var fresh []*NIC
	defer func() {
		if err != nil {
			for _, ep := range opened {
				ep.Close()
			}
			for _, n := range fresh {
				n.neigh.close()
			}
			g.cleanup()
		}
	}()
	counters := s.counterSet("stack")
	for h := Hook(0); h < NumHooks; h++ {
		g.hookDrops[h] = counters.Get("filter_drop_" + h.String())
	}
	g.hookMalformed = counters.Get("filter_malformed")
	g.hookNested = counters.Get("filter_nested")
	g.neighUnresolved = counters.Get("neighbor_unresolved")
	g.noNIC = counters.Get("output_no_nic")
	g.resumeStale = counters.Get("resume_stale")
	g.resumeNoToken = counters.Get("resume_no_token")
	g.resumeBadAnswer = counters.Get("resume_bad_answer")
	g.loopRounds = counters.Get("loopback_rounds")

	// Protocol modules.
	families := map[int]bool{}
	var hookModules []*ModuleConfig
	for i := range cfg.Modules {
		mc := &cfg.Modules[i]
		mi := &moduleInst{id: mc.ID, instance: mc.ID, mod: mc.Module, line: mc.Line, col: mc.Col}
		g.modules = append(g.modules, mi)
		if err := s.provision(cfg, mi); err != nil {
			return nil, err
		}
		switch m := mc.Module.(type) {
		case NetworkModule:
			p := m.NetworkProtocol()
			if p == nil {
				return nil, cfg.errAt(mc.Line, mc.Col, mc.ID, errors.New("provisioned no network protocol"))
			}
			g.netProtos = append(g.netProtos, p)
			if r, ok := p.(LinkAddressResolver); ok {
				g.resolvers = append(g.resolvers, r)
			}
			switch p.Number() {
			case IPv4ProtocolNumber:
				families[4] = true
			case IPv6ProtocolNumber:
				families[6] = true
			}
		case HookModule:
			hookModules = append(hookModules, mc)
		case TransportModule:
			p := m.TransportProtocol()
			if p == nil {
				return nil, cfg.errAt(mc.Line, mc.Col, mc.ID, errors.New("provisioned no transport protocol"))
			}
			if g.transports[p.Number()] != nil {
				return nil, cfg.errAt(mc.Line, mc.Col, mc.ID, fmt.Errorf("transport protocol %d configured twice", p.Number()))
			}
			g.transports[p.Number()] = p
		default:
			// A section module (plugins:) may serve other modules only.
			if !SectionModules[mc.ID] {
				return nil, cfg.errAt(mc.Line, mc.Col, mc.ID, errors.New("is neither a network nor a transport module"))
			}
		}
	}

	// Links: provision and validate, then (when opening) hand over or open.
	for i := range cfg.Links {
		lc := &cfg.Links[i]
		mi := &moduleInst{id: lc.ModuleID, instance: lc.Name, mod: lc.Module, line: lc.Line, col: lc.Col}
		g.modules = append(g.modules, mi)
		if err := s.provision(cfg, mi); err != nil {
			return nil, err
		}
		where := lc.ModuleID + " (link " + lc.Name + ")"
		for _, a := range lc.Addresses {
			fam := 4
			if a.Prefix.Addr().Is6() {
				fam = 6
			}
			if !families[fam] {
				return nil, cfg.errAt(lc.Line, lc.Col, where, fmt.Errorf("address %s needs network.ipv%d under modules:", a.Prefix, fam))
			}
		}
	}
	for _, h := range cfg.Hooks {
		if h != nil {
			if err := h.Validate(); err != nil {
				return nil, &ConfigError{File: cfg.File, Module: "filter", Err: err}
			}
		}
	}
	var entries []HookEntry
	for _, mc := range hookModules {
		es := mc.Module.(HookModule).HookTables()
		for _, e := range es {
			if e.Table == nil {
				continue
			}
			if err := e.Table.Validate(); err != nil {
				return nil, cfg.errAt(mc.Line, mc.Col, mc.ID, fmt.Errorf("table %s at %s: %w", e.Name, e.Hook, err))
			}
		}
		entries = append(entries, es...)
	}
	if len(cfg.RouteRules) > 0 {
		// Policy routing: the stack's packets are routed again after
		// mangle OUTPUT (ip_route_me_harder).
		entries = append(entries, HookEntry{Hook: Output, Priority: PriorityMangle + 1, Name: "reroute", Table: HookFunc("reroute", rerouteHook{})})
	}
	hooks, err := composeHooks(cfg.Hooks, entries)
	if err != nil {
		return nil, &ConfigError{File: cfg.File, Module: "filter", Err: err}
	}
	if !open {
		return g, nil
	}

	// Open or hand over the links.
	var nicRoutes []Route
	for i := range cfg.Links {
		lc := &cfg.Links[i]
		where := lc.ModuleID + " (link " + lc.Name + ")"
		key := lc.ModuleID + "|" + lc.Module.LinkKey()
		n := s.nics[lc.Name]
		handedOver := n != nil && n.key == key
		var ep LinkEndpoint // opened by this build
		if n == nil || n.key != key {
			ctx := s.moduleContext(cfg, lc.ModuleID, lc.Name, lc.Line)
			ctx.LinkMTU = lc.MTU
			var err error
			ep, err = lc.Module.OpenLink(ctx)
			if err != nil {
				return nil, cfg.errAt(lc.Line, lc.Col, where, fmt.Errorf("open: %w", err))
			}
			if h := ep.MaxHeaderLength(); h > DefaultHeadroom {
				ep.Close()
				return nil, cfg.errAt(lc.Line, lc.Col, where, fmt.Errorf("link needs %d bytes of headroom, the stack gives %d", h, DefaultHeadroom))
			}
			opened = append(opened, ep)
		}
		if n == nil {
			id, ok := s.nicIDs[lc.Name]
			if !ok {
				s.lastNIC++
				id = s.lastNIC
				s.nicIDs[lc.Name] = id
			}
			n = &NIC{id: id, name: lc.Name, key: key, mod: lc.ModuleID, stack: s, state: LinkState{Up: true}}
			n.bound.Store(&boundLink{ep: ep, caps: ep.Capabilities(), port: &nicPort{nic: n, ep: ep}})
			// A link that left the stack and comes back under a name used
			// before starts with an empty neighbor table.
			n.neigh = newNeighborTable(id, s.clock, s.opts.NUDDispatcher)
			n.neigh.attach(s)
			ep = nil // bound already: Apply attaches it
			fresh = append(fresh, n)
		}
		// A NIC the stack has keeps its identity (ID, counters, neighbors,
		// dynamic addresses) whether its endpoint is handed over or
		// reopened under another LinkKey: Apply binds ep at the swap.
		ng := &nicGen{nic: n, cfg: lc, open: ep, key: key}
		cur := n.link()
		if ep != nil {
			cur = ep
		}
		ng.mtu = cur.MTU()
		if lc.MTU > 0 && lc.MTU != ng.mtu && handedOver {
			if _, ok := cur.(LinkMTUSetter); ok {
				ng.mtu = lc.MTU // Apply sets the device's MTU (setMTUs)
			}
		}
		if lc.MTU > 0 && lc.MTU < ng.mtu {
			ng.mtu = lc.MTU
		}
		ng.forward = [2]bool{cfg.Forwarding.IPv4, cfg.Forwarding.IPv6}
		if lc.Forwarding != nil {
			ng.forward = [2]bool{lc.Forwarding.IPv4, lc.Forwarding.IPv6}
		}
		var a4, a6 []AddressInfo
		for _, a := range lc.Addresses {
			ai := AddressInfo{Prefix: a.Prefix, Behavior: a.Behavior}
			if a.Deprecated {
				ai.Kind = PermanentExpired
			}
			if a.Prefix.Addr().Is4() {
				a4 = append(a4, ai)
			} else {
				a6 = append(a6, ai)
			}
			nicRoutes = append(nicRoutes, Route{Dst: a.Prefix.Masked(), NIC: n.id, Connected: true})
		}
		ng.addrs = [2][]AddressInfo{orderPrimary(a4), orderPrimary(a6)}
		ng.raw6 = a6
		for int(n.id) >= len(g.nics) {
			g.nics = append(g.nics, nil)
		}
		g.nics[n.id] = ng
	}

	if families[4] || families[6] {
		if n := s.addLoopback(g, families); n != nil {
			fresh = append(fresh, n)
		}
	}

	// Addresses, endpoints, routes, hooks.
	g.local4 = map[uint32]localAddr{}
	local6 := map[[16]byte]localAddr{}
	for _, ng := range g.nics {
		if ng == nil {
			continue
		}
		for _, a := range ng.addrs[0] {
			g.local4[key4(a.Prefix.Addr())] = localAddr{nic: ng.nic.id}
			if bits := a.Prefix.Bits(); bits < 31 {
				bc := key4(a.Prefix.Masked().Addr()) | (^uint32(0) >> bits)
				if _, taken := g.local4[bc]; !taken {
					g.local4[bc] = localAddr{nic: ng.nic.id, broadcast: true}
				}
			}
		}
		for _, a := range ng.addrs[1] {
			local6[a.Prefix.Addr().As16()] = localAddr{nic: ng.nic.id}
		}
		for _, p := range g.netProtos {
			if ng == g.lo && p.Number() != IPv4ProtocolNumber && p.Number() != IPv6ProtocolNumber {
				continue // only IP runs on the loopback NIC
			}
			pe := protoEndpoint{num: p.Number(), ep: p.NewEndpoint(ng)}
			pe.hr, _ = pe.ep.(HookResumer)
			pe.frag, _ = pe.ep.(Fragmenter)
			ng.endpoints = append(ng.endpoints, pe)
		}
	}
	g.local6 = newAddrSet6(local6)
	routes := nicRoutes
	for _, rc := range cfg.Routes {
		if rc.Table != 0 && rc.Table != MainTable {
			continue // policy routing's tables (buildPolicy)
		}
		id := s.nicIDs[rc.Link] // ParseConfig checked the link exists
		for _, p := range rc.Prefixes {
			routes = append(routes, Route{Dst: p, Via: rc.Gateway, NIC: id, Metric: rc.Metric})
		}
	}
	g.routes = NewRouteTable(routes)
	g.rtables, g.rrules = buildPolicy(cfg, s.nicIDs)
	g.hooks = hooks
	for _, mi := range g.modules {
		if l, ok := mi.mod.(PacketDropListener); ok {
			g.dropListeners = append(g.dropListeners, l)
		}
	}
	for _, mi := range g.modules {
		if st, ok := mi.mod.(Starter); ok {
			if err := st.Start(); err != nil {
				return nil, cfg.errAt(mi.line, mi.col, mi.id, fmt.Errorf("start: %w", err))
			}
		}
	}
	return g, nil
}

// provision runs Provision and Validate of one module instance.
func (s *Stack) provision(cfg *Config, mi *moduleInst) error {
	ctx := s.moduleContext(cfg, mi.id, mi.instance, mi.line)
	where := mi.id
	if mi.instance != mi.id {
		where = mi.id + " (link " + mi.instance + ")"
	}
	if p, ok := mi.mod.(Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return cfg.errAt(mi.line, mi.col, where, err)
		}
	}
	if v, ok := mi.mod.(Validator); ok {
		if err := v.Validate(); err != nil {
			return cfg.errAt(mi.line, mi.col, where, err)
		}
	}
	return nil
}

// stop ends a generation no worker is in any more: endpoints close, modules
// stop and clean up. Links are the stack's, not the generation's.
func (g *Generation) stop() {
	for _, ng := range g.nics {
		if ng == nil {
			continue
		}
		for _, pe := range ng.endpoints {
			pe.ep.Close()
		}
	}
	for _, mi := range g.modules {
		if st, ok := mi.mod.(Stopper); ok {
			if err := st.Stop(); err != nil {
				g.stack.log.Warn().Err(err).Str("module", mi.id).Msg("stop")
			}
		}
	}
	g.cleanup()
}

func (g *Generation) cleanup() {
	for i := len(g.modules) - 1; i >= 0; i-- {
		mi := g.modules[i]
		if c, ok := mi.mod.(CleanerUpper); ok {
			if err := c.Cleanup(); err != nil {
				g.stack.log.Warn().Err(err).Str("module", mi.id).Msg("cleanup")
			}
		}
	}
	g.modules = nil
}

var zeroAddr netip.Addr
