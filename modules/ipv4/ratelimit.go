package ipv4

import (
	"time"

	"github.com/pipestack/pipestack/modules/internal/icmplimit"
)

// The ICMP token bucket is shared with network.ipv6 (modules/internal/
// icmplimit, where its design is described); this file adapts it to IPv4.

// rateConfig is the ICMP limiter's configuration in one generation: the
// mask has a bit per ICMP type (types 0..31).
type rateConfig = icmplimit.Config

// icmpLimiter is the IPv4 instance of the shared limiter, keyed by [4]byte
// destinations.
type icmpLimiter struct{ l *icmplimit.Limiter[[4]byte] }

func newICMPLimiter(seed uint64) *icmpLimiter {
	return &icmpLimiter{l: icmplimit.New(seed, func(a [4]byte) uint32 {
		return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	})}
}

// allow reports whether one ICMP message of type typ (code code) to dst may
// be sent at time now, and charges the buckets if so. Fragmentation needed
// is never limited by the global bucket (like Linux: path MTU discovery
// must not black-hole); it still is by the per-destination one.
func (l *icmpLimiter) allow(c *rateConfig, now time.Time, typ, code uint8, dst [4]byte) bool {
	return l.l.Allow(c, now, typ, typ == 3 && code == 4, dst)
}
