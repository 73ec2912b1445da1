package tun

import (
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv6"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// coNetns makes a namespace with this task's prefix, removed when the test
// ends.
func coNetns(t *testing.T) (ns, dev string) {
	t.Helper()
	_, s := testNetns(t) // only for the random suffix; removed at once
	exec.Command("ip", "netns", "del", "pstun-"+s).Run()
	ns, dev = "co-tun-"+s, "co-tun"+s
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns, dev
}

func stackConfig(ns, dev, extra string) string {
	return `
name: co
modules: [network.ipv4, network.ipv6]
links:
  - {name: lan, module: link.tun, device: ` + dev + `, netns: ` + ns + `, queues: 2, addresses: [10.78.0.1/24, "fd00:78::1/64"]` + extra + `}
`
}

// A reload that changes link.tun's batch (a LinkKey change: the device is
// reopened) keeps the NIC, its addresses (the link-local one too), routes
// and counters, and the kernel on the other side sees the same device.
// Then the device's namespace goes: the link goes down (its routes are
// withdrawn, pipectl's state says why), and when the namespace is back the
// stack makes the device again without a reload.
func TestTUNReopenAndLinkDown(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("needs ping (iputils-ping)")
	}
	ns, dev := coNetns(t)
	n := pipelinetest.NewNode(t, "co", stackConfig(ns, dev, ""), pipeline.Options{})
	ip(t, "-n", ns, "addr", "add", "10.78.0.2/24", "dev", dev)
	if err := pipelinetest.PingFrom(ns, "10.78.0.1"); err != nil {
		t.Fatal(err)
	}
	nic, _ := n.Stack.NIC("lan")
	old, _ := n.Stack.Link("lan")
	addrs := pipelinetest.NICAddresses(n.Stack, "lan")
	if len(addrs) != 3 || !strings.Contains(strings.Join(addrs, " "), "fe80::") {
		t.Fatalf("addresses %v, want the two configured and a link-local one", addrs)
	}
	rx := nic.Stats.RxPackets.Load()

	if err := n.Reload(stackConfig(ns, dev, ", batch: 16")); err != nil {
		t.Fatal(err)
	}
	if l, _ := n.Stack.Link("lan"); l == old {
		t.Fatal("the batch change did not reopen the link")
	}
	if n2, _ := n.Stack.NIC("lan"); n2 != nic || nic.Stats.RxPackets.Load() < rx {
		t.Fatal("the reopen lost the NIC or its counters")
	}
	if got := pipelinetest.NICAddresses(n.Stack, "lan"); !slices.Equal(got, addrs) {
		t.Errorf("addresses after the reopen %v, before %v", got, addrs)
	}
	if out := ip(t, "-n", ns, "addr", "show", "dev", dev); !strings.Contains(out, "10.78.0.2/24") {
		t.Fatalf("the kernel side lost its address: another device?\n%s", out)
	}
	if err := pipelinetest.PingFrom(ns, "10.78.0.1"); err != nil {
		t.Fatalf("after the reopen: %v", err)
	}

	// The device and its namespace go. The link's own sockets keep a
	// namespace alive (they were made in it), so the device is deleted
	// from inside by a process that holds it, after the name is gone;
	// once the stack has closed the dead endpoint the namespace is gone
	// for good and reopening fails until it is back.
	del := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "sleep 0.3; ip link del "+dev)
	if err := del.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	ip(t, "netns", "del", ns)
	if err := del.Wait(); err != nil {
		t.Fatalf("ip link del %s: %v", dev, err)
	}
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return !nic.State().Up }, "link still up after its device went")
	if st := nic.State(); !strings.Contains(st.Reason, dev) {
		t.Errorf("down reason %q does not name the device", st.Reason)
	}
	if _, ok := n.Stack.Route(netip.MustParseAddr("10.78.0.2")); ok {
		t.Error("route through the dead link kept")
	}
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return nic.State().Retry != "" }, "no failed reopen recorded")
	if st := nic.State(); !strings.Contains(st.Retry, ns) {
		t.Errorf("retry error %q does not say the namespace is missing", st.Retry)
	}

	ip(t, "netns", "add", ns)
	pipelinetest.Eventually(t, 15*time.Second, func() bool { return nic.State().Up }, "link not back: %+v", nic.State())
	if _, ok := n.Stack.Route(netip.MustParseAddr("10.78.0.2")); !ok {
		t.Error("the connected route did not come back")
	}
	ip(t, "-n", ns, "addr", "add", "10.78.0.2/24", "dev", dev)
	if err := pipelinetest.PingFrom(ns, "10.78.0.1"); err != nil {
		t.Fatalf("after the device came back: %v", err)
	}
	if got := pipelinetest.NICAddresses(n.Stack, "lan"); !slices.Equal(got, addrs) {
		t.Errorf("addresses after down/up %v, before %v", got, addrs)
	}
}

// A reload that changes only mtu sets the device's MTU.
func TestTUNReloadMTU(t *testing.T) {
	needRoot(t)
	ns, dev := coNetns(t)
	n := pipelinetest.NewNode(t, "co", stackConfig(ns, dev, ", mtu: 1400"), pipeline.Options{})
	old, _ := n.Stack.Link("lan")
	for _, mtu := range []string{"1280", "1500"} {
		if err := n.Reload(stackConfig(ns, dev, ", mtu: "+mtu)); err != nil {
			t.Fatal(err)
		}
		if l, _ := n.Stack.Link("lan"); l != old {
			t.Fatal("an mtu change reopened the link")
		}
		if out := ip(t, "-n", ns, "link", "show", "dev", dev); !strings.Contains(out, "mtu "+mtu+" ") {
			t.Errorf("device after mtu %s:\n%s", mtu, out)
		}
		ni, _ := n.Stack.Generation().NICByName("lan")
		if got := ni.MTU(); mtu != strconv.Itoa(got) {
			t.Errorf("stack mtu %d, want %s", got, mtu)
		}
	}
}

// The device's namespace is deleted while the link holds the device (the
// link's sockets keep that namespace, and so the device, alive: nothing
// else can reach them), then a namespace of that name is made again, as
// `lab.sh down` and `up` do under a running router: the link notices, goes
// down, and comes back in the new namespace without a reload.
func TestTUNNamespaceReplaced(t *testing.T) {
	needRoot(t)
	ns, dev := coNetns(t)
	n := pipelinetest.NewNode(t, "co", stackConfig(ns, dev, ""), pipeline.Options{})
	nic, _ := n.Stack.NIC("lan")
	ip(t, "netns", "del", ns)
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return !nic.State().Up }, "the link did not notice its namespace went")
	if st := nic.State(); !strings.Contains(st.Reason, "namespace "+ns+" removed") {
		t.Errorf("down reason %q", st.Reason)
	}
	ip(t, "netns", "add", ns)
	pipelinetest.Eventually(t, 15*time.Second, func() bool { return nic.State().Up }, "link not back: %+v", nic.State())
	ip(t, "-n", ns, "addr", "add", "10.78.0.2/24", "dev", dev)
	if err := pipelinetest.PingFrom(ns, "10.78.0.1"); err != nil {
		t.Fatalf("in the new namespace: %v", err)
	}
}
