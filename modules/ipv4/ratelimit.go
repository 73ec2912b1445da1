package ipv4

import (
	"time"

	"github.com/pipestack/pipestack/modules/internal/icmplimit"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// The ICMP rate limiter is shared with network.ipv6 (modules/internal/
// icmplimit, where its design is described); this file adapts it to IPv4.

// rateConfig is the ICMP limiter's configuration in one generation: the
// mask has a bit per ICMP type (types 0..31).
type rateConfig = icmplimit.Config

// icmpLimiter is the IPv4 instance of the shared limiter, keyed by [4]byte
// destinations.
type icmpLimiter struct{ l *icmplimit.Limiter[[4]byte] }

func newICMPLimiter(seed uint64) *icmpLimiter {
	return &icmpLimiter{l: icmplimit.New(seed, icmplimit.Hash4)}
}

// allow reports whether one ICMP message of type typ (code code) to dst may
// be sent at time now, and charges the buckets if so. Fragmentation needed
// is never limited (like Linux's icmpv4_mask_allow: path MTU discovery must
// not black-hole).
func (l *icmpLimiter) allow(c *rateConfig, now time.Time, typ, code uint8, dst [4]byte) bool {
	if typ == wire.ICMPv4DstUnreachable && code == wire.ICMPv4FragmentationNeeded {
		return true
	}
	return l.l.Allow(c, now, typ, dst, 0)
}
