package ipv6

import "github.com/pipestack/pipestack/pipeline"

// destShift is how much the per-destination ICMPv6 interval is shortened
// for dst, as Linux's icmpv6_xrlim_allow does ("give more bandwidth to
// wider prefixes"): the interval is divided by 2^((128 − plen) / 32), plen
// being the prefix length of the route towards dst — a /128 keeps
// icmp_ratelimit_ms, a /64 (an on-link neighbor) gets a quarter of it, the
// default route a sixteenth. No route: no shortening.
func destShift(b *pipeline.Batch, dst [16]byte) uint {
	r := b.Gen.LookupRoute6(dst)
	if r == nil || r.Dst.Bits() < 0 {
		return 0
	}
	return uint(128-r.Dst.Bits()) >> 5
}
