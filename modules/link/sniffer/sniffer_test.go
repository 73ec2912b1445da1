package sniffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
)

type record struct {
	sec, usec    uint32
	capLen, orig int
	data         []byte
}

// readPcap parses a classic little-endian microsecond pcap file.
func readPcap(t *testing.T, path string) (linkType, snaplen uint32, recs []record) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(b) < globalHdrLen || le.Uint32(b) != pcapMagic || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 {
		t.Fatalf("bad global header % x", b[:min(len(b), 24)])
	}
	snaplen, linkType = le.Uint32(b[16:]), le.Uint32(b[20:])
	b = b[globalHdrLen:]
	for len(b) > 0 {
		if len(b) < recordHdrLen {
			t.Fatalf("short record header (%d bytes)", len(b))
		}
		r := record{sec: le.Uint32(b), usec: le.Uint32(b[4:]), capLen: int(le.Uint32(b[8:])), orig: int(le.Uint32(b[12:]))}
		b = b[recordHdrLen:]
		if r.capLen > len(b) || r.capLen > r.orig || r.usec >= 1e6 {
			t.Fatalf("bad record %+v with %d bytes left", r, len(b))
		}
		r.data, b = b[:r.capLen], b[r.capLen:]
		recs = append(recs, r)
	}
	return linkType, snaplen, recs
}

func tshark(t *testing.T, path string) {
	t.Helper()
	testenv.Tool(t, "tshark", "tshark")
	out, err := exec.Command("tshark", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, out)
	}
	t.Logf("tshark:\n%s", out)
	if !strings.Contains(string(out), "ICMP") {
		t.Fatalf("tshark did not see the ICMP packets:\n%s", out)
	}
}

const stackCfg = `
name: sniff
modules: [network.ipv4]
links:
  - name: lan
    module: link.sniffer
    file: %FILE%
    snaplen: 1000
    inner: {module: link.channel, framing: %FRAMING%, mac: "02:00:00:00:00:01"}
    addresses: [10.0.0.1/24]
    neighbors: [{ip: 10.0.0.2, mac: "02:00:00:00:00:02"}]
`

// A ping through a stack whose link is a sniffer around link.channel: the
// request (received) and the reply (sent) are both in the file, which our
// parser and tshark read.
func TestCaptureBothDirections(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	for _, framing := range []string{"ethernet", "ip"} {
		t.Run(framing, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lan.pcap")
			cfg := strings.NewReplacer("%FILE%", path, "%FRAMING%", framing).Replace(stackCfg)
			n := pipelinetest.NewNode(t, "sniff", cfg, pipeline.Options{})
			l, _ := n.Stack.Link("lan")
			sn, ok := l.(*Endpoint)
			if !ok {
				t.Fatalf("link is a %T", l)
			}
			ch := sn.Inner().(*channel.Endpoint)
			peer := wire.MAC{2, 0, 0, 0, 0, 2}
			own := wire.MAC{2, 0, 0, 0, 0, 1}
			big := bytes.Repeat([]byte{0xab}, 1200) // over snaplen
			var frames [][]byte
			for i, payload := range [][]byte{[]byte("psaf-sniffer"), big} {
				req := pipelinetest.Echo4("10.0.0.2", "10.0.0.1", 64, 1, uint16(i), payload)
				if framing == "ethernet" {
					req = pipelinetest.EthFrame(own, peer, wire.EtherTypeIPv4, req)
				}
				frames = append(frames, req)
			}
			ch.InjectFrames(frames)
			var replies []*pipeline.Packet
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			buf := make([]*pipeline.Packet, 4)
			for len(replies) < 2 {
				k, err := ch.ReadWait(ctx, buf)
				if err != nil {
					t.Fatalf("no reply: %v", err)
				}
				replies = append(replies, buf[:k]...)
			}
			if err := n.Stack.Close(); err != nil {
				t.Fatal(err)
			}
			lt, snap, recs := readPcap(t, path)
			wantLT := uint32(LinkTypeRaw)
			if framing == "ethernet" {
				wantLT = LinkTypeEthernet
			}
			if lt != wantLT || snap != 1000 {
				t.Fatalf("link type %d snaplen %d, want %d 1000", lt, snap, wantLT)
			}
			if len(recs) != 4 {
				t.Fatalf("%d records, want 4", len(recs))
			}
			// Two requests in, two replies out; the replies exactly as the
			// link wrote them.
			for i, r := range recs[:2] {
				if r.orig != len(frames[i]) || !bytes.Equal(r.data, frames[i][:r.capLen]) {
					t.Fatalf("record %d is not request %d", i, i)
				}
			}
			for i, r := range recs[2:] {
				got := replies[i].Data()
				if r.orig != len(got) || !bytes.Equal(r.data, got[:r.capLen]) {
					t.Fatalf("record %d:\n got % x\nwant % x", 2+i, r.data, got)
				}
			}
			if recs[1].capLen != 1000 || sn.Truncated.Load() != 2 || sn.Captured.Load() != 4 {
				t.Fatalf("snaplen: cap %d, truncated %d, captured %d", recs[1].capLen, sn.Truncated.Load(), sn.Captured.Load())
			}
			if d := time.Since(time.Unix(int64(recs[0].sec), 0)); d < 0 || d > time.Minute {
				t.Fatalf("timestamp %d is not now", recs[0].sec)
			}
			for _, p := range replies {
				p.Release()
			}
			tshark(t, path)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ inner, want string }{
		{`{module: link.channel, framing: ethernet, colour: blue}`, `s.yaml:9:54: link.sniffer (link lan): inner link.channel: unknown field "colour"`},
		{`{framing: ethernet}`, `inner has no module`},
		{`{module: link.nosuch}`, `inner: unknown module "link.nosuch"`},
		{`{module: network.ipv4}`, `network.ipv4 is not a link module`},
		{`{module: link.channel, framing: token-ring}`, `inner link.channel: framing "token-ring" is not one of ip, ethernet`},
	} {
		cfg := strings.NewReplacer("%FILE%", "/nonexistent/x.pcap", "%FRAMING%", "ip").Replace(stackCfg)
		cfg = strings.Replace(cfg, `{module: link.channel, framing: ip, mac: "02:00:00:00:00:01"}`, tc.inner, 1)
		c, err := pipeline.ParseConfig("s.yaml", []byte(cfg))
		if err == nil {
			err = pipeline.Check(c)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("inner %s: error %v, want %q", tc.inner, err, tc.want)
		}
	}
	// file is required.
	c, err := pipeline.ParseConfig("s.yaml", []byte(`
modules: [network.ipv4]
links:
  - {name: lan, module: link.sniffer, inner: {module: link.channel}}
`))
	if err == nil {
		err = pipeline.Check(c)
	}
	if err == nil || !strings.Contains(err.Error(), "file is required") {
		t.Errorf("no file: %v", err)
	}
}

// blockingWriter blocks every write until released.
type blockingWriter struct {
	mu     sync.Mutex
	gate   chan struct{}
	buf    bytes.Buffer
	closed bool
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *blockingWriter) Close() error { return nil }

// A writer that cannot keep up costs the packet path nothing: batches that
// find the queue full are counted and not captured, and the packets still
// go through.
func TestFullQueueDrops(t *testing.T) {
	pipelinetest.CheckGoroutines(t)
	ch := channel.New(channel.Options{Name: "x"})
	w := &blockingWriter{gate: make(chan struct{})}
	close(w.gate) // the global header
	e, err := New(ch, w, Options{Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	w.gate = make(chan struct{}) // from now on writes block
	// (The writer goroutine reads gate only when it writes a chunk.)
	// 60 KB packets: the writer's 256 KiB buffer fills after a few, then
	// its writes block.
	const batches = 30
	for i := 0; i < batches; i++ {
		p := pipeline.DefaultPool.Get(60100)
		p.SetData(pipelinetest.UDP4("10.0.0.1", "10.0.0.2", 1, 2, 64, make([]byte, 60000)))
		p.NetProto = pipeline.IPv4ProtocolNumber
		done := make(chan struct{})
		go func() { e.WritePackets([]*pipeline.Packet{p}); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("WritePackets blocked on a slow pcap writer")
		}
	}
	if ch.Pending() != batches {
		t.Fatalf("%d packets reached the wrapped link, want %d", ch.Pending(), batches)
	}
	// At most the queue (2), the chunk the writer holds and what its
	// buffer took were kept.
	if d := e.Dropped.Load(); d < batches-8 {
		t.Fatalf("Dropped = %d, want at least %d", d, batches-8)
	}
	close(w.gate)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.Captured.Load() + e.Dropped.Load(); got != batches {
		t.Fatalf("captured %d + dropped %d != %d", e.Captured.Load(), e.Dropped.Load(), batches)
	}
}
