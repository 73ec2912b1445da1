package afpacket

import (
	"runtime"
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/pipeline"
)

func check(t *testing.T, yaml string) error {
	t.Helper()
	c, err := pipeline.ParseConfig("af.yaml", []byte(yaml))
	if err != nil {
		return err
	}
	return pipeline.Check(c)
}

func TestModuleConfig(t *testing.T) {
	if runtime.GOOS != "linux" {
		err := check(t, "links:\n  - {name: lan, module: link.afpacket, device: eth0}\n")
		if err == nil || !strings.Contains(err.Error(), "not supported on "+runtime.GOOS) {
			t.Fatalf("got %v", err)
		}
		return
	}
	for _, tc := range []struct{ link, want string }{
		{`{name: lan, module: link.afpacket, device: eth0}`, ""},
		{`{name: lan, module: link.afpacket, device: eth0, netns: lab, mode: mmsg, queues: 4, vnet_hdr: false, promiscuous: true, batch: 32, socket_buffer: 1048576, ring: {block_size: 262144, blocks: 4, timeout_ms: 2}}`, ""},
		{`{name: lan, module: link.afpacket}`, "device is required"},
		{`{name: lan, module: link.afpacket, device: eth0, mode: xdp}`, `mode "xdp" is not one of ring, mmsg, block`},
		{`{name: lan, module: link.afpacket, device: eth0, queues: 0}`, ``},
		{`{name: lan, module: link.afpacket, device: eth0, queues: 100}`, `queues 100 out of range`},
		{`{name: lan, module: link.afpacket, device: eth0, ring: {block_size: 100000}}`, `ring.block_size 100000`},
		{`{name: lan, module: link.afpacket, device: eth0, ring: {frame_size: 100}}`, `ring.frame_size 100`},
		{`{name: lan, module: link.afpacket, device: eth0, mode: block, ring: {block_size: 131072, blocks: 2, timeout_ms: 4, frame_size: 4096}}`, ""},
		{`{name: lan, module: link.afpacket, device: eth0, ring: {size: 1}}`, `af.yaml:2:61: link.afpacket (link lan): unknown field "size"`},
		{`{name: lan, module: link.afpacket, device: eth0, colour: blue}`, `unknown field "colour"`},
		{`{name: lan, module: link.afpacket, device: "a/b"}`, `is not an interface name`},
		{`{name: lan, module: link.afpacket, device: eth0, netns: "rel/path"}`, `netns "rel/path"`},
	} {
		err := check(t, "links:\n  - "+tc.link+"\n")
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.link, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.link, err, tc.want)
		}
	}
}

func TestLinkKey(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	key := func(yaml string) string {
		c, err := pipeline.ParseConfig("af.yaml", []byte("links:\n  - "+yaml+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		m := c.Links[0].Module.(*Module)
		if err := m.Provision(&pipeline.Context{Instance: "lan"}); err != nil {
			t.Fatal(err)
		}
		return m.LinkKey()
	}
	base := key(`{name: lan, module: link.afpacket, device: eth0}`)
	if base != key(`{name: lan, module: link.afpacket, device: eth0, mode: ring, vnet_hdr: true, queues: 1, mtu: 1400}`) {
		t.Error("explicit defaults (or the stack's mtu) changed the key")
	}
	for _, other := range []string{
		`{name: lan, module: link.afpacket, device: eth1}`,
		`{name: lan, module: link.afpacket, device: eth0, netns: x}`,
		`{name: lan, module: link.afpacket, device: eth0, mode: mmsg}`,
		`{name: lan, module: link.afpacket, device: eth0, queues: 2}`,
		`{name: lan, module: link.afpacket, device: eth0, vnet_hdr: false}`,
		`{name: lan, module: link.afpacket, device: eth0, promiscuous: true}`,
	} {
		if key(other) == base {
			t.Errorf("%s: same key as the default", other)
		}
	}
}
