// Package plugin is the host side of out-of-process filter plugins: the
// top-level plugins: section of a pipeline file (module ID plugins), which
// declares each plugin once, and the rules' filter.match.plugin and
// filter.target.plugin that send packets to it. A plugin is a separate program speaking protocol v1
// (proto/filterplugin.proto) over hashicorp/go-plugin and gRPC; Go plugins
// are written with the sdk package. See README.md.
//
// The layout follows go-plugin's gRPC example: the author's interface, the
// go-plugin glue, the gRPC client and server and the testing helpers are in
// sdk/; the protocol and its generated code in proto/; this package holds
// the pipeline module (module.go), process management (process*.go), the
// in-flight window per lane (lane.go), a batch's flights (pending.go), a
// plugin's versions, supervisor and figures (instance.go) and the filter
// glue (glue.go).
package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(Section)) }

// Section is the plugins: section: a list of plugin declarations.
type Section struct {
	decls []*decl

	reg      *registry
	log      zerolog.Logger
	clock    pipeline.Clock
	ctx      *pipeline.Context
	acquired []*Plugin // Start's references (released by Stop/Cleanup)
}

// declConfig is one entry as written.
type declConfig struct {
	Name      string    `yaml:"name"`
	Path      string    `yaml:"path"`
	Args      []string  `yaml:"args"`
	SHA256    string    `yaml:"sha256"`
	User      string    `yaml:"user"`
	Timeout   string    `yaml:"timeout"`
	OnFailure string    `yaml:"on_failure"`
	Reload    string    `yaml:"reload"`
	Window    int       `yaml:"window"`
	MaxBatch  int       `yaml:"max_batch"`
	Lanes     int       `yaml:"lanes"`
	Restarts  *int      `yaml:"restarts"`
	Config    yaml.Node `yaml:"config"`
}

// decl is one declared plugin of one generation.
type decl struct {
	declConfig
	line, col int
	tline     int // timeout:'s value (the entry's line and column without one)
	tcol      int

	path    string // resolved
	cfg     settings
	cfgJSON []byte
	binSum  [32]byte
	pinned  []byte // sha256: given
	uid     int
	gid     int
	watch   bool
	ct      bool // the pipeline has netfilter.conntrack
	key     string
	plugin  *Plugin // set by Start
}

// Defaults.
const (
	DefaultTimeout  = 20 * time.Millisecond
	DefaultWindow   = 8
	DefaultMaxBatch = 256
	DefaultLanes    = 4
	DefaultRestarts = 5
	maxMaxBatch     = 4096
)

// PipelineModule implements pipeline.Module.
func (*Section) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{
		ID:      "plugins",
		Summary: "out-of-process filter plugins (hashicorp/go-plugin over gRPC), used by rules as -j PLUGIN --name X",
		New:     func() pipeline.Module { return new(Section) },
	}
}

func posErr(n *yaml.Node, where, format string, args ...any) error {
	return &pipeline.PosError{Line: n.Line, Col: n.Column, Where: where, Msg: fmt.Sprintf(format, args...)}
}

// UnmarshalYAML decodes the section strictly: a sequence of mappings.
func (s *Section) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return posErr(n, "", "plugins is a list of {name:, path:, …}")
	}
	seen := map[string]bool{}
	for _, e := range n.Content {
		if e.Kind != yaml.MappingNode {
			return posErr(e, "", "a plugin is a mapping {name:, path:, …}")
		}
		d := &decl{line: e.Line, col: e.Column}
		tn := keyNode(e, "timeout")
		d.tline, d.tcol = tn.Line, tn.Column
		if err := pipeline.DecodeStrict(e, &d.declConfig); err != nil {
			var pe *pipeline.PosError
			if nn := keyNode(e, "name"); nn != e && errors.As(err, &pe) && pe.Where == "" {
				pe.Where = "plugin " + nn.Value
			}
			return err
		}
		where := "plugin " + d.Name
		switch {
		case d.Name == "":
			return posErr(e, "", "a plugin has no name")
		case !validName(d.Name):
			return posErr(e, where, "name %q: letters, digits, '-' and '_'", d.Name)
		case seen[d.Name]:
			return posErr(e, where, "plugin %q declared twice", d.Name)
		case d.Path == "":
			return posErr(e, where, "no path (the plugin's executable)")
		}
		seen[d.Name] = true
		if err := d.resolveStatic(e); err != nil {
			return err
		}
		s.decls = append(s.decls, d)
	}
	return nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// keyNode is the value node of key in mapping e (e when absent).
func keyNode(e *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(e.Content); i += 2 {
		if e.Content[i].Value == key {
			return e.Content[i+1]
		}
	}
	return e
}

// resolveStatic checks what needs no file system.
func (d *decl) resolveStatic(e *yaml.Node) error {
	where := "plugin " + d.Name
	d.cfg = settings{Timeout: DefaultTimeout, Window: DefaultWindow, MaxBatch: DefaultMaxBatch, Lanes: DefaultLanes, OnFailure: "accept", Restarts: DefaultRestarts}
	if d.Timeout != "" {
		t, err := time.ParseDuration(d.Timeout)
		if err != nil || t <= 0 || t > time.Minute {
			return posErr(keyNode(e, "timeout"), where, "timeout %q: a duration such as 20ms (at most 1m)", d.Timeout)
		}
		d.cfg.Timeout = t
	}
	switch strings.ToLower(d.OnFailure) {
	case "", "accept":
	case "drop":
		d.cfg.OnFailure = "drop"
	default:
		return posErr(keyNode(e, "on_failure"), where, "on_failure %q is not one of accept, drop", d.OnFailure)
	}
	switch d.Reload {
	case "", "manual":
	case "watch":
		d.watch = true
	default:
		return posErr(keyNode(e, "reload"), where, "reload %q is not one of manual, watch", d.Reload)
	}
	for _, v := range []struct {
		key      string
		val      *int
		lo, hi   int
		def      int
		override int
	}{{"window", &d.cfg.Window, 1, 64, DefaultWindow, d.Window}, {"max_batch", &d.cfg.MaxBatch, 1, maxMaxBatch, DefaultMaxBatch, d.MaxBatch}, {"lanes", &d.cfg.Lanes, 1, 64, DefaultLanes, d.Lanes}} {
		if v.override == 0 {
			continue
		}
		if v.override < v.lo || v.override > v.hi {
			return posErr(keyNode(e, v.key), where, "%s %d out of range [%d, %d]", v.key, v.override, v.lo, v.hi)
		}
		*v.val = v.override
	}
	if d.Restarts != nil {
		if *d.Restarts < 0 || *d.Restarts > 1000 {
			return posErr(keyNode(e, "restarts"), where, "restarts %d out of range [0, 1000]", *d.Restarts)
		}
		d.cfg.Restarts = *d.Restarts
	}
	if d.SHA256 != "" {
		b, err := hex.DecodeString(d.SHA256)
		if err != nil || len(b) != sha256.Size {
			return posErr(keyNode(e, "sha256"), where, "sha256 %q: 64 hex digits", d.SHA256)
		}
		d.pinned = b
	}
	d.cfgJSON = []byte("{}")
	if d.Config.Kind != 0 {
		if d.Config.Kind != yaml.MappingNode {
			return posErr(&d.Config, where, "config is a mapping (handed to the plugin as JSON)")
		}
		var v any
		if err := d.Config.Decode(&v); err != nil {
			return posErr(&d.Config, where, "config: %v", err)
		}
		b, err := json.Marshal(jsonable(v))
		if err != nil {
			return posErr(&d.Config, where, "config: %v", err)
		}
		d.cfgJSON = b
	}
	return nil
}

// jsonable turns yaml.v3's maps into JSON-encodable ones.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
	}
	return v
}

// Provision reads each plugin's binary and resolves the user. It starts
// nothing. The binary is not one of the generation's inputs
// (Context.ReadFile): a reload whose only change is a plugin binary builds
// no new generation; Refresh replaces that plugin instead. Its sha256 is
// part of the plugin's version key, so a new generation built for another
// change replaces it too.
func (s *Section) Provision(ctx *pipeline.Context) error {
	s.ctx, s.log, s.clock = ctx, ctx.Logger, ctx.Clock
	s.reg = ctx.Shared("filter.plugin/registry", func() any { return &registry{plugins: map[string]*Plugin{}} }).(*registry)
	for _, d := range s.decls {
		where := fmt.Sprintf("plugin %s (line %d)", d.Name, d.line)
		d.path = ctx.ResolvePath(d.Path)
		if d.pinned != nil && runtime.GOOS != "linux" {
			return fmt.Errorf("%s: sha256: not supported on %s (the checked copy is a sealed memfd)", where, runtime.GOOS)
		}
		sum, err := d.readBinary()
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		d.binSum = sum
		if d.uid, d.gid, err = d.credentials(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	ct := false
	if ctx.Config != nil {
		for _, m := range ctx.Config.Modules {
			ct = ct || m.ID == "netfilter.conntrack"
		}
	}
	for _, d := range s.decls {
		d.ct = ct
		d.key = d.versionKey()
	}
	s.reg.building(s.decls)
	return nil
}

// readBinary hashes the plugin's binary and checks it against sha256:
// and that it is executable.
func (d *decl) readBinary() ([32]byte, error) {
	bin, err := os.ReadFile(d.path)
	if err != nil {
		return [32]byte{}, err
	}
	sum := sha256.Sum256(bin)
	if d.pinned != nil && string(d.pinned) != string(sum[:]) {
		return sum, fmt.Errorf("%s has sha256 %x, the file pins %s", d.path, sum, d.SHA256)
	}
	if st, err := os.Stat(d.path); err != nil || st.Mode()&0o111 == 0 {
		return sum, fmt.Errorf("%s is not executable", d.path)
	}
	return sum, nil
}

// Refresh implements pipeline.Refresher: a reload of an unchanged
// pipeline file replaces (make before break, as reload: watch does) each
// plugin whose binary changed, without a new generation. A new version that
// fails to start leaves the running one and fails the reload; plugins
// replaced before it stay replaced.
func (s *Section) Refresh() ([]string, error) {
	var renewed []string
	for i, d := range s.decls {
		p := d.plugin
		if p == nil {
			continue
		}
		sum, err := d.readBinary()
		if err != nil {
			if sum == d.binSum {
				continue // unchanged (it was checked when it started)
			}
			return renewed, fmt.Errorf("plugin %s: new binary refused, the running version stays: %w", d.Name, err)
		}
		if sum == d.binSum {
			continue
		}
		nd := *d
		nd.binSum = sum
		nd.key = nd.versionKey()
		replaced, err := p.replace(s.launcherOf(&nd), &nd)
		if err != nil {
			return renewed, fmt.Errorf("plugin %s: new version not started, the running one stays: %w", d.Name, err)
		}
		s.decls[i] = &nd // a new declaration: reload: watch reads the one in force
		p.decl.Store(&nd)
		if !replaced {
			continue // reload: watch replaced it already
		}
		in := p.cur.Load()
		line := fmt.Sprintf("plugin %s: new binary (sha256 %x), replaced without a new generation", d.Name, sum[:6])
		if in != nil {
			line += fmt.Sprintf(": version %q, pid %d", in.version, in.pid())
		}
		renewed = append(renewed, line)
	}
	return renewed, nil
}

// versionKey is what makes a version: the binary's hash, how it runs, its
// config and settings. A reload that changes none keeps the process.
func (d *decl) versionKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "%x|%s|%q|%d|%d|%+v|%s|%v|%x|%v", d.binSum, d.path, d.Args, d.uid, d.gid, d.cfg, d.cfgJSON, d.watch, d.pinned, d.ct)
	return hex.EncodeToString(h.Sum(nil))
}

// credentials resolves user:. Without it the plugin runs as pipectl's
// own uid (under root: uid 0 with no capabilities, see spawn); with it as
// that user (never root).
func (d *decl) credentials() (uid, gid int, err error) {
	if d.User == "" {
		return -1, -1, nil
	}
	if runtime.GOOS != "linux" {
		return 0, 0, fmt.Errorf("user: not supported on %s", runtime.GOOS)
	}
	name := d.User
	u, err := user.Lookup(name)
	if err != nil {
		id, e := strconv.Atoi(name)
		if e != nil {
			return 0, 0, fmt.Errorf("user %q: %w", name, err)
		}
		u = &user.User{Uid: name, Gid: strconv.Itoa(id)}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 {
		return 0, 0, fmt.Errorf("user %q is root: leave user: out to run as pipectl's uid without capabilities", name)
	}
	if os.Geteuid() != 0 && uid != os.Geteuid() {
		return 0, 0, fmt.Errorf("user %q: pipectl runs as uid %d and cannot switch users", name, os.Geteuid())
	}
	if os.Geteuid() != 0 {
		return -1, -1, nil
	}
	return uid, gid, nil
}

// Validate checks that each plugin's deadline fits in the stack's resume
// bound (validateTimeouts) and that pipectl keeps what starting a plugin
// with user: needs (validatePrivileges).
func (s *Section) Validate() error {
	if err := s.validateTimeouts(); err != nil {
		return err
	}
	return s.validatePrivileges()
}

// validateTimeouts refuses a timeout: the stack's resume bound (pipeline
// Options.ResumeTimeout, 1 s by default) cannot hold. A reload stops the
// old generation once it waited that long for the packets stolen in it:
// those still out — waiting for an answer, or for the deadline and then
// the failure policy — are dropped (stack.resume_stale), whatever
// on_failure says. A plugin hands every packet back within its deadline
// plus, behind a replaced version, drainSlack (minResumeTimeout).
func (s *Section) validateTimeouts() error {
	if s.ctx == nil || s.ctx.Stack() == nil {
		return nil
	}
	bound := s.ctx.Stack().ResumeTimeout()
	for _, d := range s.decls {
		if minResumeTimeout(d.cfg.Timeout) <= bound {
			continue
		}
		return &pipeline.PosError{Line: d.tline, Col: d.tcol, Where: "plugin " + d.Name, Msg: fmt.Sprintf(
			"timeout %v does not fit in the stack's resume bound (%v): a reload drops the packets still waiting for the plugin's answer or its on_failure after that long, so the deadline (plus the %v a replaced version gets to drain) must be at most %v",
			d.cfg.Timeout, bound, drainSlack, max(bound-drainSlack, 0))}
	}
	return nil
}

// validatePrivileges checks that pipectl keeps what starting a plugin with
// user: needs after it dropped its privileges (a restart, a reload):
// setuid and setgid to switch, chown to give the socket directory to the
// user, and dac_override to reach the user's socket. Without user: a
// plugin needs none of them.
func (s *Section) validatePrivileges() error {
	if s.ctx == nil || s.ctx.Config == nil || runtime.GOOS != "linux" {
		return nil
	}
	pc := s.ctx.Config.Privileges
	if pc.Drop != nil && !*pc.Drop {
		return nil
	}
	need := false
	for _, d := range s.decls {
		if d.User != "" {
			need = true
		}
	}
	if !need {
		return nil
	}
	keep := pc.Keep
	if len(keep) == 0 {
		keep = []string{"net_admin", "net_raw"}
	}
	norm := func(c string) string { return strings.TrimPrefix(strings.ToLower(c), "cap_") }
	var missing []string
	for _, c := range []string{"setuid", "setgid", "chown", "dac_override"} {
		if !slices.ContainsFunc(keep, func(k string) bool { return norm(k) == c }) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a plugin with user: is started after pipectl dropped its privileges too: privileges: keep must list %s (e.g. keep: [net_admin, net_raw, setuid, setgid, chown, dac_override]), or leave user: out", strings.Join(missing, ", "))
	}
	return nil
}

// Start starts (or keeps, or replaces make-before-break) every declared
// plugin. A plugin whose binary, config or settings are unchanged keeps its
// running process; a changed one gets a new process, configured and
// health-checked before it takes new batches; one that fails to start
// fails the reload and the old version stays.
func (s *Section) Start() error {
	for _, d := range s.decls {
		p, err := s.reg.acquire(d, s)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", d.Name, err)
		}
		s.acquired = append(s.acquired, p)
		d.plugin = p
	}
	return nil
}

// Stop releases the generation's plugins: one no later generation
// declares is stopped.
func (s *Section) Stop() error {
	s.release()
	return nil
}

// Cleanup releases what a failed build started.
func (s *Section) Cleanup() error {
	s.release()
	return nil
}

func (s *Section) release() {
	for _, p := range s.acquired {
		s.reg.release(p)
	}
	s.acquired = nil
}

// launcherOf is how a declaration's process starts.
func (s *Section) launcherOf(d *decl) launcher { return newLauncher(s, d) }

// newLauncher makes the launcher of a declaration: a child process (tests
// replace it with an in-process server).
var newLauncher = func(s *Section, d *decl) launcher {
	return processLauncher(procSpec{name: d.Name, path: d.path, args: d.Args, sha256: d.pinned, uid: d.uid, gid: d.gid, log: s.log})
}

// building records a build's declarations, for its rules.
func (r *registry) building(ds []*decl) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decls = map[string]*decl{}
	for _, d := range ds {
		r.decls[d.Name] = d
	}
}

// declared returns the declaration of name in the build under way.
func (r *registry) declared(name string) (*decl, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.decls[name]; ok {
		return d, nil
	}
	var names []string
	for n := range r.decls {
		names = append(names, n)
	}
	slices.Sort(names)
	return nil, names
}

// acquire returns the running plugin for d, starting or replacing it.
func (r *registry) acquire(d *decl, s *Section) (*Plugin, error) {
	r.mu.Lock()
	p := r.plugins[d.Name]
	r.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		same := p.key == d.key
		p.mu.Unlock()
		p.conntrack.Store(d.ct) // a new version's cache follows the new pipeline
		if !same {
			if _, err := p.replace(s.launcherOf(d), d); err != nil {
				return nil, fmt.Errorf("new version not started, the running one stays: %w", err)
			}
		} else if p.failedState() {
			// An unchanged reload restarts a plugin whose budget ran out.
			if err := p.Run(); err != nil {
				return nil, err
			}
		}
		p.decl.Store(d) // reload: watch follows the newest declaration
		r.mu.Lock()
		r.refs[p]++
		r.mu.Unlock()
		return p, nil
	}
	p = &Plugin{
		name: d.Name, cfgJSON: d.cfgJSON, key: d.key, launch: s.launcherOf(d),
		clock: s.clock, log: s.log.With().Str("plugin", d.Name).Logger(),
		counters: s.ctx.Counters("plugin_" + d.Name), state: "starting",
	}
	p.cacheHits, p.cacheMisses = p.counters.Get("cache_hits"), p.counters.Get("cache_misses")
	p.conntrack.Store(d.ct)
	cfg := d.cfg
	p.cfgp.Store(&cfg)
	p.sink = &policySink{p: p, stack: s.ctx.Stack()}
	if err := p.Run(); err != nil {
		return nil, err
	}
	p.decl.Store(d)
	p.launcherOf = s.launcherOf
	p.quit, p.watchDone = make(chan struct{}), make(chan struct{})
	go p.watch(watchEvery) // acts while the declaration in force says reload: watch
	r.mu.Lock()
	if r.refs == nil {
		r.refs = map[*Plugin]int{}
	}
	r.plugins[d.Name] = p
	r.refs[p]++
	r.mu.Unlock()
	return p, nil
}

// release drops one generation's reference; the last one stops it.
func (r *registry) release(p *Plugin) {
	r.mu.Lock()
	r.refs[p]--
	last := r.refs[p] <= 0
	if last {
		delete(r.refs, p)
		if r.plugins[p.name] == p {
			delete(r.plugins, p.name)
		}
	}
	r.mu.Unlock()
	if last {
		p.Stop()
	}
}

// Plugins returns the plugins of a stack, for pipectl plugins and the
// metrics (nil when it has none).
func Plugins(st *pipeline.Stack) []Status {
	r, ok := st.Shared("filter.plugin/registry", func() any { return &registry{plugins: map[string]*Plugin{}} }).(*registry)
	if !ok {
		return nil
	}
	return r.Statuses()
}

var (
	_ pipeline.Provisioner  = (*Section)(nil)
	_ pipeline.Validator    = (*Section)(nil)
	_ pipeline.Starter      = (*Section)(nil)
	_ pipeline.Stopper      = (*Section)(nil)
	_ pipeline.CleanerUpper = (*Section)(nil)
	_ pipeline.Refresher    = (*Section)(nil)
	_                       = errors.New
	_                       = sync.Mutex{}
)
