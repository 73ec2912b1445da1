package e2e

// The router over AF_PACKET: `scripts/lab.sh up afpacket` (veth pairs into
// a router namespace whose kernel is kept out of the way) and
// pipelines/router-afpacket.yaml's router (link.afpacket on the router's
// veth ends, network.arp) with this lab's names. The same scenarios as over
// TUN (scenarios_test.go), plus ARP, the socket modes and a device removed
// under the running router.

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newAFPacketLab(t *testing.T, tools ...string) *lab {
	t.Helper()
	requireLab(t, tools...)
	return newLabMode(t, "afpacket")
}

// ipInReceives is the IpInReceives counter of a namespace's kernel.
func ipInReceives(t *testing.T, netns string) uint64 {
	t.Helper()
	out := mustNS(t, 5*time.Second, netns, "cat", "/proc/net/snmp")
	ls := lines(out)
	for i := 0; i+1 < len(ls); i++ {
		names, values := strings.Fields(ls[i]), strings.Fields(ls[i+1])
		if len(names) == 0 || names[0] != "Ip:" || len(values) != len(names) || values[0] != "Ip:" {
			continue
		}
		for j, n := range names {
			if n == "InReceives" {
				v, _ := strconv.ParseUint(values[j], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("no Ip InReceives in /proc/net/snmp of %s:\n%s", netns, out)
	return 0
}

// TestAFPacketPing: ping both ways through the router and the router
// itself; the hosts resolved the router's addresses to its veth ends' MACs
// and the router resolved the hosts (ARP both ways); the router namespace's
// kernel saw none of it (lab.sh's netdev drop) while the router did.
func TestAFPacketPing(t *testing.T) {
	l := newAFPacketLab(t, "ping (iputils-ping)")
	r := startRouter(t, l.routerConfig(""))
	checkPings(t, l, r, v4)

	mac := func(netns, dev string) string {
		out := mustNS(t, 5*time.Second, netns, "cat", "/sys/class/net/"+dev+"/address")
		return strings.TrimSpace(out)
	}
	for _, c := range []struct{ host, dev, routerIP, routerDev string }{
		{l.nsA, l.va, "10.10.1.1", l.ra}, {l.nsB, l.vb, "10.10.2.1", l.rb},
	} {
		out := mustNS(t, 5*time.Second, c.host, "ip", "neigh", "show", c.routerIP, "dev", c.dev)
		if want := mac(l.nsR, c.routerDev); !strings.Contains(out, want) {
			t.Errorf("%s's ARP entry for %s is not %s's MAC %s:\n%s", c.host, c.routerIP, c.routerDev, want, out)
		}
	}
	neigh, err := r.control("neigh")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ip, mac string }{{"10.10.1.2", mac(l.nsA, l.va)}, {"10.10.2.2", mac(l.nsB, l.vb)}} {
		if !regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(c.ip) + `\b.*` + regexp.QuoteMeta(c.mac) + `.*$`).MatchString(neigh) {
			t.Errorf("pipectl neigh: no %s at %s:\n%s", c.ip, c.mac, neigh)
		}
	}
	if n := ipInReceives(t, l.nsR); n != 0 {
		t.Errorf("the router namespace's kernel received %d IP packets; lab.sh's netdev drop should keep it out", n)
	}
	st := r.stats()
	if a := st.device("a"); a["rx_packets"] == 0 || a["tx_packets"] == 0 {
		t.Errorf("link a's sockets saw no traffic: %v", a)
	}
	t.Logf("arp %v", st.set("arp"))
}

// TestAFPacketTraceroute: the router is the first hop and answers with
// time exceeded.
func TestAFPacketTraceroute(t *testing.T) {
	l := newAFPacketLab(t, "traceroute (traceroute)")
	startRouter(t, l.routerConfig(""))
	checkTraceroute(t, l, v4)
}

// TestAFPacketHTTPDownload: 20 MB over HTTP from B to A arrive intact,
// first through the default link (TPACKET_V2 ring, vnet_hdr: the kernel's
// TSO super-packets cross the sockets whole), then through recvmmsg
// sockets without the virtio-net header (the link recognises the veth's
// super-packets and partial checksums from the socket status and the stack
// segments and completes them before they leave).
func TestAFPacketHTTPDownload(t *testing.T) {
	l := newAFPacketLab(t, "curl (curl)")
	startHTTP(t, l.nsB, "10.10.2.2:8080")
	const size = 20 << 20

	r := startRouter(t, l.routerConfig(""))
	downloadIntact(t, l, v4, size, 1)
	st := r.stats()
	if b := st.device("b"); b["rx_gso"] == 0 {
		t.Errorf("ring, vnet_hdr: no GSO super-packet read from B's veth: %v", b)
	}
	t.Logf("ring, vnet_hdr: link b %v", st.device("b"))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	r = startRouter(t, l.routerConfigLinks(", mode: mmsg, vnet_hdr: false", ""))
	downloadIntact(t, l, v4, size, 2)
	st = r.stats()
	t.Logf("mmsg, no vnet_hdr: link b %v, link a %v", st.device("b"), st.device("a"))
	if a := st.device("a"); a["tx_gso"] != 0 {
		t.Errorf("mmsg without vnet_hdr wrote GSO frames: %v", a)
	}
}

// TestAFPacketIperf3: a 3-second iperf3 TCP run from A to B.
func TestAFPacketIperf3(t *testing.T) {
	l := newAFPacketLab(t, "iperf3 (iperf3)")
	r := startRouter(t, l.routerConfig(""))
	checkIperf3(t, l, v4)
	st := r.stats()
	t.Logf("link a %v", st.device("a"))
	if d := st.device("a"); d["rx_gso"] == 0 {
		t.Errorf("no GSO super-packet from A's veth during a TCP stream: %v", d)
	}
}

// TestAFPacketPathMTU: link b's MTU capped at 1400 in the router (the veth
// keeps 1500): fragmentation needed for a DF ping, then path MTU discovery
// by a TCP upload; over IPv6, Packet Too Big.
func TestAFPacketPathMTU(t *testing.T) {
	l := newAFPacketLab(t, "ping (iputils-ping)", "curl (curl)")
	r := startRouter(t, l.routerConfig(", mtu: 1400"))
	checkPathMTU(t, l, r)
	checkPacketTooBig6(t, l, r)
}

// TestAFPacketDeviceRemoved: link b's veth end is deleted under the running
// router (two queues reading it). The removal is logged once, the router
// keeps running and link a keeps answering; SIGTERM then stops it with
// status 0 and it leaves nothing behind (its control socket is gone, link
// a's device is as lab.sh made it: not promiscuous, no address).
func TestAFPacketDeviceRemoved(t *testing.T) {
	l := newAFPacketLab(t, "ping (iputils-ping)")
	r := startRouter(t, l.routerConfig(", queues: 2"))
	mustNS(t, 10*time.Second, l.nsA, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.10.2.2")

	mustNS(t, 5*time.Second, l.nsR, "ip", "link", "del", l.rb)
	const removed = "device removed; the link stops receiving"
	r.waitLog(removed, 5*time.Second)
	time.Sleep(500 * time.Millisecond) // time for a second report, if any
	if n := strings.Count(r.log.String(), removed); n != 1 {
		t.Errorf("removal reported %d times, want once:\n%s", n, r.logWithoutStats())
	}

	out := mustNS(t, 10*time.Second, l.nsA, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.10.1.1")
	if !strings.Contains(out, "3 received") {
		t.Errorf("link a after link b's removal: ping 10.10.1.1:\n%s", out)
	}
	// Forwarding towards the dead link fails, and the router says so
	// (host or net unreachable, or silence) without falling over.
	if out, err := ns(t, 5*time.Second, l.nsA, "ping", "-c", "1", "-W", "1", "10.10.2.2"); err == nil || strings.Contains(out, " 1 received") {
		t.Errorf("ping 10.10.2.2 through the removed link b succeeded (err %v):\n%s", err, out)
	}
	st := r.stats()
	t.Logf("after removal: link b %v, ipv4 %v", st.device("b"), st.set("ipv4"))

	sock := "/run/pipestack/e2e-" + l.suffix + ".sock"
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("control socket: %v", err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.log.String(), `"message":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", r.logWithoutStats())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("control socket %s left behind", sock)
	}
	out = mustNS(t, 5*time.Second, l.nsR, "ip", "-d", "link", "show", l.ra)
	if strings.Contains(out, "PROMISC") || strings.Contains(out, "promiscuity 1") || strings.Contains(out, "inet") {
		t.Errorf("%s not as lab.sh left it after the router stopped:\n%s", l.ra, out)
	}
}
