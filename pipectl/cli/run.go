package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pipestack/pipestack/pipectl/control"
	"github.com/pipestack/pipestack/pipeline"
)

// RunOptions configure Run.
type RunOptions struct {
	// LogOutput receives the log, formatted as the file's log: section
	// says (console or json). Default os.Stderr.
	LogOutput io.Writer
	// Reload: each receive re-reads the file and applies it (what SIGHUP
	// does). nil: never.
	Reload <-chan struct{}
	// StatsInterval, when positive, logs every NIC's counters (and every
	// non-zero protocol counter) this often.
	StatsInterval time.Duration
	// Applied, when set, is called after the first apply and after every
	// reload attempt, on Run's goroutine, with the stack and the outcome:
	// changed is false for an unchanged file; err is the reason a reload
	// was refused (the running generation stays).
	Applied func(st *pipeline.Stack, changed bool, err error)
	// KeepPrivileges skips the privilege drop of the file's privileges:
	// section (for tests running Run inside their own process).
	KeepPrivileges bool
}

// Run runs the pipeline in file until ctx is done, then closes the stack.
// It returns an error when the file cannot be loaded or applied at start,
// or when closing fails. A reload that fails is logged with its full
// message (file:line:col: module: what) and the running generation stays;
// an unchanged file is logged as such and changes nothing. The file's log:
// section sets the log level and format, also on reload.
func Run(ctx context.Context, file string, opts RunOptions) error {
	cfg, err := pipeline.LoadConfigFile(file)
	if err != nil {
		return err
	}
	out := opts.LogOutput
	if out == nil {
		out = os.Stderr
	}
	lw := newLogWriter(out)
	lw.configure(cfg.Log)
	logger := zerolog.New(lw).With().Timestamp().Logger()

	st := pipeline.New(pipeline.Options{Logger: &logger})
	if _, err := st.Apply(cfg); err != nil {
		st.Close()
		return err
	}
	applied := func(changed bool, err error) {
		if opts.Applied != nil {
			opts.Applied(st, changed, err)
		}
	}
	// The control socket's reload requests are served here, on Run's
	// goroutine, so that reloads never overlap. Each request carries its
	// own reply channel (buffered: the loop never waits for a caller), so
	// overlapping requests cannot get each other's answers. loop is done
	// once the loop serves no more requests: a caller then gets an error
	// instead of waiting.
	loop, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	requests := make(chan reloadRequest)
	doReload := func() (control.ReloadReply, error) {
		req := reloadRequest{reply: make(chan reloadResult, 1)}
		select {
		case requests <- req:
		case <-loop.Done():
			return control.ReloadReply{}, errors.New("the pipeline is stopping")
		}
		res := <-req.reply
		return res.reply, res.err
	}
	serve := func(req reloadRequest) {
		changed, err := reload(st, file, lw, logger)
		applied(changed, err)
		var seq uint64
		if g := st.Generation(); g != nil {
			seq = g.Seq()
		}
		rr := control.ReloadReply{Changed: changed, Generation: seq}
		if changed && err == nil {
			rr.Notes = control.GenerationNotes(st)
		}
		req.reply <- reloadResult{rr, err}
	}
	ctl := startControl(cfg, st, doReload, logger)
	defer func() { ctl.close() }()
	// syncControl restarts the control endpoints when the generation in
	// force configures others; it runs after the reload's reply is sent.
	// Closing the old socket waits for its connections, and one of them
	// may be waiting for this loop to serve its reload: while the old
	// socket closes, requests are still served (a reload among them that
	// changes control: again is applied when the first restart is done).
	syncControl := func() {
		for {
			g := st.Generation()
			if g == nil || g.Config().Control == ctl.cfg {
				return
			}
			closed := make(chan struct{})
			go func(old *controlState) {
				old.close()
				close(closed)
			}(ctl)
			for open := true; open; {
				select {
				case <-closed:
					open = false
				case req := <-requests:
					serve(req)
				}
			}
			ctl = startControl(st.Generation().Config(), st, doReload, logger)
		}
	}

	privs := cfg.Privileges
	if opts.KeepPrivileges {
		no := false
		privs.Drop = &no
	}
	switch msg, err := dropPrivileges(privs); {
	case err != nil && (cfg.Privileges.User != "" || len(cfg.Privileges.Keep) > 0):
		stopLoop()
		ctl.close()
		st.Close()
		return fmt.Errorf("privileges: %w", err)
	case err != nil:
		logger.Warn().Err(err).Msg("running with all privileges")
	case msg != "":
		logger.Info().Msg(msg)
	}
	logger.Info().Str("file", file).Str("pipeline", cfg.Name).Uint64("generation", st.Generation().Seq()).Msg("running")
	applied(true, nil)

	var tick <-chan time.Time
	if opts.StatsInterval > 0 {
		t := time.NewTicker(opts.StatsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			logger.Info().Msg("stopping")
			if err := st.Close(); err != nil {
				logger.Error().Err(err).Msg("stop")
				return fmt.Errorf("stop: %w", err)
			}
			logger.Info().Msg("stopped")
			return nil
		case <-opts.Reload:
			changed, err := reload(st, file, lw, logger)
			applied(changed, err)
			syncControl()
		case req := <-requests:
			serve(req)
			syncControl()
		case <-tick:
			logStats(logger, st)
		}
	}
}

// reloadRequest is one `pipectl reload` waiting for the loop; reply is
// buffered (one slot) and receives exactly one result.
type reloadRequest struct{ reply chan reloadResult }

type reloadResult struct {
	reply control.ReloadReply
	err   error
}

// reload re-reads file and applies it, logging the outcome.
func reload(st *pipeline.Stack, file string, lw *logWriter, logger zerolog.Logger) (bool, error) {
	running := uint64(0)
	if g := st.Generation(); g != nil {
		running = g.Seq()
	}
	logger.Info().Str("file", file).Msg("reloading")
	cfg, err := pipeline.LoadConfigFile(file)
	var changed bool
	if err == nil {
		changed, err = st.Apply(cfg)
	}
	switch {
	case err != nil:
		logger.Error().Err(err).Uint64("generation", running).Msg("reload failed; the running generation stays")
	case !changed:
		logger.Info().Uint64("generation", running).Msg("reload: file unchanged; nothing to do")
	default:
		lw.configure(cfg.Log)
		logger.Info().Uint64("generation", st.Generation().Seq()).Msg("reloaded")
		for _, n := range control.GenerationNotes(st) {
			logger.Warn().Uint64("generation", st.Generation().Seq()).Msg(n)
		}
	}
	return changed, err
}

func logStats(logger zerolog.Logger, st *pipeline.Stack) {
	for _, n := range st.NICs() {
		s := &n.Stats
		logger.Info().Str("link", n.Name()).
			Uint64("rx_packets", s.RxPackets.Load()).Uint64("rx_bytes", s.RxBytes.Load()).
			Uint64("rx_dropped", s.RxDropped.Load()).Uint64("rx_unknown_protocol", s.RxUnknownProtocol.Load()).
			Uint64("tx_packets", s.TxPackets.Load()).Uint64("tx_bytes", s.TxBytes.Load()).
			Uint64("tx_dropped", s.TxDropped.Load()).
			Msg("link counters")
	}
	for _, cs := range st.Counters() {
		ev := logger.Info().Str("set", cs.Name())
		n := 0
		for _, cv := range cs.Snapshot() {
			if cv.Value != 0 {
				ev = ev.Uint64(cv.Name, cv.Value)
				n++
			}
		}
		if n == 0 {
			ev.Discard()
			continue
		}
		ev.Msg("counters")
	}
}

// logWriter sends zerolog's JSON lines to the output as they are (json) or
// through a console writer, dropping events under the level. Level and
// format are switched by a reload: the stack keeps the logger it was
// created with, so the switch happens here. Writes are serialised (the log
// is control path only).
type logWriter struct {
	mu   sync.Mutex
	out  io.Writer
	cons io.Writer
	cur  atomic.Pointer[logSettings]
}

type logSettings struct {
	level zerolog.Level
	json  bool
}

func newLogWriter(out io.Writer) *logWriter {
	lw := &logWriter{out: out}
	lw.cons = zerolog.ConsoleWriter{Out: out, NoColor: !isTerminal(out), TimeFormat: "2006-01-02 15:04:05"}
	lw.cur.Store(&logSettings{level: zerolog.InfoLevel})
	return lw
}

// configure applies a log: section (ParseConfig has checked its values).
func (lw *logWriter) configure(c pipeline.LogConfig) {
	s := &logSettings{level: zerolog.InfoLevel, json: c.Format == "json"}
	if c.Level != "" {
		if l, err := zerolog.ParseLevel(c.Level); err == nil {
			s.level = l
		}
	}
	lw.cur.Store(s)
}

func (lw *logWriter) Write(p []byte) (int, error) {
	return lw.WriteLevel(zerolog.NoLevel, p)
}

func (lw *logWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	s := lw.cur.Load()
	if l != zerolog.NoLevel && l < s.level {
		return len(p), nil
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	w := lw.cons
	if s.json {
		w = lw.out
	}
	if _, err := w.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

var _ zerolog.LevelWriter = (*logWriter)(nil)

// controlState is the control socket and metrics endpoint of a running
// pipeline, as configured by the generation in force.
type controlState struct {
	cfg     pipeline.ControlConfig
	srv     *control.Server
	metrics *http.Server
}

// startControl serves the control socket and the metrics endpoint the file
// asks for. An explicitly configured socket or metrics address that cannot
// be served is logged as an error; the default socket (/run/pipestack/
// <name>.sock) may be unavailable without root, which is only a warning.
func startControl(cfg *pipeline.Config, st *pipeline.Stack, reload func() (control.ReloadReply, error), logger zerolog.Logger) *controlState {
	cs := &controlState{cfg: cfg.Control}
	if path := cfg.SocketPath(); path != "" {
		srv, err := control.Listen(path, st, reload)
		switch {
		case err == nil:
			cs.srv = srv
			logger.Info().Str("socket", path).Msg("control socket")
		case cfg.Control.Socket == "":
			logger.Warn().Err(err).Msg("no control socket (set control: {socket: PATH} or run as root)")
		default:
			logger.Error().Err(err).Msg("control socket")
		}
	}
	if addr := cfg.Control.Metrics; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			logger.Error().Err(err).Msg("metrics endpoint")
		} else {
			mux := http.NewServeMux()
			mux.Handle("/metrics", control.MetricsHandler(st))
			cs.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go cs.metrics.Serve(ln)
			logger.Info().Str("listen", ln.Addr().String()).Msg("metrics at /metrics")
		}
	}
	return cs
}

func (cs *controlState) close() {
	if cs.srv != nil {
		cs.srv.Close()
		cs.srv = nil
	}
	if cs.metrics != nil {
		cs.metrics.Close()
		cs.metrics = nil
	}
}
