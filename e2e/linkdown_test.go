package e2e

// A link's device removed under the running router and made again, over
// TUN and over AF_PACKET (veth), with the Linux kernel as the hosts. The
// lab is scripts/lab.sh's (same addressing, same host setup) built here
// with this file's own names (prefix co-), since one side of it is torn
// down and rebuilt by the test.
//
// While the device is gone the router withdraws every route through it:
// a ping across gets "Destination Net Unreachable" from the router (as a
// Linux router without a route answers), `pipectl route` lists nothing
// through the link and `pipectl stats` shows it DOWN with the reason.
// When a device of that name is back the router reopens it by itself (no
// reload) and forwards again.

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// coLab is the lab with this file's names.
type coLab struct {
	t          *testing.T
	mode       string // tun, afpacket
	nsA, nsB   string
	nsR        string // afpacket: the router's namespace
	devA, devB string // the hosts' devices (TUN devices, or veth ends)
	ra, rb     string // afpacket: the router's veth ends
}

func newCoLab(t *testing.T, mode string) *coLab {
	t.Helper()
	requireLab(t, "ping (iputils-ping)")
	s := randSuffix()
	l := &coLab{t: t, mode: mode, nsA: "co-a" + s, nsB: "co-b" + s, nsR: "co-r" + s}
	if mode == "tun" {
		l.devA, l.devB = "co-ta"+s, "co-tb"+s
	} else {
		l.devA, l.devB, l.ra, l.rb = "co-va"+s, "co-vb"+s, "co-ra"+s, "co-rb"+s
	}
	t.Cleanup(func() {
		for _, n := range []string{l.nsA, l.nsB, l.nsR} {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	l.addNS(l.nsA)
	l.addNS(l.nsB)
	if mode == "tun" {
		l.tunHost(l.nsA, l.devA)
		l.tunHost(l.nsB, l.devB)
		l.host(l.nsA, l.devA, "a")
		l.host(l.nsB, l.devB, "b")
		return l
	}
	l.addNS(l.nsR)
	// The router namespace's kernel stays out of the way: no IPv6 there
	// (no link-local address, no solicitations), no addresses, no
	// forwarding.
	l.run("ip", "netns", "exec", l.nsR, "sh", "-c", "echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6")
	l.veth(l.nsA, l.devA, l.ra)
	l.veth(l.nsB, l.devB, l.rb)
	l.host(l.nsA, l.devA, "a")
	l.host(l.nsB, l.devB, "b")
	return l
}

func (l *coLab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *coLab) addNS(n string) {
	l.t.Helper()
	l.run("ip", "netns", "add", n)
	l.run("ip", "-n", n, "link", "set", "lo", "up")
	l.run("ip", "netns", "exec", n, "sh", "-c", "echo 0 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 0 >/proc/sys/net/ipv6/conf/default/disable_ipv6")
}

// tunHost makes a persistent TUN device as lab.sh does.
func (l *coLab) tunHost(n, dev string) {
	l.t.Helper()
	l.run("ip", "-n", n, "tuntap", "add", "dev", dev, "mode", "tun", "multi_queue", "vnet_hdr")
}

// veth makes a veth pair: host in n, router end in nsR (up).
func (l *coLab) veth(n, host, router string) {
	l.t.Helper()
	l.run("ip", "link", "add", host, "netns", n, "type", "veth", "peer", "name", router, "netns", l.nsR)
	l.run("ip", "netns", "exec", l.nsR, "sh", "-c", "echo 1 >/proc/sys/net/ipv6/conf/"+router+"/disable_ipv6")
	l.run("ip", "-n", l.nsR, "link", "set", router, "up")
}

// host configures a host's device as lab.sh's host() does (side a or b).
func (l *coLab) host(n, dev, side string) {
	l.t.Helper()
	net := map[string]string{"a": "1", "b": "2"}[side]
	l.run("ip", "netns", "exec", n, "sh", "-c", "echo 0 >/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6")
	l.run("ip", "-n", n, "addr", "add", "10.10."+net+".2/24", "dev", dev)
	l.run("ip", "-n", n, "-6", "addr", "add", "fd00:10:"+net+"::2/64", "dev", dev, "nodad")
	l.run("ip", "-n", n, "link", "set", dev, "up")
	l.run("ip", "-n", n, "route", "add", "default", "via", "10.10."+net+".1")
	l.run("ip", "-n", n, "-6", "route", "add", "default", "via", "fd00:10:"+net+"::1", "dev", dev)
}

func (l *coLab) routerConfig() string {
	return l.routerConfigKeep("[net_admin, net_raw, sys_admin]")
}

func (l *coLab) routerConfigKeep(keep string) string {
	if l.mode == "tun" {
		return fmt.Sprintf(`# e2e link down/up router, lab %[1]s
name: e2e-%[1]s
log: {level: info, format: json}
privileges: {keep: %[5]s} # reopening a link enters its namespace: sys_admin
modules: [network.ipv4, network.ipv6]
links:
  - {name: a, module: link.tun, device: %[2]s, netns: %[1]s, queues: 2, addresses: [10.10.1.1/24, "fd00:10:1::1/64"]}
  - {name: b, module: link.tun, device: %[3]s, netns: %[4]s, queues: 2, addresses: [10.10.2.1/24, "fd00:10:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
`, l.nsA, l.devA, l.devB, l.nsB, keep)
	}
	return fmt.Sprintf(`# e2e link down/up router, lab %[1]s
name: e2e-%[1]s
log: {level: info, format: json}
privileges: {keep: %[4]s} # reopening a link enters its namespace: sys_admin
modules: [network.ipv4, network.arp, network.ipv6]
links:
  - {name: a, module: link.afpacket, device: %[2]s, netns: %[1]s, queues: 2, addresses: [10.10.1.1/24, "fd00:10:1::1/64"]}
  - {name: b, module: link.afpacket, device: %[3]s, netns: %[1]s, queues: 2, addresses: [10.10.2.1/24, "fd00:10:2::1/64"]}
forwarding: {ipv4: true, ipv6: true}
`, l.nsR, l.ra, l.rb, keep)
}

// removeB takes side b's device away.
func (l *coLab) removeB() {
	l.t.Helper()
	if l.mode == "afpacket" {
		l.run("ip", "-n", l.nsR, "link", "del", l.rb) // both ends go
		return
	}
	// The TUN device and its namespace. The router's sockets keep the
	// namespace alive (they were made in it), so a process in it deletes
	// the device after the namespace's name is gone; once the router has
	// closed the dead endpoint the namespace is gone for good and the
	// router cannot make the device again until the namespace is back.
	del := exec.Command("ip", "netns", "exec", l.nsB, "sh", "-c", "sleep 0.3; ip link del "+l.devB)
	if err := del.Start(); err != nil {
		l.t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	l.run("ip", "netns", "del", l.nsB)
	if err := del.Wait(); err != nil {
		l.t.Fatalf("ip link del %s: %v", l.devB, err)
	}
}

// restoreB makes side b again.
func (l *coLab) restoreB() {
	l.t.Helper()
	if l.mode == "afpacket" {
		l.veth(l.nsB, l.devB, l.rb)
		l.host(l.nsB, l.devB, "b")
		return
	}
	// The namespace is back; the router makes its TUN device there (the
	// link creates a missing device), then the host configures it.
	l.addNS(l.nsB)
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("ip", "-n", l.nsB, "link", "show", l.devB).Run() != nil {
		if time.Now().After(deadline) {
			l.t.Fatalf("the router did not make %s in the new %s", l.devB, l.nsB)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.host(l.nsB, l.devB, "b")
}

// coLinkStats is the part of `pipectl stats -json` this file reads.
type coLinkStats struct {
	Generation uint64 `json:"generation"`
	Links      []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Downs uint64 `json:"downs"`
		Down  *struct {
			Reason   string `json:"reason"`
			Retry    string `json:"retry"`
			Attempts int    `json:"attempts"`
		} `json:"down"`
	} `json:"links"`
}

func linkState(t *testing.T, r *router) *coLinkStats {
	t.Helper()
	out, err := r.control("stats", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Stats *coLinkStats `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Stats == nil {
		t.Fatalf("pipectl stats -json: %v\n%s", err, out)
	}
	return rep.Stats
}

// waitLinkB waits until link b's state is want and returns the stats.
func waitLinkB(t *testing.T, r *router, want string, d time.Duration, cond func(*coLinkStats) bool) *coLinkStats {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := linkState(t, r)
		for _, l := range st.Links {
			if l.Name == "b" && l.State == want && (cond == nil || cond(st)) {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("link b not %s after %v: %+v\nrouter log:\n%s", want, d, st, r.logWithoutStats())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pingAcross pings from A to B until it works (a fresh veth needs ARP, a
// fresh device a moment) or d passes.
func pingAcross(t *testing.T, l *coLab, flag, dst string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := ns(t, 10*time.Second, l.nsA, "ping", flag, "-c", "2", "-i", "0.2", "-W", "2", dst)
		if err == nil && strings.Contains(out, " 0% packet loss") {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s %s from %s: %v\n%s", flag, dst, l.nsA, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testLinkDownUp(t *testing.T, mode string) {
	l := newCoLab(t, mode)
	r := startRouter(t, l.routerConfig())
	pingAcross(t, l, "-4", "10.10.2.2", 10*time.Second)
	pingAcross(t, l, "-6", "fd00:10:2::2", 10*time.Second)
	gen := linkState(t, r).Generation

	l.removeB()
	st := waitLinkB(t, r, "down", 10*time.Second, nil)
	for _, lk := range st.Links {
		if lk.Name == "b" && (lk.Down == nil || lk.Down.Reason == "" || lk.Downs != 1) {
			t.Errorf("link b down without a reason: %+v", lk)
		}
	}
	// Across: the router answers for the withdrawn routes.
	out, _ := ns(t, 10*time.Second, l.nsA, "ping", "-4", "-c", "1", "-W", "2", "10.10.2.2")
	if !strings.Contains(out, "From 10.10.1.1") || !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("ping 10.10.2.2 with link b down: want Destination Net Unreachable from 10.10.1.1:\n%s", out)
	}
	out, _ = ns(t, 10*time.Second, l.nsA, "ping", "-6", "-c", "1", "-W", "2", "fd00:10:2::2")
	if !strings.Contains(out, "From fd00:10:1::1") || !strings.Contains(out, "Destination unreachable") {
		t.Errorf("ping fd00:10:2::2 with link b down: want Destination unreachable from fd00:10:1::1:\n%s", out)
	}
	routes, err := r.control("route")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(routes, "dev b") {
		t.Errorf("pipectl route lists routes through the dead link b:\n%s", routes)
	}
	text, err := r.control("stats")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "b: <link."+mode+"> ") || !strings.Contains(text, "state DOWN") {
		t.Errorf("pipectl stats does not show link b DOWN:\n%s", text)
	}
	// Reopen attempts fail, and say why, while the device is missing.
	waitLinkB(t, r, "down", 10*time.Second, func(st *coLinkStats) bool {
		for _, lk := range st.Links {
			if lk.Name == "b" && lk.Down != nil && lk.Down.Retry != "" {
				return true
			}
		}
		return false
	})

	l.restoreB()
	waitLinkB(t, r, "up", 20*time.Second, nil)
	pingAcross(t, l, "-4", "10.10.2.2", 15*time.Second)
	pingAcross(t, l, "-6", "fd00:10:2::2", 15*time.Second)
	if got := linkState(t, r).Generation; got != gen {
		t.Errorf("generation %d, was %d: down/up must not need a reload", got, gen)
	}
	for _, want := range []string{`link down: its routes are withdrawn`, `link up again: its routes are back`} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("router log lacks %q", want)
		}
	}
	// Reported once, not once per queue (link b has two).
	if strings.Count(r.log.String(), "link down: its routes") != 1 ||
		(mode == "tun" && strings.Count(r.log.String(), "tun device gone") != 1) {
		t.Errorf("the removal was reported more than once:\n%s", r.logWithoutStats())
	}
}

// TestLinkDownUpTUN: link b's TUN device and its namespace go and come
// back.
func TestLinkDownUpTUN(t *testing.T) { testLinkDownUp(t, "tun") }

// TestLinkDownUpAFPacket: link b's veth goes and a veth of that name comes
// back (another ifindex, another MAC on the host side).
func TestLinkDownUpAFPacket(t *testing.T) { testLinkDownUp(t, "afpacket") }

// TestLinkDownNoSysAdmin: a router that dropped CAP_SYS_ADMIN cannot enter
// the namespace to reopen the link; it stays down and pipectl stats says
// exactly why, as does the log.
func TestLinkDownNoSysAdmin(t *testing.T) {
	l := newCoLab(t, "afpacket")
	r := startRouter(t, l.routerConfigKeep("[net_admin, net_raw]"))
	pingAcross(t, l, "-4", "10.10.2.2", 10*time.Second)
	l.removeB()
	l.restoreB()
	st := waitLinkB(t, r, "down", 10*time.Second, func(st *coLinkStats) bool {
		for _, lk := range st.Links {
			if lk.Name == "b" && lk.Down != nil && lk.Down.Attempts >= 2 {
				return true
			}
		}
		return false
	})
	for _, lk := range st.Links {
		if lk.Name == "b" && !strings.Contains(lk.Down.Retry, "CAP_SYS_ADMIN") {
			t.Errorf("link b's reopen error does not say what is missing: %q", lk.Down.Retry)
		}
	}
	if !strings.Contains(r.log.String(), "CAP_SYS_ADMIN") {
		t.Errorf("the log does not say why link b stays down:\n%s", r.logWithoutStats())
	}
	out, _ := ns(t, 10*time.Second, l.nsA, "ping", "-4", "-c", "1", "-W", "2", "10.10.2.2")
	if !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("ping across a link that stays down:\n%s", out)
	}
}
