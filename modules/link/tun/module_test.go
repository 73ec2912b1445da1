package tun

import (
	"runtime"
	"strings"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

func TestModuleConfig(t *testing.T) {
	f := false
	cases := []struct {
		m    Module
		want string
	}{
		{Module{}, "device: required"},
		{Module{Device: "a-very-long-device-name"}, "longer than 15"},
		{Module{Device: "bad/name"}, "not a valid interface name"},
		{Module{Device: "t0", Queues: 65}, "queues 65"},
		{Module{Device: "t0", Batch: 5000}, "batch 5000"},
		{Module{Device: "t0", Offload: &f, Coalesce: new(bool)}, ""},
		{Module{Device: "t0", Offload: &f}, ""}, // coalesce follows offload
		{Module{Device: "t0", Offload: &f, Coalesce: func() *bool { b := true; return &b }()}, "coalesce needs offload"},
		{Module{Device: "t0", Netns: "a b"}, "netns"},
		{Module{Device: "t0", Netns: "/proc/1/ns/net", Queues: 4}, ""},
	}
	for _, c := range cases {
		m := c.m
		err := m.Provision(&pipeline.Context{Instance: "lan"})
		if runtime.GOOS != "linux" {
			if err == nil || !strings.Contains(err.Error(), "not supported on "+runtime.GOOS) {
				t.Fatalf("Provision on %s: %v", runtime.GOOS, err)
			}
			return
		}
		if err == nil {
			err = m.Validate()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.m, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want %q", c.m, err, c.want)
		}
	}
}

func TestLinkKey(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Provision fails off Linux")
	}
	key := func(m Module) string {
		m.Provision(&pipeline.Context{Instance: "lan"})
		return m.LinkKey()
	}
	base := key(Module{Device: "t0", Netns: "ns"})
	if base != key(Module{Device: "t0", Netns: "ns", Queues: 1, Batch: 32}) {
		t.Error("defaults change the key")
	}
	for _, m := range []Module{{Device: "t1", Netns: "ns"}, {Device: "t0", Netns: "other"}, {Device: "t0", Netns: "ns", Queues: 2}} {
		if key(m) == base {
			t.Errorf("%+v has the same key as the base", m)
		}
	}
}
