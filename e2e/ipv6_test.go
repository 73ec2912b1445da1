package e2e

// IPv6 through `pipectl run`: the lab's dual-stack addressing (lab.sh,
// pipelines/router.yaml and router-afpacket.yaml: fd00:10:1::/64 on link a,
// fd00:10:2::/64 on link b) over TUN and over AF_PACKET, with the scenarios
// of scenarios_test.go in family v6; and a Linux host that gets its address
// and default route by SLAAC from the router's advertisements.

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// waitRouterIPv6 waits until the router's IPv6 addresses are usable. Over
// AF_PACKET (Ethernet) each of them — the two configured ones and the two
// link-local ones — is tentative for a second after the start (duplicate
// address detection); over TUN there is no DAD.
func waitRouterIPv6(t *testing.T, l *lab, r *router) {
	t.Helper()
	if l.mode != "afpacket" {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ndp := r.stats().set("ndp")
		if ndp["dad_ok"] >= 4 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ndp dad_ok = %d after 5 s, want 4 (2 addresses and 2 link-local ones): %v", ndp["dad_ok"], nonzero(ndp))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIPv6Router: ping6 both ways through the router and to its
// addresses, traceroute6 (the router is the first hop), and 20 MB over
// HTTP on IPv6 from B to A, intact; the kernel's TCPv6 TSO super-packets
// cross the router whole. Over TUN no Neighbor Discovery runs (an L3
// device); over AF_PACKET the hosts and the router resolve each other with
// it: the hosts' entries for the router carry its veth ends' MACs and the
// router flag, the router's (pipectl neigh) the hosts' MACs.
func TestIPv6Router(t *testing.T) {
	for _, mode := range []string{"tun", "afpacket"} {
		t.Run(mode, func(t *testing.T) {
			requireLab(t, "ping (iputils-ping)", "traceroute (traceroute)", "curl (curl)")
			l := newLabMode(t, mode)
			r := startRouter(t, l.routerConfig(""))
			startHTTP(t, l.nsB, hostPort(v6.hostB, 8080))
			waitRouterIPv6(t, l, r)

			checkPings(t, l, r, v6)
			checkTraceroute(t, l, v6)
			downloadIntact(t, l, v6, 20<<20, 3)

			st := r.stats()
			if b := st.device("b"); b["rx_gso"] == 0 {
				t.Errorf("no GSO super-packet read from B's device during the IPv6 download: %v", b)
			}
			if n := st.set("ipv4")["forwarded"]; n != 0 {
				t.Errorf("ipv4 forwarded %d packets in an IPv6-only test", n)
			}
			ndp := st.set("ndp")
			t.Logf("ipv6 %v", nonzero(st.set("ipv6")))
			t.Logf("ndp %v; link b %v", nonzero(ndp), nonzero(st.device("b")))
			if mode == "tun" {
				if ndp["ns_out"] != 0 || ndp["dad_started"] != 0 {
					t.Errorf("Neighbor Discovery over TUN: %v", ndp)
				}
				return
			}
			checkNDP(t, l, r)
		})
	}
}

// checkNDP: over AF_PACKET the hosts resolved the router's addresses to
// its veth ends' MACs, and the router resolved the hosts. A solicited the
// router first (its first ping): the Neighbor Advertisement it got carries
// the R flag, so its entry has the router flag. B's entry came from the
// router's own solicitation (Linux learns the source link-layer address of
// an NS, without the flag) and gets it only once B probes it.
func checkNDP(t *testing.T, l *lab, r *router) {
	t.Helper()
	for _, c := range []struct {
		host, dev, routerIP, routerDev string
		flag                           bool
	}{
		{l.nsA, l.va, v6.routerA, l.ra, true}, {l.nsB, l.vb, v6.routerB, l.rb, false},
	} {
		out := mustNS(t, 5*time.Second, c.host, "ip", "-6", "neigh", "show", c.routerIP, "dev", c.dev)
		if want := macOf(t, l.nsR, c.routerDev); !strings.Contains(out, want) {
			t.Errorf("%s's neighbor entry for %s is not %s's MAC %s:\n%s", c.host, c.routerIP, c.routerDev, want, out)
		}
		if c.flag && !strings.Contains(out, " router ") {
			t.Errorf("%s's neighbor entry for %s has no router flag:\n%s", c.host, c.routerIP, out)
		}
	}
	neigh, err := r.control("neigh")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ip, mac string }{{v6.hostA, macOf(t, l.nsA, l.va)}, {v6.hostB, macOf(t, l.nsB, l.vb)}} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c.ip) + ` .*` + regexp.QuoteMeta(c.mac)).MatchString(neigh) {
			t.Errorf("pipectl neigh: no %s at %s:\n%s", c.ip, c.mac, neigh)
		}
	}
}

// nonzero is m without its zero counters.
func nonzero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// sysctlNS sets sysctls (pairs of a path under /proc/sys and a value) in a
// namespace, as lab.sh does: without procps.
func sysctlNS(t *testing.T, netns string, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		mustNS(t, 5*time.Second, netns, "sh", "-c", `echo "$2" >"/proc/sys/$1"`, "-", kv[i], kv[i+1])
	}
}

// macOf is a device's MAC address.
func macOf(t *testing.T, netns, dev string) string {
	t.Helper()
	return strings.TrimSpace(mustNS(t, 5*time.Second, netns, "cat", "/sys/class/net/"+dev+"/address"))
}

// eui64LinkLocal is the fe80::/64 address with the modified EUI-64
// identifier of mac (RFC 4291 appendix A).
func eui64LinkLocal(t *testing.T, mac string) netip.Addr {
	t.Helper()
	var m [6]byte
	if _, err := fmt.Sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]); err != nil {
		t.Fatalf("MAC %q: %v", mac, err)
	}
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: m[0] ^ 2, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
}

var (
	slaacAddrRE = regexp.MustCompile(`inet6 ([0-9a-f:]+)/64 scope global dynamic`)
	raRouteRE   = regexp.MustCompile(`default via (fe80::[0-9a-f:]+) dev (\S+) proto ra`)
)

// TestIPv6SLAAC: the AF_PACKET router advertises link a's prefix
// (router_advertisements), and host A, with IPv6 off until then, configures
// itself like any Linux host (accept_ra=1, forwarding off, autoconf on, DAD
// on): an address from fd00:10:1::/64 ("dynamic") and a default route via
// the router's link-local address (EUI-64 of its veth end's MAC, "proto
// ra"); then ping6 crosses the router both ways with that address.
//
// The advertisement that configures A answers A's Router Solicitation: the
// router's first unsolicited one went out before A's IPv6 came up (the test
// waits for it), and with interval 30s the next one leaves at least 10 s
// later (RFC 4861: uniform in [interval/3, interval]), while A must be
// configured within 8 s.
func TestIPv6SLAAC(t *testing.T) {
	l := newAFPacketLab(t, "ping (iputils-ping)")
	// A forgets lab.sh's static address and default route: IPv6 goes off
	// on its veth (that removes them) until the router advertises.
	conf := "net/ipv6/conf/" + l.va + "/"
	sysctlNS(t, l.nsA, conf+"disable_ipv6", "1", conf+"accept_ra", "1", conf+"forwarding", "0", conf+"autoconf", "1")
	if out := mustNS(t, 5*time.Second, l.nsA, "ip", "-6", "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Fatalf("A still has a default route:\n%s", out)
	}

	base := l.routerConfig("")
	cfg := strings.Replace(base, "network.ipv6]",
		`{module: network.ipv6, router_advertisements: {links: {a: {prefixes: ["fd00:10:1::/64"], interval: 30s}}}}]`, 1)
	if cfg == base {
		t.Fatal("no network.ipv6 in the lab's router config")
	}
	r := startRouter(t, cfg)
	for deadline := time.Now().Add(5 * time.Second); r.stats().set("ndp")["ra_out"] == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no Router Advertisement within 5 s of the start: ndp %v", nonzero(r.stats().set("ndp")))
		}
	}

	sysctlNS(t, l.nsA, conf+"disable_ipv6", "0")
	start := time.Now()
	var addr netip.Addr
	var addrs, route string
	for {
		addrs = mustNS(t, 5*time.Second, l.nsA, "ip", "-6", "addr", "show", "dev", l.va, "scope", "global")
		route = mustNS(t, 5*time.Second, l.nsA, "ip", "-6", "route", "show", "default")
		if m := slaacAddrRE.FindStringSubmatch(addrs); m != nil && !strings.Contains(addrs, "tentative") && raRouteRE.MatchString(route) {
			addr = netip.MustParseAddr(m[1])
			break
		}
		if time.Since(start) > 8*time.Second {
			t.Fatalf("A not configured by SLAAC within 8 s (ndp %v):\n%s\n%s", nonzero(r.stats().set("ndp")), addrs, route)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("A configured after %v: %s; %s", time.Since(start).Round(10*time.Millisecond), addr, strings.TrimSpace(route))
	if !netip.MustParsePrefix("fd00:10:1::/64").Contains(addr) {
		t.Errorf("A's address %s is not from the advertised prefix fd00:10:1::/64:\n%s", addr, addrs)
	}
	m := raRouteRE.FindStringSubmatch(route)
	if want := eui64LinkLocal(t, macOf(t, l.nsR, l.ra)); m[1] != want.String() || m[2] != l.va {
		t.Errorf("A's default route is not via the router's link-local address %s dev %s:\n%s", want, l.va, route)
	}
	if ndp := r.stats().set("ndp"); ndp["rs_in"] == 0 || ndp["ra_out"] < 2 {
		t.Errorf("the router answered no Router Solicitation: ndp %v", nonzero(ndp))
	}

	if out := mustNS(t, 5*time.Second, l.nsA, "ip", "-6", "route", "get", v6.hostB); !strings.Contains(out, "src "+addr.String()) {
		t.Errorf("A would not send to B from its SLAAC address %s:\n%s", addr, out)
	}
	for _, c := range []struct{ from, to string }{
		{l.nsA, v6.hostB}, {l.nsB, addr.String()}, // across, both ways
		{l.nsA, m[1] + "%" + l.va}, // the router's link-local address
	} {
		out := mustNS(t, 10*time.Second, c.from, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", c.to)
		if !strings.Contains(out, "2 received") {
			t.Errorf("ping %s from %s:\n%s", c.to, c.from, out)
		}
	}
}

// checkPacketTooBig6: the router runs with link b's MTU at 1400 (as
// checkPathMTU) and B's kernel side at 1500. IPv6 routers never fragment:
// a 1500-byte ping6 from A gets Packet Too Big (mtu 1400) back, Linux
// records the path MTU, and 1400-byte packets then cross.
func checkPacketTooBig6(t *testing.T, l *lab, r *router) {
	t.Helper()
	waitRouterIPv6(t, l, r)
	mustNS(t, 5*time.Second, l.nsB, "ip", "link", "set", l.devB(), "mtu", "1500")
	out, err := ns(t, 10*time.Second, l.nsA, "ping", "-6", "-M", "do", "-s", "1452", "-c", "1", "-W", "2", v6.hostB)
	if err == nil || !strings.Contains(out, "mtu=1400") {
		t.Errorf("ping6 of 1500 bytes: want Packet Too Big (mtu=1400):\n%s", out)
	}
	if route := mustNS(t, 5*time.Second, l.nsA, "ip", "-6", "route", "get", v6.hostB); !strings.Contains(route, "mtu 1400") {
		t.Errorf("A has not learned the IPv6 path MTU:\n%s", route)
	}
	out = mustNS(t, 10*time.Second, l.nsA, "ping", "-6", "-M", "do", "-s", "1352", "-c", "2", "-i", "0.2", "-W", "2", v6.hostB)
	if !strings.Contains(out, "2 received") {
		t.Errorf("ping6 of 1400 bytes:\n%s", out)
	}
	if st := r.stats().set("ipv6"); st["icmp_packet_too_big_out"] == 0 || st["too_big"] == 0 {
		t.Errorf("ipv6: no Packet Too Big sent: %v", nonzero(st))
	}
}
