package control

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin"
)

// TestFormatPlugins: pipectl plugins' table and the plugin metrics.
func TestFormatPlugins(t *testing.T) {
	ps := []plugin.Status{
		{Name: "blk", Version: "1.2", PID: 42, State: "running", Batches: 10, Packets: 640, P50: 80 * time.Microsecond, P99: 2 * time.Millisecond, Timeouts: 1, Restarts: 2, CacheHits: "75.0%", CacheHitCount: 300, CacheMissCount: 100},
		{Name: "dead", State: "failed", Reason: "restart budget (5) spent; on_failure drop holds"},
	}
	var b bytes.Buffer
	FormatPlugins(&b, ps)
	out := b.String()
	for _, want := range []string{"NAME", "blk", "1.2", "42", "running", "640", "80µs", "2ms", "75.0%", "dead: restart budget (5) spent"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	WritePluginMetrics(&b, ps)
	m := b.String()
	for _, want := range []string{`pipestack_plugin_up{plugin="blk",version="1.2"} 1`, `pipestack_plugin_up{plugin="dead",version=""} 0`,
		`pipestack_plugin_packets_total{plugin="blk"} 640`, `pipestack_plugin_restarts_total{plugin="blk"} 2`,
		`pipestack_plugin_rtt_seconds{plugin="blk",quantile="0.99"} 0.002`,
		`pipestack_plugin_cache_hits_total{plugin="blk"} 300`, `pipestack_plugin_cache_misses_total{plugin="blk"} 100`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	b.Reset()
	FormatPlugins(&b, nil)
	if b.String() != "no plugins\n" {
		t.Errorf("%q", b.String())
	}
}
