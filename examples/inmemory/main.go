// Command inmemory builds three stacks from pipeline files — host A, a
// router, host B — on in-memory links, pings host B from host A through the
// router and prints every counter. It needs no privileges.
//
//	go run ./examples/inmemory            # from the repository root
//	go run ./examples/inmemory -count 10 -dir pipelines
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/pipestack/pipestack/modules/ipv4"
	"github.com/pipestack/pipestack/modules/link/channel"
	_ "github.com/pipestack/pipestack/modules/standard"
	"github.com/pipestack/pipestack/pipeline"
	"github.com/pipestack/pipestack/pipeline/wire"
)

func main() {
	dir := flag.String("dir", "pipelines", "directory holding inmemory-{host-a,router,host-b}.yaml")
	count := flag.Int("count", 5, "echo requests to send")
	flag.Parse()
	if err := run(*dir, *count); err != nil {
		fmt.Fprintln(os.Stderr, "inmemory:", err)
		os.Exit(1)
	}
}

func start(dir, name string) (*pipeline.Stack, error) {
	cfg, err := pipeline.LoadConfigFile(filepath.Join(dir, "inmemory-"+name+".yaml"))
	if err != nil {
		return nil, err
	}
	s := pipeline.New(pipeline.Options{})
	if _, err := s.Apply(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func link(s *pipeline.Stack, name string) *channel.Endpoint {
	l, _ := s.Link(name)
	return l.(*channel.Endpoint)
}

func counter(s *pipeline.Stack, set, name string) uint64 {
	for _, cs := range s.Counters() {
		if cs.Name() == set {
			for _, v := range cs.Snapshot() {
				if v.Name == name {
					return v.Value
				}
			}
		}
	}
	return 0
}

func run(dir string, count int) error {
	a, err := start(dir, "host-a")
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := start(dir, "router")
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := start(dir, "host-b")
	if err != nil {
		return err
	}
	defer b.Close()
	defer channel.Pipe(link(a, "a"), link(r, "a"))()
	defer channel.Pipe(link(r, "b"), link(b, "b"))()

	dst := netip.MustParseAddr("10.0.2.2")
	fmt.Printf("host-a 10.0.1.2 → router → host-b %s: %d echo requests\n", dst, count)
	start := time.Now()
	for seq := 1; seq <= count; seq++ {
		if err := sendEcho(a, dst, 1, uint16(seq), []byte("pipestack in-memory ping")); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for counter(a, "ipv4", "icmp_in") < uint64(count) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	replies := counter(a, "ipv4", "icmp_in")
	fmt.Printf("%d echo replies back at host-a in %v\n\n", replies, time.Since(start).Round(time.Microsecond))

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, n := range []struct {
		name string
		s    *pipeline.Stack
	}{{"host-a", a}, {"router", r}, {"host-b", b}} {
		for _, nic := range n.s.NICs() {
			st := &nic.Stats
			fmt.Fprintf(w, "%s\tlink %s\trx %d (%d B)\ttx %d (%d B)\trx_dropped %d\ttx_dropped %d\n", n.name, nic.Name(),
				st.RxPackets.Load(), st.RxBytes.Load(), st.TxPackets.Load(), st.TxBytes.Load(), st.RxDropped.Load(), st.TxDropped.Load())
		}
		for _, cs := range n.s.Counters() {
			for _, v := range cs.Snapshot() {
				if v.Value != 0 {
					fmt.Fprintf(w, "%s\t%s.%s\t%d\n", n.name, cs.Name(), v.Name, v.Value)
				}
			}
		}
	}
	w.Flush()
	if replies != uint64(count) {
		return fmt.Errorf("%d of %d echo replies arrived", replies, count)
	}
	return nil
}

// sendEcho originates an ICMP echo request from s.
func sendEcho(s *pipeline.Stack, dst netip.Addr, id, seq uint16, payload []byte) error {
	m := make(wire.ICMPv4, wire.ICMPv4MinimumSize+len(payload))
	m.Encode(&wire.ICMPv4Fields{Type: wire.ICMPv4Echo, Rest: wire.ICMPv4EchoRest(id, seq)})
	copy(m.Payload(), payload)
	m.SetChecksum(m.CalculateChecksum())
	return ipv4.Send(s, dst, pipeline.ICMPv4ProtocolNumber, m)
}
