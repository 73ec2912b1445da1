package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestTUNPolicyRouting: route tables chosen by the packet's mark against
// Linux hosts. 10.99.0.0/24 and fd00:99::/64 (addresses of host B) are in
// no route of the main table, only in table 100 (via B), chosen by a rule
// for mark 1, which mangle PREROUTING sets on ICMP from A: ping from A
// reaches them, while TCP (unmarked) gets no route — curl fails at once
// (the router's ICMP net unreachable) instead of at its 5 s timeout.
func TestTUNPolicyRouting(t *testing.T) {
	requireLab(t, "ping (iputils-ping)", "curl (curl)")
	l := newLabSuffix(t, "tun", "pr"+randSuffix()[:4])
	mustNS(t, 5*time.Second, l.nsB, "ip", "addr", "add", "10.99.0.1/32", "dev", l.devB())
	mustNS(t, 5*time.Second, l.nsB, "ip", "-6", "addr", "add", "fd00:99::1/128", "dev", l.devB(), "nodad")
	cfg := l.routerConfig("") + `routes:
  - {to: 10.99.0.0/24, via: 10.10.2.2, link: b, table: 100}
  - {to: "fd00:99::/64", via: "fd00:10:2::2", link: b, table: 100}
route_rules:
  - {fwmark: "0x1/0xff", table: 100, priority: 100}
filter:
  mangle:
    prerouting:
      rules:
        - "-i a -p icmp -j MARK --set-mark 1"
        - "-i a -p ipv6-icmp --icmpv6-type echo-request -j MARK --set-mark 1"
`
	r := startRouter(t, cfg)
	for _, c := range []struct{ flag, dst, url string }{{"-4", "10.99.0.1", "http://10.99.0.1:8080/"}, {"-6", "fd00:99::1", "http://[fd00:99::1]:8080/"}} {
		if out, err := ns(t, 15*time.Second, l.nsA, "ping", c.flag, "-c", "3", "-i", "0.3", "-W", "2", c.dst); err != nil || !strings.Contains(out, "3 received") {
			t.Errorf("marked ping to %s (table 100): %v\n%s", c.dst, err, out)
		}
		start := time.Now()
		out, err := ns(t, 15*time.Second, l.nsA, "curl", "-sS", "--connect-timeout", "5", c.url)
		if err == nil || time.Since(start) > 4*time.Second {
			t.Errorf("unmarked TCP to %s: %v after %v (want no route at once):\n%s", c.dst, err, time.Since(start), out)
		}
	}
	if list, err := r.control("route"); err != nil || !strings.Contains(list, "10.99.0.0/24 via 10.10.2.2 dev b table 100") {
		t.Errorf("pipectl route: %v\n%s", err, list)
	}
	for _, set := range []string{"ipv4", "ipv6"} {
		if c := r.waitCounter(set, "no_route", 1, 10*time.Second); c == 0 {
			t.Errorf("%s no_route 0: the unmarked packets were routed", set)
		}
	}
}
