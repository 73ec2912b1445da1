package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/pipeline"
)

// Helpers: the lab (scripts/lab.sh with a random suffix), pipectl built once
// and run as a child process, commands inside the host namespaces, and a tiny
// HTTP server that is this test binary re-executed inside a namespace.

// helperEnv selects the helper mode of the test binary (see TestMain).
const helperEnv = "PIPESTACK_E2E_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "http":
		serveHTTP(os.Getenv("PIPESTACK_E2E_ADDR"))
		return
	case "listen":
		serveListen(os.Getenv("PIPESTACK_E2E_ADDR"))
		return
	}
	if wd, err := os.Getwd(); err == nil {
		root = filepath.Dir(wd)
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// need fails the test under CI (CI non-empty), where every requirement
// must be met, and skips it elsewhere (internal/testenv).
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Need(t, format, args...)
}

// requireLab checks what every test here needs: Linux, root, /dev/net/tun,
// iproute2 and the tools named (Debian package in parentheses).
func requireLab(t *testing.T, tools ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if testing.Short() {
		t.Skip("e2e: not in -short")
	}
	if os.Geteuid() != 0 {
		need(t, "root: network namespaces and TUN devices (run the tests as root, as CI does)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		need(t, "root: /dev/net/tun: %v", err)
	}
	for _, tool := range append([]string{"ip (iproute2)"}, tools...) {
		name, pkg, _ := strings.Cut(tool, " ")
		if _, err := exec.LookPath(name); err != nil {
			need(t, "%s: apt-get install %s", name, strings.Trim(pkg, "()"))
		}
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	pipectl   string
	buildErr  error
)

// root is the module root (this package is e2e/ in it), set by TestMain.
var root string

func repoRoot(t *testing.T) string {
	t.Helper()
	if root == "" {
		t.Fatal("module root unknown")
	}
	return root
}

// buildPipectl builds cmd/pipectl once per test binary, pure Go
// (CGO_ENABLED=0) as the demo does: a cgo binary cannot drop its privileges
// after opening the links and runs with all of them.
func buildPipectl(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pipestack-e2e-")
		if buildErr != nil {
			return
		}
		pipectl = filepath.Join(buildDir, "pipectl")
		cmd := exec.Command("go", "build", "-o", pipectl, "./cmd/pipectl")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/pipectl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pipectl
}

// lab is one instance of scripts/lab.sh's lab (mode tun or afpacket),
// with unique names.
type lab struct {
	t          *testing.T
	mode       string
	suffix     string
	nsA, nsB   string
	tunA, tunB string // tun: the hosts' TUN devices
	nsR        string // afpacket: the router's namespace
	ra, rb     string // afpacket: the router's veth ends, in nsR
	va, vb     string // afpacket: the hosts' veth ends
}

func randSuffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newLab runs `scripts/lab.sh up tun` with a fresh suffix and removes it all
// when the test ends, passed or failed.
func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabMode(t, "tun")
}

// newLabMode is newLab for a lab.sh mode (tun, afpacket, kernel).
func newLabMode(t *testing.T, mode string) *lab {
	t.Helper()
	return newLabSuffix(t, mode, randSuffix())
}

// newLabSuffix is newLabMode with the names' suffix given (at most 6
// bytes: device names stay within 15).
func newLabSuffix(t *testing.T, mode, s string) *lab {
	t.Helper()
	if mode == "afpacket" {
		if _, err := exec.LookPath("nft"); err != nil {
			need(t, "nft: apt-get install nftables (lab.sh afpacket drops the router ends' ingress)")
		}
	}
	l := &lab{t: t, mode: mode, suffix: s, nsA: "ps-a" + s, nsB: "ps-b" + s, tunA: "ps-tun-a" + s, tunB: "ps-tun-b" + s,
		nsR: "ps-r" + s, ra: "ps-ra" + s, rb: "ps-rb" + s, va: "ps-va" + s, vb: "ps-vb" + s}
	script := filepath.Join(repoRoot(t), "scripts", "lab.sh")
	run := func(args ...string) error {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "LAB_SUFFIX="+s)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := run("down", mode); err != nil {
			t.Error(err)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(s)) {
			t.Errorf("lab.sh down left namespaces behind:\n%s", out)
		}
	})
	if err := run("up", mode); err != nil {
		t.Fatal(err)
	}
	return l
}

// addNetns adds the network namespace name and deletes it when the test
// ends (failing the test when that fails).
func addNetns(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
}

// tunStack describes a stack embedded in the test process that owns a TUN
// device inside a namespace of the test's own: ps-<tag><4 random> with
// the device ps-<dev>-<tag><4 random>; the namespace's kernel side is
// <subnet>.1/24, the stack <subnet>.2, its default route via the kernel.
type tunStack struct {
	tag, dev string // two letters; a few letters (device names stay within 15)
	name     string // the pipeline's name, and its file's (<name>.yaml)
	subnet   string // the /24's first three octets
	modules  string // the pipeline's modules list, without its brackets
	offload  bool   // the TUN link's virtio-net offloads
}

// start builds the namespace and the stack (both removed when the test
// ends) and returns the stack and the namespace's name.
func (ts tunStack) start(t *testing.T) (*pipeline.Stack, string) {
	t.Helper()
	s := ts.tag + randSuffix()[:4]
	netns, dev := "ps-"+s, "ps-"+ts.dev+"-"+s
	addNetns(t, netns)
	cfg, err := pipeline.ParseConfig(ts.name+".yaml", []byte(fmt.Sprintf(`
name: %s
modules: [%s]
links:
  - {name: t, module: link.tun, device: %s, netns: %s, offload: %v, mtu: 1500, addresses: [%s.2/24]}
routes:
  - {to: default, via: %s.1, link: t}
`, ts.name, ts.modules, dev, netns, ts.offload, ts.subnet, ts.subnet)))
	if err != nil {
		t.Fatal(err)
	}
	st := pipeline.New(pipeline.Options{})
	if _, err := st.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mustNS(t, 10*time.Second, netns, "ip", "addr", "add", ts.subnet+".1/24", "dev", dev)
	mustNS(t, 10*time.Second, netns, "ip", "link", "set", dev, "up")
	mustNS(t, 10*time.Second, netns, "ip", "link", "set", "lo", "up")
	return st, netns
}

// devA and devB are the hosts' kernel-side devices (in nsA, nsB).
func (l *lab) devA() string {
	if l.mode == "afpacket" {
		return l.va
	}
	return l.tunA
}

func (l *lab) devB() string {
	if l.mode == "afpacket" {
		return l.vb
	}
	return l.tunB
}

// routerConfig is the lab's router pipeline (the links and addresses of
// pipelines/router.yaml — without its conntrack module and rules: the
// plain router each test adds its own sections to — or of
// router-afpacket.yaml, with this lab's names: dual-stack); linkB adds
// keys to link b.
func (l *lab) routerConfig(linkB string) string {
	return l.routerConfigLinks("", linkB)
}

// routerConfigLinks is routerConfig with keys added to both links (both)
// and to link b.
func (l *lab) routerConfigLinks(both, linkB string) string {
	if l.mode == "afpacket" {
		return fmt.Sprintf(`# e2e router for lab %[1]s (see pipelines/router-afpacket.yaml)
name: e2e-%[1]s
log: {level: info, format: json}
modules: [network.ipv4, network.arp, network.ipv6]
links:
  - {name: a, module: link.afpacket, device: %[2]s, netns: %[3]s, addresses: [10.10.1.1/24, "fd00:10:1::1/64"]%[5]s}
  - {name: b, module: link.afpacket, device: %[4]s, netns: %[3]s, addresses: [10.10.2.1/24, "fd00:10:2::1/64"]%[5]s%[6]s}
forwarding: {ipv4: true, ipv6: true}
`, l.suffix, l.ra, l.nsR, l.rb, both, linkB)
	}
	return fmt.Sprintf(`# e2e router for lab %[1]s (see pipelines/router.yaml)
name: e2e-%[1]s
log: {level: info, format: json}
modules: [network.ipv4, network.ipv6]
links:
  - {name: a, module: link.tun, device: %[2]s, netns: %[3]s, queues: 2, addresses: [10.10.1.1/24, "fd00:10:1::1/64"]%[7]s}
  - {name: b, module: link.tun, device: %[4]s, netns: %[5]s, queues: 2, addresses: [10.10.2.1/24, "fd00:10:2::1/64"]%[7]s%[6]s}
forwarding: {ipv4: true, ipv6: true}
`, l.suffix, l.tunA, l.nsA, l.tunB, l.nsB, linkB, both)
}

// routerConfigWith is routerConfig("") with module added at the end of
// its modules list (netfilter.conntrack and its settings, say).
func (l *lab) routerConfigWith(module string) string {
	cfg := l.routerConfig("")
	const list = "network.ipv6]\n"
	if !strings.Contains(cfg, list) {
		l.t.Fatalf("no modules list ending in network.ipv6 in the router's pipeline:\n%s", cfg)
	}
	return strings.Replace(cfg, list, "network.ipv6, "+module+"]\n", 1)
}

// router is a running `pipectl run`.
type router struct {
	t    *testing.T
	file string // the pipeline file it runs
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// startRouter writes cfg to a file and runs pipectl on it until the test
// ends (SIGTERM, then it must exit 0 within 10 s).
func startRouter(t *testing.T, cfg string) *router {
	t.Helper()
	bin := buildPipectl(t)
	file := filepath.Join(t.TempDir(), "router.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &router{t: t, file: file, log: new(syncBuffer), done: make(chan error, 1)}
	r.cmd = exec.Command(bin, "run", "--stats-interval", "500ms", file)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			if err := r.stop(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("router log (without the stats lines):\n%s", r.logWithoutStats())
		}
	})
	r.waitLog(`"message":"running"`, 15*time.Second)
	return r
}

// logWithoutStats is the router's log without the periodic counter lines.
func (r *router) logWithoutStats() string {
	var b strings.Builder
	for _, line := range strings.Split(r.log.String(), "\n") {
		if !strings.Contains(line, `counters"}`) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// waitLog waits until the router's log contains s.
func (r *router) waitLog(s string, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(r.log.String(), s) {
		select {
		case err := <-r.done:
			r.done <- err
			r.t.Fatalf("pipectl exited (%v) before logging %s:\n%s", err, s, r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %s in the router log after %v:\n%s", s, d, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (r *router) stop() error {
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("pipectl after SIGTERM: %v", err)
		}
		return nil
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		return errors.New("pipectl did not stop within 10 s of SIGTERM (killed)")
	}
}

// control runs `pipectl CMD [ARGS] FILE` against the router's control
// socket (the default one, /run/pipestack/<name>.sock, found through the
// file) and returns its output.
func (r *router) control(cmd string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, buildPipectl(r.t), append(append([]string{cmd}, args...), r.file)...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pipectl %s: %v\n%s", cmd, err, out)
	}
	return string(out), nil
}

// routerStats is the part of `pipectl stats -json` the tests read.
type routerStats struct {
	Generation uint64 `json:"generation"`
	Links      []struct {
		Name      string `json:"name"`
		RxPackets uint64 `json:"rx_packets"`
		RxDropped uint64 `json:"rx_dropped"`
		RxUnknown uint64 `json:"rx_unknown_protocol"`
		TxPackets uint64 `json:"tx_packets"`
		TxDropped uint64 `json:"tx_dropped"`
		Device    []struct {
			Name  string `json:"name"`
			Value uint64 `json:"value"`
		} `json:"device"`
	} `json:"links"`
	Sets []struct {
		Name   string `json:"name"`
		Values []struct {
			Name  string `json:"name"`
			Value uint64 `json:"value"`
		} `json:"values"`
	} `json:"counters"`
}

// stats asks the router for its counters (pipectl stats -json).
func (r *router) stats() *routerStats {
	r.t.Helper()
	out, err := r.control("stats", "-json")
	if err != nil {
		r.t.Fatal(err)
	}
	var rep struct {
		Stats *routerStats `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Stats == nil {
		r.t.Fatalf("pipectl stats -json: %v\n%s", err, out)
	}
	return rep.Stats
}

// device returns link's driver counters (LinkCounterReader) by name.
func (s *routerStats) device(link string) map[string]uint64 {
	m := map[string]uint64{}
	for _, l := range s.Links {
		if l.Name == link {
			for _, c := range l.Device {
				m[c.Name] = c.Value
			}
		}
	}
	return m
}

// nic returns link's stack-side counters (rx_packets, rx_dropped, ...) by
// name.
func (s *routerStats) nic(link string) map[string]uint64 {
	for _, l := range s.Links {
		if l.Name == link {
			return map[string]uint64{"rx_packets": l.RxPackets, "rx_dropped": l.RxDropped,
				"rx_unknown_protocol": l.RxUnknown, "tx_packets": l.TxPackets, "tx_dropped": l.TxDropped}
		}
	}
	return nil
}

// set returns a protocol counter set ("ipv4", "arp") by name.
func (s *routerStats) set(name string) map[string]uint64 {
	m := map[string]uint64{}
	for _, cs := range s.Sets {
		if cs.Name == name {
			for _, c := range cs.Values {
				m[c.Name] = c.Value
			}
		}
	}
	return m
}

// rewrite replaces the router's pipeline file atomically (a reload must
// never read half a file).
func (r *router) rewrite(cfg string) {
	r.t.Helper()
	tmp := r.file + ".new"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		r.t.Fatal(err)
	}
}

var counterRE = regexp.MustCompile(`"([a-z_0-9]+)":([0-9]+)`)

// counters returns the latest logged values of a counter set ("tun a",
// "ipv4") from the router's stats lines.
func (r *router) counters(set string) map[string]uint64 {
	out := map[string]uint64{}
	key := fmt.Sprintf(`"set":%q`, set)
	for _, line := range strings.Split(r.log.String(), "\n") {
		if !strings.Contains(line, key) {
			continue
		}
		for _, m := range counterRE.FindAllStringSubmatch(line, -1) {
			v, _ := strconv.ParseUint(m[2], 10, 64)
			out[m[1]] = v
		}
	}
	return out
}

// waitCounter waits (at most d) for counter name of set to reach at least min.
func (r *router) waitCounter(set, name string, min uint64, d time.Duration) uint64 {
	deadline := time.Now().Add(d)
	for {
		v := r.counters(set)[name]
		if v >= min || time.Now().After(deadline) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ns runs a command in a namespace with a time limit and returns its
// combined output.
func ns(t *testing.T, timeout time.Duration, netns string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: timed out after %v", strings.Join(args, " "), timeout)
	}
	return string(out), err
}

// mustNS is ns that fails the test on error.
func mustNS(t *testing.T, timeout time.Duration, netns string, args ...string) string {
	t.Helper()
	out, err := ns(t, timeout, netns, args...)
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", netns, strings.Join(args, " "), err, out)
	}
	return out
}

// background starts a command in a namespace that runs until the test
// ends (or timeout), waiting until its output contains ready.
func background(t *testing.T, timeout time.Duration, ready string, netns string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = time.Second
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), ready) {
		select {
		case <-done:
			t.Fatalf("%s exited before it was ready:\n%s", strings.Join(args, " "), out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 10 s:\n%s", strings.Join(args, " "), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startHTTP runs the helper HTTP server (this binary) in netns on addr.
func startHTTP(t *testing.T, netns, addr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	background(t, 2*time.Minute, "ready", netns,
		[]string{helperEnv + "=http", "PIPESTACK_E2E_ADDR=" + addr}, exe, "-test.run=^$")
}

// blob is the deterministic content the helper serves at /blob?size=N&seed=S.
func blob(seed uint64) io.Reader {
	var key [32]byte
	key[0] = byte(seed)
	return mrand.NewChaCha8(key)
}

// blobSHA256 is the hex SHA-256 of the first size bytes of blob(seed).
func blobSHA256(size int64, seed uint64) string {
	h := sha256.New()
	io.CopyN(h, blob(seed), size)
	return hex.EncodeToString(h.Sum(nil))
}

// serveHTTP is the helper server: GET /blob?size=N&seed=S streams blob
// bytes, GET /whoami answers with the client's address and port, PUT /sha256 answers with the hex SHA-256 of the body.
func serveHTTP(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.CopyN(w, blob(seed), size)
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.RemoteAddr) // the client address the server sees (NAT tests)
	})
	mux.HandleFunc("PUT /sha256", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		io.Copy(h, r.Body)
		fmt.Fprintln(w, hex.EncodeToString(h.Sum(nil)))
	})
	fmt.Println("ready")
	http.Serve(ln, mux)
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines splits output into trimmed non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func copyN(w io.Writer, r io.Reader, n int64) (int64, error) { return io.CopyN(w, r, n) }
