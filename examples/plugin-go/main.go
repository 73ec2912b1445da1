// Command dstfilter is an example out-of-process filter plugin for
// pipestack, written with the SDK (modules/filter/plugin/sdk): as a rule's
// target (-j PLUGIN --name dstfilter) it gives packets to the destination
// prefixes (and ports, if it lists any) of its config the verdict in
// verdict (drop), and accepts the others. README.md walks from nothing to
// a hot-reloaded plugin.
package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
)

// version and verdict are set at build time to show a replaced binary:
//
//	go build -ldflags "-X main.version=2 -X main.verdict=accept" -o dstfilter.new .
var (
	version = "1"
	verdict = "drop"
)

// config is the plugin's config: block of the pipeline file.
type config struct {
	Block []string `json:"block"` // destination prefixes
	Ports []uint16 `json:"ports"` // only these destination ports (none: all)
}

type dstFilter struct {
	block  []netip.Prefix
	ports  []uint16
	answer sdk.Answer
}

// Action implements sdk.Target over a batch.
func (f *dstFilter) Action(b *sdk.Batch, out *sdk.Results) {
	for i := range b.Len() {
		p := b.Packet(i)
		out.Answers[i] = sdk.Accept
		if len(f.ports) > 0 && !slices.Contains(f.ports, p.DstPort()) {
			continue
		}
		for _, pfx := range f.block {
			if pfx.Contains(p.Dst()) {
				out.Answers[i] = f.answer
				break
			}
		}
	}
}

func (f *dstFilter) configure(name string, js []byte) (sdk.Needs, error) {
	var c config
	if err := json.Unmarshal(js, &c); err != nil {
		return sdk.Needs{}, err
	}
	for _, s := range c.Block {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return sdk.Needs{}, fmt.Errorf("block: %v", err)
		}
		f.block = append(f.block, p.Masked())
	}
	f.ports = c.Ports
	switch verdict {
	case "drop":
		f.answer = sdk.Drop
	case "accept":
		f.answer = sdk.Accept
	default:
		return sdk.Needs{}, fmt.Errorf("built with verdict %q (drop or accept)", verdict)
	}
	// The tuple is all it needs: no packet bytes cross.
	return sdk.Needs{Data: sdk.DataNone}, nil
}

func main() {
	f := &dstFilter{}
	sdk.Serve(&sdk.Plugin{Version: version, Configure: f.configure, Target: f})
}
