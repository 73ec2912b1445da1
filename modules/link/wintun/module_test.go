package wintun

import (
	"runtime"
	"strings"
	"testing"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/pipeline"
)

func check(yaml string) error {
	c, err := pipeline.ParseConfig("w.yaml", []byte(yaml))
	if err != nil {
		return err
	}
	return pipeline.Check(c)
}

// Anywhere but Windows the module is listed and fails in Provision, with
// the reason.
func TestRegisteredEverywhere(t *testing.T) {
	if _, ok := pipeline.LookupModule("link.wintun"); !ok {
		t.Fatal("link.wintun is not registered")
	}
	err := check("links:\n  - {name: w, module: link.wintun, device: pipestack0}\n")
	if runtime.GOOS == "windows" {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	want := "w.yaml:2:5: link.wintun (link w): not supported on " + runtime.GOOS + " (Wintun is a Windows driver)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestConfig(t *testing.T) {
	if err := check("links:\n  - {name: w, module: link.wintun, device: x, colour: blue}\n"); err == nil || !strings.Contains(err.Error(), `unknown field "colour"`) {
		t.Fatalf("unknown key: %v", err)
	}
	for _, tc := range []struct {
		m    Module
		want string
	}{
		{Module{Device: "pipestack0"}, ""},
		{Module{}, "device is required"},
		{Module{Device: "x", GUID: "nope"}, `guid "nope"`},
		{Module{Device: "x", GUID: "{c0ffee00-1234-5678-9abc-def012345678}"}, ""},
		{Module{Device: "x", RingCapacity: 1000}, "ring_capacity 1000"},
		{Module{Device: "x", Batch: 5000}, "batch 5000"},
	} {
		m := tc.m
		// Validate is OS-independent: apply the defaults by hand where
		// Provision refuses to run.
		if m.RingCapacity == 0 {
			m.RingCapacity = DefaultRingCapacity
		}
		if m.Batch == 0 {
			m.Batch = DefaultBatch
		}
		err := m.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.m, err, tc.want)
		}
	}
}
