package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTun2socksExample runs examples/tun2socks as a child process in the
// root namespace with its TUN device inside a client namespace of the
// test's own, whose default route goes into the device. The server is in a
// second namespace behind a veth pair whose other end is in the root
// namespace (10.231.1.1 ↔ 10.231.1.2): the proxy reaches it with the host's
// own sockets, the client only through the proxy.
//
//	client ns 10.231.2.2 ─ TUN ─ tun2socks (root ns, host sockets) ─ veth ─ server ns 10.231.1.2
//
// curl in the client downloads 20 MB intact and 16 files in parallel from
// the server, a connection to a closed port is refused at once (the
// proxy's dial is refused, it resets the client's), and UDP datagrams are
// echoed back through a flow of the UDP forwarder.
func TestTun2socksExample(t *testing.T) {
	requireLab(t, "curl (curl)", "python3 (python3)")
	s := "t2" + randSuffix()[:4]
	nsC, nsS := "ps-"+s+"c", "ps-"+s+"s"
	dev, vethR, vethS := "ps-t2s-"+s, "ps-"+s+"r", "ps-"+s+"v"
	addNetns(t, nsC)
	addNetns(t, nsS)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The veth pair: deleting the server namespace deletes both ends.
	run("link", "add", vethR, "type", "veth", "peer", "name", vethS, "netns", nsS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vethR).Run() })
	run("addr", "add", "10.231.1.1/24", "dev", vethR)
	run("link", "set", vethR, "up")
	mustNS(t, 10*time.Second, nsS, "ip", "addr", "add", "10.231.1.2/24", "dev", vethS)
	mustNS(t, 10*time.Second, nsS, "ip", "link", "set", vethS, "up")
	mustNS(t, 10*time.Second, nsS, "ip", "link", "set", "lo", "up")
	startHTTP(t, nsS, "10.231.1.2:8000")
	background(t, 2*time.Minute, "ready", nsS, nil, "python3", "-u", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.231.1.2", 7007))
print("ready")
while True:
    d, a = s.recvfrom(65535)
    s.sendto(b"echo:" + d, a)
`)

	// The example, built and run as a user would.
	bin := filepath.Join(t.TempDir(), "tun2socks")
	build := exec.Command("go", "build", "-o", bin, "./examples/tun2socks")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/tun2socks: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	proxy := exec.CommandContext(ctx, bin, "-device", dev, "-netns", nsC, "-v")
	proxy.WaitDelay = 5 * time.Second
	out := new(syncBuffer)
	proxy.Stdout, proxy.Stderr = out, out
	if err := proxy.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { proxy.Wait(); close(exited) }()
	t.Cleanup(func() {
		proxy.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("tun2socks did not exit on SIGINT:\n%s", out.String())
			cancel()
			<-exited
		}
		cancel()
		if t.Failed() {
			t.Logf("tun2socks output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "ready"); {
		select {
		case <-exited:
			t.Fatalf("tun2socks exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tun2socks not ready:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustNS(t, 10*time.Second, nsC, "ip", "addr", "add", "10.231.2.2/24", "dev", dev)
	mustNS(t, 10*time.Second, nsC, "ip", "link", "set", dev, "up")
	mustNS(t, 10*time.Second, nsC, "ip", "link", "set", "lo", "up")
	mustNS(t, 10*time.Second, nsC, "ip", "route", "add", "default", "dev", dev)

	// The server is reachable from the client only through the proxy.
	const size = 20 << 20
	start := time.Now()
	got := mustNS(t, 90*time.Second, nsC, "sh", "-c",
		fmt.Sprintf("curl -sS --max-time 60 'http://10.231.1.2:8000/blob?size=%d&seed=5' | sha256sum", size))
	if f := strings.Fields(got); len(f) == 0 || f[0] != blobSHA256(size, 5) {
		t.Fatalf("curl through tun2socks: sha256 %q, want %s", got, blobSHA256(size, 5))
	}
	t.Logf("curl: 20 MB intact through tun2socks in %v", time.Since(start))

	args := []string{"curl", "-sS", "--max-time", "60", "--parallel", "--parallel-max", "16", "-w", "%{http_code} %{size_download}\n"}
	for i := 0; i < 16; i++ {
		args = append(args, "-o", "/dev/null", fmt.Sprintf("http://10.231.1.2:8000/blob?size=%d&seed=%d", 50000+i*30011, i))
	}
	ok := 0
	for _, l := range lines(mustNS(t, 90*time.Second, nsC, args...)) {
		var code, n int
		fmt.Sscanf(l, "%d %d", &code, &n)
		if code == 200 && n >= 50000 {
			ok++
		}
	}
	if ok != 16 {
		t.Fatalf("%d of 16 parallel requests answered in full", ok)
	}

	// A closed port: the proxy's dial is refused, the client's connect too.
	start = time.Now()
	res, err := ns(t, 30*time.Second, nsC, "curl", "-sS", "--max-time", "20", "http://10.231.1.2:8001/")
	// curl 8 says "Couldn't connect to server" for ECONNREFUSED, older
	// ones "Connection refused"; exit code 7 is both.
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || !(strings.Contains(res, "refused") || strings.Contains(res, "Couldn't connect")) {
		t.Fatalf("curl to a closed port: %v %q, want connection refused", err, res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refused after %v, want at once", d)
	}

	// UDP: a flow of the UDP forwarder, echoed by the server.
	res = mustNS(t, 30*time.Second, nsC, "python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("10.231.1.2", 7007))
for i in range(5):
    s.send(b"d%d" % i)
    print(s.recv(100).decode(), s.getpeername()[0])
`)
	if want := "echo:d0 10.231.1.2\necho:d1 10.231.1.2\necho:d2 10.231.1.2\necho:d3 10.231.1.2\necho:d4 10.231.1.2\n"; res != want {
		t.Fatalf("UDP through tun2socks: %q, want %q", res, want)
	}
	if !strings.Contains(out.String(), "udp 10.231.2.2:") || !strings.Contains(out.String(), "tcp 10.231.2.2:") {
		t.Fatalf("the proxy logged no TCP or UDP flow:\n%s", out.String())
	}
}
