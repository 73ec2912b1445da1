package afpacket

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

// needRoot needs root and iproute2: the test makes a network namespace
// with a veth pair (testenv: fails under CI, skips elsewhere).
func needRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t)
	testenv.Tool(t, "ip", "iproute2")
}

// lab is a namespace of its own with a veth pair va <-> vb inside.
type lab struct {
	ns         string
	macA, macB wire.MAC
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t testing.TB) *lab {
	t.Helper()
	needRoot(t)
	var r [4]byte
	rand.Read(r[:])
	l := &lab{ns: "psaf-" + hex.EncodeToString(r[:])}
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	// No IPv6 chatter (router solicitations, MLD) on the test wire.
	run(t, "ip", "netns", "exec", l.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run(t, "ip", "-n", l.ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	run(t, "ip", "-n", l.ns, "link", "set", "va", "address", "02:00:00:00:00:0a", "up")
	run(t, "ip", "-n", l.ns, "link", "set", "vb", "address", "02:00:00:00:00:0b", "up")
	l.macA = wire.MAC{2, 0, 0, 0, 0, 0x0a}
	l.macB = wire.MAC{2, 0, 0, 0, 0, 0x0b}
	wireReady(t, l.ns, "va", "vb")
	return l
}

// wireReady returns once the kernel transmits on the devs of ns that were
// just set up. The carrier of the end set up first (va: its peer was still
// down) comes up only when the other end does, and the kernel activates
// that device's transmit queue later, from its link-watch worker: until
// then the queue is noop_qdisc, which drops every frame (counted in the
// device's TX dropped) while send and sendmmsg report it sent. Under load
// the worker waits for a CPU and the RTNL (other tests make and delete
// namespaces), long enough for a whole batch of a test to vanish. Reading
// the carrier runs the device's pending link-watch work at once (on this
// kernel, as RTM_GETLINK and ETHTOOL_GLINK do); operstate "up", which only
// that work sets, says it ran (a kernel without the sync waits for it).
func wireReady(t testing.TB, ns string, devs ...string) {
	t.Helper()
	args := []string{"netns", "exec", ns, "cat"}
	want := ""
	for _, d := range devs {
		args = append(args, "/sys/class/net/"+d+"/carrier", "/sys/class/net/"+d+"/operstate")
		want += "1\nup\n"
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err == nil && string(out) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v not operational after 5s (carrier, operstate): %v\n%s", ns, devs, err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backlogDrops is how many frames the kernel dropped because a CPU's
// backlog (where a veth queues what it carries) was full: the second
// column of /proc/net/softnet_stat, summed over the CPUs.
func backlogDrops(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			v, err := strconv.ParseUint(f[1], 16, 32)
			if err != nil {
				t.Fatalf("softnet_stat %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// open opens an endpoint on va (or dev) with o's mode settings.
func (l *lab) open(t testing.TB, dev string, o Options) *Endpoint {
	t.Helper()
	o.Device, o.Netns = dev, l.ns
	if o.Name == "" {
		o.Name = dev
	}
	ep, err := New(o)
	if err != nil {
		t.Fatalf("open %s: %v", dev, err)
	}
	t.Cleanup(func() { ep.Close() })
	return ep
}

// peer is a raw packet socket on vb, the kernel's side of the wire.
type peer struct {
	fd   int
	vnet bool
	ns   string
}

func (l *lab) peer(t testing.TB, vnet bool) *peer {
	t.Helper()
	p := &peer{fd: -1, vnet: vnet, ns: l.ns}
	err := netns.Do(l.ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		p.fd = fd
		if vnet {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return err
			}
		}
		unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		ifi, err := netInterface("vb")
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifi})
	})
	if err != nil {
		if p.fd >= 0 {
			unix.Close(p.fd)
		}
		t.Fatalf("peer socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(p.fd) })
	return p
}

func netInterface(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// send writes one frame (with a virtio-net header in front when the peer
// has vnet on and vh is given).
func (p *peer) send(t testing.TB, vh *vnetHdr, frame []byte) {
	t.Helper()
	b := frame
	if p.vnet {
		var h [vnetHdrLen]byte
		if vh != nil {
			vh.encode(h[:])
		}
		b = append(h[:], frame...)
	}
	if _, err := unix.Write(p.fd, b); err != nil {
		t.Fatalf("peer send: %v", err)
	}
}

// recv reads one frame (the virtio-net header split off), or fails after
// the timeout.
func (p *peer) recv(t testing.TB, timeout time.Duration) (vnetHdr, []byte) {
	t.Helper()
	vh, b, ok := p.tryRecv(t, timeout)
	if !ok {
		t.Fatalf("peer: nothing received in %v", timeout)
	}
	return vh, b
}

// tryRecv is recv that reports a timeout instead of failing.
func (p *peer) tryRecv(t testing.TB, timeout time.Duration) (vnetHdr, []byte, bool) {
	t.Helper()
	buf := make([]byte, 70000)
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			// Where did it go: the devices' TX dropped, the socket's drops.
			links, _ := exec.Command("ip", "-n", p.ns, "-s", "link", "show").CombinedOutput()
			st, _ := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
			t.Fatalf("peer: nothing received in %v (socket: %d received, %d dropped since the last look)\n%s", timeout, st.Packets, st.Drops, links)
		}
		if n, err := unix.Poll(fds, ms); err != nil && err != unix.EINTR {
			t.Fatalf("peer poll: %v", err)
		} else if n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("peer recv: %v", err)
		}
		b := buf[:n]
		var vh vnetHdr
		if p.vnet {
			vh = decodeVnetHdr(b)
			b = b[vnetHdrLen:]
		}
		return vh, append([]byte(nil), b...), true
	}
}

// txDropped is the kernel's tx_dropped count of dev in the lab's namespace.
func (l *lab) txDropped(t testing.TB, dev string) uint64 {
	t.Helper()
	out := run(t, "ip", "netns", "exec", l.ns, "cat", "/sys/class/net/"+dev+"/statistics/tx_dropped")
	v, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("tx_dropped of %s: %q", dev, out)
	}
	return v
}

// got is one received packet as the dispatcher saw it.
type got struct {
	frame    []byte // link header + network packet
	netProto pipeline.NetworkProtocolNumber
	pktType  pipeline.PacketType
	gso      pipeline.GSO
	csumOK   bool
}

// collector is a NetworkDispatcher keeping copies of test frames (those
// whose payload carries the marker) and releasing every packet.
type collector struct {
	mu     sync.Mutex
	marker []byte
	pkts   []got
	all    int
}

func (c *collector) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	c.mu.Lock()
	for i, p := range pkts {
		if p == nil {
			continue
		}
		pkts[i] = nil
		c.all++
		if c.marker == nil || bytes.Contains(p.Data(), c.marker) {
			f := append(append([]byte(nil), p.LinkHeader()...), p.NetworkHeader()...)
			c.pkts = append(c.pkts, got{frame: f, netProto: p.NetProto, pktType: p.PktType, gso: p.GSO, csumOK: p.CsumVerified})
		}
		p.Release()
	}
	c.mu.Unlock()
}

func (c *collector) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pkts)
}

func (c *collector) wait(t testing.TB, n int, timeout time.Duration) []got {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.n() < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d frames in %v", c.n(), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]got(nil), c.pkts...)
}

// logBuf is a logger writing into a buffer (safe for concurrent use).
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() zerolog.Logger { return zerolog.New(l) }

type variant struct {
	mode string
	vnet bool
}

func (v variant) String() string { return fmt.Sprintf("%s/vnet=%t", v.mode, v.vnet) }

var variants = []variant{{ModeMmsg, false}, {ModeMmsg, true}, {ModeRing, false}, {ModeRing, true}, {ModeBlock, false}, {ModeBlock, true}}
