package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestTUNNAT: the router as a NAT gateway between Linux hosts in
// namespaces (netfilter.conntrack, the nat table). MASQUERADE towards B:
// B's server sees the router's address, a 20 MB download through the NAT
// is intact; a DNAT port forward: curl from B to the router's port 9090
// reaches A's server on 8088; ping through the NAT (echo ids) and
// traceroute (B's port unreachable errors, translated back to A, name B as
// the last hop); pipectl conntrack -L shows the NATed flows. IPv4 and IPv6.
func TestTUNNAT(t *testing.T) {
	requireLab(t, "curl (curl)", "ping (iputils-ping)", "traceroute (traceroute)")
	l := newLabSuffix(t, "tun", "nt"+randSuffix()[:4])
	cfg := l.routerConfigWith("{module: netfilter.conntrack, max: 4096}") + `filter:
  nat:
    prerouting:
      rules:
        - "-i b -d 10.10.2.1 -p tcp --dport 9090 -j DNAT --to-destination 10.10.1.2:8088"
        - "-i b -d fd00:10:2::1 -p tcp --dport 9090 -j DNAT --to-destination [fd00:10:1::2]:8088"
    postrouting:
      rules:
        - "-o b -j MASQUERADE"
  filter:
    forward:
      policy: drop
      rules:
        - "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        - "-m conntrack --ctstate INVALID -j DROP"
        - "-i a -o b -j ACCEPT"
        - "-i b -o a -m conntrack --ctstate DNAT -j ACCEPT"
        - "-p ipv6-icmp -j ACCEPT"
`
	r := startRouter(t, cfg)
	for _, f := range []*family{v4, v6} {
		t.Run(f.name, func(t *testing.T) {
			hp := func(h, port string) string { return net.JoinHostPort(h, port) }
			startHTTP(t, l.nsB, hp(f.hostB, "8080"))
			who := mustNS(t, 20*time.Second, l.nsA, "curl", f.flag, "-sS", "--fail", "--max-time", "10", "http://"+hp(f.hostB, "8080")+"/whoami")
			host, _, err := net.SplitHostPort(strings.TrimSpace(who))
			if err != nil || host != f.routerB {
				t.Errorf("B's server saw %q, want the router's address %s (masqueraded)", who, f.routerB)
			}
			downloadIntact(t, l, f, 20_000_000, 11)
			if out := mustNS(t, 10*time.Second, l.nsA, "ping", f.flag, "-c", "3", "-i", "0.2", "-W", "2", f.hostB); !strings.Contains(out, "3 received") {
				t.Errorf("ping through the NAT:\n%s", out)
			}
			checkTraceroute(t, l, f)
			// The port forward.
			startHTTP(t, l.nsA, hp(f.hostA, "8088"))
			who = mustNS(t, 20*time.Second, l.nsB, "curl", f.flag, "-sS", "--fail", "--max-time", "10", "http://"+hp(f.routerB, "9090")+"/whoami")
			if host, _, err := net.SplitHostPort(strings.TrimSpace(who)); err != nil || host != f.hostB {
				t.Errorf("through the port forward A's server saw %q, want B's address %s", who, f.hostB)
			}
			if out := mustNS(t, 20*time.Second, l.nsB, "curl", f.flag, "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
				"http://"+hp(f.routerB, "9090")+"/blob?size=1000000&seed=5"); out != "200" {
				t.Errorf("curl to the router's forwarded port: %q", out)
			}
			// Not forwarded: B cannot reach A's server directly.
			if out, err := ns(t, 10*time.Second, l.nsB, "curl", f.flag, "-sS", "--connect-timeout", "2", "http://"+hp(f.hostA, "8088")+"/whoami"); err == nil {
				t.Errorf("B reached A's server directly: %s", out)
			}
		})
	}
	list, err := r.control("conntrack", "-L")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipectl conntrack -L:\n%s", list)
	for _, want := range []string{"src=10.10.1.2 dst=10.10.2.2", "dst=10.10.2.1", "dport=9090", "src=fd00:10:1::2 dst=fd00:10:2::2"} {
		if !strings.Contains(list, want) {
			t.Errorf("pipectl conntrack -L lacks %q", want)
		}
	}
}
