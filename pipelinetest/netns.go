package pipelinetest

import (
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/pipestack/pipestack/pipeline"
)

// PingFrom pings dst from the Linux network namespace ns until two echoes
// in a row come back (a link just up, a neighbor not resolved yet: at
// most 10 s), for the tests of links to the kernel. The error holds
// ping's last output.
func PingFrom(ns, dst string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst).CombinedOutput()
		if err == nil && strings.Contains(string(out), "2 received") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ping %s from %s: %v\n%s", dst, ns, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// NICAddresses lists the addresses of the stack's link (IPv4, then IPv6)
// as prefix/kind, to compare them before and after a change.
func NICAddresses(st *pipeline.Stack, link string) []string {
	ni, _ := st.Generation().NICByName(link)
	var out []string
	for _, fam := range []int{4, 6} {
		for _, a := range ni.Addresses(fam) {
			out = append(out, a.Prefix.String()+"/"+a.Kind.String())
		}
	}
	return out
}
