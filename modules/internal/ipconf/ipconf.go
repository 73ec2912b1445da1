// Package ipconf is the part of network.ipv4's and network.ipv6's
// configuration that they share: ICMP errors and the ICMP token bucket
// (modules/internal/icmplimit), and the reassembly limits
// (modules/internal/reasm), with their defaults and range checks. The
// modules embed these structs (inline, or under their own key), so that
// both read the same keys the same way; the protocol code gets only the
// resulting icmplimit.Config and reasm.Limits.
package ipconf

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pipestack/pipestack/modules/internal/icmplimit"
	"github.com/pipestack/pipestack/modules/internal/reasm"
)

// ICMP configures the ICMP messages a module sends (inline in its config).
type ICMP struct {
	// ICMPErrors: whether ICMP errors are sent (default true).
	ICMPErrors *bool `yaml:"icmp_errors"`
	// ICMPRate is the global ICMP token bucket's rate in messages per
	// second (Linux icmp_msgs_per_sec; default 1000; 0: unlimited).
	ICMPRate *float64 `yaml:"icmp_rate"`
	// ICMPBurst is the bucket's depth (icmp_msgs_burst; default 50).
	ICMPBurst int `yaml:"icmp_burst"`
	// ICMPJitter bounds, in tokens, how far the randomised charge of the
	// global bucket may run ahead of the count of messages (default: the
	// burst; 0: every message costs exactly one token). See icmplimit.
	ICMPJitter *int `yaml:"icmp_jitter"`
	// ICMPRateMask lists the messages the limiter applies to (Linux
	// icmp_ratemask): the module's classes (see Class); default
	// dest_unreachable, time_exceeded, parameter_problem.
	ICMPRateMask []string `yaml:"icmp_ratemask"`
	// ICMPRateLimitMs is the per-destination limit (Linux icmp_ratelimit,
	// IPv6 icmp/ratelimit): a destination earns one message per this many
	// milliseconds (default 1000; 0: no per-destination limit).
	ICMPRateLimitMs *int `yaml:"icmp_ratelimit_ms"`
	// ICMPRateLimitBurst is how many messages a destination keeps in
	// reserve (default 6, Linux's XRLIM_BURST_FACTOR).
	ICMPRateLimitBurst int `yaml:"icmp_ratelimit_burst"`
}

// Class is a name icmp_ratemask accepts and the limiter class bit it
// stands for (icmplimit.Config.Mask).
type Class struct {
	Name string
	Bit  uint8
}

// Errors reports whether ICMP errors are sent.
func (s *ICMP) Errors() bool { return s.ICMPErrors == nil || *s.ICMPErrors }

// Limiter returns the limiter's configuration, defaults filled in (the
// default icmp_ratemask is written back into s). classes are the names
// icmp_ratemask accepts, in the order its error message lists them.
func (s *ICMP) Limiter(classes []Class) (icmplimit.Config, error) {
	rc := icmplimit.Config{Rate: 1000, Burst: 50, DestInterval: time.Second, DestBurst: 6}
	if s.ICMPRate != nil {
		rc.Rate = *s.ICMPRate
	}
	if s.ICMPBurst != 0 {
		rc.Burst = float64(s.ICMPBurst)
	}
	rc.Jitter = int(rc.Burst)
	if s.ICMPJitter != nil {
		rc.Jitter = *s.ICMPJitter
	}
	if s.ICMPRateLimitMs != nil {
		rc.DestInterval = time.Duration(*s.ICMPRateLimitMs) * time.Millisecond
	}
	if s.ICMPRateLimitBurst != 0 {
		rc.DestBurst = s.ICMPRateLimitBurst
	}
	if s.ICMPRateMask == nil {
		s.ICMPRateMask = []string{"dest_unreachable", "time_exceeded", "parameter_problem"}
	}
next:
	for _, name := range s.ICMPRateMask {
		for _, c := range classes {
			if c.Name == name {
				rc.Mask |= 1 << c.Bit
				continue next
			}
		}
		names := make([]string, len(classes))
		for i, c := range classes {
			names[i] = c.Name
		}
		return rc, fmt.Errorf("icmp_ratemask: %q is not one of %s", name, strings.Join(names, ", "))
	}
	return rc, nil
}

// CheckLimiter checks the ranges of a configuration Limiter returned.
func CheckLimiter(rc *icmplimit.Config) error {
	if rc.Rate < 0 || rc.Burst < 1 {
		return errors.New("icmp_rate must be >= 0 and icmp_burst >= 1")
	}
	if rc.Jitter < 0 || rc.Jitter > 1000000 {
		return fmt.Errorf("icmp_jitter %d out of range 0..1000000", rc.Jitter)
	}
	if rc.DestInterval < 0 || rc.DestInterval > time.Hour {
		return fmt.Errorf("icmp_ratelimit_ms %d out of range 0..3600000", rc.DestInterval.Milliseconds())
	}
	if rc.DestBurst < 1 || rc.DestBurst > 1000 {
		return fmt.Errorf("icmp_ratelimit_burst %d out of range 1..1000", rc.DestBurst)
	}
	return nil
}

// Reassembly configures the reassembly limits (the keys under a module's
// reassembly:).
type Reassembly struct {
	// Timeout of a datagram being reassembled (default: the module's,
	// 30s for IPv4, 60s for IPv6 as RFC 8200 says).
	Timeout time.Duration `yaml:"timeout"`
	// MaxMemory bounds all datagrams in reassembly, in bytes of buffers
	// held (default 4 MiB).
	MaxMemory int `yaml:"max_memory"`
	// PerSource bounds one source (IPv4: an address; IPv6: a /64)
	// (default max_memory/4).
	PerSource int `yaml:"per_source_memory"`
}

// Limits fills in the defaults and returns the limits.
func (s *Reassembly) Limits(defaultTimeout time.Duration) reasm.Limits {
	if s.Timeout == 0 {
		s.Timeout = defaultTimeout
	}
	if s.MaxMemory == 0 {
		s.MaxMemory = 4 << 20
	}
	if s.PerSource == 0 {
		s.PerSource = s.MaxMemory / 4
	}
	return reasm.Limits{Timeout: s.Timeout, MaxMemory: s.MaxMemory, PerSource: s.PerSource}
}

// Validate checks the ranges (after Limits).
func (s *Reassembly) Validate() error {
	if s.Timeout < time.Second || s.Timeout > 10*time.Minute {
		return fmt.Errorf("reassembly.timeout %v out of range 1s..10m", s.Timeout)
	}
	// One maximal datagram must fit: 64 KiB of payload in 8-byte
	// fragments is not legitimate, but 45 full-size ones are.
	const minShare = 128 << 10
	if s.PerSource < minShare || s.MaxMemory < s.PerSource {
		return fmt.Errorf("reassembly: per_source_memory must be at least %d bytes and at most max_memory (%d)", minShare, s.MaxMemory)
	}
	return nil
}
