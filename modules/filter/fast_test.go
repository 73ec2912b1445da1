package filter

import (
	"fmt"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

// TestFastMatchers: the specialised matchers chosen for the common shapes
// answer exactly as the base and tcp/udp matchers they stand for
// (matches and hotdrops), on packets of both families, fragments (a TCP
// one at offset 8), short transport headers and unknown upper layers, and
// describe the same constraints.
func TestFastMatchers(t *testing.T) {
	cases := []struct {
		rule string
		want string // the specialised type
	}{
		{"-d 10.0.2.2", "*filter.dst4"},
		{"-d 10.0.2.0/24", "*filter.dst4"},
		{"-s 10.0.1.0/25", "*filter.src4"},
		{"-s 10.0.1.2/32", "*filter.src4"},
		{"-p udp --dport 2000", "*filter.l4Ports"},
		{"-p udp --dport 1000:3000", "*filter.l4Ports"},
		{"-p udp ! --dport 2000", "*filter.l4Ports"},
		{"-p udp --sport 53 --dport 2000:2001", "*filter.l4Ports"},
		{"-p tcp --dport 22", "*filter.l4Ports"},
		{"-p tcp ! --sport 1:1023", "*filter.l4Ports"},
		{"-p tcp", "*filter.Base"},                    // no port matcher
		{"-d 0.0.0.0/8", "*filter.Base"},              // 0.0.0.0: the family needs its test
		{"! -d 10.0.2.2", "*filter.Base"},             // inverted
		{"-4 -p udp --dport 2000", "*filter.l4Ports"}, // a family given
		{"-6 -p tcp --dport 22", "*filter.l4Ports"},
		{"-p tcp --syn --dport 22", "*filter.Base"},                    // flags
		{"-d 2001:db8:2::/48", "*filter.Base"},                         // IPv6
		{"-s 10.0.1.2 -d 10.0.2.2", "*filter.Base"},                    // two fields
		{"-p udp -m length --length 1:9 --dport 2000", "*filter.Base"}, // another matcher first
	}
	var pkts []pk
	for _, v6 := range []bool{false, true} {
		for _, p := range []pk{
			{proto: 17, sport: 53, dport: 2000}, {proto: 17, sport: 54, dport: 2001}, {proto: 17, sport: 53, dport: 999},
			{proto: 6, sport: 1000, dport: 22, flags: 2}, {proto: 6, sport: 22, dport: 23}, {proto: 6, sport: 5, dport: 22, l4len: 10},
			{proto: 17, dport: 2000, l4len: 6}, {proto: 1}, {proto: 17, dport: 2000, src: "10.0.1.200", dst: "10.0.3.1"},
			{proto: 17, dport: 2000, src: "0.0.0.1", dst: "0.0.0.2"},
		} {
			if v6 {
				if p.src != "" {
					continue
				}
				p.v6 = true
				if p.proto == 1 {
					p.proto = 58
				}
			}
			pkts = append(pkts, p)
		}
	}
	pkts = append(pkts, pk{proto: 17, dport: 2000, fragOff: 16}, pk{proto: 6, dport: 22, fragOff: 8}, pk{proto: 6, dport: 22, fragOff: 16})
	for _, c := range cases {
		m := mustLoad(t, "filter:\n  forward:\n    rules:\n      - "+quoteYAML(c.rule)+"\n")
		r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
		fast := r.matchers()
		if got := fmt.Sprintf("%T", fast[0]); got != c.want {
			t.Errorf("%s: %s, want %s", c.rule, got, c.want)
		}
		var plain []pipeline.Matcher
		plain = append(plain, r.base)
		for _, x := range r.ms {
			plain = append(plain, x)
		}
		var cs []pipeline.FieldConstraint
		var fs pipeline.FieldSet
		for _, x := range plain {
			cs = append(cs, x.(pipeline.ConstraintDescriber).Constraint()...)
			fs |= x.Fields()
		}
		var fcs []pipeline.FieldConstraint
		var ffs pipeline.FieldSet
		for _, x := range fast {
			fcs = append(fcs, x.(pipeline.ConstraintDescriber).Constraint()...)
			ffs |= x.Fields()
		}
		if fmt.Sprint(cs) != fmt.Sprint(fcs) || fs != ffs {
			t.Errorf("%s: constraints %v %b, want %v %b", c.rule, fcs, ffs, cs, fs)
		}
		run := func(ms []pipeline.Matcher, pc *pipeline.PacketContext) string {
			for _, x := range ms {
				ok, hot := x.Match(pc)
				if hot {
					return "hotdrop"
				}
				if !ok {
					return "no"
				}
			}
			return "match"
		}
		for _, p := range pkts {
			pc := p.ctx(t)
			if a, b := run(fast, pc), run(plain, pc); a != b {
				t.Errorf("%s on %+v: specialised %s, plain %s", c.rule, p, a, b)
			}
		}
		// An unknown upper layer (an IPv6 chain ParseTuple cannot walk).
		pc := pk{v6: true, proto: 17, dport: 2000}.ctx(t)
		pc.L4Unknown, pc.Tuple.Proto, pc.Tuple.DstPort, pc.L4Off, pc.L4End = true, 0, 0, 0, 0
		if a, b := run(fast, pc), run(plain, pc); a != b {
			t.Errorf("%s on an unknown upper layer: specialised %s, plain %s", c.rule, a, b)
		}
	}
}
