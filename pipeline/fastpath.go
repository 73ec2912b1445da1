package pipeline

// What a module that forwards packets itself needs (netfilter.conntrack's
// flowtable: the packets of an offloaded flow skip the chains from
// Prerouting to Postrouting and leave from a hook function at Prerouting).

// OutputForwarded queues a packet that a module forwarded itself, past
// every hook: like Output, but the Postrouting hook does not run on it at
// transmit (fragmentation, neighbor resolution, software offloads and the
// link still do). The caller set pkt.OutNIC and pkt.NextHop and did
// everything the forwarding path and the hooks would have done (TTL or hop
// limit, NAT, checksums). It takes ownership: a target that calls it
// returns VerdictStolen.
func (b *Batch) OutputForwarded(pkt *Packet) {
	pkt.stage |= stagePostDone
	b.Output(pkt)
}

// RouteTables are the route tables a forwarding lookup in this generation
// reads: the generation's table in force (Routes: a new one at each
// reload and when a link goes down or up) and the stack's dynamic routes
// (nil when there are none; a new table at each change). A cache of
// lookups (the flowtable's next hops) is valid while both pointers stay
// the same.
func (g *Generation) RouteTables() (static, dynamic *RouteTable) {
	return g.Routes(), g.stack.dynRoutes.Load()
}
