package filter

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// FuzzParseRule: no rule text makes the iptables-syntax parser, the module
// decoding or provisioning panic; a rule that loads has a canonical text
// that loads again as the same rule.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"-p tcp --dport 22 -j ACCEPT",
		"-p tcp -s 192.0.2.0/24 ! --sport 1:1024 --tcp-flags SYN,ACK SYN -j DROP",
		"! -i wan+ -o lan -g chain",
		"-p udp -m multiport --dports 53,123:130 -m limit --limit 5/s --limit-burst 10 -j LOG --log-prefix 'x y'",
		"-6 -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT",
		"-p icmp --icmp-type 3/4 -m comment --comment \"hi\" -j REJECT --reject-with icmp-host-prohibited",
		"-m mark --mark 0x1/0xff -j MARK --set-xmark 0x2/0x3",
		"-m iprange --src-range 10.0.0.1-10.0.0.9 -m length --length 0:100 -m ttl --ttl-lt 3",
		"-m addrtype --dst-type LOCAL,BROADCAST -m pkttype ! --pkt-type unicast -j RETURN",
		"-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu",
		"-f -j DROP", "", "!", "-p", "--dport 1", "'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := parseRule(s)
		if err != nil {
			return
		}
		r, err := buildRule(src, &yaml.Node{Line: 1, Column: 1}, "rule 1")
		if err != nil {
			return
		}
		if err := r.provision(&pipeline.Context{}, &provisionEnv{}); err != nil {
			return
		}
		if r.tgt != nil {
			if _, ok := r.tgt.(*Jump); ok {
				return // the chain need not exist here
			}
		}
		if r.text == "" {
			return // a rule that matches all and does nothing: {} in YAML
		}
		src2, err := parseRule(r.text)
		if err != nil {
			t.Fatalf("%q → canonical %q does not parse: %v", s, r.text, err)
		}
		r2, err := buildRule(src2, &yaml.Node{Line: 1, Column: 1}, "rule 1")
		if err != nil {
			t.Fatalf("%q → canonical %q does not build: %v", s, r.text, err)
		}
		if err := r2.provision(&pipeline.Context{}, &provisionEnv{}); err != nil {
			t.Fatalf("%q → canonical %q does not provision: %v", s, r.text, err)
		}
		if r2.text != r.text {
			t.Fatalf("%q → %q → %q: canonical text not stable", s, r.text, r2.text)
		}
	})
}

// fuzzRules has a rule for every matcher and the targets that change the
// packet, in tables at every hook.
const fuzzRules = `
raw:
  prerouting:
    rules: ["-j NOTRACK", "-f -j ACCEPT"]
mangle:
  forward:
    rules:
      - "-p tcp --syn -j TCPMSS --set-mss 500"
      - "-j TTL --ttl-dec 1"
      - "-j HL --hl-inc 1"
      - "-j MARK --set-mark 1"
filter:
  forward:
    rules:
      - "-p tcp --sport 1:100 --dport 22 --tcp-flags SYN,ACK SYN --tcp-option 2"
      - "-p tcp ! --syn"
      - "-p udp --sport 53"
      - "-p udp -m multiport --ports 1,2,3:9"
      - "-p tcp -m multiport ! --dports 80"
      - "-p icmp --icmp-type 3/1"
      - "-p icmpv6 --icmpv6-type echo-request"
      - "-m mark --mark 1/1"
      - "-m iprange --src-range 10.0.0.1-10.0.0.9"
      - "-m iprange --dst-range 2001:db8::1-2001:db8::9"
      - "-m length --length 0:100"
      - "-m ttl --ttl-lt 9"
      - "-m hl ! --hl-eq 9"
      - "-m limit --limit 1/s"
      - "-m pkttype --pkt-type multicast"
      - "-m addrtype --dst-type LOCAL,BROADCAST --src-type UNSPEC"
      - "-m comment --comment x"
      - "-s 10.0.0.0/8 -d 10.0.0.0/8 ! -p 6"
      - "-s 2001:db8::/32"
      - "-j ACCEPT"
`

// FuzzMatch: no packet makes a matcher or target panic (every hook, every
// matcher, the targets that rewrite headers); the packet's length never
// changes but by a TCPMSS insertion.
func FuzzMatch(f *testing.F) {
	v4 := func(p pk) []byte { p.src, p.dst = "10.0.0.5", "10.0.0.1"; return p.bytes() }
	f.Add(v4(pk{proto: 6, sport: 5, dport: 22, flags: 2, opts: []byte{2, 4, 5, 0xb4}}))
	f.Add(v4(pk{proto: 17, sport: 53, dport: 9}))
	f.Add(v4(pk{proto: 1, icmpType: 3, icmpCode: 1}))
	f.Add(v4(pk{proto: 6, fragOff: 8}))
	f.Add(pk{v6: true, proto: 58, src: "2001:db8::1", dst: "ff02::1", icmpType: 128}.bytes())
	f.Add(pk{v6: true, proto: 6, src: "2001:db8::1", dst: "2001:db8::2", flags: 2, opts: []byte{1, 2, 4, 1, 0}}.bytes())
	m := mustLoad(f, fuzzRules)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b) > 2000 {
			return
		}
		pkt := pipeline.DefaultPool.Get(len(b))
		defer pkt.Release()
		pkt.SetData(b)
		pkt.SetNetworkHeader()
		pkt.NetProto = pipeline.IPv4ProtocolNumber
		if b[0]>>4 == 6 {
			pkt.NetProto = pipeline.IPv6ProtocolNumber
		}
		pc := &pipeline.PacketContext{Pkt: pkt}
		if !pipeline.ParseTuple(nil, pkt, pc) {
			return
		}
		for h := pipeline.Hook(0); h < pipeline.NumHooks; h++ {
			pc.Hook = h
			before := pkt.Len()
			eval(m, pc)
			if n := pkt.Len(); n != before {
				// Only TCPMSS inserting an option grows a packet: by 4
				// bytes, with the IP length and pc.L4End following.
				nh := pkt.NetworkHeader()
				ipLen := int(wire.IPv4(nh).TotalLength())
				if pkt.NetProto == pipeline.IPv6ProtocolNumber {
					ipLen = 40 + int(wire.IPv6(nh).PayloadLength())
				}
				if n != before+4 || pc.Tuple.Proto != 6 || ipLen != n || pc.L4End != n {
					t.Fatalf("length %d → %d at %v (IP length %d, L4End %d)", before, n, h, ipLen, pc.L4End)
				}
			}
		}
	})
}
