package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestTUNFlowOffload: the NAT gateway with a flowtable (nft's flow add
// @ft, iptables' -j FLOWOFFLOAD) between Linux hosts over TUN links with
// offloads (vnet_hdr). A 20 MB download from B through MASQUERADE arrives
// intact, almost all of it through the fast path (conntrack's
// flow_fastpath against the slow path's ipv4 forwarded), with B's TSO
// super-packets written to A whole (tun a tx_gso): NAT and the fast path
// rewrite them once, no segmentation. Then iperf3 A→B through the same
// NAT: super-packets from A reach B whole, what A sent is received.
// B's server sees the router's address. IPv4 and IPv6 (MASQUERADE both).
// Then a reload removes the offload rule: a download through the slow
// path's NAT keeps the super-packets whole as well, none takes the fast
// path.
func TestTUNFlowOffload(t *testing.T) {
	requireLab(t, "curl (curl)", "iperf3 (iperf3)")
	l := newLabSuffix(t, "tun", "fo"+randSuffix()[:4])
	cfg := l.routerConfigWith("{module: netfilter.conntrack, max: 4096, flowtables: [{name: ft, devices: [a, b]}]}") + `filter:
  nat:
    postrouting:
      rules:
        - "-o b -j MASQUERADE"
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -j ACCEPT"
        - "-p ipv6-icmp -j ACCEPT"
`
	r := startRouter(t, cfg)
	for _, f := range []*family{v4, v6} {
		t.Run(f.name, func(t *testing.T) {
			startHTTP(t, l.nsB, net.JoinHostPort(f.hostB, "8080"))
			who := mustNS(t, 20*time.Second, l.nsA, "curl", f.flag, "-sS", "--fail", "--max-time", "10", "http://"+net.JoinHostPort(f.hostB, "8080")+"/whoami")
			if host, _, err := net.SplitHostPort(strings.TrimSpace(who)); err != nil || host != f.routerB {
				t.Errorf("B's server saw %q, want the router's address %s (masqueraded)", who, f.routerB)
			}
			time.Sleep(600 * time.Millisecond) // a stats line before
			ct0, ip0, a0, b0 := r.counters("conntrack"), r.counters(f.name), r.counters("tun a"), r.counters("tun b")
			downloadIntact(t, l, f, 20_000_000, 21)
			fast := r.waitCounter("conntrack", "flow_fastpath", ct0["flow_fastpath"]+1000, 3*time.Second) - ct0["flow_fastpath"]
			time.Sleep(600 * time.Millisecond)
			slow := r.counters(f.name)["forwarded"] - ip0["forwarded"]
			txGSO := r.counters("tun a")["tx_gso"] - a0["tx_gso"]
			rxGSO := r.counters("tun b")["rx_gso"] - b0["rx_gso"]
			t.Logf("download: %d packets through the fast path, %d forwarded by the slow path; super-packets from B %d, written whole to A %d",
				fast, slow, rxGSO, txGSO)
			if fast < 10*slow || fast < 100 { // 20 MB are some 500 super-packets and their ACKs

				t.Errorf("the download did not take the fast path: %d fast, %d slow (conntrack %v)", fast, slow, r.counters("conntrack"))
			}
			if rxGSO == 0 || txGSO == 0 {
				t.Errorf("super-packets not kept whole through NAT and the fast path: %d read from B, %d written to A", rxGSO, txGSO)
			}

			startIperf3Server(t, l, f)
			a1, b1, ct1 := r.counters("tun a"), r.counters("tun b"), r.counters("conntrack")
			res := iperf3(t, l, f, 30*time.Second, "-t", "3")
			time.Sleep(600 * time.Millisecond)
			sent, got := res.End.SumSent.Bytes, res.End.SumReceived.Bytes
			rx, tx := r.counters("tun a")["rx_gso"]-a1["rx_gso"], r.counters("tun b")["tx_gso"]-b1["tx_gso"]
			fast = r.counters("conntrack")["flow_fastpath"] - ct1["flow_fastpath"]
			t.Logf("iperf3 %s A→B: %.2f Gbit/s, %.0f bytes sent, %.0f received, %d retransmits; super-packets from A %d, to B %d; fast path %d",
				f.flag, res.End.SumReceived.BitsPerSecond/1e9, sent, got, res.End.SumSent.Retransmits, rx, tx, fast)
			if sent == 0 || got < 0.99*sent { // what was in flight when the client stopped counting

				t.Errorf("iperf3: %.0f bytes sent, %.0f received", sent, got)
			}
			if rx == 0 || tx == 0 || fast == 0 {
				t.Errorf("iperf3 stream: super-packets from A %d, written whole to B %d, fast path %d", rx, tx, fast)
			}
		})
	}
	// Without the offload rule (a reload of FORWARD): the slow path's NAT
	// keeps the super-packets whole too, and nothing takes the fast path
	// any more.
	r.rewrite(strings.Replace(cfg, `        - "-m conntrack --ctstate ESTABLISHED -j FLOWOFFLOAD --flowtable ft"
`, "", 1))
	if out, err := r.control("reload"); err != nil || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %v %s", err, out)
	}
	startHTTP(t, l.nsB, "10.10.2.2:8080") // the subtests' servers are gone
	time.Sleep(600 * time.Millisecond)
	ct0, a0 := r.counters("conntrack"), r.counters("tun a")
	downloadIntact(t, l, v4, 20_000_000, 22)
	time.Sleep(1200 * time.Millisecond)
	fast := r.counters("conntrack")["flow_fastpath"] - ct0["flow_fastpath"]
	txGSO := r.counters("tun a")["tx_gso"] - a0["tx_gso"]
	t.Logf("slow path NAT: %d super-packets written whole to A, %d fast-path packets", txGSO, fast)
	if txGSO == 0 || fast != 0 {
		t.Errorf("slow-path NAT: %d super-packets written whole to A (want > 0), %d fast-path packets (want 0)", txGSO, fast)
	}
	if list, err := r.control("conntrack", "-L"); err == nil {
		t.Logf("pipectl conntrack -L:\n%s", list)
	}
}
