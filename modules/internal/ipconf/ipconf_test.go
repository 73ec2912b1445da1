package ipconf

import (
	"testing"
	"time"
)

var classes = []Class{{"echo_reply", 0}, {"dest_unreachable", 3}, {"time_exceeded", 11}, {"parameter_problem", 12}}

func TestICMPDefaults(t *testing.T) {
	var s ICMP
	if !s.Errors() {
		t.Error("ICMP errors are on by default")
	}
	rc, err := s.Limiter(classes)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Rate != 1000 || rc.Burst != 50 || rc.Jitter != 50 || rc.Mask != 1<<3|1<<11|1<<12 ||
		rc.DestInterval != time.Second || rc.DestBurst != 6 {
		t.Errorf("defaults (Linux's): %+v", rc)
	}
	if err := CheckLimiter(&rc); err != nil {
		t.Error(err)
	}
	zero, b := 0, 7
	s.ICMPRateLimitMs, s.ICMPBurst = &zero, 8
	if rc, _ = s.Limiter(classes); rc.DestInterval != 0 || rc.Jitter != 8 {
		t.Errorf("icmp_ratelimit_ms: 0 and icmp_burst 8: %+v", rc)
	}
	s.ICMPRateLimitBurst = b
	if rc, _ = s.Limiter(classes); rc.DestBurst != 7 {
		t.Errorf("icmp_ratelimit_burst: %+v", rc)
	}
}

func TestICMPErrors(t *testing.T) {
	off, zero, neg := false, 0.0, -1
	s := ICMP{ICMPErrors: &off, ICMPRate: &zero, ICMPJitter: &neg, ICMPRateMask: []string{"redirect"}}
	if s.Errors() {
		t.Error("icmp_errors: false ignored")
	}
	const want = `icmp_ratemask: "redirect" is not one of echo_reply, dest_unreachable, time_exceeded, parameter_problem`
	if _, err := s.Limiter(classes); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	s.ICMPRateMask = []string{"echo_reply"}
	rc, err := s.Limiter(classes)
	if err != nil || rc.Mask != 1 || rc.Rate != 0 {
		t.Fatalf("%+v %v", rc, err)
	}
	if err := CheckLimiter(&rc); err == nil || err.Error() != "icmp_jitter -1 out of range 0..1000000" {
		t.Errorf("jitter -1: %v", err)
	}
	s.ICMPJitter, s.ICMPRateLimitMs = nil, &neg
	rc, _ = s.Limiter(classes)
	if err := CheckLimiter(&rc); err == nil || err.Error() != "icmp_ratelimit_ms -1 out of range 0..3600000" {
		t.Errorf("icmp_ratelimit_ms -1: %v", err)
	}
}

func TestReassemblyLimits(t *testing.T) {
	var s Reassembly
	l := s.Limits(30 * time.Second)
	if l.Timeout != 30*time.Second || l.MaxMemory != 4<<20 || l.PerSource != 1<<20 || s.Timeout != l.Timeout {
		t.Errorf("defaults: %+v (%+v)", l, s)
	}
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	s = Reassembly{MaxMemory: 100000}
	s.Limits(time.Minute)
	const want = "reassembly: per_source_memory must be at least 131072 bytes and at most max_memory (100000)"
	if err := s.Validate(); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	s = Reassembly{Timeout: time.Millisecond}
	s.Limits(time.Minute)
	if err := s.Validate(); err == nil || err.Error() != "reassembly.timeout 1ms out of range 1s..10m" {
		t.Errorf("timeout 1ms: %v", err)
	}
}
