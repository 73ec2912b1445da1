package tcp

import (
	"fmt"
	"strings"

	"github.com/pipestack/pipestack/pipeline"
)

// ccByName makes the congestion control of a tcp.cc module for one
// connection's choice (Dialer, ListenConfig, ForwarderConfig
// CongestionControl): "cubic" or "tcp.cc.cubic"; "" is nil, the stack's
// (the pipeline file's congestion_control). A module that needs
// configuration (a Provisioner) is refused: configure it in the pipeline
// file instead. An algorithm keeps its state in the connection's CCState,
// so one value serves every connection.
func ccByName(name string) (CongestionControl, error) {
	if name == "" {
		return nil, nil
	}
	id := name
	if !strings.HasPrefix(id, "tcp.cc.") {
		id = "tcp.cc." + name
	}
	mi, ok := pipeline.LookupModule(id)
	if !ok {
		var names []string
		for _, m := range pipeline.Modules("tcp.cc") {
			names = append(names, strings.TrimPrefix(m.ID, "tcp.cc."))
		}
		return nil, fmt.Errorf("congestion control %q: no module %s (known: %s)", name, id, strings.Join(names, ", "))
	}
	m, ok := mi.New().(CCModule)
	if !ok {
		return nil, fmt.Errorf("congestion control %q: %s is not a tcp.cc module", name, id)
	}
	if _, ok := m.(pipeline.Provisioner); ok {
		return nil, fmt.Errorf("congestion control %q: %s needs configuration: choose it in the pipeline file", name, id)
	}
	if v, ok := m.(pipeline.Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("congestion control %q: %w", name, err)
		}
	}
	cc := m.CongestionControl()
	if cc == nil {
		return nil, fmt.Errorf("congestion control %q: no algorithm", name)
	}
	return cc, nil
}

// CongestionControlName is the name of the algorithm a connection runs
// ("newreno", "cubic").
func (cn *Conn) CongestionControlName() string {
	cn.c.mu.Lock()
	defer cn.c.mu.Unlock()
	return cn.c.cc.Name()
}
