package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/pipestack/pipestack/modules/ipv4"
	_ "github.com/pipestack/pipestack/modules/link/tun"
	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
)

// transport.tcp against Linux: a stack embedded in this test process owns
// a TUN device inside a namespace of the test's own (ps-tc…, device
// ps-tcp-tc…); the namespace's kernel side is 10.199.0.1, the stack
// 10.199.0.2. curl in the namespace downloads from our net/http server
// (20 MB intact, then 32 requests 16 at a time), and our http.Client
// downloads from and uploads to a Linux (Go net/http on the kernel's TCP)
// server in the namespace.
func newTCPStack(t *testing.T, offload bool) (*pipeline.Stack, string) {
	t.Helper()
	return tunStack{tag: "tc", dev: "tcp", name: "tcp-e2e", subnet: "10.199.0",
		modules: "network.ipv4, transport.tcp", offload: offload}.start(t)
}

// serveBlobs serves GET /blob?size=N&seed=S (the helper's content) on our
// stack at :80.
func serveBlobs(t *testing.T, st *pipeline.Stack) {
	t.Helper()
	ln, err := tcp.Listen(st, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.CopyN(w, blob(seed), size)
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

func TestTCPStackCurl(t *testing.T) {
	requireLab(t, "curl (curl)")
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			st, netns := newTCPStack(t, offload)
			serveBlobs(t, st)
			const size = 20 << 20
			start := time.Now()
			out := mustNS(t, 90*time.Second, netns, "sh", "-c",
				fmt.Sprintf("curl -sS --max-time 60 'http://10.199.0.2/blob?size=%d&seed=3' | sha256sum", size))
			if got, want := strings.Fields(out)[0], blobSHA256(size, 3); got != want {
				t.Fatalf("curl: sha256 %s, want %s\n%s", got, want, out)
			}
			t.Logf("curl: 20 MB intact in %v", time.Since(start))
			var urls []string
			for i := 0; i < 32; i++ {
				urls = append(urls, fmt.Sprintf("http://10.199.0.2/blob?size=%d&seed=%d", 10000+i*20011, i))
			}
			args := []string{"curl", "-sS", "--max-time", "60", "--parallel", "--parallel-max", "16", "-w", "%{http_code} %{size_download}\n"}
			for _, u := range urls {
				args = append(args, "-o", "/dev/null", u)
			}
			out = mustNS(t, 90*time.Second, netns, args...)
			ok := 0
			for _, l := range lines(out) {
				var code, n int
				fmt.Sscanf(l, "%d %d", &code, &n)
				if code == 200 && n >= 10000 {
					ok++
				}
			}
			if ok != 32 {
				t.Fatalf("%d of 32 parallel requests answered in full:\n%s", ok, out)
			}
		})
	}
}

func TestTCPStackClient(t *testing.T) {
	requireLab(t)
	st, netns := newTCPStack(t, true)
	startHTTP(t, netns, "10.199.0.1:8000")
	d := &tcp.Dialer{Stack: st}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 60 * time.Second}
	defer c.CloseIdleConnections()
	const size = 20 << 20
	start := time.Now()
	resp, err := c.Get(fmt.Sprintf("http://10.199.0.1:8000/blob?size=%d&seed=9", size))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != blobSHA256(size, 9) {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	t.Logf("download: 20 MB intact in %v", time.Since(start))
	// Uploads, several at once.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			up := int64(1<<20 + i*77777)
			req, _ := http.NewRequest("PUT", "http://10.199.0.1:8000/sha256", io.LimitReader(blob(uint64(20+i)), up))
			req.ContentLength = up
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := strings.TrimSpace(string(body)); got != blobSHA256(up, uint64(20+i)) {
				t.Errorf("upload %d: server saw sha256 %s", i, got)
			}
		}(i)
	}
	wg.Wait()
}
