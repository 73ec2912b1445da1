package filter

import (
	"testing"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

func TestMatchers(t *testing.T) {
	testNICNames = map[pipeline.NICID]string{1: "lan", 2: "wan0", 3: "wan1"}
	defer func() { testNICNames = nil }()
	tcp := func(sport, dport uint16, flags uint8) pk {
		return pk{proto: 6, sport: sport, dport: dport, flags: flags}
	}
	udp := func(sport, dport uint16) pk { return pk{proto: 17, sport: sport, dport: dport} }
	cases := []struct {
		name       string
		rule       string
		p          pk
		match, hot bool
	}{
		// base
		{"proto", "-p tcp", tcp(1, 2, 0), true, false},
		{"proto other", "-p udp", tcp(1, 2, 0), false, false},
		{"proto inverted", "! -p udp", tcp(1, 2, 0), true, false},
		{"proto number", "-p 17", udp(1, 2), true, false},
		{"src prefix", "-s 10.0.1.0/24", tcp(1, 2, 0), true, false},
		{"src prefix miss", "-s 10.0.3.0/24", tcp(1, 2, 0), false, false},
		{"src inverted", "! -s 10.0.3.0/24", tcp(1, 2, 0), true, false},
		{"src host bits cleared", "-s 10.0.1.77/24", tcp(1, 2, 0), true, false},
		{"dst host", "-d 10.0.2.2", tcp(1, 2, 0), true, false},
		{"dst v4 rule on v6", "-d 10.0.2.2", pk{v6: true, proto: 6}, false, false},
		{"v6 src", "-s 2001:db8:1::/48", pk{v6: true, proto: 6}, true, false},
		{"family -6 on v4", "-6 -p tcp", tcp(1, 2, 0), false, false},
		{"family -4 on v4", "-4 -p tcp", tcp(1, 2, 0), true, false},
		{"in", "-i lan", pk{proto: 6, in: 1}, true, false},
		{"in other", "-i lan", pk{proto: 6, in: 2}, false, false},
		{"in wildcard", "-i wan+", pk{proto: 6, in: 3}, true, false},
		{"in wildcard inverted", "! -i wan+", pk{proto: 6, in: 3}, false, false},
		{"in plus alone", "-i +", pk{proto: 6, in: 1}, true, false},
		{"out", "-o wan0", pk{proto: 6, out: 2}, true, false},
		{"out none", "-o wan0", pk{proto: 6}, false, false},
		{"fragment", "-f", pk{proto: 6, fragOff: 16}, true, false},
		{"fragment first", "-f", tcp(1, 2, 0), false, false},
		// tcp
		{"dport", "-p tcp --dport 22", tcp(1000, 22, 0), true, false},
		{"dport miss", "-p tcp --dport 22", tcp(1000, 23, 0), false, false},
		{"dport range low", "-p tcp --dport 20:22", tcp(1, 20, 0), true, false},
		{"dport range high", "-p tcp --dport 20:22", tcp(1, 22, 0), true, false},
		{"dport range above", "-p tcp --dport 20:22", tcp(1, 23, 0), false, false},
		{"dport range below", "-p tcp --dport 20:22", tcp(1, 19, 0), false, false},
		{"dport open range", "-p tcp --dport 1024:", tcp(1, 65535, 0), true, false},
		{"sport inverted", "-p tcp ! --sport 53", tcp(53, 1, 0), false, false},
		{"dport service", "-p tcp --dport ssh", tcp(1, 22, 0), true, false},
		{"syn", "-p tcp --syn", tcp(1, 2, wire2(0x02)), true, false},
		{"syn-ack not syn", "-p tcp --syn", tcp(1, 2, 0x12), false, false},
		{"not syn", "-p tcp ! --syn", tcp(1, 2, 0x10), true, false},
		{"tcp-flags", "-p tcp --tcp-flags SYN,ACK SYN", tcp(1, 2, 0x02), true, false},
		{"tcp-flags miss", "-p tcp --tcp-flags SYN,ACK SYN", tcp(1, 2, 0x12), false, false},
		{"tcp-flags ALL NONE", "-p tcp --tcp-flags ALL NONE", tcp(1, 2, 0), true, false},
		{"tcp-option present", "-p tcp --tcp-option 2", pk{proto: 6, flags: 2, opts: []byte{2, 4, 5, 0xb4}}, true, false},
		{"tcp-option absent", "-p tcp --tcp-option 3", pk{proto: 6, flags: 2, opts: []byte{2, 4, 5, 0xb4}}, false, false},
		{"tcp-option inverted", "-p tcp ! --tcp-option 3", pk{proto: 6, flags: 2, opts: []byte{1, 1, 1, 1}}, true, false},
		{"tcp truncated hotdrops", "-p tcp --dport 22", pk{proto: 6, dport: 22, l4len: 10}, false, true},
		{"tcp fragment no match", "-p tcp --dport 22", pk{proto: 6, fragOff: 16}, false, false},
		{"tcp evil offset 8 hotdrops", "-p tcp --dport 22", pk{proto: 6, fragOff: 8}, false, true},
		{"tcp v6", "-p tcp --dport 22", pk{v6: true, proto: 6, dport: 22}, true, false},
		// udp
		{"udp dport", "-p udp --dport 53", udp(1, 53), true, false},
		{"udp sport range", "-p udp --sport 1:10", udp(11, 53), false, false},
		{"udp truncated hotdrops", "-p udp --dport 53", pk{proto: 17, l4len: 4}, false, true},
		{"udp fragment", "-p udp --dport 53", pk{proto: 17, fragOff: 8}, false, false},
		// multiport
		{"multiport dports", "-p tcp -m multiport --dports 80,443,8000:8080", tcp(1, 8080, 0), true, false},
		{"multiport dports miss", "-p tcp -m multiport --dports 80,443,8000:8080", tcp(1, 8081, 0), false, false},
		{"multiport inverted", "-p tcp -m multiport ! --dports 80,443", tcp(1, 443, 0), false, false},
		{"multiport ports either", "-p udp -m multiport --ports 53", udp(53, 9), true, false},
		{"multiport sports", "-p udp -m multiport --sports 53", udp(9, 53), false, false},
		{"multiport short hotdrops", "-p udp -m multiport --sports 53", pk{proto: 17, l4len: 3}, false, true},
		// icmp
		{"icmp type", "-p icmp --icmp-type echo-request", pk{proto: 1, icmpType: 8}, true, false},
		{"icmp type miss", "-p icmp --icmp-type echo-request", pk{proto: 1, icmpType: 0}, false, false},
		{"icmp code", "-p icmp --icmp-type port-unreachable", pk{proto: 1, icmpType: 3, icmpCode: 3}, true, false},
		{"icmp code miss", "-p icmp --icmp-type port-unreachable", pk{proto: 1, icmpType: 3, icmpCode: 1}, false, false},
		{"icmp numeric", "-p icmp --icmp-type 3/1", pk{proto: 1, icmpType: 3, icmpCode: 1}, true, false},
		{"icmp any", "-p icmp --icmp-type any", pk{proto: 1, icmpType: 42}, true, false},
		{"icmp inverted", "-p icmp ! --icmp-type ping", pk{proto: 1, icmpType: 8}, false, false},
		{"icmp short hotdrops", "-p icmp --icmp-type ping", pk{proto: 1, icmpType: 8, l4len: 4}, false, true},
		{"icmpv6", "-p icmpv6 --icmpv6-type neighbour-solicitation", pk{v6: true, proto: 58, icmpType: 135}, true, false},
		{"icmpv6 miss", "-p icmpv6 --icmpv6-type echo-request", pk{v6: true, proto: 58, icmpType: 129}, false, false},
		{"icmpv6 on v4 is no match", "-p icmpv6 --icmpv6-type echo-request", pk{proto: 58, icmpType: 128}, false, false},
		// mark
		{"mark", "-m mark --mark 0x1/0xff", pk{proto: 6, mark: 0x301}, true, false},
		{"mark miss", "-m mark --mark 0x1/0xff", pk{proto: 6, mark: 0x302}, false, false},
		{"mark inverted", "-m mark ! --mark 5", pk{proto: 6, mark: 5}, false, false},
		// iprange
		{"iprange", "-m iprange --src-range 10.0.1.1-10.0.1.5", pk{proto: 6, src: "10.0.1.5", dst: "10.0.2.2"}, true, false},
		{"iprange above", "-m iprange --src-range 10.0.1.1-10.0.1.5", pk{proto: 6, src: "10.0.1.6", dst: "10.0.2.2"}, false, false},
		{"iprange dst inverted", "-m iprange ! --dst-range 10.0.2.1-10.0.2.3", pk{proto: 6}, false, false},
		// length
		{"length", "-m length --length 0:40", pk{proto: 6}, true, false},
		{"length miss", "-m length --length 0:39", pk{proto: 6}, false, false},
		{"length inverted", "-m length ! --length 41:", pk{proto: 6}, true, false},
		{"length v6", "-m length --length 68", pk{v6: true, proto: 17, payload: 20}, true, false},
		// ttl, hl
		{"ttl eq", "-m ttl --ttl-eq 64", pk{proto: 6}, true, false},
		{"ttl ne", "-m ttl ! --ttl-eq 64", pk{proto: 6}, false, false},
		{"ttl lt", "-m ttl --ttl-lt 2", pk{proto: 6, ttl: 1}, true, false},
		{"ttl gt", "-m ttl --ttl-gt 64", pk{proto: 6, ttl: 64}, false, false},
		{"hl eq", "-m hl --hl-eq 255", pk{v6: true, proto: 6, ttl: 255}, true, false},
		{"hl on v4", "-m hl --hl-eq 64", pk{proto: 6}, false, false},
		// pkttype, addrtype (no generation: by address)
		{"pkttype multicast", "-m pkttype --pkt-type multicast", pk{proto: 17, src: "10.0.1.2", dst: "224.0.0.9"}, true, false},
		{"pkttype broadcast", "-m pkttype --pkt-type broadcast", pk{proto: 17, src: "10.0.1.2", dst: "255.255.255.255"}, true, false},
		{"pkttype unicast", "-m pkttype --pkt-type unicast", pk{proto: 17}, true, false},
		{"pkttype not unicast", "-m pkttype ! --pkt-type unicast", pk{proto: 17}, false, false},
		{"addrtype multicast", "-m addrtype --dst-type MULTICAST", pk{v6: true, proto: 17, src: "fe80::1", dst: "ff02::1"}, true, false},
		{"addrtype unicast", "-m addrtype --dst-type UNICAST,BROADCAST", pk{proto: 17}, true, false},
		{"addrtype unspec src", "-m addrtype --src-type UNSPEC", pk{proto: 17, src: "0.0.0.0", dst: "255.255.255.255"}, true, false},
		{"addrtype inverted", "-m addrtype ! --dst-type UNICAST", pk{proto: 17}, false, false},
		// comment
		{"comment", "-m comment --comment 'hello world'", pk{proto: 6}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := tc.p.ctx(t)
			m, hot := matchOne(t, tc.rule, pc)
			if m != tc.match || hot != tc.hot {
				t.Errorf("%q on %+v: match %v hotdrop %v, want %v %v", tc.rule, tc.p, m, hot, tc.match, tc.hot)
			}
		})
	}
}

func wire2(f uint8) uint8 { return f }

// TestLimit: a burst, then one packet per interval, on the batch clock.
func TestLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	testNow = func() time.Time { return now }
	defer func() { testNow = nil }()
	m := mustLoad(t, "filter:\n  input:\n    rules: [\"-m limit --limit 5/s --limit-burst 3 -j ACCEPT\", \"-j DROP\"]\n")
	pc := pk{proto: 6, hook: pipeline.Input}.ctx(t)
	got := ""
	for i := 0; i < 5; i++ {
		got += verdictLetter(eval(m, pc))
	}
	now = now.Add(200 * time.Millisecond) // one token
	got += verdictLetter(eval(m, pc)) + verdictLetter(eval(m, pc))
	now = now.Add(10 * time.Second) // refills to the burst, no more
	for i := 0; i < 4; i++ {
		got += verdictLetter(eval(m, pc))
	}
	if want := "AAADDADAAAD"; got != want {
		t.Errorf("verdicts %s, want %s", got, want)
	}
}

func verdictLetter(v pipeline.Verdict) string {
	return map[pipeline.Verdict]string{pipeline.VerdictAccept: "A", pipeline.VerdictDrop: "D", pipeline.VerdictStolen: "S"}[v]
}

// TestConstraints: the built-in matchers describe what they test as data.
func TestConstraints(t *testing.T) {
	m := mustLoad(t, `filter:
  forward:
    rules:
      - "! -s 10.0.0.0/8 -p tcp --dport 20:22 -m multiport --sports 1,5:6 -m mark --mark 0x2/0x3 -m iprange --dst-range 10.0.0.1-10.0.0.6 -o wan+"
`)
	r := m.tables[0].chains[m.tables[0].byName["forward"]].rules[0]
	var all []pipeline.FieldConstraint
	for _, x := range r.matchers() {
		if cd, ok := x.(pipeline.ConstraintDescriber); ok {
			all = append(all, cd.Constraint()...)
		}
	}
	find := func(f pipeline.FieldSet) []pipeline.FieldConstraint {
		var out []pipeline.FieldConstraint
		for _, c := range all {
			if c.Field == f {
				out = append(out, c)
			}
		}
		return out
	}
	if c := find(pipeline.FieldSrcAddr); len(c) != 1 || !c[0].Invert || c[0].Prefixes[0].String() != "10.0.0.0/8" {
		t.Errorf("src: %+v", c)
	}
	if c := find(pipeline.FieldDstPort); len(c) != 1 || c[0].Ranges[0] != (pipeline.ValueRange{Lo: 20, Hi: 22}) {
		t.Errorf("dport: %+v", c)
	}
	if c := find(pipeline.FieldSrcPort); len(c) != 1 || len(c[0].Ranges) != 2 || c[0].Ranges[1] != (pipeline.ValueRange{Lo: 5, Hi: 6}) {
		t.Errorf("sports: %+v", c)
	}
	if c := find(pipeline.FieldMark); len(c) != 1 || c[0].Mask != 3 || c[0].Ranges[0].Lo != 2 {
		t.Errorf("mark: %+v", c)
	}
	// 10.0.0.1-10.0.0.6 is .1/32, .2/31, .4/31, .6/32.
	if c := find(pipeline.FieldDstAddr); len(c) != 1 || len(c[0].Prefixes) != 4 || c[0].Prefixes[1].String() != "10.0.0.2/31" {
		t.Errorf("dst range: %+v", c)
	}
	if c := find(pipeline.FieldOutNIC); len(c) != 1 || c[0].Names[0] != "wan+" {
		t.Errorf("out: %+v", c)
	}
}
