//go:build !linux

package plugin

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
)

// procSpec is how a plugin's process is started.
type procSpec struct {
	name     string
	path     string
	args     []string
	sha256   []byte
	uid, gid int
	log      zerolog.Logger
}

// process is a running plugin process. Outside Linux it is go-plugin's
// process alone: no process group, no sealed copy, no user switch, no
// parent death signal (the plugin's SDK still exits when it loses its
// parent).
type process struct {
	pid int
	gp  *goplugin.Client
	// stopping: kill was called (the log adapter's cue).
	stopping atomic.Bool
	once     sync.Once
}

func (p *process) kill() {
	p.once.Do(func() {
		p.stopping.Store(true)
		p.gp.Kill()
	})
}

// processLauncher starts the plugin with go-plugin over gRPC (AutoMTLS,
// no host environment). sha256: and user: are refused at Provision here.
func processLauncher(spec procSpec) launcher {
	return func(ctx context.Context) (*conn, error) {
		if spec.sha256 != nil {
			return nil, fmt.Errorf("sha256: not supported on %s", runtime.GOOS)
		}
		cmd := exec.Command(spec.path, spec.args...)
		cmd.Env = []string{"PIPESTACK_PLUGIN_NAME=" + spec.name, "SystemRoot=C:\\Windows"}
		pr := &process{}
		pr.gp = goplugin.NewClient(&goplugin.ClientConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: sdk.VersionedPluginSets(nil),
			Cmd:              cmd,
			AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
			AutoMTLS:         true,
			SkipHostEnv:      true,
			Logger:           newHclog(spec.log, spec.name, &pr.stopping),
			StartTimeout:     contextTimeout(ctx),
			GRPCDialOptions:  sdk.DialOptions(),
		})
		rpc, err := pr.gp.Client()
		if err != nil {
			pr.kill()
			return nil, fmt.Errorf("start %s: %w", spec.path, err)
		}
		if cmd.Process != nil {
			pr.pid = cmd.Process.Pid
		}
		raw, err := rpc.Dispense(sdk.PluginName)
		if err != nil {
			pr.kill()
			return nil, err
		}
		c, ok := raw.(*sdk.Client)
		if !ok {
			pr.kill()
			return nil, errors.New("dispensed no filter plugin client")
		}
		return &conn{client: c, proc: pr}, nil
	}
}
