package pipelinetest

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// Node is one stack of an in-memory topology.
type Node struct {
	Name  string
	Stack *pipeline.Stack
}

// NewNode builds a stack from pipeline-file text and applies it; the stack
// is closed when the test ends.
func NewNode(t testing.TB, name, config string, opts pipeline.Options) *Node {
	t.Helper()
	cfg, err := pipeline.ParseConfig(name+".yaml", []byte(config))
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	s := pipeline.New(opts)
	if _, err := s.Apply(cfg); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return &Node{Name: name, Stack: s}
}

// Reload applies new pipeline-file text to the node.
func (n *Node) Reload(config string) error {
	cfg, err := pipeline.ParseConfig(n.Name+".yaml", []byte(config))
	if err != nil {
		return err
	}
	_, err = n.Stack.Apply(cfg)
	return err
}

// Link returns the channel endpoint of one of the node's links.
func (n *Node) Link(t testing.TB, name string) *channel.Endpoint {
	t.Helper()
	l, ok := n.Stack.Link(name)
	if !ok {
		t.Fatalf("node %s has no link %s", n.Name, name)
	}
	ep, ok := l.(*channel.Endpoint)
	if !ok {
		t.Fatalf("node %s link %s is a %T, not link.channel", n.Name, name, l)
	}
	return ep
}

// Connect cables link al of a to link bl of b until the test ends.
func Connect(t testing.TB, a *Node, al string, b *Node, bl string) {
	t.Helper()
	stop := channel.Pipe(a.Link(t, al), b.Link(t, bl))
	t.Cleanup(stop)
}

// Counter reads one counter ("ipv4", "forwarded") of a node.
func (n *Node) Counter(set, name string) uint64 {
	for _, cs := range n.Stack.Counters() {
		if cs.Name() == set {
			for _, v := range cs.Snapshot() {
				if v.Name == name {
					return v.Value
				}
			}
		}
	}
	return 0
}

// WantCounters fails t for every counter of set whose value is not the one
// in want.
func (n *Node) WantCounters(t testing.TB, set string, want map[string]uint64) {
	t.Helper()
	for k, v := range want {
		if got := n.Counter(set, k); got != v {
			t.Errorf("%s %s.%s = %d, want %d (%s)", n.Name, set, k, got, v, n.DumpCounters())
		}
	}
}

// DumpCounters renders every non-zero counter of the node (for failure
// messages).
func (n *Node) DumpCounters() string {
	var b strings.Builder
	for _, cs := range n.Stack.Counters() {
		for _, v := range cs.Snapshot() {
			if v.Value != 0 {
				fmt.Fprintf(&b, "%s.%s=%d ", cs.Name(), v.Name, v.Value)
			}
		}
	}
	for _, nic := range n.Stack.NICs() {
		st := &nic.Stats
		fmt.Fprintf(&b, "nic %s rx=%d tx=%d rxdrop=%d txdrop=%d ", nic.Name(), st.RxPackets.Load(), st.TxPackets.Load(), st.RxDropped.Load(), st.TxDropped.Load())
	}
	return b.String()
}

// Drain reads everything queued on a channel link: copies of the whole
// frames, in order (the packets are released).
func Drain(ep *channel.Endpoint) [][]byte {
	var out [][]byte
	buf := make([]*pipeline.Packet, 64)
	for {
		n := ep.Read(buf)
		if n == 0 {
			return out
		}
		for _, p := range buf[:n] {
			out = append(out, append([]byte(nil), p.Data()...))
			p.Release()
		}
	}
}

var nameSeq atomic.Int64

// UniqueName is the test's name made unique to this run of it, for names
// that outlive a test (collectors are global, and -count runs a test again).
func UniqueName(t testing.TB) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), nameSeq.Add(1))
}

// Eventually polls cond every millisecond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

// CheckGoroutines records the goroutine count now and, when the test ends
// (after its other cleanups, so call it first), fails if more goroutines
// are left than there were.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutine leak: %d goroutines, %d before the test\n%s", runtime.NumGoroutine(), before, buf[:n])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// Collector is what the transport.collect module delivered: copies of whole
// IP packets, in arrival order.
type Collector struct {
	mu   sync.Mutex
	pkts [][]byte
	cond chan struct{}
}

var (
	collectorsMu sync.Mutex
	collectors   = map[string]*Collector{}
)

// Collected returns the collector with this name (created on first use).
func Collected(name string) *Collector {
	collectorsMu.Lock()
	defer collectorsMu.Unlock()
	c, ok := collectors[name]
	if !ok {
		c = &Collector{cond: make(chan struct{}, 1)}
		collectors[name] = c
	}
	return c
}

func (c *Collector) add(b []byte) {
	c.mu.Lock()
	c.pkts = append(c.pkts, b)
	c.mu.Unlock()
	select {
	case c.cond <- struct{}{}:
	default:
	}
}

// Len is how many packets were collected.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pkts)
}

// Wait returns the next collected packet (in order), failing t after timeout.
func (c *Collector) Wait(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		if len(c.pkts) > 0 {
			p := c.pkts[0]
			c.pkts = c.pkts[1:]
			c.mu.Unlock()
			return p
		}
		c.mu.Unlock()
		select {
		case <-c.cond:
		case <-deadline:
			t.Fatalf("no packet collected within %v", timeout)
			return nil
		}
	}
}

// SendIPv4 originates an IPv4 packet from the node (see ipv4.Send).
func (n *Node) SendIPv4(t testing.TB, dst string, proto pipeline.TransportProtocolNumber, payload []byte) {
	t.Helper()
	if err := ipv4.Send(n.Stack, netip.MustParseAddr(dst), proto, payload); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
}
