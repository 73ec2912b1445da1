package ipv4_test

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// Martian sources and destinations are dropped and counted apart; 0.0.0.0
// (DHCP) is accepted to the stack, not forwarded.
func TestMartians(t *testing.T) {
	l, col := reasmLab(t, "network.ipv4")
	var srcs [][]byte
	for _, s := range []string{"0.1.2.3", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255", "10.0.2.1", "10.0.1.255"} {
		srcs = append(srcs, pt.UDP4(s, "10.0.2.2", 1, 2, 64, []byte("spoof")))
	}
	l.inject(l.a, srcs...)
	l.wantCounters(t, map[string]uint64{"martian_source": 7, "forwarded": 0})
	var dsts [][]byte
	for _, d := range []string{"0.0.0.1", "127.0.0.1", "240.0.0.1", "250.1.1.1"} {
		dsts = append(dsts, pt.UDP4("10.0.1.2", d, 1, 2, 64, []byte("bogus")))
	}
	l.inject(l.a, dsts...)
	l.wantCounters(t, map[string]uint64{"martian_destination": 4})
	// DHCP discover: from 0.0.0.0 to the limited broadcast, to the stack.
	l.inject(l.a, pt.UDP4("0.0.0.0", "255.255.255.255", 68, 67, 64, []byte("discover")))
	if col.Len() != 1 {
		t.Fatalf("DHCP discover not delivered (%s)", l.r.DumpCounters())
	}
	// …but never forwarded.
	l.inject(l.a, pt.UDP4("0.0.0.0", "10.0.2.2", 68, 67, 64, []byte("x")))
	l.wantCounters(t, map[string]uint64{"martian_source": 8, "forwarded": 0})
	if len(pt.Drain(l.b))+len(pt.Drain(l.a)) != 0 {
		t.Fatal("a martian was forwarded or answered")
	}
}

// Reverse-path filtering: strict wants the route back through the
// receiving link, loose any route back, off nothing.
func TestRPFilter(t *testing.T) {
	l := newLab(t, "{module: network.ipv4, rp_filter: {default: loose, links: {a: strict, b: off}}}")
	fwd := func(src string) []byte { return pt.UDP4(src, "10.0.2.2", 1, 2, 64, []byte("rp")) }
	// On a (strict): only 10.0.1.0/24 comes back through a.
	l.inject(l.a, fwd("10.0.1.2"), fwd("10.0.3.7"), fwd("192.168.4.4"), fwd("8.8.8.8"))
	l.wantCounters(t, map[string]uint64{"forwarded": 1, "rp_filter": 3})
	// On c (loose): any source with a route back; 8.8.8.8 has none.
	l.inject(l.c, fwd("10.0.1.2"), fwd("192.168.4.4"), fwd("8.8.8.8"))
	l.wantCounters(t, map[string]uint64{"forwarded": 3, "rp_filter": 4})
	// On b (off): anything goes.
	l.inject(l.b, pt.UDP4("8.8.8.8", "10.0.1.2", 1, 2, 64, nil))
	l.wantCounters(t, map[string]uint64{"forwarded": 4, "rp_filter": 4})
	pt.Drain(l.a)
	pt.Drain(l.b)
}

// The default is off, like the Linux kernel's.
func TestRPFilterDefaultOff(t *testing.T) {
	l := newLab(t, "network.ipv4")
	l.inject(l.a, pt.UDP4("8.8.8.8", "10.0.2.2", 1, 2, 64, nil))
	l.wantCounters(t, map[string]uint64{"forwarded": 1, "rp_filter": 0})
	pt.Drain(l.b)
}

func TestConfigErrors(t *testing.T) {
	for _, bad := range []string{
		"{module: network.ipv4, rp_filter: {default: sometimes}}",
		"{module: network.ipv4, rp_filter: {links: {a: yes}}}",
		"{module: network.ipv4, icmp_jitter: -1}",
		"{module: network.ipv4, icmp_ratelimit_ms: -5}",
		"{module: network.ipv4, icmp_ratemask: [redirect]}",
		"{module: network.ipv4, reassembly: {max_memory: 100000}}",
		"{module: network.ipv4, reassembly: {timeout: 1ms}}",
		"{module: network.ipv4, reassembly: {max_mem: 1}}",
	} {
		cfg, err := pipeline.ParseConfig("bad.yaml", []byte("modules: ["+bad+"]\n"))
		if err == nil {
			err = pipeline.Check(cfg)
		}
		if err == nil {
			t.Errorf("%s: accepted", bad)
		} else {
			t.Logf("%v", err)
		}
	}
}
