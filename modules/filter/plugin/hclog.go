package plugin

import (
	"fmt"
	"io"
	"log"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogAdapter is go-plugin's logger (hclog) writing into the stack's
// zerolog logger: the plugin's stderr lines (which go-plugin parses as
// hclog JSON when the plugin logs with hclog) and go-plugin's own events
// arrive as zerolog events with plugin=<name>.
type hclogAdapter struct {
	zl    zerolog.Logger
	name  string
	args  []any
	level hclog.Level
	// stopping is set when pipectl kills the process itself (replaced,
	// stopped): go-plugin's "plugin process exited" error is then the
	// kill it was asked for, logged at info.
	stopping *atomic.Bool
}

func newHclog(zl zerolog.Logger, name string, stopping *atomic.Bool) hclog.Logger {
	return &hclogAdapter{zl: zl.With().Str("plugin", name).Logger(), level: hclog.Info, stopping: stopping}
}

func (h *hclogAdapter) event(level hclog.Level) *zerolog.Event {
	switch level {
	case hclog.Trace, hclog.Debug:
		return h.zl.Debug()
	case hclog.Warn:
		return h.zl.Warn()
	case hclog.Error:
		return h.zl.Error()
	default:
		return h.zl.Info()
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level < h.level && level != hclog.NoLevel {
		return
	}
	if level == hclog.Error && msg == "plugin process exited" && h.stopping != nil && h.stopping.Load() {
		level = hclog.Info
		args = append(args, "stopped_by", "pipectl")
	}
	e := h.event(level)
	if h.name != "" {
		e = e.Str("from", h.name)
	}
	all := append(append([]any(nil), h.args...), args...)
	for i := 0; i+1 < len(all); i += 2 {
		k, ok := all[i].(string)
		if !ok {
			k = fmt.Sprint(all[i])
		}
		e = e.Interface(k, all[i+1])
	}
	if len(all)%2 == 1 {
		e = e.Interface("extra", all[len(all)-1])
	}
	e.Msg(msg)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) IsTrace() bool { return h.level <= hclog.Trace }
func (h *hclogAdapter) IsDebug() bool { return h.level <= hclog.Debug }
func (h *hclogAdapter) IsInfo() bool  { return h.level <= hclog.Info }
func (h *hclogAdapter) IsWarn() bool  { return h.level <= hclog.Warn }
func (h *hclogAdapter) IsError() bool { return h.level <= hclog.Error }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hclogAdapter) SetLevel(level hclog.Level) { h.level = level }
func (h *hclogAdapter) GetLevel() hclog.Level      { return h.level }

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Log(hclog.Info, string(trimNL(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ hclog.Logger = (*hclogAdapter)(nil)
