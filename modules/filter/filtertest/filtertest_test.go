package filtertest_test

import (
	"testing"

	_ "github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/modules/filter/filtertest"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// TestPacketsHaveValidChecksums: every kind of packet the kit builds
// verifies, and a flipped bit anywhere in a checksummed part does not.
func TestPacketsHaveValidChecksums(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{filtertest.TCP, filtertest.UDP, filtertest.ICMP, filtertest.ICMPv6} {
			if proto == filtertest.ICMP && v6 || proto == filtertest.ICMPv6 && !v6 {
				continue
			}
			b := filtertest.Packet{IPv6: v6, Proto: proto, SrcPort: 1000, DstPort: 53, Payload: 5}.Bytes()
			if err := filtertest.VerifyChecksums(b); err != nil {
				t.Fatalf("v6=%v proto %d: %v", v6, proto, err)
			}
			// The last payload byte and (IPv4) the TTL are covered.
			bad := append([]byte(nil), b...)
			bad[len(bad)-1] ^= 1
			if filtertest.VerifyChecksums(bad) == nil {
				t.Errorf("v6=%v proto %d: a changed payload verifies", v6, proto)
			}
			if !v6 {
				bad := append([]byte(nil), b...)
				bad[8]--
				if filtertest.VerifyChecksums(bad) == nil {
					t.Errorf("proto %d: a changed TTL verifies", proto)
				}
			}
		}
	}
}

// TestMatchAndAction runs built-in modules through the kit.
func TestMatchAndAction(t *testing.T) {
	m := filtertest.Module(t, "filter.match.tcp", "{dport: 22}").(pipeline.Matcher)
	for _, c := range []struct {
		dport uint16
		want  bool
	}{{22, true}, {23, false}} {
		pc := filtertest.Context(t, filtertest.Packet{Proto: filtertest.TCP, DstPort: c.dport}, pipeline.Forward, 1, 2)
		if ok, hot := filtertest.Match(t, m, pc); ok != c.want || hot {
			t.Errorf("dport %d: match %v hotdrop %v", c.dport, ok, hot)
		}
	}
	tg := filtertest.Module(t, "filter.target.ttl", "{ttl_set: 9}").(pipeline.Target)
	pc := filtertest.Context(t, filtertest.Packet{Proto: filtertest.UDP}, pipeline.Forward, 1, 2)
	if v, _ := filtertest.Action(t, tg, pc); v != pipeline.VerdictContinue {
		t.Errorf("verdict %v", v)
	}
	if ttl := wire.IPv4(pc.Pkt.Data()).TTL(); ttl != 9 {
		t.Errorf("TTL %d", ttl)
	}
	filtertest.CheckChecksums(t, pc.Pkt.Data())
	if _, err := filtertest.TryModule("filter.target.ttl", "{ttl_set: 9, bogus: 1}"); err == nil {
		t.Error("an unknown key passed")
	}
}

// TestLinks: -i/-o by name see the links of a real generation.
func TestLinks(t *testing.T) {
	l := filtertest.NewLinks(t, []string{"lan", "wan"}, "10.0.1.1/24", "10.0.2.1/24")
	m := l.Module(t, "filter.match.base", "{in: lan, out: wan}").(pipeline.Matcher)
	for _, c := range []struct {
		in, out string
		want    bool
	}{{"lan", "wan", true}, {"wan", "lan", false}} {
		l.Run(t, filtertest.Packet{}, pipeline.Forward, c.in, c.out, func(pc *pipeline.PacketContext) {
			if ok, _ := filtertest.Match(t, m, pc); ok != c.want {
				t.Errorf("in %s out %s: %v", c.in, c.out, ok)
			}
		})
	}
}
