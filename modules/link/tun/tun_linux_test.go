//go:build linux

package tun

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/internal/testenv"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
	"github.com/pipestack/pipestack/pipelinetest"
	"golang.org/x/sys/unix"
)

// needRoot needs root, /dev/net/tun and iproute2 (testenv: fails under
// CI, skips elsewhere).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Need(t, "/dev/net/tun: %v", err)
	}
	testenv.Tool(t, "ip", "iproute2")
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNetns makes a network namespace removed when the test ends.
func testNetns(t *testing.T) (ns, suffix string) {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	suffix = hex.EncodeToString(b)
	ns = "pstun-" + suffix
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns, suffix
}

// countDisp counts and releases what it is handed.
type countDisp struct{ n atomic.Uint64 }

func (d *countDisp) DeliverNetworkPackets(pkts []*pipeline.Packet) {
	var n uint64
	for _, p := range pkts {
		if p != nil {
			n++
		}
	}
	pipeline.ReleaseBatch(pkts)
	d.n.Add(n)
}

// loopback opens a created TUN device in a fresh namespace whose kernel
// side is 10.99.0.1/24 and returns it with a dispatcher counting what the
// kernel sends back.
func loopback(t *testing.T, queues int) (*Endpoint, *countDisp, string, string) {
	ns, s := testNetns(t)
	dev := "pstun" + s
	e, err := open(options{name: "t", device: dev, netns: ns, queues: queues, offload: true, coalesce: true, batch: 32, up: true, mtu: 1400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if !e.Created() || e.MTU() != 1400 {
		t.Errorf("created %v mtu %d, want a created device of MTU 1400", e.Created(), e.MTU())
	}
	ip(t, "-n", ns, "addr", "add", "10.99.0.1/24", "dev", dev)
	d := new(countDisp)
	e.Attach(d)
	return e, d, ns, dev
}

// pingBatch writes n echo requests from 10.99.0.2 to the kernel.
func pingBatch(e *Endpoint, pkts []*pipeline.Packet, req []byte) {
	pipeline.DefaultPool.GetBatch(pkts, len(req))
	for _, p := range pkts {
		p.SetData(req)
		p.SetNetworkHeader()
		p.NetProto = pipeline.IPv4ProtocolNumber
	}
	e.WritePackets(pkts)
}

func waitCount(d *countDisp, n uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for d.n.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// TestTUNLifecycle: a created device answers through the kernel, is gone
// after Close, and no goroutine outlives the endpoint.
func TestTUNLifecycle(t *testing.T) {
	needRoot(t)
	pipelinetest.CheckGoroutines(t)
	for _, queues := range []int{1, 3} {
		e, d, ns, dev := loopback(t, queues)
		if out := ip(t, "-n", ns, "-d", "link", "show", dev); !strings.Contains(out, "multi_queue") || !strings.Contains(out, "mtu 1400") {
			t.Errorf("device: %s", out)
		}
		req := pipelinetest.Echo4("10.99.0.2", "10.99.0.1", 64, 1, 1, make([]byte, 56))
		pkts := make([]*pipeline.Packet, 16)
		pingBatch(e, pkts, req)
		if !waitCount(d, 16, 5*time.Second) {
			t.Fatalf("queues %d: %d echo replies of 16", queues, d.n.Load())
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("ip", "-n", ns, "link", "show", dev).CombinedOutput(); err == nil {
			t.Errorf("device still there after Close: %s", out)
		}
		if n := e.WritePackets([]*pipeline.Packet{pipeline.DefaultPool.Get(10)}); n != 0 {
			t.Errorf("WritePackets after Close sent %d", n)
		}
	}
}

// TestTUNAttachPersistent: an existing persistent device is attached, not
// recreated, and stays when the link closes.
func TestTUNAttachPersistent(t *testing.T) {
	needRoot(t)
	ns, s := testNetns(t)
	dev := "pstunp" + s
	ip(t, "-n", ns, "tuntap", "add", "dev", dev, "mode", "tun", "multi_queue", "vnet_hdr")
	e, err := open(options{name: "t", device: dev, netns: ns, queues: 2, offload: true, batch: 8, up: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Created() {
		t.Error("an existing device reported as created")
	}
	e.Close()
	if out := ip(t, "-n", ns, "link", "show", dev); !strings.Contains(out, dev) {
		t.Errorf("persistent device gone after Close")
	}
}

// TestTUNUSODelivery: datagrams of one flow written in one batch go out as
// USO super-packets (fewer writes than datagrams) and a UDP socket behind
// the device receives every one of them, intact and in order: the kernel
// takes the super-packet and cuts it back into the datagrams.
func TestTUNUSODelivery(t *testing.T) {
	needRoot(t)
	e, _, ns, _ := loopback(t, 1)
	if !e.uso {
		testenv.Need(t, "a kernel that takes USO on TUN devices (TUN_F_USO4, Linux 6.2+; this one: %s)", kernelRelease())
	}
	var fd int
	err := netns.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
		return unix.Bind(fd, &unix.SockaddrInet4{Port: 9000, Addr: [4]byte{10, 99, 0, 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const batches, per = 20, 50
	frames0 := e.c.txFrames.Load()
	var want [][]byte
	for b := 0; b < batches; b++ {
		pkts := make([]*pipeline.Packet, per)
		for i := range pkts {
			n := b*per + i
			size := 18
			if i == per-1 {
				size = 5 + b // a shorter last one
			}
			pl := fill(size, byte(n))
			binary.BigEndian.PutUint32(pl, uint32(n))
			d := udpDgram(4000, uint16(n), pl, false)
			copy(d[12:16], []byte{10, 99, 0, 2})
			copy(d[16:20], []byte{10, 99, 0, 1})
			wire.IPv4(d).SetChecksum(0)
			wire.IPv4(d).SetChecksum(wire.IPv4(d).CalculateChecksum())
			u := wire.UDP(d[20:])
			u.SetChecksum(0)
			u.SetChecksum(u.CalculateChecksum(wire.IPv4PseudoChecksum(wire.IPv4(d), uint16(len(u)))))
			if n%3 == 0 { // a partial checksum, as read from a TUN device
				binary.BigEndian.PutUint16(d[26:], pseudoSumLen(d, wire.ProtocolUDP, len(u)))
			}
			p := packet(d)
			if n%3 == 0 {
				p.GSO = pipeline.GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 6}
			}
			pkts[i] = p
			want = append(want, pl)
		}
		if sent := e.WritePackets(pkts); sent != per {
			t.Fatalf("batch %d: sent %d of %d", b, sent, per)
		}
	}
	if frames := e.c.txFrames.Load() - frames0; frames >= batches*per/10 {
		t.Errorf("%d writes for %d datagrams: not coalesced", frames, batches*per)
	}
	buf := make([]byte, 2048)
	for i, w := range want {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %x, want %x", i, buf[:n], w)
		}
	}
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown: " + err.Error()
	}
	return unix.ByteSliceToString(u.Release[:])
}
