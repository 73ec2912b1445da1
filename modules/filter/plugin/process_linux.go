package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
)

// procSpec is how a plugin's process is started.
type procSpec struct {
	name     string
	path     string
	args     []string
	sha256   []byte // nil: not checked
	uid, gid int    // -1: pipectl's own
	log      zerolog.Logger
}

// process is a running plugin process.
type process struct {
	pid int
	gp  *goplugin.Client
	// stopping: kill was called (the log adapter's cue).
	stopping atomic.Bool
	dir      string
	exe      *os.File // the sealed copy executed (sha256 given)
	once     sync.Once
}

// kill ends the process and its whole process group, then go-plugin's
// client (which only cleans up once the process is gone).
func (p *process) kill() {
	p.once.Do(func() {
		p.stopping.Store(true)
		if p.pid > 0 {
			syscall.Kill(-p.pid, syscall.SIGKILL)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		p.gp.Kill()
		os.RemoveAll(p.dir)
		if p.exe != nil {
			p.exe.Close()
		}
	})
}

// spawner runs every process start on one goroutine locked to its OS
// thread for the life of the program: the parent death signal
// (Pdeathsig) fires when the thread that forked ends, and this one never
// does. Under root the thread also carries the secure bits NOROOT (and
// locked): securebits are per thread and inherited by the children it
// forks, so a plugin that runs as uid 0 gets no capabilities at execve
// (CapEff, CapPrm, CapAmb 0) while pipectl keeps its own.
var spawner struct {
	once sync.Once
	ch   chan func()
	err  error // NOROOT could not be set (root only)
}

const (
	secbitNoroot       = 1 << 0
	secbitNorootLocked = 1 << 1
)

func spawn(f func()) error {
	spawner.once.Do(func() {
		spawner.ch = make(chan func())
		ready := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives on
			if os.Geteuid() == 0 {
				if err := unix.Prctl(unix.PR_SET_SECUREBITS, secbitNoroot|secbitNorootLocked, 0, 0, 0); err != nil {
					spawner.err = fmt.Errorf("secure bits NOROOT on the spawning thread: %w (a plugin run as root would get capabilities)", err)
				}
			}
			close(ready)
			for f := range spawner.ch {
				f()
			}
		}()
		<-ready
	})
	if spawner.err != nil {
		return spawner.err
	}
	done := make(chan struct{})
	spawner.ch <- func() { f(); close(done) }
	<-done
	return nil
}

// sealedCopy copies the binary at path into a sealed memfd, checks its
// sha256 there and returns a read-only descriptor of it: what is hashed is
// what runs (no check-to-exec gap; the seals forbid any later write).
func sealedCopy(path string, want []byte) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("pipestack-plugin", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "memfd")
	defer mf.Close()
	if _, err := io.Copy(mf, src); err != nil {
		return nil, fmt.Errorf("copy %s: %w", path, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	// Hash the sealed copy itself.
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, mf); err != nil {
		return nil, err
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return nil, fmt.Errorf("%s: sha256 %s, want %s", path, hex.EncodeToString(got), hex.EncodeToString(want))
	}
	// A descriptor open for writing makes exec fail (ETXTBSY): run a
	// read-only one.
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return ro, nil
}

// privateDir makes the directory the plugin's socket lives in: 0700,
// pipectl's (the plugin runs as pipectl's uid) or, for user:, the user's
// (which needs CAP_CHOWN).
func privateDir(uid, gid int) (string, error) {
	base := os.Getenv("PIPESTACK_PLUGIN_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "pipestack-plugin-")
	if err != nil {
		return "", err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// processLauncher starts the plugin with go-plugin over gRPC: AutoMTLS,
// no host environment (only the handshake's variables and the socket
// directory), a private socket directory, its own process group, a parent
// death signal, no capabilities (as pipectl's uid under the NOROOT secure
// bit, or as user:, whose capability sets the kernel clears at execve),
// and the sealed copy of the binary when a sha256 is given.
func processLauncher(spec procSpec) launcher {
	return func(ctx context.Context) (*conn, error) {
		pr := &process{}
		ok := false
		defer func() {
			if !ok {
				if pr.gp != nil {
					pr.kill()
				} else {
					os.RemoveAll(pr.dir)
					if pr.exe != nil {
						pr.exe.Close()
					}
				}
			}
		}()
		exe := spec.path
		if spec.sha256 != nil {
			f, err := sealedCopy(spec.path, spec.sha256)
			if err != nil {
				return nil, err
			}
			pr.exe = f
			exe = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
		}
		dir, err := privateDir(spec.uid, spec.gid)
		if err != nil {
			return nil, err
		}
		pr.dir = dir
		cmd := exec.Command(exe, spec.args...)
		cmd.Args[0] = spec.path
		cmd.Env = []string{goplugin.EnvUnixSocketDir + "=" + dir, "PIPESTACK_PLUGIN_NAME=" + spec.name}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if spec.uid >= 0 {
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(spec.uid), Gid: uint32(spec.gid), Groups: []uint32{}}
		}
		pr.gp = goplugin.NewClient(&goplugin.ClientConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: sdk.VersionedPluginSets(nil),
			Cmd:              cmd,
			AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
			AutoMTLS:         true,
			SkipHostEnv:      true,
			Logger:           newHclog(spec.log, spec.name, &pr.stopping),
			StartTimeout:     contextTimeout(ctx),
			UnixSocketConfig: &goplugin.UnixSocketConfig{TempDir: dir},
			GRPCDialOptions:  sdk.DialOptions(),
		})
		var rpc goplugin.ClientProtocol
		if serr := spawn(func() { rpc, err = pr.gp.Client() }); serr != nil {
			return nil, serr
		}
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.path, err)
		}
		if cmd.Process != nil {
			pr.pid = cmd.Process.Pid
		}
		raw, err := rpc.Dispense(sdk.PluginName)
		if err != nil {
			return nil, err
		}
		c, isClient := raw.(*sdk.Client)
		if !isClient {
			return nil, errors.New("dispensed no filter plugin client")
		}
		ok = true
		return &conn{client: c, proc: pr}, nil
	}
}
