package filter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// TestBothForms: a rule written as a mapping and as an iptables string is
// the same rule (same canonical text).
func TestBothForms(t *testing.T) {
	pairs := []struct{ yaml, ipt string }{
		{`{proto: tcp, dport: 22, src: 192.0.2.0/24, target: accept}`, `-p tcp -s 192.0.2.0/24 --dport 22 -j ACCEPT`},
		{`{proto: tcp, dport: 80, target: accept}`, `-p tcp --dport 80 -j ACCEPT`},
		{`{id: web, rule: "-p tcp --dport 443 -j ACCEPT"}`, `-p tcp --dport 443 -j ACCEPT`},
		{`{in: lan, jump: from_lan}`, `-i lan -j from_lan`},
		{`{in: "!wan+", goto: from_lan}`, `! -i wan+ -g from_lan`},
		{`{proto: udp, sport: "!53", target: {reject: {reject_with: icmp-host-prohibited}}}`, `-p udp ! --sport 53 -j REJECT --reject-with icmp-host-prohibited`},
		{`{proto: tcp, multiport: {dports: "80,443"}, limit: {limit: 5/s, limit_burst: 10}, target: {log: {log_prefix: "web "}}}`,
			`-p tcp -m multiport --dports 80,443 -m limit --limit 5/second --limit-burst 10 -j LOG --log-prefix "web "`},
		{`{proto: icmp, icmp_type: echo-request, comment: ping, target: drop}`, `-p icmp --icmp-type echo-request -m comment --comment ping -j DROP`},
		{`{family: ipv6, proto: tcp, syn: true, target: accept}`, `-6 -p tcp --syn -j ACCEPT`},
		{`{proto: tcp, tcp_flags: "SYN,ACK SYN", target: accept}`, `-p tcp --tcp-flags SYN,ACK SYN -j ACCEPT`},
		{`{mark: "0x1/0xff", target: {mark: {set_mark: "0x2"}}}`, `-m mark --mark 0x1/0xff -j MARK --set-mark 2`},
		{`{iprange: {src_range: 10.0.0.1-10.0.0.9}, pkttype: broadcast, addrtype: {dst_type: LOCAL}}`,
			`-m iprange --src-range 10.0.0.1-10.0.0.9 -m pkttype --pkt-type broadcast -m addrtype --dst-type LOCAL`},
	}
	for _, p := range pairs {
		sec := "filter:\n  input:\n    rules:\n      - " + p.yaml + "\n      - " + quoteYAML(p.ipt) + "\n  from_lan: {}\n"
		m, err := load(t, sec)
		if err != nil {
			t.Errorf("%v\n%s", err, sec)
			continue
		}
		rs := m.tables[0].chains[m.tables[0].byName["input"]].rules
		if rs[0].text != rs[1].text {
			t.Errorf("the two forms differ:\n  %s  → %s\n  %s  → %s", p.yaml, rs[0].text, p.ipt, rs[1].text)
		}
		t.Log(rs[0].text)
		if strings.Contains(p.yaml, "id: web") && rs[0].key != "id/web" {
			t.Errorf("rule with id: key %q", rs[0].key)
		}
		// The identical rules share no counter: the second is occurrence 2.
		if rs[0].key == rs[1].key || rs[0].counter == rs[1].counter {
			t.Errorf("identical rules share counter key %q", rs[0].key)
		}
	}
}

// TestChains: jump, goto, return, policies, several tables at a hook.
func TestChains(t *testing.T) {
	m := mustLoad(t, `
raw:
  prerouting:
    rules: ["-p udp --dport 9 -j DROP"]
mangle:
  forward:
    rules: ["-p udp --dport 7 -j MARK --set-mark 7"]
filter:
  forward:
    policy: drop
    rules:
      - "-m mark --mark 7 -j ACCEPT"
      - "-p tcp -j tcp_chain"
      - "-p udp -g udp_chain"
      - "-p icmp -j ACCEPT"
  tcp_chain:
    rules:
      - "-p tcp --dport 22 -j ACCEPT"
      - "-p tcp --dport 23 -j DROP"
      - "-p tcp --dport 24 -j RETURN"
      - "-j inner"
  inner:
    rules:
      - "-p tcp --dport 25 -j RETURN"
      - "-p tcp --dport 26 -j ACCEPT"
  udp_chain:
    rules:
      - "-p udp --dport 53 -j ACCEPT"
      - "-p udp --dport 54 -j RETURN"
      - "-j tail"
  tail:
    rules:
      - "-p udp --dport 55 -j ACCEPT"
`)
	cases := []struct {
		p    pk
		want pipeline.Verdict
	}{
		{pk{proto: 6, dport: 22}, pipeline.VerdictAccept},
		{pk{proto: 6, dport: 23}, pipeline.VerdictDrop},
		{pk{proto: 6, dport: 24}, pipeline.VerdictDrop},   // return, then no rule: policy drop
		{pk{proto: 6, dport: 25}, pipeline.VerdictDrop},   // inner returns to tcp_chain, ends, back to forward, policy
		{pk{proto: 6, dport: 26}, pipeline.VerdictAccept}, // inner accepts
		{pk{proto: 17, dport: 53}, pipeline.VerdictAccept},
		{pk{proto: 17, dport: 54}, pipeline.VerdictDrop}, // goto: return goes past forward → policy
		{pk{proto: 17, dport: 55}, pipeline.VerdictAccept},
		{pk{proto: 17, dport: 56}, pipeline.VerdictDrop},
		{pk{proto: 1}, pipeline.VerdictAccept},
		{pk{proto: 17, dport: 7}, pipeline.VerdictAccept}, // mangle marks, filter accepts the mark
	}
	for _, c := range cases {
		c.p.hook = pipeline.Forward
		if got := eval(m, c.p.ctx(t)); got != c.want {
			t.Errorf("%+v: %v, want %v", c.p, got, c.want)
		}
	}
	// raw at prerouting.
	if got := eval(m, pk{proto: 17, dport: 9, hook: pipeline.Prerouting}.ctx(t)); got != pipeline.VerdictDrop {
		t.Errorf("raw drop: %v", got)
	}
	// Counters: the rule "-p tcp -j tcp_chain" saw 5 packets of 40 bytes.
	r := m.tables[2].chains[m.tables[2].byName["forward"]].rules[1]
	if p, b := r.counter.load(); p != 5 || b != 5*40 {
		t.Errorf("jump rule counted %d packets %d bytes, want 5, 200", p, b)
	}
}

// TestGotoReturn: a return after a goto goes back to the chain that
// jumped to the chain holding the goto (netfilter's semantics).
func TestGotoReturn(t *testing.T) {
	m := mustLoad(t, `
filter:
  input:
    rules:
      - "-j a"
      - "-p tcp --dport 1 -j DROP"
  a:
    rules:
      - "-g b"
  b:
    rules:
      - "-j RETURN"
`)
	// input -j a (frame: input#2); a -g b; b returns → input rule 2 → drop.
	if got := eval(m, pk{proto: 6, dport: 1, hook: pipeline.Input}.ctx(t)); got != pipeline.VerdictDrop {
		t.Errorf("got %v, want drop (return after goto resumes input)", got)
	}
	if got := eval(m, pk{proto: 6, dport: 2, hook: pipeline.Input}.ctx(t)); got != pipeline.VerdictAccept {
		t.Errorf("got %v, want accept", got)
	}
}

func TestTargets(t *testing.T) {
	t.Run("mark", func(t *testing.T) {
		for _, c := range []struct {
			opt      string
			in, want uint32
		}{
			{"--set-mark 0x5", 0xf0, 0x5},
			{"--set-mark 0x5/0xf", 0xf0, 0xf5},
			{"--set-xmark 0x5/0xf", 0xf3, 0xf5},
			{"--and-mark 0xf", 0xf3, 0x3},
			{"--or-mark 0x100", 0xf3, 0x1f3},
			{"--xor-mark 0x3", 0xf3, 0xf0},
		} {
			m := mustLoad(t, "mangle:\n  forward:\n    rules: ["+quoteYAML("-j MARK "+c.opt)+"]\n")
			pc := pk{proto: 6, mark: c.in, hook: pipeline.Forward}.ctx(t)
			if v := eval(m, pc); v != pipeline.VerdictAccept || pc.Pkt.Mark != c.want {
				t.Errorf("%s on %#x: mark %#x verdict %v, want %#x", c.opt, c.in, pc.Pkt.Mark, v, c.want)
			}
		}
	})
	t.Run("ttl", func(t *testing.T) {
		for _, c := range []struct {
			rule     string
			in, want uint8
		}{
			{"-j TTL --ttl-set 7", 64, 7},
			{"-j TTL --ttl-dec 10", 5, 0},
			{"-j TTL --ttl-inc 10", 250, 255},
			{"-j TTL --ttl-dec 1", 64, 63},
		} {
			m := mustLoad(t, "mangle:\n  prerouting:\n    rules: ["+quoteYAML(c.rule)+"]\n")
			pc := pk{proto: 6, ttl: c.in}.ctx(t)
			eval(m, pc)
			ip := wire.IPv4(pc.Pkt.NetworkHeader())
			if ip.TTL() != c.want || !ip.IsChecksumValid() {
				t.Errorf("%s on %d: ttl %d checksum ok %v", c.rule, c.in, ip.TTL(), ip.IsChecksumValid())
			}
		}
		m := mustLoad(t, "mangle:\n  prerouting:\n    rules: [\"-j HL --hl-set 3\"]\n")
		pc := pk{v6: true, proto: 6}.ctx(t)
		eval(m, pc)
		if hl := wire.IPv6(pc.Pkt.NetworkHeader()).HopLimit(); hl != 3 {
			t.Errorf("hl %d", hl)
		}
	})
	t.Run("tcpmss", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			for _, opts := range [][]byte{{2, 4, 0x05, 0xb4}, {1, 2, 4, 0x05, 0xb4, 0, 0, 0}} { // MSS at even and odd offsets
				m := mustLoad(t, "mangle:\n  forward:\n    rules: [\"-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1000\"]\n")
				p := pk{v6: v6, proto: 6, flags: 2, opts: opts, hook: pipeline.Forward, payload: 3}
				pc := p.ctx(t)
				nh := pc.Pkt.NetworkHeader()
				l4, _, _ := l4(pc)
				setTCPChecksum(nh, l4, v6)
				eval(m, pc)
				i := 0
				for l4[20+i] != 2 {
					i++
				}
				if got := binary.BigEndian.Uint16(l4[20+i+2:]); got != 1000 {
					t.Errorf("v6 %v opts %x: mss %d", v6, opts, got)
				}
				if !tcpChecksumOK(nh, l4, v6) {
					t.Errorf("v6 %v opts %x: checksum not updated right", v6, opts)
				}
				// An MSS already below is left alone.
				m2 := mustLoad(t, "mangle:\n  forward:\n    rules: [\"-p tcp --syn -j TCPMSS --set-mss 1500\"]\n")
				eval(m2, pc)
				if got := binary.BigEndian.Uint16(l4[20+i+2:]); got != 1000 {
					t.Errorf("raised the mss to %d", got)
				}
			}
		}
	})
	t.Run("log", func(t *testing.T) {
		var buf syncBuf
		ring := newLogRing(zerolog.New(&buf), 2, (&pipeline.Context{}).Counters("filter"))
		lt := &Log{LogPrefix: "pfx", env: &provisionEnv{logs: ring}}
		if err := lt.Provision(nil); err != nil {
			t.Fatal(err)
		}
		pc := pk{proto: 6, dport: 22}.ctx(t)
		for i := 0; i < 30; i++ {
			if v, _ := lt.Action(pc); v != pipeline.VerdictContinue {
				t.Fatalf("log verdict %v", v)
			}
		}
		ring.Close()
		out := buf.String()
		if !strings.Contains(out, `"prefix":"pfx"`) || !strings.Contains(out, `"dpt":22`) || !strings.Contains(out, `"src":"10.0.1.2"`) {
			t.Errorf("log line: %s", out)
		}
		n := strings.Count(out, "\n")
		// 20 pass the rate limit (burst); the ring holds 2 while the
		// goroutine is slow; every one is either written or counted.
		if n < 1 || n > 20 || uint64(n)+ring.dropped.Load() != 20 {
			t.Errorf("%d lines, %d dropped; want 20 in all", n, ring.dropped.Load())
		}
	})
	t.Run("notrack", func(t *testing.T) {
		m := mustLoad(t, "raw:\n  prerouting:\n    rules: [\"-j NOTRACK\", \"-j DROP\"]\n")
		if v := eval(m, pk{proto: 6}.ctx(t)); v != pipeline.VerdictDrop {
			t.Errorf("notrack is not a terminating verdict: %v", v)
		}
	})
	t.Run("counting rule", func(t *testing.T) {
		m := mustLoad(t, "filter:\n  input:\n    rules: [\"-p tcp\", {proto: udp}]\n")
		eval(m, pk{proto: 6, hook: pipeline.Input}.ctx(t))
		r := m.tables[0].chains[0].rules
		if p, _ := r[0].counter.load(); p != 1 {
			t.Errorf("counting rule counted %d", p)
		}
		if p, _ := r[1].counter.load(); p != 0 {
			t.Errorf("udp rule counted %d", p)
		}
	})
}

func setTCPChecksum(nh, l4 []byte, v6 bool) {
	tcp := wire.TCP(l4)
	tcp.SetChecksum(0)
	tcp.SetChecksum(tcp.CalculateChecksum(pseudo(nh, l4, v6)))
}

func tcpChecksumOK(nh, l4 []byte, v6 bool) bool {
	return wire.TCP(l4).IsChecksumValid(pseudo(nh, l4, v6))
}

func pseudo(nh, l4 []byte, v6 bool) uint16 {
	if v6 {
		return wire.IPv6PseudoChecksum(wire.IPv6(nh), 6, uint32(len(l4)))
	}
	return wire.IPv4PseudoChecksum(wire.IPv4(nh), uint16(len(l4)))
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPolicyCounter: the policy counts what it decides: the end of the
// built-in chain, and a RETURN in it.
func TestPolicyCounter(t *testing.T) {
	m := mustLoad(t, "filter:\n  input:\n    policy: drop\n    rules: [\"-p udp -j RETURN\", \"-p tcp -j ACCEPT\"]\n")
	for _, p := range []pk{{proto: 17}, {proto: 6}, {proto: 1}, {proto: 17}} {
		p.hook = pipeline.Input
		eval(m, p.ctx(t))
	}
	c := m.ListRules()[0]
	if c.Chain != "INPUT" || c.PolicyPackets != 3 || c.PolicyBytes != 3*28 && c.PolicyBytes != 28+28+28 {
		t.Errorf("policy counted %d packets %d bytes, want 3", c.PolicyPackets, c.PolicyBytes)
	}
	if c.Rules[0].Packets != 2 {
		t.Errorf("RETURN counted %d, want 2", c.Rules[0].Packets)
	}
}

// TestPolicyCounterAfterGoto: a packet that a goto took to a user chain
// whose end (or RETURN) has no frame below reaches the built-in chain's
// policy, and the policy counts it (netfilter's underflow rule).
func TestPolicyCounterAfterGoto(t *testing.T) {
	m := mustLoad(t, `
filter:
  input:
    policy: drop
    rules: ["-p udp -g u", "-p tcp -g r"]
  u:
    rules: ["-p udp --dport 9 -j ACCEPT"]
  r:
    rules: ["-j RETURN", "-j ACCEPT"]
`)
	for _, p := range []pk{{proto: 17, dport: 53}, {proto: 6, dport: 80}, {proto: 17, dport: 9}} {
		p.hook = pipeline.Input
		want := pipeline.VerdictDrop
		if p.dport == 9 {
			want = pipeline.VerdictAccept
		}
		if got := eval(m, p.ctx(t)); got != want {
			t.Errorf("%+v: %v, want %v", p, got, want)
		}
	}
	c := m.ListRules()[0]
	if c.Chain != "INPUT" || c.PolicyPackets != 2 {
		t.Errorf("policy counted %d packets, want 2 (the end of u, the RETURN of r)", c.PolicyPackets)
	}
}

// TestShardedCounter: batches running at once count into different shards;
// the listing sums them.
func TestShardedCounter(t *testing.T) {
	c := newRuleCounter()
	pc := pk{proto: 6}.ctx(t)
	var b1, b2 pipeline.Batch
	for i, b := range []*pipeline.Batch{&b1, &b2, &b2, nil} {
		pc.Batch = b
		c.add(pc)
		_ = i
	}
	if b1.Shard() == b2.Shard() {
		t.Errorf("two batches share shard %d", b1.Shard())
	}
	if p, by := c.load(); p != 4 || by != 4*40 {
		t.Errorf("counted %d packets %d bytes, want 4, 160", p, by)
	}
	if got := c.cell(&b2).packets.Load(); got != 2 {
		t.Errorf("b2's shard has %d", got)
	}
}

// BenchmarkRuleCounter: one rule counted by parallel workers, each with its
// batch (sharded) or all on one shard.
func BenchmarkRuleCounter(b *testing.B) {
	for _, sharded := range []bool{true, false} {
		b.Run(map[bool]string{true: "sharded", false: "one-shard"}[sharded], func(b *testing.B) {
			c := newRuleCounter()
			pkt := pk{proto: 6}.ctx(b).Pkt
			b.RunParallel(func(pb *testing.PB) {
				pc := &pipeline.PacketContext{Pkt: pkt}
				if sharded {
					pc.Batch = new(pipeline.Batch)
				}
				for pb.Next() {
					c.add(pc)
				}
			})
		})
	}
}

// TestCounterStoreSlots: new rules get neighbouring slots of a slab, a key
// kept keeps its slot and count, a slot given back is zeroed before it
// counts for another rule, and slabs fill before a new one is made.
func TestCounterStoreSlots(t *testing.T) {
	s := newCounterStore()
	pc := pk{proto: 6}.ctx(t)
	var cs []*ruleCounter
	for i := 0; i < slabRules+3; i++ {
		cs = append(cs, s.acquire(fmt.Sprint("k", i)))
	}
	for i, c := range cs {
		if want := uint32(i % slabRules); c.i != want || c.slab != s.slabs[i/slabRules] {
			t.Fatalf("counter %d in slab %p slot %d, want slab %d slot %d", i, c.slab, c.i, i/slabRules, want)
		}
	}
	cs[0].add(pc)
	cs[1].add(pc)
	if again := s.acquire("k1"); *again != *cs[1] {
		t.Fatal("a kept key changed slot")
	}
	s.release([]string{"k0", "k1"}) // k1 still held once
	if p, _ := cs[1].load(); p != 1 {
		t.Errorf("k1 counted %d after a release it survives, want 1", p)
	}
	n := s.acquire("new")
	if *n != *cs[0] {
		t.Errorf("the free slot was not reused: %+v", *n)
	}
	if p, b := n.load(); p != 0 || b != 0 {
		t.Errorf("a reused slot starts at %d packets %d bytes", p, b)
	}
	if len(s.slabs) != 2 || s.len() != slabRules+3 {
		t.Errorf("%d slabs, %d keys", len(s.slabs), s.len())
	}
}

// TestCountedSize: a counted target stays 32 bytes (two to a cache line in
// its arena).
func TestCountedSize(t *testing.T) {
	if n := unsafe.Sizeof(counted{}); n != 32 {
		t.Errorf("counted is %d bytes, want 32", n)
	}
}
