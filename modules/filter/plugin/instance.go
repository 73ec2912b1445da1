package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	pb "github.com/pipestack/pipestack/modules/filter/plugin/proto"
	"github.com/pipestack/pipestack/modules/filter/plugin/sdk"
	"github.com/pipestack/pipestack/pipeline"
)

var errOutOfOrder = errors.New("the plugin answered out of order")

// errSameVersion: Replace was asked for the version that runs (a reload
// and reload: watch both saw one new binary); nothing was done.
var errSameVersion = errors.New("that version already runs")

// settings are a plugin's resolved settings (Config with defaults).
type settings struct {
	Timeout   time.Duration
	Window    int
	MaxBatch  int
	Lanes     int
	OnFailure string // accept or drop
	Restarts  int    // restart budget
}

// conn is a started plugin version: the judging client and, for a child
// process, the process.
type conn struct {
	client *sdk.Client
	proc   *process // nil in-process (tests)
	close  func()   // in-process: ends the server (tests)
}

// launcher starts one version of the plugin (a child process, or in tests
// an in-process server).
type launcher func(ctx context.Context) (*conn, error)

// Plugin is one declared plugin, long-lived across generations (found by
// name in the stack's shared state): its running version, its supervisor,
// its counters. Workers reach the current version through cur.
type Plugin struct {
	name     string
	cfgp     atomic.Pointer[settings] // the running version's
	cfgJSON  []byte
	key      string // what makes a version: binary hash, config, settings
	launch   launcher
	clock    pipeline.Clock
	log      zerolog.Logger
	sink     sink
	counters *pipeline.CounterSet
	stats    stats

	// conntrack: the pipeline tracks connections (netfilter.conntrack), so
	// a plugin that allows it gets a verdict cache (cache.go).
	conntrack   atomic.Bool
	cacheHits   *pipeline.Counter // cache_hits
	cacheMisses *pipeline.Counter // cache_misses: cacheable packets sent

	cur atomic.Pointer[instance]

	// pend holds each batch's flights until it finishes (pending.go),
	// indexed by Batch.Shard.
	pend   atomic.Pointer[[]*pending]
	pendMu sync.Mutex

	replaceMu sync.Mutex // one Replace at a time

	// decl is the declaration in force (the newest generation's, or the
	// one a refresh renewed), launcherOf makes its launcher: what
	// reload: watch replaces with.
	decl       atomic.Pointer[decl]
	launcherOf func(*decl) launcher
	// quit ends the watcher (Stop), which closes watchDone (nil: none).
	quit, watchDone chan struct{}
	quitOnce        sync.Once

	mu       sync.Mutex
	state    string // starting, running, restarting, failed, stopped
	restarts int    // restarts done in this budget
	stopped  bool
	reason   string
}

// settings are the plugin's current settings (the newest version's).
func (p *Plugin) settings() *settings { return p.cfgp.Load() }

// instance is one version of a plugin: one process, its lanes.
type instance struct {
	p       *Plugin
	cfg     settings // this version's
	conn    *conn
	version string
	needs   *pb.ConfigureResponse
	lanes   []*lane
	cache   *verdictCache // nil: the plugin allows none, or no conntrack
	ctx     context.Context
	cancel  context.CancelFunc
	dead    atomic.Bool
	gone    atomic.Int32 // lanes that ended
	start   time.Time
	misses  atomic.Int32 // timeouts since the last health check
	deadErr atomic.Pointer[error]
	// gate, when set, is closed once the version this one replaced has
	// handed back everything it held: until then this one's answers wait,
	// so that packets of a flow stay in order across a replacement.
	gate chan struct{}
	// draining: replaced; a lane that runs empty pokes drainCh.
	draining atomic.Bool
	drainCh  chan struct{}
	// open counts the batches that hold this version (pending.go's hold):
	// their packets were stolen for it and are not yet sent.
	open atomic.Int32
}

// startInstance launches, configures and health-checks one version; only
// a version that passes all three is returned.
func (p *Plugin) startInstance(launch launcher, cfgJSON []byte, gate chan struct{}) (*instance, error) {
	cfg := *p.settings()
	ctx, cancel := context.WithCancel(context.Background())
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	c, err := launch(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	in := &instance{p: p, cfg: cfg, conn: c, ctx: ctx, cancel: cancel, start: time.Now(), gate: gate}
	fail := func(err error) (*instance, error) {
		in.kill()
		return nil, err
	}
	needs, err := c.client.Configure(sctx, p.name, cfgJSON, cfg.MaxBatch)
	if err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	in.needs, in.version = needs, needs.Version
	if needs.CacheTtlMs > 0 {
		if p.conntrack.Load() {
			in.cache = newVerdictCache(time.Duration(needs.CacheTtlMs) * time.Millisecond)
		} else {
			p.log.Warn().Uint32("cache_ttl_ms", needs.CacheTtlMs).Msg("plugin allows a per-flow verdict cache, but the pipeline has no netfilter.conntrack: the cache is off")
		}
	}
	if err := c.client.Health(sctx); err != nil {
		return fail(fmt.Errorf("health check: %w", err))
	}
	for i := 0; i < cfg.Lanes; i++ {
		st, err := c.client.Judge(ctx)
		if err != nil {
			return fail(fmt.Errorf("judge stream: %w", err))
		}
		in.lanes = append(in.lanes, newLane(in, st))
	}
	return in, nil
}

// laneIndex returns the lane of a packet: by its flow, so that a flow's
// packets share one stream and its answers come back in order whichever
// worker (batch context) runs them.
func (in *instance) laneIndex(t *pipeline.Tuple) int {
	if len(in.lanes) == 1 {
		return 0
	}
	return int(flowHash(t) % uint32(len(in.lanes)))
}

// flowHash is symmetric in source and destination (both directions of a
// flow share a lane).
func flowHash(t *pipeline.Tuple) uint32 {
	a, b := t.Src.As16(), t.Dst.As16()
	var x, y uint64
	for i := 0; i < 16; i += 8 {
		x ^= uint64(a[i])<<56 | uint64(a[i+1])<<48 | uint64(a[i+2])<<40 | uint64(a[i+3])<<32 | uint64(a[i+4])<<24 | uint64(a[i+5])<<16 | uint64(a[i+6])<<8 | uint64(a[i+7])
		y ^= uint64(b[i])<<56 | uint64(b[i+1])<<48 | uint64(b[i+2])<<40 | uint64(b[i+3])<<32 | uint64(b[i+4])<<24 | uint64(b[i+5])<<16 | uint64(b[i+6])<<8 | uint64(b[i+7])
	}
	h := (x + y) ^ uint64(t.SrcPort)*uint64(t.DstPort) ^ (uint64(t.SrcPort)+uint64(t.DstPort))<<32 ^ uint64(t.Proto)<<48
	h *= 0x9e3779b97f4a7c15
	return uint32(h >> 32)
}

// streamError is a lane's stream breaking: the version is dead unless it
// is being stopped on purpose.
func (in *instance) streamError(err error) {
	if in.ctx.Err() != nil {
		return
	}
	if in.deadErr.CompareAndSwap(nil, &err) {
		in.p.log.Warn().Err(err).Str("version", in.version).Msg("plugin stream broke")
	}
	in.die()
}

// laneGone: a lane's deliverer ended.
func (in *instance) laneGone(*lane) { in.gone.Add(1) }

// timedOut: a flight missed its deadline; a version that misses and then
// fails a health check is hung and is replaced.
func (in *instance) timedOut() {
	if in.misses.Add(1) != 1 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(in.ctx, max(in.cfg.Timeout*5, 100*time.Millisecond))
		defer cancel()
		err := in.conn.client.Health(ctx)
		in.misses.Store(0)
		if err != nil && in.ctx.Err() == nil {
			in.p.log.Warn().Err(err).Str("version", in.version).Msg("plugin missed its deadline and fails its health check: killed")
			in.die()
		}
	}()
}

// die kills a version that broke and lets the supervisor restart.
func (in *instance) die() {
	if !in.dead.CompareAndSwap(false, true) {
		return
	}
	in.kill()
	go in.p.restart(in)
}

// kill ends the version: the process group is killed, the streams end and
// every lane fails what it holds.
func (in *instance) kill() {
	in.dead.Store(true)
	in.cancel()
	for _, l := range in.lanes {
		l.broken()
	}
	if in.conn.proc != nil {
		in.conn.proc.kill()
	}
	if in.conn.close != nil {
		in.conn.close()
	}
}

// drainSlack is how long past its flights' deadline a replaced version
// is given to hand them back before it is killed (its lanes then fail what
// is left); the next version's answers and deadlines wait for it (gate).
const drainSlack = 50 * time.Millisecond

// minResumeTimeout is the stack's resume bound (pipeline
// Options.ResumeTimeout) a plugin with this deadline needs: every packet it
// holds is answered or gets the failure policy within the deadline after
// its flight is sent, or, behind a replaced version, within that version's
// deadline and drainSlack. A reload waits that long for the old
// generation's packets (Validate refuses a deadline that does not fit).
func minResumeTimeout(timeout time.Duration) time.Duration { return timeout + drainSlack }

// drainAndStop stops a replaced version: it answers what it holds (until
// no batch holds it any more and its lanes are empty, or the deadline of
// the last flight passed), then is killed.
func (in *instance) drainAndStop() { in.drainThen(nil) }

// drainThen is drainAndStop calling drained (when not nil) as soon as the
// version holds nothing (or its time is up), before it is killed. A batch
// that holds the version is always waited for (it flushes when the worker
// finishes it, microseconds later); then its flights get their deadline.
func (in *instance) drainThen(drained func()) {
	in.drainCh = make(chan struct{}, 1)
	in.draining.Store(true)
	wait := in.cfg.Timeout + drainSlack
	limit := time.NewTimer(wait)
	defer limit.Stop()
	poll := time.NewTicker(time.Millisecond) // a batch flushed, a flight opened
	defer poll.Stop()
	for {
		open := in.open.Load()
		busy := int(open)
		for _, l := range in.lanes {
			busy += l.inFlight()
		}
		if busy == 0 {
			break
		}
		select {
		case <-in.drainCh: // a lane ran empty
			continue
		case <-poll.C:
			continue
		case <-limit.C:
		}
		if in.open.Load() == 0 {
			break // what is still sent gets the policy when it is killed
		}
		limit.Reset(wait) // a batch still holds it: its flights come, then their deadline
	}
	// A flight leaves its lane's queue before its packets are resumed (on
	// the lane's goroutine, under deliverMu): let that delivery end, or the
	// next version's answers could overtake it.
	for _, l := range in.lanes {
		l.deliverMu.Lock()
		l.deliverMu.Unlock()
	}
	if drained != nil {
		drained()
	}
	in.kill()
}

// Run starts the first version; an error is the generation's.
func (p *Plugin) Run() error {
	p.mu.Lock()
	launch, cfgJSON := p.launch, p.cfgJSON
	p.mu.Unlock()
	in, err := p.startInstance(launch, cfgJSON, nil)
	if err != nil {
		p.setState("failed", err.Error())
		return err
	}
	p.cur.Store(in)
	p.setState("running", "")
	p.log.Info().Str("version", in.version).Int("pid", in.pid()).Int("protocol", in.conn.client.Version()).Msg("plugin started")
	return nil
}

func (in *instance) pid() int {
	if in.conn.proc != nil {
		return in.conn.proc.pid
	}
	return 0
}

func (p *Plugin) setState(s, reason string) {
	p.mu.Lock()
	p.state, p.reason = s, reason
	p.mu.Unlock()
}

// restart replaces a dead version with backoff, within the budget; once
// spent, the failure policy holds (every flush fails: unavailable). A
// Replace (reload) that installs another version meanwhile wins: the
// restart gives up, and the version it started is killed, not installed
// over the reload's.
func (p *Plugin) restart(dead *instance) {
	p.mu.Lock()
	if p.superseded(dead) {
		p.mu.Unlock()
		return
	}
	if time.Since(dead.start) > time.Minute {
		p.restarts = 0 // a version that ran a minute refills the budget
	}
	p.state = "restarting"
	p.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		if p.superseded(dead) {
			p.mu.Unlock()
			return
		}
		if cfg := p.settings(); p.restarts >= cfg.Restarts {
			p.state, p.reason = "failed", fmt.Sprintf("restart budget (%d) spent; on_failure %s holds", cfg.Restarts, cfg.OnFailure)
			p.mu.Unlock()
			p.log.Error().Int("restarts", cfg.Restarts).Str("on_failure", cfg.OnFailure).Msg("plugin restart budget spent: the failure policy holds until the next reload")
			return
		}
		p.restarts++
		p.counters.Get("restarts").Inc()
		launch, cfgJSON := p.launch, p.cfgJSON
		p.mu.Unlock()
		time.Sleep(backoff)
		in, err := p.startInstance(launch, cfgJSON, nil)
		if err == nil {
			p.mu.Lock()
			if p.superseded(dead) {
				p.mu.Unlock()
				in.kill()
				return
			}
			p.cur.Store(in)
			p.state, p.reason = "running", ""
			p.mu.Unlock()
			p.log.Warn().Str("version", in.version).Int("pid", in.pid()).Msg("plugin restarted")
			return
		}
		p.log.Warn().Err(err).Msg("plugin restart failed")
		backoff = min(backoff*2, 5*time.Second)
	}
}

// superseded: the plugin stopped, or another version replaced dead (p.mu
// held).
func (p *Plugin) superseded(dead *instance) bool {
	return p.stopped || p.cur.Load() != dead
}

// failedState reports whether the restart budget ran out (or the first
// start failed).
func (p *Plugin) failedState() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == "failed"
}

// replace is Replace for a new declaration (settings may differ); false:
// that version was already running, nothing was done.
func (p *Plugin) replace(launch launcher, d *decl) (bool, error) {
	err := p.Replace(launch, d.key, d.cfgJSON, &d.cfg)
	if err == errSameVersion {
		return false, nil
	}
	return err == nil, err
}

// Replace starts a new version (make before break) and, once it is
// configured and healthy, sends new batches to it; the old one answers what
// it holds and is stopped. A new version that fails leaves the old one.
// Every flight is judged by the version it was sent to: a packet added to
// the old version's open flight goes with that flight.
func (p *Plugin) Replace(launch launcher, key string, cfgJSON []byte, cfg *settings) error {
	p.replaceMu.Lock() // a reload and reload: watch may both replace
	defer p.replaceMu.Unlock()
	p.mu.Lock()
	same := p.key == key && p.cur.Load() != nil && !p.stopped
	p.mu.Unlock()
	if same {
		return errSameVersion // that version already runs (the other one replaced it)
	}
	prev := p.settings()
	if cfg != nil {
		p.cfgp.Store(cfg) // the new version's window, batch size, policy
	}
	in, err := p.startInstance(launch, cfgJSON, make(chan struct{}))
	if err != nil {
		p.cfgp.Store(prev)
		p.log.Error().Err(err).Msg("new plugin version failed to start; the running one stays")
		return err
	}
	p.mu.Lock()
	if p.stopped { // stopped while the new version started
		p.mu.Unlock()
		in.kill()
		return errors.New("the plugin was stopped")
	}
	p.launch, p.cfgJSON, p.key = launch, cfgJSON, key
	old := p.cur.Swap(in)
	p.state, p.reason, p.restarts = "running", "", 0
	p.mu.Unlock()
	p.counters.Get("replaced").Inc()
	p.log.Info().Str("version", in.version).Int("pid", in.pid()).Msg("plugin replaced")
	go func() {
		if old != nil {
			old.drainThen(func() { close(in.gate) })
		} else {
			close(in.gate)
		}
	}()
	return nil
}

// Stop stops the plugin for good.
func (p *Plugin) Stop() {
	p.mu.Lock()
	p.stopped = true
	p.state = "stopped"
	p.mu.Unlock()
	if in := p.cur.Swap(nil); in != nil {
		in.drainAndStop()
	}
	if p.quit != nil {
		p.quitOnce.Do(func() { close(p.quit) })
		<-p.watchDone
	}
}

// count counts packets that got the failure policy.
func (p *Plugin) count(why failure, n int) {
	switch why {
	case failTimeout:
		p.counters.Get("timeouts").Inc()
		p.counters.Get("timeout_packets").Add(uint64(n))
	case failWindowFull:
		p.counters.Get("window_full_packets").Add(uint64(n))
	case failUnavailable:
		p.counters.Get("unavailable_packets").Add(uint64(n))
	}
	p.counters.Get("policy_" + p.settings().OnFailure + "_packets").Add(uint64(n))
}

// stats are a plugin's round-trip figures.
type stats struct {
	batches, packets, late atomic.Uint64
	mu                     sync.Mutex
	rtt                    [128]uint64 // 4 buckets per power of two of nanoseconds (to ~17 s)
}

func (s *stats) observe(d time.Duration, n int) {
	s.batches.Add(1)
	s.packets.Add(uint64(n))
	b := bucketOf(d)
	s.mu.Lock()
	s.rtt[b]++
	s.mu.Unlock()
}

// bucketOf: 4 buckets per power of two of nanoseconds.
func bucketOf(d time.Duration) int {
	ns := uint64(max(d, 1))
	b := 0
	for ns >= 8 {
		ns >>= 1
		b += 4
	}
	b += int(ns) - 4
	return min(max(b, 0), 127)
}

func bucketValue(b int) time.Duration {
	base := uint64(4 + b%4)
	return time.Duration(base << (b / 4))
}

// quantile returns the round trip at q (0..1).
func (s *stats) quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total uint64
	for _, c := range s.rtt {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var acc uint64
	for b, c := range s.rtt {
		acc += c
		if acc > want {
			return bucketValue(b)
		}
	}
	return bucketValue(127)
}

// Status is one plugin's line of `pipectl plugins`.
type Status struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Protocol is the protocol version negotiated with the process (1: 72-byte
	// records, other languages' plugins; 2: the Go SDK's 32-byte records).
	Protocol  int           `json:"protocol"`
	PID       int           `json:"pid"`
	State     string        `json:"state"`
	Reason    string        `json:"reason,omitempty"`
	Batches   uint64        `json:"batches"`
	Packets   uint64        `json:"packets"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Timeouts  uint64        `json:"timeouts"`
	Late      uint64        `json:"late_answers"`
	Restarts  uint64        `json:"restarts"`
	CacheHits string        `json:"cache_hit_rate"`
	// CacheHitCount, CacheMissCount: packets judged from the verdict cache,
	// and cacheable packets that went to the plugin.
	CacheHitCount  uint64 `json:"cache_hits"`
	CacheMissCount uint64 `json:"cache_misses"`
}

// Status reports the plugin's state and figures.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	st := Status{Name: p.name, State: p.state, Reason: p.reason}
	p.mu.Unlock()
	if in := p.cur.Load(); in != nil {
		st.Version, st.PID, st.Protocol = in.version, in.pid(), in.conn.client.Version()
	}
	st.Batches, st.Packets, st.Late = p.stats.batches.Load(), p.stats.packets.Load(), p.stats.late.Load()
	st.P50, st.P99 = p.stats.quantile(0.5), p.stats.quantile(0.99)
	st.Timeouts = p.counters.Get("timeouts").Load()
	st.Restarts = p.counters.Get("restarts").Load()
	if p.cacheHits != nil {
		st.CacheHitCount, st.CacheMissCount = p.cacheHits.Load(), p.cacheMisses.Load()
	}
	in := p.cur.Load()
	switch {
	case in == nil:
		st.CacheHits = "n/a"
	case in.needs.CacheTtlMs == 0:
		st.CacheHits = "off (the plugin allows none)"
	case in.cache == nil:
		st.CacheHits = "off (no netfilter.conntrack)"
	case st.CacheHitCount+st.CacheMissCount == 0:
		st.CacheHits = "0%"
	default:
		st.CacheHits = fmt.Sprintf("%.1f%%", 100*float64(st.CacheHitCount)/float64(st.CacheHitCount+st.CacheMissCount))
	}
	return st
}

// registry is the stack's table of declared plugins (shared state).
type registry struct {
	mu      sync.Mutex
	plugins map[string]*Plugin
	refs    map[*Plugin]int  // generations using each
	decls   map[string]*decl // the build under way
}

// Statuses lists every plugin of the stack.
func (r *registry) Statuses() []Status {
	r.mu.Lock()
	var out []Status
	for _, p := range r.plugins {
		out = append(out, p.Status())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close stops every plugin when the stack closes (io.Closer of Shared).
func (r *registry) Close() error {
	r.mu.Lock()
	ps := r.plugins
	r.plugins = nil
	r.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
	return nil
}
