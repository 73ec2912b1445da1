package pipeline

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Policy routing by mark, as Linux's `ip rule add fwmark V/M table T pref
// P`: routes may go to numbered tables besides the main one (a route's
// `table:`), and `route_rules:` choose a table by the packet's mark
// (Packet.Mark, set by the filter's MARK target in mangle PREROUTING or
// OUTPUT):
//
//	routes:
//	  - {to: default, via: 10.0.2.254, link: wan}
//	  - {to: default, via: 10.0.3.254, link: wan2, table: 100}
//	route_rules:
//	  - {fwmark: "0x1/0xff", table: 100, priority: 100}
//
// A packet is routed by the rules in priority order (the file's order for
// equal priorities): the first rule whose mark matches (mark & mask ==
// value; a rule without fwmark matches every packet) and whose table has a
// route for the destination gives the route; a rule naming table 254 (main)
// ends the search with the main table, which is consulted after every rule
// otherwise (Linux's main rule at 32766 after the user's). The stack's own
// addresses always route to the loopback NIC first (Linux's local table,
// rule 0). Rules apply to forwarded packets (after Prerouting, where a
// mangle MARK may have set the mark) and to the stack's own: a packet whose
// mark the Output hook's tables (mangle) set is routed again right after
// them (priority PriorityMangle+1), as Linux's ip_route_me_harder — to
// one of the rules' tables when a rule matches its mark; a packet to the
// stack itself, or sent to a link-local or multicast address through a
// chosen NIC, keeps its route. Extra tables hold only the routes the file
// gives them (no connected routes, no dynamic IPv6 routes, and routes
// through a link that is down are not withdrawn from them).

// MainTable is the number of the main route table (Linux's RT_TABLE_MAIN).
const MainTable = 254

// RouteRuleConfig is one entry of `route_rules:`.
type RouteRuleConfig struct {
	Priority uint32 `yaml:"priority"`
	// FWMark is value[/mask] (decimal or 0x hex); mask default
	// 0xffffffff; empty: every mark.
	FWMark string `yaml:"fwmark"`
	// Table is the table's number (1–4294967295 but 255, Linux's local;
	// 254 is the main table).
	Table uint32 `yaml:"table"`
	// Family limits the rule to IPv4 (4) or IPv6 (6); 0: both.
	Family int `yaml:"family"`

	Mark, Mask uint32 `yaml:"-"`
	Line, Col  int    `yaml:"-"`
}

// RouteRule is a rule of a generation, as RouteRuleConfig resolved.
type RouteRule struct {
	Priority   uint32
	Mark, Mask uint32
	Table      uint32
	Family     int
}

func parseMark(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a 32-bit number", s)
	}
	return uint32(v), nil
}

func (rc *RouteRuleConfig) resolve(tables map[uint32]bool) error {
	switch {
	case rc.Table == 0:
		return errors.New("route rule has no table: (a number, 254 for main)")
	case rc.Table == 255:
		return errors.New("table 255 is Linux's local table: the stack's own addresses, not configurable")
	case rc.Table != MainTable && !tables[rc.Table]:
		return fmt.Errorf("table %d has no routes (give routes with table: %d)", rc.Table, rc.Table)
	case rc.Family != 0 && rc.Family != 4 && rc.Family != 6:
		return fmt.Errorf("family %d: 4, 6 or none", rc.Family)
	}
	rc.Mask = 0
	if rc.FWMark != "" {
		v, m, hasMask := strings.Cut(rc.FWMark, "/")
		var err error
		if rc.Mark, err = parseMark(v); err != nil {
			return fmt.Errorf("fwmark: %v", err)
		}
		rc.Mask = 0xffffffff
		if hasMask {
			if rc.Mask, err = parseMark(m); err != nil {
				return fmt.Errorf("fwmark mask: %v", err)
			}
		}
		if rc.Mark&^rc.Mask != 0 {
			return fmt.Errorf("fwmark %s: value bits outside the mask", rc.FWMark)
		}
	}
	return nil
}

// buildPolicy makes a generation's extra route tables and its rules.
func buildPolicy(cfg *Config, nicIDs map[string]NICID) (map[uint32]*RouteTable, []RouteRule) {
	if len(cfg.RouteRules) == 0 {
		return nil, nil
	}
	byTable := map[uint32][]Route{}
	for _, rc := range cfg.Routes {
		if rc.Table == 0 || rc.Table == MainTable {
			continue
		}
		for _, p := range rc.Prefixes {
			byTable[rc.Table] = append(byTable[rc.Table], Route{Dst: p, Via: rc.Gateway, NIC: nicIDs[rc.Link], Metric: rc.Metric})
		}
	}
	tables := make(map[uint32]*RouteTable, len(byTable))
	for t, rs := range byTable {
		tables[t] = NewRouteTable(rs)
	}
	rules := make([]RouteRule, 0, len(cfg.RouteRules))
	for _, rc := range cfg.RouteRules {
		rules = append(rules, RouteRule{Priority: rc.Priority, Mark: rc.Mark, Mask: rc.Mask, Table: rc.Table, Family: rc.Family})
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
	return tables, rules
}

// RouteRules are the generation's policy routing rules, in the order they
// are consulted (nil: none; do not modify).
func (g *Generation) RouteRules() []RouteRule { return g.rrules }

// RouteTableOf returns the generation's table number t (MainTable: the
// main one in force); nil when it has none.
func (g *Generation) RouteTableOf(t uint32) *RouteTable {
	if t == MainTable {
		return g.Routes()
	}
	return g.rtables[t]
}

// ruleRoute is the route the rules give dst (family 4 or 6) for mark:
// found false when no rule chose a table with a route for it (the main
// table decides), or a matching rule named the main table.
func (g *Generation) ruleRoute(dst netip.Addr, fam int, mark uint32) (r *Route, found bool) {
	for i := range g.rrules {
		ru := &g.rrules[i]
		if ru.Family != 0 && ru.Family != fam || mark&ru.Mask != ru.Mark {
			continue
		}
		if ru.Table == MainTable {
			return nil, false
		}
		if t := g.rtables[ru.Table]; t != nil {
			if r := t.Lookup(dst); r != nil {
				return r, true
			}
		}
	}
	return nil, false
}

// ForwardRoute4 is the route of a forwarded IPv4 packet to dst with mark:
// the rules' (policy routing), else the main table's. nil: no route.
func (g *Generation) ForwardRoute4(dst [4]byte, mark uint32) *Route {
	if g.rrules != nil {
		if r, ok := g.ruleRoute(netip.AddrFrom4(dst), 4, mark); ok {
			return r
		}
	}
	return g.Routes().Lookup4(dst)
}

// ForwardRoute6 is ForwardRoute4 for IPv6 (the main table with the
// dynamic routes: LookupRoute6).
func (g *Generation) ForwardRoute6(dst [16]byte, mark uint32) *Route {
	if g.rrules != nil {
		if r, ok := g.ruleRoute(netip.AddrFrom16(dst), 6, mark); ok {
			return r
		}
	}
	return g.LookupRoute6(dst)
}

// LookupRouteMark is LookupRoute for a packet with mark: the loopback NIC
// for the stack's own addresses, then the rules, then the main table.
func (g *Generation) LookupRouteMark(dst netip.Addr, mark uint32) *Route {
	dst = dst.Unmap()
	r := g.LookupRoute(dst)
	if g.rrules == nil || r != nil && g.lo != nil && r.NIC == g.lo.nic.id {
		return r
	}
	fam := 6
	if dst.Is4() {
		fam = 4
	}
	if pr, ok := g.ruleRoute(dst, fam, mark); ok {
		return pr
	}
	return r
}

// rerouteHook routes the stack's own packets again after the Output
// hook's mangle tables, by their mark (installed only with route rules).
type rerouteHook struct{}

// Action implements Target.
func (rerouteHook) Action(pc *PacketContext) (Verdict, int) {
	p, b := pc.Pkt, pc.Batch
	if b == nil || p.Mark == 0 && !hasZeroMarkRule(b.Gen) {
		return VerdictAccept, 0
	}
	g := b.Gen
	if g.lo != nil && p.OutNIC == g.lo.nic.id {
		return VerdictAccept, 0 // to the stack itself: the local table
	}
	dst := pc.Tuple.Dst
	if !dst.IsValid() || dst.IsMulticast() || dst.IsLinkLocalUnicast() {
		return VerdictAccept, 0 // sent through a chosen NIC
	}
	fam := 6
	if dst.Is4() {
		fam = 4
		if _, bcast, _ := g.IsLocal4(dst.As4()); bcast {
			return VerdictAccept, 0
		}
	}
	if r, ok := g.ruleRoute(dst, fam, p.Mark); ok && (r.NIC != p.OutNIC || r.NextHop(dst) != p.NextHop) {
		p.OutNIC, p.NextHop = r.NIC, r.NextHop(dst)
		pc.OutNIC = r.NIC
	}
	return VerdictAccept, 0
}

// hasZeroMarkRule: a rule matches mark 0 (one without fwmark, or value 0):
// then packets without a mark are re-routed too.
func hasZeroMarkRule(g *Generation) bool {
	for i := range g.rrules {
		if g.rrules[i].Mark == 0 {
			return true
		}
	}
	return false
}

var _ Target = rerouteHook{}
