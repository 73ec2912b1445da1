package afpacket

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/arp"
	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// coVeth makes namespace co-af-<random> holding the veth pair va (the
// stack's) and vb (the kernel's, 10.79.0.2/24), removed when the test ends.
func coVeth(t *testing.T) string {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("needs ping (iputils-ping)")
	}
	var r [3]byte
	rand.Read(r[:])
	ns := "co-af-" + hex.EncodeToString(r[:])
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	addVeth(t, ns)
	return ns
}

func addVeth(t *testing.T, ns string) {
	t.Helper()
	// The MACs are given at creation: the stack may open va at any moment
	// once it exists, and reads its MAC then.
	run(t, "ip", "-n", ns, "link", "add", "va", "address", "02:00:00:00:00:0a", "type", "veth", "peer", "name", "vb", "address", "02:00:00:00:00:0b")
	run(t, "ip", "-n", ns, "link", "set", "va", "up")
	run(t, "ip", "-n", ns, "link", "set", "vb", "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.79.0.2/24", "dev", "vb")
	wireReady(t, ns, "va", "vb")
}

func afConfig(ns, mode string) string {
	return `
name: co
modules: [network.ipv4, network.arp, {module: network.ipv6, dad: {transmits: 0}}]
links:
  - {name: lan, module: link.afpacket, device: va, netns: ` + ns + `, mode: ` + mode + `, addresses: [10.79.0.1/24, "fd00:79::1/64"]}
`
}

// pingNS pings dst from ns (pipelinetest.PingFrom: a veth just made may
// lose the first echoes while its carrier comes up) and fails t when none
// comes back.
func pingNS(t *testing.T, ns, dst string) {
	t.Helper()
	if err := pipelinetest.PingFrom(ns, dst); err != nil {
		t.Fatal(err)
	}
}

// Every mode change (a LinkKey change: the sockets are reopened) keeps the
// NIC, its addresses (link-local included), the neighbor the kernel's
// ping taught it and its counters. Then the veth goes: the link goes down
// (routes withdrawn, neighbors flushed, the reason recorded); when a veth
// of that name is back (another ifindex) the stack reopens it by itself.
func TestAFPacketReopenAndLinkDown(t *testing.T) {
	ns := coVeth(t)
	n := pipelinetest.NewNode(t, "co", afConfig(ns, ModeMmsg), pipeline.Options{})
	pingNS(t, ns, "10.79.0.1")
	nic, _ := n.Stack.NIC("lan")
	kernel := netip.MustParseAddr("10.79.0.2")
	if _, ok := nic.Neighbors().Entry(kernel); !ok {
		t.Fatal("no neighbor entry for the kernel side after its ping")
	}
	addrs := pipelinetest.NICAddresses(n.Stack, "lan")
	if len(addrs) != 3 || !strings.Contains(strings.Join(addrs, " "), "fe80::ff:fe00:a/64") {
		t.Fatalf("addresses %v, want the two configured and fe80::ff:fe00:a", addrs)
	}
	for _, mode := range []string{ModeRing, ModeBlock, ModeMmsg} {
		old, _ := n.Stack.Link("lan")
		rx := nic.Stats.RxPackets.Load()
		if err := n.Reload(afConfig(ns, mode)); err != nil {
			t.Fatal(err)
		}
		cur, _ := n.Stack.Link("lan")
		if cur == old || cur.(*Endpoint).Mode() != mode {
			t.Fatalf("mode %s: the link was not reopened", mode)
		}
		if n2, _ := n.Stack.NIC("lan"); n2 != nic || nic.Stats.RxPackets.Load() < rx {
			t.Fatalf("mode %s: NIC or counters lost", mode)
		}
		if _, ok := nic.Neighbors().Entry(kernel); !ok {
			t.Errorf("mode %s: the neighbor was forgotten", mode)
		}
		if got := pipelinetest.NICAddresses(n.Stack, "lan"); !slices.Equal(got, addrs) {
			t.Errorf("mode %s: addresses %v, before %v", mode, got, addrs)
		}
		pingNS(t, ns, "10.79.0.1")
	}

	run(t, "ip", "-n", ns, "link", "del", "vb")
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return !nic.State().Up }, "link still up after its veth went")
	if st := nic.State(); !strings.Contains(st.Reason, "device removed") {
		t.Errorf("down reason %q", st.Reason)
	}
	if _, ok := n.Stack.Route(kernel); ok {
		t.Error("route through the dead link kept")
	}
	if _, ok := nic.Neighbors().Entry(kernel); ok {
		t.Error("neighbor of the dead link kept")
	}
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return nic.State().Retry != "" }, "no failed reopen recorded")

	addVeth(t, ns)
	pipelinetest.Eventually(t, 15*time.Second, func() bool { return nic.State().Up }, "link not back: %+v", nic.State())
	pingNS(t, ns, "10.79.0.1")
	if got := pipelinetest.NICAddresses(n.Stack, "lan"); !slices.Equal(got, addrs) {
		t.Errorf("addresses after down/up %v, before %v", got, addrs)
	}
	if st := nic.State(); st.Downs != 1 {
		t.Errorf("downs %d", st.Downs)
	}
}

// A reload that changes only mtu moves the stack's cap, never above the
// device's MTU, and leaves the device and the open sockets alone.
func TestAFPacketReloadMTU(t *testing.T) {
	ns := coVeth(t)
	cfg := func(mtu string) string {
		return strings.Replace(afConfig(ns, ModeMmsg), "mode: mmsg,", "mode: mmsg, mtu: "+mtu+",", 1)
	}
	n := pipelinetest.NewNode(t, "co", cfg("9000"), pipeline.Options{})
	old, _ := n.Stack.Link("lan")
	for _, c := range []struct{ mtu, want string }{{"9000", "1500"}, {"1400", "1400"}, {"1480", "1480"}, {"9000", "1500"}} {
		if err := n.Reload(cfg(c.mtu)); err != nil {
			t.Fatal(err)
		}
		if l, _ := n.Stack.Link("lan"); l != old {
			t.Fatal("an mtu change reopened the link")
		}
		ni, _ := n.Stack.Generation().NICByName("lan")
		if got := strconv.Itoa(ni.MTU()); got != c.want {
			t.Errorf("mtu %s: stack mtu %s, want %s", c.mtu, got, c.want)
		}
		if out := run(t, "ip", "-n", ns, "link", "show", "va"); !strings.Contains(out, "mtu 1500 ") {
			t.Errorf("the device's MTU changed:\n%s", out)
		}
	}
}

// The namespace of the device is deleted while the link's sockets (made
// in it) keep it and the veth alive, then made again with a veth of that
// name: the link notices, goes down and comes back in the new namespace.
func TestAFPacketNamespaceReplaced(t *testing.T) {
	ns := coVeth(t)
	n := pipelinetest.NewNode(t, "co", afConfig(ns, ModeMmsg), pipeline.Options{})
	nic, _ := n.Stack.NIC("lan")
	run(t, "ip", "netns", "del", ns)
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return !nic.State().Up }, "the link did not notice its namespace went")
	if st := nic.State(); !strings.Contains(st.Reason, "namespace gone") {
		t.Errorf("down reason %q", st.Reason)
	}
	run(t, "ip", "netns", "add", ns)
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	addVeth(t, ns)
	pipelinetest.Eventually(t, 15*time.Second, func() bool { return nic.State().Up }, "link not back: %+v", nic.State())
	pingNS(t, ns, "10.79.0.1")
}
