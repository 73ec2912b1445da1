package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/pipestack/pipestack/modules/tcp"
	"github.com/pipestack/pipestack/pipeline"
)

// A bounded hping3 SYN flood (random sources, 60,000 SYNs at most, 15 s
// at most) against our listener over TUN: the SYN queue fills, SYN
// cookies answer (syncookies_sent), the stack's memory stays flat (the
// cookies keep no state; SYN-RECEIVED connections stay within the
// backlog), and ten curl requests made during the flood all complete
// (Linux with cookies keeps 10 of 10).
func TestTCPSYNFloodCookies(t *testing.T) {
	requireLab(t, "curl (curl)", "hping3 (hping3)")
	st, netns := tunStack{tag: "sf", dev: "syn", name: "tcp-synflood", subnet: "10.197.0",
		modules: "network.ipv4, transport.tcp", offload: true}.start(t)

	ln, err := (&tcp.ListenConfig{Backlog: 64}).Listen(st, "tcp4", ":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	flood := exec.CommandContext(ctx, "ip", "netns", "exec", netns,
		"hping3", "-q", "-S", "-p", "80", "-i", "u100", "-c", "60000", "--rand-source", "10.197.0.2")
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()
	time.Sleep(time.Second) // the flood is on
	ok := 0
	for i := 0; i < 10; i++ {
		out, err := exec.Command("ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "5", "http://10.197.0.2/").CombinedOutput()
		if err == nil && string(out) == "ok\n" {
			ok++
		} else {
			t.Logf("curl %d: %v %s", i, err, out)
		}
	}
	sentDuring := tcpCounter(st, "syncookies_sent")
	<-floodDone
	after := heap()
	t.Logf("during the flood: %d of 10 curls answered; %d cookies sent, syn_queue_full %d, syncookies_recv %d; heap %d → %d KiB",
		ok, tcpCounter(st, "syncookies_sent"), tcpCounter(st, "syn_queue_full"), tcpCounter(st, "syncookies_recv"), before>>10, after>>10)
	if ok != 10 {
		t.Fatalf("%d of 10 requests completed during the flood", ok)
	}
	if sentDuring == 0 || tcpCounter(st, "syn_queue_full") == 0 {
		t.Fatal("the SYN queue never filled: no flood reached the listener")
	}
	if after > before+32<<20 {
		t.Fatalf("heap grew from %d to %d KiB over the flood", before>>10, after>>10)
	}
	synRecv := 0
	for _, so := range tcp.Sockets(st) {
		if so.State == "SYN-RECV" {
			synRecv++
		}
	}
	if synRecv > 64 {
		t.Fatalf("%d connections in SYN-RECV, more than the backlog", synRecv)
	}
}

func tcpCounter(st *pipeline.Stack, name string) uint64 {
	for _, cs := range st.Counters() {
		if cs.Name() == "tcp" {
			return cs.Get(name).Load()
		}
	}
	return 0
}
