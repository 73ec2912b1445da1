package tun

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/internal/netns"
	"github.com/pipestack/pipestack/pipelinetest"
)

func TestNetDevTxDropped(t *testing.T) {
	text := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
pstun1: 1 2 3 4 5 6 7 8 9 10 11 12345 13 14 15 16
pstun12:100 2 3 4 5 6 7 8 9 10 11 77 13 14 15 16
short: 1 2 3
`)
	for _, c := range []struct {
		dev  string
		want uint64
		ok   bool
	}{{"pstun1", 12345, true}, {"pstun12", 77, true}, {"lo", 0, true}, {"short", 0, false}, {"none", 0, false}} {
		if v, ok := netDevTxDropped(text, c.dev); v != c.want || ok != c.ok {
			t.Errorf("%s: %d %t, want %d %t", c.dev, v, ok, c.want, c.ok)
		}
	}
}

// The kernel sends a burst of datagrams to the device far larger than its
// queue (tx_queue_len 500) while the link's reader is stalled: what did
// not fit shows as rx_kernel_dropped (the device's tx_dropped, read from
// its namespace's /proc/net/dev although the link runs outside it).
func TestTUNKernelDropsInLinkCounters(t *testing.T) {
	needRoot(t)
	ns, s := testNetns(t)
	dev := "pstun" + s
	e, err := open(options{name: "t", device: dev, netns: ns, queues: 1, offload: true, coalesce: true, batch: 32, up: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ip(t, "-n", ns, "addr", "add", "10.99.0.1/24", "dev", dev)
	st := pipelinetest.NewStalled()
	e.Attach(st)
	t.Cleanup(st.Resume) // before Close, which waits for the reader
	if v, ok := pipelinetest.LinkCounter(e, "rx_kernel_dropped"); !ok || v != 0 {
		t.Fatalf("before the burst: rx_kernel_dropped %d (present %t), want 0", v, ok)
	}

	const sent = 3000
	err = netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 99, 0, 2}}
		for i := 0; i < sent; i++ {
			if err := unix.Sendto(fd, []byte("tc-burst"), 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	drops, _ := pipelinetest.LinkCounter(e, "rx_kernel_dropped")
	if drops < sent/2 {
		t.Errorf("rx_kernel_dropped = %d after %d datagrams into a stalled reader (queue 500): %v", drops, sent, e.LinkCounters())
	}
	st.Resume()
	deadline := time.Now().Add(5 * time.Second)
	for st.Delivered()+drops < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d datagrams sent, %d read, %d dropped by the kernel", sent, st.Delivered(), drops)
	if n := st.Delivered() + drops; n < sent {
		t.Errorf("read %d + kernel drops %d = %d of %d sent", st.Delivered(), drops, n, sent)
	}
	e.Close()
	if v, _ := pipelinetest.LinkCounter(e, "rx_kernel_dropped"); v != drops {
		t.Errorf("after Close rx_kernel_dropped = %d, want the last value %d", v, drops)
	}
}
