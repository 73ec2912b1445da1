package control_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipelinetest"
)

// A link whose device is gone shows as down in pipectl stats (JSON and
// text, with the reason and the failed reopens), in the metrics (link_up
// 0) and its routes leave pipectl route; all of it returns when the stack
// has reopened the device.
func TestLinkDownInStats(t *testing.T) {
	dev := pipelinetest.UniqueName(t)
	n := pipelinetest.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, device: `+dev+`, addresses: [10.0.2.1/24]}
routes:
  - {to: 10.0.3.0/24, via: 10.0.2.3, link: b}
`, pipeline.Options{})
	link := func(st *control.Stats, name string) control.LinkStats {
		for _, l := range st.Links {
			if l.Name == name {
				return l
			}
		}
		t.Fatalf("no link %s in %+v", name, st.Links)
		return control.LinkStats{}
	}
	routesVia := func(name string) int {
		k := 0
		for _, r := range control.Routes(n.Stack) {
			if r.Link == name {
				k++
			}
		}
		return k
	}
	if l := link(control.Snapshot(n.Stack), "b"); l.State != "up" || l.Down != nil || routesVia("b") != 2 {
		t.Fatalf("before: %+v, %d routes", l, routesVia("b"))
	}

	channel.RemoveDevice(dev)
	defer channel.RestoreDevice(dev)
	pipelinetest.Eventually(t, 5*time.Second, func() bool {
		l := link(control.Snapshot(n.Stack), "b")
		return l.Down != nil && l.Down.Attempts > 0
	}, "link b not down with a failed reopen")
	st := control.Snapshot(n.Stack)
	l := link(st, "b")
	if l.State != "down" || l.Downs != 1 || !strings.Contains(l.Down.Reason, "removed") || !strings.Contains(l.Down.Retry, "no such device") {
		t.Errorf("down: %+v %+v", l, l.Down)
	}
	if k := routesVia("b"); k != 0 {
		t.Errorf("pipectl route still lists %d routes through b", k)
	}
	var text, metrics bytes.Buffer
	control.FormatStats(&text, st, false)
	control.WriteMetrics(&metrics, st)
	for _, want := range []string{"b: <link.channel> mtu 1500 state DOWN", "device " + dev + " removed; routes withdrawn", "no such device"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("stats text lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{`pipestack_link_up{link="a"} 1`, `pipestack_link_up{link="b"} 0`, `pipestack_link_downs_total{link="b"} 1`} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	channel.RestoreDevice(dev)
	pipelinetest.Eventually(t, 10*time.Second, func() bool { return link(control.Snapshot(n.Stack), "b").State == "up" }, "link b not back up")
	metrics.Reset()
	control.WriteMetrics(&metrics, control.Snapshot(n.Stack))
	if !strings.Contains(metrics.String(), `pipestack_link_up{link="b"} 1`) || routesVia("b") != 2 {
		t.Errorf("after: routes %d, metrics:\n%s", routesVia("b"), metrics.String())
	}
}

// The stack's loopback NIC shows in pipectl stats (text and JSON) and the
// metrics, like a link: no device behind it, its addresses, its counters.
func TestLoopbackInStats(t *testing.T) {
	n := pipelinetest.NewNode(t, "r", `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, addresses: [10.0.1.1/24]}
`, pipeline.Options{})
	n.SendIPv4(t, "10.0.1.1", pipeline.ICMPv4ProtocolNumber, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}) // an echo to itself
	st := control.Snapshot(n.Stack)
	var lo *control.LinkStats
	for i := range st.Links {
		if st.Links[i].Name == pipeline.LoopbackName {
			lo = &st.Links[i]
		}
	}
	if lo == nil {
		t.Fatalf("no lo in %+v", st.Links)
	}
	if lo.Module != pipeline.LoopbackModuleID || lo.State != "up" || lo.MTU != pipeline.LoopbackMTU || len(lo.Addresses) != 1 || lo.Addresses[0] != "127.0.0.1/8" {
		t.Errorf("lo: %+v", *lo)
	}
	if lo.RxPackets != 2 || lo.TxPackets != 2 {
		t.Errorf("lo rx %d tx %d, want the echo and its reply both ways", lo.RxPackets, lo.TxPackets)
	}
	var text, metrics bytes.Buffer
	control.FormatStats(&text, st, false)
	control.WriteMetrics(&metrics, st)
	if !strings.Contains(text.String(), "lo: <loopback> mtu 65536") {
		t.Errorf("stats text lacks lo:\n%s", text.String())
	}
	if !strings.Contains(metrics.String(), `pipestack_link_up{link="lo"} 1`) {
		t.Errorf("metrics lack lo")
	}
}
