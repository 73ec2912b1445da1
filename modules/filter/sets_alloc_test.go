//go:build !race

package filter

import (
	"testing"

	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// TestSetMatchZeroAllocs: matching a 100,000-element prefix set and a
// 100,000-element addr . port set (with timeouts and counters) allocates
// nothing, over 10,000 packets of 4,096 flows, IPv4 and IPv6.
func TestSetMatchZeroAllocs(t *testing.T) {
	dir := t.TempDir()
	m := mustLoad(t, bigSetsSection(t, dir, 100000)+`
  forward:
    rules:
      - "-m set --match-set big_net dst -j DROP"
      - "-m set ! --match-set big_ipport dst,dst -j DROP"
      - "-m set --match-set ports dst -j ACCEPT"
`)
	pcs := make([]*pipeline.PacketContext, 0, 4096+2)
	for i := 0; i < 4096; i++ {
		p := bigSetFlow(i)
		p.hook = pipeline.Forward
		pcs = append(pcs, p.ctx(t))
	}
	pcs = append(pcs, pk{v6: true, proto: 6, src: "2001:db8::1", dst: "2001:db8:1::5", dport: 80, hook: pipeline.Forward}.ctx(t))
	hits := 0
	for _, pc := range pcs {
		if eval(m, pc) == pipeline.VerdictAccept {
			hits++
		}
	}
	if hits == 0 || hits == len(pcs) {
		t.Fatalf("%d of %d flows accepted: the sets do not decide", hits, len(pcs))
	}
	const runs = 10240
	if n := pt.CountMallocs(func() {
		for i := range runs {
			eval(m, pcs[i%len(pcs)])
		}
	}); n != 0 {
		t.Errorf("%d allocations in %d evaluations", n, runs)
	}
}

// TestSetPrefetchZeroAllocs: the batch pass over two 100,000-element
// addr . port sets (one with timeouts and counters) allocates nothing, over 10,240 packets in
// batches of 64 (IPv4 of 4,096 flows, IPv6, a nil slot).
func TestSetPrefetchZeroAllocs(t *testing.T) {
	m := mustLoad(t, bigSetsSection(t, t.TempDir(), 100000)+`
  forward:
    rules:
      - "-m set --match-set big_ipport_plain dst,dst -j DROP"
      - "-m set --match-set big_ipport dst,dst -j DROP"
`)
	prep := hookPrepare(m, pipeline.Forward)
	if prep == nil {
		t.Fatal("no batch pass at forward")
	}
	pkts := make([]*pipeline.Packet, 0, 4096+2)
	for i := 0; i < 4096; i++ {
		pkts = append(pkts, bigSetFlow(i).ctx(t).Pkt)
	}
	pkts = append(pkts, nil, pk{v6: true, proto: 6, src: "2001:db8::1", dst: "2001:db8:1::5", dport: 80}.ctx(t).Pkt)
	for o := 0; o+64 <= len(pkts); o += 64 { // warm-up
		prep(nil, pipeline.Forward, pkts[o:o+64])
	}
	const batches = 160
	if n := pt.CountMallocs(func() {
		for i := range batches {
			o := i * 64 % (len(pkts) - 64)
			prep(nil, pipeline.Forward, pkts[o:o+64])
		}
	}); n != 0 {
		t.Errorf("%d allocations in %d batches of 64", n, batches)
	}
}

// TestSetTargetZeroAllocs: the SET target's packet path — the lookup, a
// renewal in place (--exist), a change handed to the queue — allocates
// nothing (the applier, which builds the next snapshot, is not started
// here: it runs on its own goroutine, off the packet path).
func TestSetTargetZeroAllocs(t *testing.T) {
	m := mustLoad(t, `sets:
  seen: {type: hash:ip, timeout: 60, elements: ["10.0.1.2 timeout 60"]}
filter:
  forward:
    rules:
      - "-j SET --add-set seen src --exist"
      - "-j SET --del-set seen dst"
`)
	s := m.sets["seen"]
	ch := make(chan setOp, 1<<15) // a queue nobody drains: every change is handed over
	s.applierCh.Store(&ch)
	var pcs []*pipeline.PacketContext
	for i := 0; i < 64; i++ {
		pcs = append(pcs, pk{proto: 17, src: []string{"10.0.1.2", "10.0.1.3", "10.0.1.4"}[i%3], dst: "10.0.1.2", hook: pipeline.Forward}.ctx(t))
	}
	const runs = 10240
	if n := pt.CountMallocs(func() {
		for i := range runs {
			eval(m, pcs[i%len(pcs)])
		}
	}); n != 0 {
		t.Errorf("%d allocations in %d evaluations", n, runs)
	}
	if len(ch) == 0 {
		t.Error("no change queued: the test proves nothing")
	}
}

// TestVMapZeroAllocs: a verdict map's lookup and its verdicts (a jump to
// a user chain, accept, drop, no element) allocate nothing.
func TestVMapZeroAllocs(t *testing.T) {
	m := mustLoad(t, `maps:
  by_port: {type: port, elements: {"22": jump ssh, "tcp:80": accept, "6000-6063": drop}}
filter:
  forward:
    rules:
      - "-j VMAP --vmap by_port dst"
  ssh:
    rules: ["-s 10.0.0.0/8 -j ACCEPT", "-j DROP"]
`)
	var pcs []*pipeline.PacketContext
	seen := map[pipeline.Verdict]bool{}
	for i, dport := range []uint16{22, 80, 6001, 443, 22} {
		src := []string{"10.0.1.2", "192.0.2.1"}[i%2]
		pc := pk{proto: 6, src: src, dst: "10.0.2.2", sport: 1000, dport: dport, hook: pipeline.Forward}.ctx(t)
		seen[eval(m, pc)] = true
		pcs = append(pcs, pc)
	}
	if !seen[pipeline.VerdictAccept] || !seen[pipeline.VerdictDrop] {
		t.Fatalf("verdicts %v: the map does not decide", seen)
	}
	const runs = 10240
	if n := pt.CountMallocs(func() {
		for i := range runs {
			eval(m, pcs[i%len(pcs)])
		}
	}); n != 0 {
		t.Errorf("%d allocations in %d evaluations", n, runs)
	}
}
