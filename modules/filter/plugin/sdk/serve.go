package sdk

import (
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Serve runs the plugin until the host stops it or goes away; call it from
// main. Run by hand (without the host's handshake variables in the
// environment) it prints that it is a pipestack plugin and exits 1.
//
// The plugin exits when its host dies: the host starts it with a parent
// death signal (Linux), and Serve also watches its parent process and exits
// when that changes (the host was killed before it could stop the plugin).
func Serve(p *Plugin) {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		os.Stderr.WriteString("This binary is a pipestack filter plugin: declare it under plugins: in a pipeline file; pipectl runs it.\n")
		os.Exit(1)
	}
	go watchParent(os.Getppid(), time.Second/4)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPluginSets(p),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, ServerOptions()...)...)
		},
	})
}

// watchParent exits the process once its parent is not ppid any more (the
// host died and the plugin was reparented).
func watchParent(ppid int, every time.Duration) {
	for {
		time.Sleep(every)
		if os.Getppid() != ppid {
			os.Exit(3)
		}
	}
}
