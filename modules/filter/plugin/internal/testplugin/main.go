// Command testplugin is the plugin the host's process tests (and e2e) run
// as a real child: as a target it accepts every packet except those to
// config.block, as a matcher it matches those (unless built with allow
// set), and it can be
// told to answer slowly (sleep_ms) or to exit at start (a file named
// like the binary with .exit appended exists: a crash loop).
package main

import (
	"encoding/json"
	"os"
	"strings"
	"time"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
)

type config struct {
	Block   uint16 `json:"block"`
	SleepMS int    `json:"sleep_ms"`
}

type target struct{ c config }

// allow, set at build time (-ldflags "-X main.allow=yes"), makes the
// matcher match nothing: the version that lets the blocked port through.
var allow = ""

// Match implements sdk.Matcher: packets to config.block match (a rule
// "-m plugin --name X -j DROP" drops them).
func (t *target) Match(b *sdk.Batch, out []sdk.Answer) {
	for i := range b.Len() {
		p := b.Packet(i)
		if allow == "" && p.DstPort() == t.c.Block {
			out[i] = sdk.Match
		}
	}
}

func (t *target) Action(b *sdk.Batch, out *sdk.Results) {
	if t.c.SleepMS > 0 {
		time.Sleep(time.Duration(t.c.SleepMS) * time.Millisecond)
	}
	for i := range b.Len() {
		p := b.Packet(i)
		if p.DstPort() == t.c.Block {
			out.Answers[i] = sdk.Drop
			continue
		}
		out.Answers[i] = sdk.Accept
		out.SetMark(i, uint32(os.Getpid()))
	}
}

func main() {
	if fileFlag() {
		os.Exit(2)
	}
	t := &target{}
	sdk.Serve(&sdk.Plugin{
		Version: "test" + allow,
		Configure: func(name string, js []byte) (sdk.Needs, error) {
			if err := json.Unmarshal(js, &t.c); err != nil {
				return sdk.Needs{}, err
			}
			return sdk.Needs{Data: sdk.DataHeaders, SetMark: true}, nil
		},
		Target:  t,
		Matcher: t,
	})
}

// fileFlag: a crash loop is asked for by a file beside the binary
// (exit-at-start), so the test can turn it on for restarts only.
func fileFlag() bool {
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	_, err = os.Stat(strings.TrimSuffix(exe, " (deleted)") + ".exit")
	return err == nil
}
