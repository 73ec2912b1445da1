package plugin

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	_ "github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// judgeFunc is a test plugin's target.
type judgeFunc func(b *sdk.Batch, out *sdk.Results)

func (f judgeFunc) Action(b *sdk.Batch, out *sdk.Results) { f(b, out) }

// fake is an in-process plugin whose behaviour the test sets per version:
// versions counts the processes started; judge decides.
type fake struct {
	mu       sync.Mutex
	started  int
	judge    func(version int, cfg map[string]any, b *sdk.Batch, out *sdk.Results)
	failNext bool // the next start's Configure fails
	needs    sdk.Needs
	proto    int // the protocol version it speaks (0: the newest)
	closers  []func()
}

// install makes every plugin of the test an in-process server of f.
func (f *fake) install(t *testing.T) {
	t.Helper()
	old := newLauncher
	newLauncher = func(s *Section, d *decl) launcher {
		return func(ctx context.Context) (*conn, error) {
			f.mu.Lock()
			f.started++
			version := f.started
			fail := f.failNext
			f.failNext = false
			f.mu.Unlock()
			var cfg map[string]any
			impl := &sdk.Plugin{
				Version: "v" + string(rune('0'+version)),
				Configure: func(name string, js []byte) (sdk.Needs, error) {
					if fail {
						return sdk.Needs{}, errTest
					}
					return f.needs, json.Unmarshal(js, &cfg)
				},
				Target: judgeFunc(func(b *sdk.Batch, out *sdk.Results) { f.judge(version, cfg, b, out) }),
			}
			c, srv := goplugin.TestPluginGRPCConn(t, false, sdk.PluginSetOf(impl, cmp.Or(f.proto, sdk.ProtocolVersion)))
			raw, err := c.Dispense(sdk.PluginName)
			if err != nil {
				return nil, err
			}
			var once sync.Once
			closer := func() { once.Do(func() { c.Close() }) } // its Shutdown rpc stops srv
			_ = srv
			f.mu.Lock()
			f.closers = append(f.closers, closer)
			f.mu.Unlock()
			return &conn{client: raw.(*sdk.Client), close: closer}, nil
		}
	}
	t.Cleanup(func() { newLauncher = old })
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("refused by the test")

const routerBase = `
name: r
modules: [network.ipv4]
links:
  - {name: a, module: link.channel, framing: ip, addresses: [10.0.1.1/24]}
  - {name: b, module: link.channel, framing: ip, queue: 8192, addresses: [10.0.2.1/24]}
forwarding: {ipv4: true}
privileges: {drop: false}
plugins:
PLUGINS
filter:
  filter:
    forward:
      rules:
        - "-p udp -j PLUGIN --name blk"
`

func routerConfig(plugins string) string {
	return strings.Replace(routerBase, "PLUGINS", plugins, 1)
}

// udp is a test datagram with a sequence number in its payload.
func udp(flow uint16, dport uint16, seq uint32) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], seq)
	return pt.UDP4("10.0.1.2", "10.0.2.2", 1000+flow, dport, 64, p[:])
}

// seqOf reads the sequence number of a datagram from udp (IPv4 + UDP).
func seqOf(b []byte) (flow uint16, seq uint32) {
	return binary.BigEndian.Uint16(b[20:]) - 1000, binary.BigEndian.Uint32(b[28:])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pt.Eventually(t, 5*time.Second, cond, "%s", what)
}

func newRouter(t *testing.T, plugins string) *pt.Node {
	t.Helper()
	return pt.NewNode(t, "r", routerConfig(plugins), testOptions(nil))
}

// testDeadline is the timeout: most tests give a plugin that must not
// miss it: on a loaded 2-core machine (load 20-40, -race) a round trip
// passed 1 s. The stack's resume bound must hold it (Validate):
// testOptions sets the bound that deadline needs (minResumeTimeout).
const testDeadline = 2 * time.Second

// testOptions are the test routers' stack options.
func testOptions(clock pipeline.Clock) pipeline.Options {
	return pipeline.Options{Clock: clock, ResumeTimeout: minResumeTimeout(testDeadline)}
}
