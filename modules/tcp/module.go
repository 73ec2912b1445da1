// Package tcp is the transport.tcp module: RFC 9293's TCP for a pipestack
// stack, with a net.Conn, net.Listener and Dialer API for Go programs that
// embed the stack.
//
// The protocol: every state of RFC 9293's state machine (active, passive
// and simultaneous open; half-close; simultaneous close; TIME-WAIT for
// 2*MSL = 60 s, bounded in number), resets in every state checked as RFC
// 5961 asks (challenge ACKs, rate limited), initial sequence numbers per
// RFC 6528 and ephemeral ports per RFC 6056 (keyed hashes, keys from
// Stack.Rand); options MSS (from the route's MTU), window scaling,
// timestamps with a per-connection offset and PAWS (RFC 7323), SACK
// blocks for out-of-order data (RFC 2018); retransmission timeouts per RFC
// 6298 with Karn's rule and backoff, fast retransmit and NewReno recovery,
// delayed ACKs, Nagle (off by default, as Go's net.TCPConn), zero-window
// probes and keepalive. Congestion control is a guest module (tcp.cc.*).
//
// Where the state lives: the socket table, the timer wheel and the keys
// are one long-lived object of the stack (Stack.Shared under
// "transport.tcp/table"); a generation's protocol object only points at it,
// so connections survive a reload. Timers run on one wheel driven by the
// stack's clock: no goroutine per connection.
//
// See README.md for the configuration, the counters and what is not done
// yet.
package tcp

import (
	"errors"
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Module)) }

// Module is transport.tcp's configuration.
type Module struct {
	// SendBuffer and ReceiveBuffer bound each connection's buffers, in
	// bytes (default 1 MiB each; 4 KiB .. 64 MiB). The receive buffer is
	// the largest window advertised; the window scale follows from it.
	SendBuffer    int `yaml:"send_buffer"`
	ReceiveBuffer int `yaml:"receive_buffer"`
	// AutoTuning grows each connection's buffers from the initial sizes
	// to those bounds as Linux does (default true; tcp_moderate_rcvbuf):
	// the receive window with what the application reads per round trip
	// (DRS), the send buffer to two congestion windows. Off, both start
	// at their bounds. SetReadBuffer and SetWriteBuffer fix a
	// connection's sizes (SO_RCVBUF, SO_SNDBUF).
	AutoTuning *bool `yaml:"auto_tuning"`
	// ReceiveBufferInitial and SendBufferInitial are where auto-tuning
	// starts (default 64 KiB each, Linux's first window).
	ReceiveBufferInitial int `yaml:"receive_buffer_initial"`
	SendBufferInitial    int `yaml:"send_buffer_initial"`
	// MemoryLimit caps the buffer storage of all connections of the
	// stack (Linux's tcp_mem[2]; default 1 GiB): at the limit no buffer
	// grows past 16 KiB, so data that needs more is dropped (mem_drops)
	// and writes wait. Above MemoryPressure (default 2/3 of the limit)
	// buffers stop growing, windows offer no more than the buffers hold,
	// out-of-order data that needs more room is not kept (ooo_pruned)
	// and buffers that empty are freed (mem_freed), until the storage
	// falls below MemoryLow (default half the limit).
	MemoryLimit    int64 `yaml:"memory_limit"`
	MemoryPressure int64 `yaml:"memory_pressure"`
	MemoryLow      int64 `yaml:"memory_low"`
	// CongestionControl names the algorithm, a tcp.cc.<name> module:
	// "cubic" (default, as Linux's), "newreno", or a mapping
	// {module: tcp.cc.cubic, hystart: false}.
	CongestionControl yaml.Node `yaml:"congestion_control"`
	// TimeWaitMax bounds how many connections are kept in TIME-WAIT
	// (Linux's tcp_max_tw_buckets); beyond it a closing connection goes
	// straight to CLOSED and time_wait_overflow counts it. Default 65536.
	TimeWaitMax int `yaml:"time_wait_max"`
	// ChallengeACKLimit bounds the challenge ACKs (RFC 5961) the stack
	// sends per second in all, beyond the per-connection limit of one per
	// 500 ms: each second's budget is drawn at random from
	// [limit/2, limit·3/2), as Linux's tcp_challenge_ack_limit, so that
	// counting them tells an off-path host nothing (CVE-2016-5696).
	// Default none (DefaultChallengeACKLimit, Linux's since 6.0).
	ChallengeACKLimit int `yaml:"challenge_ack_limit"`
	// DelayedACK is the delayed-ACK timeout (default 40ms, Linux's
	// minimum ATO; at most 500ms as RFC 9293 requires).
	DelayedACK time.Duration `yaml:"delayed_ack"`
	// Timestamps, WindowScaling and SACK switch those options on (all
	// default true, as Linux's sysctls).
	Timestamps    *bool `yaml:"timestamps"`
	WindowScaling *bool `yaml:"window_scaling"`
	SACK          *bool `yaml:"sack"`
	// SYNCookies answers SYNs with cookies when a listener's SYN queue
	// is full (default true, Linux's tcp_syncookies=1).
	SYNCookies *bool `yaml:"syncookies"`
	// MinRTTWindow is how long the minimum RTT that RACK's reordering
	// window follows is remembered (Linux's tcp_min_rtt_wlen, default
	// 300s; 1s..24h): a path whose RTT grew is seen within it.
	MinRTTWindow time.Duration `yaml:"min_rtt_window"`
	// TSO sends TSO super-packets (up to 64 KiB, many segments in one
	// packet with GSO metadata and a partial checksum) when the route's
	// link offloads segmentation (CapGSO and CapTXChecksumOffload: TUN
	// or AF_PACKET with virtio-net headers, loopback); default true, as
	// Linux's tso on such devices. A forwarded super-packet that meets
	// a link without offloads is segmented in software by the core.
	TSO *bool `yaml:"tso"`

	proto *Protocol
}

// Defaults.
const (
	DefaultBuffer            = 1 << 20
	DefaultTimeWaitMax       = 65536
	DefaultChallengeACKLimit = math.MaxInt32 // no stack-wide limit
	DefaultDelayedACK        = 40 * time.Millisecond
	minBuffer                = 4 << 10
	maxBuffer                = 64 << 20
)

// sharedKey is the stack-shared key of the socket table.
const sharedKey = "transport.tcp/table"

// PipelineModule implements pipeline.Module.
func (*Module) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "transport.tcp",
		Summary: "TCP (RFC 9293): connections, listeners, retransmission, congestion control (tcp.cc.*); net.Conn/net.Listener API (tcp.Listen, tcp.Dialer)",
		New:     func() pipeline.Module { return new(Module) },
	}
}

// settings are one generation's parameters, read by connections when they
// are made and by the packet path.
type settings struct {
	sndBuf, rcvBuf    int
	cc                CongestionControl
	ccName            string
	timeWaitMax       int
	challengeLimit    int
	delayedACK        time.Duration
	ts, ws, sack      bool
	syncookies        bool
	synRetries        int
	synackRetries     int
	retries2          int
	finTimeout        time.Duration
	timeWait          time.Duration
	defaultKeepIdle   time.Duration
	defaultKeepIntvl  time.Duration
	defaultKeepProbes int
	minRTTWin         time.Duration
	autoTune          bool
	tso               bool
	rcvBufInit        int
	sndBufInit        int
}

// Provision sets defaults, loads the congestion control module and builds
// the protocol object over the stack's long-lived table.
func (m *Module) Provision(ctx *pipeline.Context) error {
	if m.SendBuffer == 0 {
		m.SendBuffer = DefaultBuffer
	}
	if m.ReceiveBuffer == 0 {
		m.ReceiveBuffer = DefaultBuffer
	}
	if m.TimeWaitMax == 0 {
		m.TimeWaitMax = DefaultTimeWaitMax
	}
	if m.ChallengeACKLimit == 0 {
		m.ChallengeACKLimit = DefaultChallengeACKLimit
	}
	if m.DelayedACK == 0 {
		m.DelayedACK = DefaultDelayedACK
	}
	if m.MinRTTWindow == 0 {
		m.MinRTTWindow = DefaultMinRTTWindow
	}
	if m.ReceiveBufferInitial == 0 {
		m.ReceiveBufferInitial = min(DefaultReceiveBufferInitial, m.ReceiveBuffer)
	}
	if m.SendBufferInitial == 0 {
		m.SendBufferInitial = min(DefaultSendBufferInitial, m.SendBuffer)
	}
	if m.MemoryLimit == 0 {
		m.MemoryLimit = DefaultMemoryLimit
	}
	if m.MemoryPressure == 0 {
		m.MemoryPressure = m.MemoryLimit * 2 / 3
	}
	if m.MemoryLow == 0 {
		m.MemoryLow = min(m.MemoryLimit/2, m.MemoryPressure)
	}
	cc, name, err := loadCC(ctx, &m.CongestionControl)
	if err != nil {
		return err
	}
	st := &settings{
		sndBuf: m.SendBuffer, rcvBuf: m.ReceiveBuffer, cc: cc, ccName: name,
		timeWaitMax: m.TimeWaitMax, challengeLimit: m.ChallengeACKLimit, delayedACK: m.DelayedACK,
		ts: boolOr(m.Timestamps, true), ws: boolOr(m.WindowScaling, true), sack: boolOr(m.SACK, true),
		syncookies: boolOr(m.SYNCookies, true), minRTTWin: m.MinRTTWindow,
		autoTune: boolOr(m.AutoTuning, true), rcvBufInit: m.ReceiveBufferInitial, sndBufInit: m.SendBufferInitial,
		tso:        boolOr(m.TSO, true),
		synRetries: 6, synackRetries: 5, retries2: 15,
		finTimeout: 60 * time.Second, timeWait: 60 * time.Second,
		defaultKeepIdle: 15 * time.Second, defaultKeepIntvl: 15 * time.Second, defaultKeepProbes: 9,
	}
	c := newCounters(ctx.Counters("tcp"))
	s := ctx.Stack()
	t := ctx.Shared(sharedKey, func() any { return newTable(s, c) }).(*table)
	t.mem.setLimits(m.MemoryLow, m.MemoryPressure, m.MemoryLimit)
	m.proto = &Protocol{t: t, c: c, st: st}
	return nil
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Validate checks ranges.
func (m *Module) Validate() error {
	if m.SendBuffer < minBuffer || m.SendBuffer > maxBuffer {
		return fmt.Errorf("send_buffer %d out of range %d..%d", m.SendBuffer, minBuffer, maxBuffer)
	}
	if m.ReceiveBuffer < minBuffer || m.ReceiveBuffer > maxBuffer {
		return fmt.Errorf("receive_buffer %d out of range %d..%d", m.ReceiveBuffer, minBuffer, maxBuffer)
	}
	if m.TimeWaitMax < 0 || m.TimeWaitMax > 1<<22 {
		return fmt.Errorf("time_wait_max %d out of range 0..%d", m.TimeWaitMax, 1<<22)
	}
	if m.ChallengeACKLimit < 1 || m.ChallengeACKLimit > math.MaxInt32 {
		return fmt.Errorf("challenge_ack_limit %d out of range 1..%d", m.ChallengeACKLimit, math.MaxInt32)
	}
	if m.DelayedACK < time.Millisecond || m.DelayedACK > 500*time.Millisecond {
		return errors.New("delayed_ack must be within 1ms..500ms (RFC 9293 §3.8.6.3)")
	}
	if m.ReceiveBufferInitial < minBuffer || m.ReceiveBufferInitial > m.ReceiveBuffer {
		return fmt.Errorf("receive_buffer_initial %d out of range %d..receive_buffer (%d)", m.ReceiveBufferInitial, minBuffer, m.ReceiveBuffer)
	}
	if m.SendBufferInitial < minBuffer || m.SendBufferInitial > m.SendBuffer {
		return fmt.Errorf("send_buffer_initial %d out of range %d..send_buffer (%d)", m.SendBufferInitial, minBuffer, m.SendBuffer)
	}
	if m.MemoryLimit < 1<<20 || m.MemoryLimit > 1<<50 {
		return fmt.Errorf("memory_limit %d out of range 1 MiB..1 PiB", m.MemoryLimit)
	}
	if m.MemoryPressure < 1 || m.MemoryPressure > m.MemoryLimit || m.MemoryLow < 1 || m.MemoryLow > m.MemoryPressure {
		return fmt.Errorf("memory_low %d ≤ memory_pressure %d ≤ memory_limit %d required", m.MemoryLow, m.MemoryPressure, m.MemoryLimit)
	}
	if m.MinRTTWindow < time.Second || m.MinRTTWindow > 24*time.Hour {
		return errors.New("min_rtt_window must be within 1s..24h")
	}
	return nil
}

// Cleanup drops the protocol object; the table is the stack's.
func (m *Module) Cleanup() error {
	m.proto = nil
	return nil
}

// TransportProtocol implements pipeline.TransportModule.
func (m *Module) TransportProtocol() pipeline.TransportProtocol {
	if m.proto == nil {
		return nil
	}
	return m.proto
}

var (
	_ pipeline.TransportModule = (*Module)(nil)
	_ pipeline.Provisioner     = (*Module)(nil)
	_ pipeline.Validator       = (*Module)(nil)
	_ pipeline.CleanerUpper    = (*Module)(nil)
)
