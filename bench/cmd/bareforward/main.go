//go:build linux

// Command bareforward is a bare userspace IPv4 forwarder: the smallest Go
// program that moves packets between the two sides of the lab
// (scripts/lab.sh), and nothing else. It is the baseline the figures of
// bench/realnet.sh are compared against: the issue quotes the CPU time per
// packet of "bare" Go forwarders — "TUN with vnet-header pass-through" and
// "AF_PACKET with PACKET_VNET_HDR" — and this is those forwarders, so the
// figure can be measured again on the machine at hand rather than taken
// on trust.
//
// There is one goroutine per direction, locked to its OS thread, doing a
// blocking read(2)/recvfrom(2) of one packet into one buffer and a
// write(2)/sendto(2) of the same bytes to the other side; the file
// descriptors stay in blocking mode and are used through raw syscalls, out
// of the Go netpoller. No batching, no rings, no TTL or checksum work: the
// virtio-net header the kernel puts in front of each packet goes out
// unchanged, so TCP/UDP segmentation-offload super-packets and
// partial checksums are passed through whole.
//
//	bareforward -mode tun -a ps-tun-a@ps-a -b ps-tun-b@ps-b
//	bareforward -mode afpacket -a ps-ra@ps-r -b ps-rb@ps-r \
//		-amac 0a:..:01 -bmac 0a:..:02 -aip 10.10.1.1 -bip 10.10.2.1
//
// tun: attaches to the existing TUN devices (`lab.sh up tun`: multi_queue,
// vnet_hdr) with IFF_TUN|IFF_NO_PI|IFF_VNET_HDR|IFF_MULTI_QUEUE, sets a
// 10-byte virtio_net_hdr and the offloads TUN_F_CSUM, TSO4, TSO6, TSO_ECN
// and (where the kernel has them) USO4 and USO6, and sets the devices up.
// A TUN device is point-to-point L3: packets are copied as they are.
//
// afpacket: one AF_PACKET SOCK_RAW socket per side (`lab.sh up afpacket`:
// the router ends ps-ra and ps-rb of the veth pairs, in ps-r) with
// PACKET_VNET_HDR and PACKET_IGNORE_OUTGOING, bound to the device. IPv4
// frames addressed to the device get their MAC addresses rewritten (source:
// the far device's own MAC; destination: -amac or -bmac, the host on the
// far side) and go out on the other socket; ARP requests for -aip / -bip
// (the router's addresses) are answered with the device's MAC, so the
// hosts resolve the router on their own. Everything else is dropped.
//
// -threads 1 (tun only) moves both directions on one thread instead:
// non-blocking reads of each device until it is empty, poll(2) on both when
// neither has anything. Tried for a single TCP stream through the lab: a
// few per cent more than two threads (15.3–16.8 against 14.3–15.9 Gbit/s,
// two alternations), nowhere near the kernel's 19–20; busy polling without
// the poll was worse (13–15: the spinning thread takes the CPU the hosts'
// TCP needs on a 2-core machine).
//
// -a and -b name the devices as DEV@NETNS (NETNS a name under
// /var/run/netns, or a path; without @NETNS the device is in the current
// namespace). The program prints "running" once both directions forward
// and, on SIGTERM or SIGINT, "forwarded N": the packets written, both
// directions together (a segmentation-offload super-packet counts once).
//
// bench/realnet.sh builds it and runs it as the modes bare-tun and
// bare-afpacket, over the same labs as the pipestack router, waits for
// "running" and measures the same things: iperf3 TCP, the small-UDP rate,
// and CPU time per packet from /proc/PID/stat over the UDP run (the
// packets counted at B, since this program keeps no live counters).
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pipestack/pipestack/bench/internal/labnet"
	"golang.org/x/sys/unix"
)

const (
	vnetHdrLen = 10 // struct virtio_net_hdr
	ethHdrLen  = 14
	maxPacket  = 65535

	tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tunUSO      = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// counter is one direction's count of packets written, and of write
// errors with the last one; only that direction's goroutine writes it.
// The padding keeps the two directions' counters off each other's cache
// lines.
type counter struct {
	n    atomic.Uint64
	errs atomic.Uint64
	last atomic.Value // errBox
	_    [128]byte
}

type errBox struct{ err error }

var (
	counters [2]counter
	ready    sync.WaitGroup
)

func main() {
	mode := flag.String("mode", "tun", "tun or afpacket")
	aSpec := flag.String("a", "", "side A: DEV@NETNS")
	bSpec := flag.String("b", "", "side B: DEV@NETNS")
	aMAC := flag.String("amac", "", "afpacket: MAC of the host on side A")
	bMAC := flag.String("bmac", "", "afpacket: MAC of the host on side B")
	aIP := flag.String("aip", "10.10.1.1", "afpacket: router address answered in ARP on side A")
	bIP := flag.String("bip", "10.10.2.1", "afpacket: router address answered in ARP on side B")
	threads := flag.Int("threads", 2, "tun: 2 = a thread per direction (blocking reads); 1 = one thread polls both devices")
	flag.Parse()
	if *aSpec == "" || *bSpec == "" || flag.NArg() > 0 {
		fatalf("usage: bareforward -mode tun|afpacket -a DEV@NETNS -b DEV@NETNS [-amac MAC -bmac MAC -aip IP -bip IP]")
	}
	aDev, aNS := labnet.SplitSpec(*aSpec)
	bDev, bNS := labnet.SplitSpec(*bSpec)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)

	switch *mode {
	case "tun":
		fa, err := openTUN(aDev, aNS)
		if err != nil {
			fatalf("%s: %v", *aSpec, err)
		}
		fb, err := openTUN(bDev, bNS)
		if err != nil {
			fatalf("%s: %v", *bSpec, err)
		}
		if *threads == 1 {
			ready.Add(1)
			go tunLoop1(fa, fb)
			break
		}
		ready.Add(2)
		go tunLoop(fa, fb, &counters[0])
		go tunLoop(fb, fa, &counters[1])
	case "afpacket":
		var sides [2]*side
		for i, s := range []struct{ dev, ns, mac, ip string }{{aDev, aNS, *aMAC, *aIP}, {bDev, bNS, *bMAC, *bIP}} {
			hw, err := net.ParseMAC(s.mac)
			if err != nil || len(hw) != 6 {
				fatalf("-%cmac %q: need the 6-byte MAC of the host on side %c", 'a'+i, s.mac, 'A'+i)
			}
			ip, err := netip.ParseAddr(s.ip)
			if err != nil || !ip.Is4() {
				fatalf("-%cip %q: need an IPv4 address", 'a'+i, s.ip)
			}
			sd := &side{ip: ip.As4()}
			copy(sd.peerMAC[:], hw)
			if err := labnet.InNetns(s.ns, func() error { return sd.open(s.dev) }); err != nil {
				fatalf("%s@%s: %v", s.dev, s.ns, err)
			}
			sides[i] = sd
		}
		ready.Add(2)
		go packetLoop(sides[0], sides[1], &counters[0])
		go packetLoop(sides[1], sides[0], &counters[1])
	default:
		fatalf("-mode %q: tun or afpacket", *mode)
	}
	ready.Wait()
	fmt.Println("running")

	<-sigc
	total := counters[0].n.Load() + counters[1].n.Load()
	fmt.Printf("forwarded %d\n", total)
	for i := range counters {
		c := &counters[i]
		if e := c.errs.Load(); e > 0 {
			fmt.Fprintf(os.Stderr, "bareforward: direction %c: %d write errors, last: %v\n", "AB"[i], e, c.last.Load().(errBox).err)
		}
	}
	os.Exit(0)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bareforward: "+format+"\n", args...)
	os.Exit(1)
}

// openTUN attaches a queue to the existing TUN device dev in netns ns, with
// the virtio-net header and the offloads on, and sets the device up.
func openTUN(dev, ns string) (int, error) {
	fd := -1
	err := labnet.InNetns(ns, func() error {
		var err error
		fd, err = labnet.AttachTUN(dev, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_VNET_HDR|unix.IFF_MULTI_QUEUE)
		if err != nil {
			return err
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
			return fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
		}
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads|tunUSO); errors.Is(err, unix.EINVAL) {
			// A kernel without USO (before 6.2).
			if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
				return fmt.Errorf("TUNSETOFFLOAD: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
		return labnet.SetUp(dev)
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// tunLoop moves packets from TUN queue in to TUN queue out: one blocking
// read, one write of the same bytes, virtio-net header included.
func tunLoop(in, out int, c *counter) {
	runtime.LockOSThread()
	buf := make([]byte, vnetHdrLen+maxPacket)
	ready.Done()
	for {
		n, err := unix.Read(in, buf)
		if err != nil {
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			fatalf("tun read: %v", err)
		}
		if n <= vnetHdrLen {
			continue
		}
		if _, err := unix.Write(out, buf[:n]); err != nil {
			c.fail(err)
			continue
		}
		c.n.Add(1)
	}
}

// tunLoop1 moves packets both ways on one thread: non-blocking reads of
// each device until it is empty, each packet written to the other one, and
// poll(2) on both only when neither had anything.
func tunLoop1(a, b int) {
	runtime.LockOSThread()
	for _, fd := range []int{a, b} {
		if err := unix.SetNonblock(fd, true); err != nil {
			fatalf("tun nonblock: %v", err)
		}
	}
	buf := make([]byte, vnetHdrLen+maxPacket)
	fds := []unix.PollFd{{Fd: int32(a), Events: unix.POLLIN}, {Fd: int32(b), Events: unix.POLLIN}}
	pair := [2][2]int{{a, b}, {b, a}}
	ready.Done()
	for {
		moved := false
		for i, p := range pair {
			for k := 0; k < 64; k++ {
				n, err := unix.Read(p[0], buf)
				if err != nil {
					if err == unix.EAGAIN || err == unix.EINTR {
						break
					}
					fatalf("tun read: %v", err)
				}
				if n <= vnetHdrLen {
					continue
				}
				moved = true
				if _, err := unix.Write(p[1], buf[:n]); err != nil {
					counters[i].fail(err)
					continue
				}
				counters[i].n.Add(1)
			}
		}
		if !moved {
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				fatalf("poll: %v", err)
			}
		}
	}
}

func (c *counter) fail(err error) {
	c.errs.Add(1)
	c.last.Store(errBox{err})
}

// side is one AF_PACKET side: its socket, its device's MAC, the MAC of the
// host behind it and the router address answered in ARP there.
type side struct {
	fd      int
	ifindex int
	mac     [6]byte // the device's own
	peerMAC [6]byte // the host's
	ip      [4]byte
}

// open makes the side's socket, in the current namespace, bound to dev.
func (s *side) open(dev string) error {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("%s: no Ethernet address", dev)
	}
	s.ifindex = ifi.Index
	copy(s.mac[:], ifi.HardwareAddr)
	// Protocol 0: the socket receives nothing until bind names the device
	// (with ETH_P_ALL), so no frame of another device is queued meanwhile.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	s.fd = fd
	const bufSize = 4 << 20
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufSize); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	// Older kernels lack it; the loop skips PACKET_OUTGOING frames anyway.
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: s.ifindex}); err != nil {
		return fmt.Errorf("bind to %s: %w", dev, err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetLoop moves frames from side in to side out: one blocking recvfrom,
// the MAC addresses rewritten, one send of the same buffer, virtio-net
// header included. ARP requests for in's address are answered on in.
func packetLoop(in, out *side, c *counter) {
	runtime.LockOSThread()
	// Room for a 64 KiB IP packet behind the Ethernet header.
	buf := make([]byte, vnetHdrLen+ethHdrLen+maxPacket)
	var sa unix.RawSockaddrLinklayer
	ready.Done()
	for {
		salen := uint32(unsafe.Sizeof(sa))
		// MSG_TRUNC: the frame's real length, to drop a truncated one.
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(in.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_TRUNC, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
		if e != 0 {
			if e == unix.EINTR || e == unix.EAGAIN {
				continue
			}
			fatalf("recvfrom: %v", e)
		}
		n := int(r)
		if n < vnetHdrLen+ethHdrLen || n > len(buf) || sa.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frame := buf[vnetHdrLen:n]
		switch binary.BigEndian.Uint16(frame[12:14]) {
		case unix.ETH_P_IP:
			if sa.Pkttype != unix.PACKET_HOST {
				continue // not addressed to us (broadcast, multicast, another host)
			}
			copy(frame[0:6], out.peerMAC[:])
			copy(frame[6:12], out.mac[:])
			_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(out.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(n), 0, 0, 0)
			if e != 0 {
				c.fail(e)
				continue
			}
			c.n.Add(1)
		case unix.ETH_P_ARP:
			in.answerARP(buf[:n])
		}
	}
}

// answerARP answers an Ethernet/IPv4 ARP request for s's address, given the
// received buffer (virtio-net header, frame), with a reply built in place.
func (s *side) answerARP(b []byte) {
	f := b[vnetHdrLen:]
	if len(f) < ethHdrLen+28 {
		return
	}
	a := f[ethHdrLen : ethHdrLen+28]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != unix.ETH_P_IP ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:8]) != 1 || [4]byte(a[24:28]) != s.ip {
		return
	}
	var sha [6]byte
	var spa [4]byte
	copy(sha[:], a[8:14])
	copy(spa[:], a[14:18])
	clear(b[:vnetHdrLen])
	copy(f[0:6], sha[:])
	copy(f[6:12], s.mac[:])
	binary.BigEndian.PutUint16(a[6:8], 2) // reply
	copy(a[8:14], s.mac[:])
	copy(a[14:18], s.ip[:])
	copy(a[18:24], sha[:])
	copy(a[24:28], spa[:])
	n := vnetHdrLen + ethHdrLen + 28
	unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(n), 0, 0, 0)
}
