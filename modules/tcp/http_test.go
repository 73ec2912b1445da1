package tcp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/modules/link/impair"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
	pt "github.com/pipestack/pipestack/pipelinetest"
)

// blob is n deterministic bytes.
func blob(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// serveHTTP runs net/http on a listener of host B: /blob?n=N answers N
// bytes of blob, /echo echoes the body.
func serveHTTP(t *testing.T, s *pipeline.Stack, data []byte) {
	t.Helper()
	ln, err := tcp.Listen(s, "tcp4", "10.0.2.2:80")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(data[:n])
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func client(s *pipeline.Stack) *http.Client {
	d := &tcp.Dialer{Stack: s}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) []byte {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// httpOverTopo: 20 MB intact, then 64 requests on 16 clients in parallel,
// and an upload echoed back.
func httpOverTopo(t *testing.T, a, b *pt.Node, size int) {
	data := blob(20 << 20)
	serveHTTP(t, b.Stack, data)
	c := client(a.Stack)
	defer c.CloseIdleConnections()
	start := time.Now()
	got := get(t, c, fmt.Sprintf("http://10.0.2.2/blob?n=%d", size))
	el := time.Since(start)
	if !bytes.Equal(got, data[:size]) {
		t.Fatalf("%d bytes, sha %x, want %d sha %x", len(got), sha256.Sum256(got), size, sha256.Sum256(data[:size]))
	}
	t.Logf("%d MB in %v (%.0f MB/s)", size>>20, el, float64(size)/el.Seconds()/1e6)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n := 1000 + i*3001
			resp, err := c.Get(fmt.Sprintf("http://10.0.2.2/blob?n=%d", n))
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, data[:n]) {
				errs <- fmt.Errorf("request %d: %d bytes, %v", i, len(body), err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	up := data[:3<<20]
	resp, err := c.Post("http://10.0.2.2/echo", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(back, up) {
		t.Fatalf("echo: %d bytes, %v", len(back), err)
	}
}

func TestHTTPAcrossRouter(t *testing.T) {
	tp := newTopo(t, "")
	httpOverTopo(t, tp.a, tp.b, 20<<20)
}

// impairedRouter is the in-memory router with link.impair on both its
// links: every packet it forwards, either way, may be lost, duplicated,
// reordered and is delayed.
func impairedRouter(t *testing.T, imp string) (a, b *pt.Node) {
	cfg := fmt.Sprintf(`
name: router
modules: [network.ipv4]
links:
  - {name: a, module: link.impair, inner: {module: link.channel, queue: 8192}, addresses: [10.0.1.1/24], %[1]s}
  - {name: b, module: link.impair, inner: {module: link.channel, queue: 8192}, addresses: [10.0.2.1/24], %[1]s}
forwarding: {ipv4: true}
`, imp)
	a = pt.NewNode(t, "host-a", hostConfig("host-a", "a", "10.0.1.2/24", "10.0.1.1", ""), pipeline.Options{})
	r := pt.NewNode(t, "router", cfg, pipeline.Options{Seed: 11})
	b = pt.NewNode(t, "host-b", hostConfig("host-b", "b", "10.0.2.2/24", "10.0.2.1", ""), pipeline.Options{})
	for _, l := range []struct {
		n    *pt.Node
		name string
	}{{a, "a"}, {b, "b"}} {
		re, _ := r.Stack.Link(l.name)
		stop := channel.Pipe(l.n.Link(t, l.name), re.(*impair.Endpoint).Inner().(*channel.Endpoint))
		t.Cleanup(stop)
	}
	t.Cleanup(func() { t.Log("router:", r.DumpCounters()) })
	return a, b
}

func TestHTTPImpaired(t *testing.T) {
	a, b := impairedRouter(t, "loss: 0.01, duplicate: 0.01, reorder: 0.01, reorder_delay: 2ms, delay: 1ms, jitter: 200us")
	httpOverTopo(t, a, b, 4<<20)
	t.Log("host-b:", b.DumpCounters())
}

// Reordering alone (1 % of packets held back 2 ms behind a 1 ms delay):
// with SACK, RACK's reordering window keeps it from being taken for loss.
func TestHTTPReordered(t *testing.T) {
	a, b := impairedRouter(t, "reorder: 0.01, reorder_delay: 2ms, delay: 1ms")
	httpOverTopo(t, a, b, 4<<20)
	t.Log("host-b:", b.DumpCounters())
}

// A bulk transfer both ways at once over the impaired hop.
func TestBulkBothWaysImpaired(t *testing.T) {
	a, b := impairedRouter(t, "loss: 0.02, reorder: 0.02, delay: 2ms")
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := blob(2 << 20)
	srv := make(chan *tcp.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		srv <- c
		go func() {
			io.Copy(c, c)
			c.CloseWrite()
		}()
	}()
	c, err := (&tcp.Dialer{Stack: a.Stack}).DialContext(context.Background(), "tcp4", "10.0.2.2:5001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		c.Write(data)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d of %d bytes back, %v; %s\nclient %s now %d\nserver %s now %d\n%s", len(got), len(data), err, a.DumpCounters(),
			tcp.DebugState(c.(*tcp.Conn)), tcp.WheelNow(c.(*tcp.Conn)), tcp.DebugState(<-srv), tcp.WheelNow(c.(*tcp.Conn)), b.DumpCounters())
	}
	t.Log("host-a:", a.DumpCounters())
}

var _ net.Conn = (*tcp.Conn)(nil)

func TestLossOneWay(t *testing.T) {
	a, b := impairedRouter(t, "loss: 0.02")
	ln, err := tcp.Listen(b.Stack, "tcp4", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := blob(2 << 20)
	srv := make(chan *tcp.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		srv <- c
		c.Write(data)
		c.CloseWrite()
	}()
	c, err := (&tcp.Dialer{Stack: a.Stack}).DialTCP(context.Background(), "tcp4", "10.0.2.2:5001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-srv
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d of %d bytes, %v;\nclient %s\nserver %s now=%d\n%s\n%s", len(got), len(data), err, tcp.DebugState(c), tcp.DebugState(sc), tcp.WheelNow(sc), a.DumpCounters(), b.DumpCounters())
	}
	t.Logf("%v; %s", time.Since(start), b.DumpCounters())
}
