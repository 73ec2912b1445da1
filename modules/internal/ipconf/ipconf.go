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
	// ICMPJitter randomises each message's cost in [1-j, 1+j] tokens
	// (default 0.5; 0 ≤ j < 1).
	ICMPJitter *float64 `yaml:"icmp_jitter"`
	// ICMPRateMask lists the messages the limiter applies to (Linux
	// icmp_ratemask): the module's classes (see Class); default
	// dest_unreachable, time_exceeded, parameter_problem.
	ICMPRateMask []string `yaml:"icmp_ratemask"`
	// ICMPPerDest adds a bucket per destination (off by default; burst
	// default 6).
	ICMPPerDest struct {
		Rate  float64 `yaml:"rate"`
		Burst int     `yaml:"burst"`
	} `yaml:"icmp_per_dest"`
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
	rc := icmplimit.Config{Rate: 1000, Burst: 50, Jitter: 0.5}
	if s.ICMPRate != nil {
		rc.Rate = *s.ICMPRate
	}
	if s.ICMPBurst != 0 {
		rc.Burst = float64(s.ICMPBurst)
	}
	if s.ICMPJitter != nil {
		rc.Jitter = *s.ICMPJitter
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
	rc.DestRate, rc.DestBurst = s.ICMPPerDest.Rate, float64(s.ICMPPerDest.Burst)
	if rc.DestRate > 0 && rc.DestBurst == 0 {
		rc.DestBurst = 6
	}
	return rc, nil
}

// CheckLimiter checks the ranges of a configuration Limiter returned.
func CheckLimiter(rc *icmplimit.Config) error {
	if rc.Rate < 0 || rc.Burst < 1 {
		return errors.New("icmp_rate must be >= 0 and icmp_burst >= 1")
	}
	if rc.Jitter < 0 || rc.Jitter >= 1 {
		return fmt.Errorf("icmp_jitter %g out of range [0, 1)", rc.Jitter)
	}
	if rc.DestRate < 0 || rc.DestBurst < 0 {
		return errors.New("icmp_per_dest: rate and burst must be >= 0")
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
