package pipeline

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline/wire"
)

// Config is a decoded pipeline file: everything one generation is built
// from. Module instances in it are decoded but not provisioned.
type Config struct {
	// File is the path the config was read from (for error messages).
	File string
	// Name of the pipeline.
	Name string
	Log  LogConfig
	// Control is the control socket and metrics endpoint (pipectl run
	// serves them; the stack itself does not).
	Control ControlConfig
	// Privileges says what pipectl run keeps once its devices are open.
	Privileges PrivilegesConfig
	// Modules are the protocol modules, in file order.
	Modules []ModuleConfig
	// Links are the NICs, in file order (NIC IDs are handed out in this
	// order the first time a name is seen).
	Links      []LinkConfig
	Forwarding ForwardingConfig
	Routes     []RouteConfig
	// RouteRules choose route tables by mark (policyroute.go).
	RouteRules []RouteRuleConfig
	// Hooks are filter tables installed at the hooks from Go; nil entries
	// cost nothing. They run at priority 0, before the filter section's
	// tables of the same priority (see HookModule).
	Hooks [NumHooks]*HookTable

	hash [32]byte
}

// LogConfig configures pipectl's logger.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error (default info)
	Format string `yaml:"format"` // console or json (default console)
}

// ControlConfig configures the control socket (`pipectl stats`, `route`,
// `neigh`, `reload`) and the optional Prometheus endpoint.
type ControlConfig struct {
	// Socket is the Unix socket path (mode 0600, root only). Default
	// /run/pipestack/<name>.sock; "off" disables it.
	Socket string `yaml:"socket"`
	// Metrics is a listen address (e.g. 127.0.0.1:9100) for Prometheus
	// text metrics at /metrics; empty: off.
	Metrics string `yaml:"metrics"`
}

// SocketPath is the control socket path in force ("" when off).
func (c *Config) SocketPath() string {
	switch c.Control.Socket {
	case "off":
		return ""
	case "":
		name := c.Name
		if name == "" {
			name = "pipestack"
		}
		return "/run/pipestack/" + name + ".sock"
	}
	return c.Control.Socket
}

// PrivilegesConfig: once the links are open, pipectl run (as root) keeps
// only the capabilities a running router needs — CAP_NET_ADMIN and
// CAP_NET_RAW by default — and optionally runs as another user.
type PrivilegesConfig struct {
	// User to switch to (name or uid); empty: stay uid 0 but without the
	// other capabilities.
	User string `yaml:"user"`
	// Keep lists the capabilities kept (default [net_admin, net_raw]);
	// reloads that must open devices in other network namespaces need
	// sys_admin too.
	Keep []string `yaml:"keep"`
	// Drop: false keeps every privilege (default true).
	Drop *bool `yaml:"drop"`
}

// ForwardingConfig turns IP forwarding on per family (default off: a host).
type ForwardingConfig struct {
	IPv4 bool `yaml:"ipv4"`
	IPv6 bool `yaml:"ipv6"`
}

// ModuleConfig is one entry of `modules:`.
type ModuleConfig struct {
	ID       string
	Module   Module
	Line     int
	Col      int
	Instance string // module ID, for messages
}

// LinkConfig is one entry of `links:`. The keys below belong to the stack;
// every other key of the entry is the link module's own config.
type LinkConfig struct {
	Name      string           `yaml:"name"`
	ModuleID  string           `yaml:"module"`
	MTU       int              `yaml:"mtu"`
	Addresses []AddressConfig  `yaml:"addresses"`
	Neighbors []NeighborConfig `yaml:"neighbors"`
	// Forwarding, when set, overrides the global forwarding switch for
	// packets received on this link.
	Forwarding *ForwardingConfig `yaml:"forwarding"`
	// Transparent: unicast packets to any address received on this link
	// are delivered to the stack, not forwarded (NetworkInterface.
	// Transparent): the transports' forwarders (tcp.Forwarder,
	// udp.Forwarder) and wildcard sockets take them, as Linux's AnyIP
	// local route or gVisor's promiscuous NIC with spoofing.
	Transparent bool `yaml:"transparent"`

	Module    LinkModule `yaml:"-"`
	Line, Col int        `yaml:"-"`
}

// linkStackKeys are the keys of a link entry that the stack decodes.
var linkStackKeys = KnownKeys((*LinkConfig)(nil))

// AddressConfig is an address on a link: "10.0.1.1/24", or a mapping
// {address: 10.0.1.1/24, primary: first|can|never, deprecated: true}.
type AddressConfig struct {
	Prefix     netip.Prefix
	Behavior   PrimaryEndpointBehavior
	Deprecated bool
}

// UnmarshalYAML accepts the scalar and the mapping form, strictly.
func (a *AddressConfig) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Address    string `yaml:"address"`
		Primary    string `yaml:"primary"`
		Deprecated bool   `yaml:"deprecated"`
	}
	switch n.Kind {
	case yaml.ScalarNode:
		raw.Address = n.Value
	case yaml.MappingNode:
		if err := DecodeStrict(n, &raw); err != nil {
			return err
		}
	default:
		return posErr(n, "an address is \"ip/len\" or {address: ip/len, primary: first|can|never}")
	}
	p, err := netip.ParsePrefix(raw.Address)
	if err != nil {
		return posErr(n, "bad address %q: want ip/prefix-length, e.g. 10.0.1.1/24", raw.Address)
	}
	a.Prefix = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
	a.Deprecated = raw.Deprecated
	switch raw.Primary {
	case "", "can":
		a.Behavior = CanBePrimaryEndpoint
	case "first":
		a.Behavior = FirstPrimaryEndpoint
	case "never":
		a.Behavior = NeverPrimaryEndpoint
	default:
		return posErr(n, "primary: %q is not one of first, can, never", raw.Primary)
	}
	return nil
}

// NeighborConfig is a static neighbor entry of a link.
type NeighborConfig struct {
	IP  string `yaml:"ip"`
	MAC string `yaml:"mac"`

	Addr      netip.Addr `yaml:"-"`
	LinkAddr  wire.MAC   `yaml:"-"`
	Line, Col int        `yaml:"-"`
}

// RouteConfig is one entry of `routes:`.
type RouteConfig struct {
	To     string `yaml:"to"`  // prefix, or "default" (both families: default4/default6 for one)
	Via    string `yaml:"via"` // gateway; empty: on-link
	Link   string `yaml:"link"`
	Metric uint32 `yaml:"metric"`
	// Table is the route table (policyroute.go); 0 or 254: the main one.
	Table uint32 `yaml:"table"`

	Prefixes  []netip.Prefix `yaml:"-"`
	Gateway   netip.Addr     `yaml:"-"`
	Line, Col int            `yaml:"-"`
}

type fileConfig struct {
	Name       string           `yaml:"name"`
	Log        LogConfig        `yaml:"log"`
	Control    ControlConfig    `yaml:"control"`
	Privileges PrivilegesConfig `yaml:"privileges"`
	Modules    []yaml.Node      `yaml:"modules"`
	Links      []yaml.Node      `yaml:"links"`
	Forwarding ForwardingConfig `yaml:"forwarding"`
	Routes     []yaml.Node      `yaml:"routes"`
	RouteRules []yaml.Node      `yaml:"route_rules"`
	// Plugins declares the out-of-process filter plugins (decoded by the
	// module plugins, modules/filter/plugin); before Filter, whose rules
	// use them.
	Plugins yaml.Node `yaml:"plugins"`
	// Filter is the filter module's section (tables, chains, rules),
	// decoded by the module itself.
	Filter yaml.Node `yaml:"filter"`
}

// ConfigError is a pipeline file error: file, line, column, the module (or
// section) it is about, and what is wrong.
type ConfigError struct {
	File      string
	Line, Col int
	Module    string
	Err       error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Module != "" {
		b.WriteString(e.Module)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

func (c *Config) errAt(line, col int, module string, err error) *ConfigError {
	var pe *PosError
	if errors.As(err, &pe) {
		if pe.Where != "" {
			module += " (" + pe.Where + ")"
		}
		return &ConfigError{File: c.File, Line: pe.Line, Col: pe.Col, Module: module, Err: errors.New(pe.Msg)}
	}
	return &ConfigError{File: c.File, Line: line, Col: col, Module: module, Err: err}
}

// LoadConfigFile reads and decodes a pipeline file.
func LoadConfigFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes a pipeline file strictly: unknown keys, unknown
// modules, malformed addresses, routes through unknown links and the like are
// errors naming file:line:col and the module. It opens nothing and needs no
// privileges; module Provision/Validate run later, when a generation is
// built (or by Check).
func ParseConfig(file string, data []byte) (*Config, error) {
	c := &Config{File: file, hash: sha256.Sum256(data)}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		var line int
		if _, e := fmt.Sscanf(msg, "line %d:", &line); e == nil {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
			// yaml.v3 numbers lines from 0 in parser errors ("did not
			// find expected …", reported where the construct began) and
			// from 1 in scanner errors.
			if strings.HasPrefix(msg, "did not find expected") {
				line++
			}
		}
		return nil, c.errAt(line, 0, "", fmt.Errorf("not valid YAML: %s", msg))
	}
	if len(doc.Content) == 0 {
		return nil, c.errAt(0, 0, "", errors.New("empty pipeline file"))
	}
	var fc fileConfig
	if err := DecodeStrict(&doc, &fc); err != nil {
		return nil, c.errAt(doc.Line, doc.Column, sectionOf(&doc, err), err)
	}
	c.Name, c.Log, c.Forwarding, c.Control, c.Privileges = fc.Name, fc.Log, fc.Forwarding, fc.Control, fc.Privileges
	for i, k := range c.Privileges.Keep {
		if _, ok := Capabilities[strings.ToLower(strings.TrimPrefix(strings.ToLower(k), "cap_"))]; !ok {
			n := findKey(&doc, "privileges", "keep")
			if i < len(n.Content) {
				n = n.Content[i]
			}
			return nil, c.errAt(n.Line, n.Column, "privileges", fmt.Errorf("unknown capability %q (e.g. net_admin, net_raw, sys_admin)", k))
		}
	}
	if c.Name != "" && !validName(c.Name) {
		n := findKey(&doc, "name")
		return nil, c.errAt(n.Line, n.Column, "", fmt.Errorf("name %q: use letters, digits, '-', '_' and '.'", c.Name))
	}
	if m := c.Control.Metrics; m != "" {
		if _, _, err := net.SplitHostPort(m); err != nil {
			n := findKey(&doc, "control", "metrics")
			return nil, c.errAt(n.Line, n.Column, "control", fmt.Errorf("metrics %q is not host:port", m))
		}
	}
	if p := c.Control.Socket; p != "" && p != "off" && !filepath.IsAbs(p) {
		n := findKey(&doc, "control", "socket")
		return nil, c.errAt(n.Line, n.Column, "control", fmt.Errorf("socket %q must be an absolute path (or off)", p))
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		n := findKey(&doc, "log", "level")
		return nil, c.errAt(n.Line, n.Column, "log", fmt.Errorf("level %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "", "console", "json":
	default:
		n := findKey(&doc, "log", "format")
		return nil, c.errAt(n.Line, n.Column, "log", fmt.Errorf("format %q is not one of console, json", c.Log.Format))
	}

	seen := map[string]bool{}
	for i := range fc.Modules {
		n := &fc.Modules[i]
		mc, err := c.decodeModule(n)
		if err != nil {
			return nil, err
		}
		if seen[mc.ID] {
			return nil, c.errAt(n.Line, n.Column, mc.ID, errors.New("module listed twice"))
		}
		seen[mc.ID] = true
		c.Modules = append(c.Modules, mc)
	}

	for _, sec := range []struct {
		id, pkg string
		n       *yaml.Node
	}{{"plugins", "modules/filter/plugin", &fc.Plugins}, {"filter", "modules/filter", &fc.Filter}} {
		n := sec.n
		if n.Kind == 0 {
			continue
		}
		// The section's position is its key's: errors about the section
		// as a whole point there.
		k := findKeyNode(&doc, sec.id)
		mc := ModuleConfig{ID: sec.id, Line: k.Line, Col: k.Column, Instance: sec.id}
		m, err := newModule(sec.id)
		if err != nil {
			return nil, c.errAt(k.Line, k.Column, sec.id, fmt.Errorf("%v (import github.com/pipestack/pipestack/%s)", err, sec.pkg))
		}
		if err := DecodeStrict(n, m); err != nil {
			return nil, c.errAt(n.Line, n.Column, sec.id, err)
		}
		mc.Module = m
		c.Modules = append(c.Modules, mc)
	}

	names := map[string]bool{}
	for i := range fc.Links {
		lc, err := c.decodeLink(&fc.Links[i])
		if err != nil {
			return nil, err
		}
		if names[lc.Name] {
			return nil, c.errAt(lc.Line, lc.Col, lc.ModuleID, fmt.Errorf("link name %q used twice", lc.Name))
		}
		names[lc.Name] = true
		c.Links = append(c.Links, lc)
	}

	for i := range fc.Routes {
		n := &fc.Routes[i]
		var rc RouteConfig
		if err := DecodeStrict(n, &rc); err != nil {
			return nil, c.errAt(n.Line, n.Column, "routes", err)
		}
		rc.Line, rc.Col = n.Line, n.Column
		if err := rc.resolve(names); err != nil {
			return nil, c.errAt(n.Line, n.Column, "routes", err)
		}
		c.Routes = append(c.Routes, rc)
	}
	tables := map[uint32]bool{}
	for _, rc := range c.Routes {
		tables[rc.Table] = true
	}
	for i := range fc.RouteRules {
		n := &fc.RouteRules[i]
		var rc RouteRuleConfig
		if err := DecodeStrict(n, &rc); err != nil {
			return nil, c.errAt(n.Line, n.Column, "route_rules", err)
		}
		rc.Line, rc.Col = n.Line, n.Column
		if err := rc.resolve(tables); err != nil {
			return nil, c.errAt(n.Line, n.Column, "route_rules", err)
		}
		c.RouteRules = append(c.RouteRules, rc)
	}
	return c, nil
}

// sectionOf names the top-level section (log, control, privileges,
// forwarding…) that err, from decoding the whole file, points into; "" for
// an error at a top-level key itself or outside any section.
func sectionOf(doc *yaml.Node, err error) string {
	var pe *PosError
	if !errors.As(err, &pe) || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return ""
	}
	m, section := doc.Content[0], ""
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Line == pe.Line && k.Column == pe.Col {
			return "" // the key itself
		}
		if k.Line > pe.Line || k.Line == pe.Line && k.Column > pe.Col {
			break
		}
		section = k.Value
	}
	return section
}

// findKey returns the value node at path (keys of nested mappings) in doc,
// or the deepest node found on the way.
func findKey(doc *yaml.Node, path ...string) *yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				n, found = n.Content[i+1], true
				break
			}
		}
		if !found {
			break
		}
	}
	return n
}

// findKeyNode returns the key node of a top-level key of doc (doc itself
// when absent).
func findKeyNode(doc *yaml.Node, key string) *yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return doc
}

func newModule(id string) (Module, error) {
	mi, ok := LookupModule(id)
	if !ok {
		var known []string
		ns := ModuleInfo{ID: id}.Namespace()
		for _, m := range Modules(ns) {
			known = append(known, m.ID)
		}
		if len(known) == 0 {
			return nil, fmt.Errorf("unknown module %q", id)
		}
		msg := fmt.Sprintf("unknown module %q", id)
		if s := Suggest(id, known); len(s) > 0 {
			msg += ", did you mean " + quoteOr(s) + "?"
		}
		return nil, fmt.Errorf("%s (known: %s)", msg, strings.Join(known, ", "))
	}
	return mi.New(), nil
}

// decodeModule decodes "network.ipv4" or {module: network.ipv4, …config}.
func (c *Config) decodeModule(n *yaml.Node) (ModuleConfig, error) {
	mc := ModuleConfig{Line: n.Line, Col: n.Column}
	var rest *yaml.Node
	idNode := n
	switch n.Kind {
	case yaml.ScalarNode:
		mc.ID = n.Value
	case yaml.MappingNode:
		idNode = nil
		rest = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "module" {
				idNode = n.Content[i+1]
				continue
			}
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
		if idNode == nil {
			for i := 0; i < len(rest.Content); i += 2 {
				if k := rest.Content[i]; len(Suggest(k.Value, []string{"module"})) > 0 {
					return mc, c.errAt(n.Line, n.Column, "modules", UnknownKey(k, []string{"module"}, "the module's keys"))
				}
			}
			return mc, c.errAt(n.Line, n.Column, "modules", errors.New("entry has no module: key"))
		}
		mc.ID = idNode.Value
	default:
		return mc, c.errAt(n.Line, n.Column, "modules", errors.New("an entry is a module ID or {module: ID, …}"))
	}
	m, err := newModule(mc.ID)
	if err != nil {
		return mc, c.errAt(idNode.Line, idNode.Column, "modules", err)
	}
	if SectionModules[mc.ID] {
		return mc, c.errAt(idNode.Line, idNode.Column, "modules", fmt.Errorf("%s is configured in its own top-level section %s:, not under modules:", mc.ID, mc.ID))
	}
	if _, isLink := m.(LinkModule); isLink {
		return mc, c.errAt(n.Line, n.Column, mc.ID, errors.New("is a link module: configure it under links:"))
	}
	if rest != nil {
		if err := DecodeStrictWith(rest, m, "module"); err != nil {
			return mc, c.errAt(n.Line, n.Column, mc.ID, err)
		}
	}
	mc.Module, mc.Instance = m, mc.ID
	return mc, nil
}

func (c *Config) decodeLink(n *yaml.Node) (LinkConfig, error) {
	lc := LinkConfig{Line: n.Line, Col: n.Column}
	if n.Kind != yaml.MappingNode {
		return lc, c.errAt(n.Line, n.Column, "links", errors.New("a link is a mapping {name:, module:, …}"))
	}
	own := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		dst := rest
		if slices.Contains(linkStackKeys, n.Content[i].Value) {
			dst = own
		}
		dst.Content = append(dst.Content, n.Content[i], n.Content[i+1])
	}
	section := "links"
	var name, id string
	for i := 0; i+1 < len(own.Content); i += 2 {
		switch own.Content[i].Value {
		case "name":
			name = own.Content[i+1].Value
		case "module":
			id = own.Content[i+1].Value
		}
	}
	switch {
	case name != "" && id != "":
		section = id + " (link " + name + ")"
	case name != "":
		section = "link " + name
	case id != "":
		section = id
	}
	if err := DecodeStrict(own, &lc); err != nil {
		return lc, c.errAt(n.Line, n.Column, section, err)
	}
	lc.Line, lc.Col = n.Line, n.Column
	if lc.Name == "" || lc.ModuleID == "" {
		// A key that is not the stack's is the link module's, but without
		// a module (or before "no name") a near miss of a stack key is
		// the likelier mistake: "modul: link.tun" is reported there.
		var moduleKeys []string
		if lc.ModuleID != "" {
			if m, err := newModule(lc.ModuleID); err == nil {
				moduleKeys = KnownKeys(m)
			}
		}
		for i := 0; i < len(rest.Content); i += 2 {
			k := rest.Content[i]
			if !slices.Contains(moduleKeys, k.Value) && len(Suggest(k.Value, linkStackKeys)) > 0 {
				more := "the link module's keys"
				if moduleKeys != nil {
					more = ""
				}
				return lc, c.errAt(n.Line, n.Column, section, UnknownKey(k, append(moduleKeys, linkStackKeys...), more))
			}
		}
	}
	if lc.Name == "" {
		return lc, c.errAt(n.Line, n.Column, section, errors.New("link has no name"))
	}
	if lc.Name == LoopbackName {
		return lc, c.errAt(n.Line, n.Column, section, fmt.Errorf("link name %q is the stack's own loopback link (127.0.0.1/8, ::1); pick another", LoopbackName))
	}
	where := "link " + lc.Name
	if lc.ModuleID == "" {
		return lc, c.errAt(n.Line, n.Column, where, errors.New("link has no module (e.g. module: link.tun)"))
	}
	where = lc.ModuleID + " (link " + lc.Name + ")"
	m, err := newModule(lc.ModuleID)
	if err != nil {
		at := findKey(own, "module") // the value, where the name is wrong
		return lc, c.errAt(at.Line, at.Column, "link "+lc.Name, err)
	}
	lm, ok := m.(LinkModule)
	if !ok {
		return lc, c.errAt(n.Line, n.Column, where, errors.New("is not a link module"))
	}
	if err := DecodeStrictWith(rest, lm, linkStackKeys...); err != nil {
		return lc, c.errAt(n.Line, n.Column, where, err)
	}
	lc.Module = lm
	if lc.MTU < 0 || lc.MTU > LargeDataSize {
		return lc, c.errAt(n.Line, n.Column, where, fmt.Errorf("mtu %d out of range", lc.MTU))
	}
	// Neighbors: parse with positions.
	var nn []yaml.Node
	for i := 0; i+1 < len(own.Content); i += 2 {
		if own.Content[i].Value == "neighbors" && own.Content[i+1].Kind == yaml.SequenceNode {
			for _, e := range own.Content[i+1].Content {
				nn = append(nn, *e)
			}
		}
	}
	for i := range lc.Neighbors {
		nc := &lc.Neighbors[i]
		if i < len(nn) {
			nc.Line, nc.Col = nn[i].Line, nn[i].Column
		}
		a, err := netip.ParseAddr(nc.IP)
		if err != nil {
			return lc, c.errAt(nc.Line, nc.Col, where, fmt.Errorf("neighbor ip %q: %v", nc.IP, err))
		}
		mac, err := wire.ParseMAC(nc.MAC)
		if err != nil {
			return lc, c.errAt(nc.Line, nc.Col, where, fmt.Errorf("neighbor mac %q: %v", nc.MAC, err))
		}
		nc.Addr, nc.LinkAddr = a.Unmap(), mac
	}
	return lc, nil
}

func (rc *RouteConfig) resolve(links map[string]bool) error {
	switch rc.To {
	case "":
		return errors.New("route has no to: (a prefix or default)")
	case "default":
		rc.Prefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	case "default4":
		rc.Prefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	case "default6":
		rc.Prefixes = []netip.Prefix{netip.MustParsePrefix("::/0")}
	default:
		p, err := netip.ParsePrefix(rc.To)
		if err != nil {
			return fmt.Errorf("to: %q is not a prefix (e.g. 10.0.2.0/24) or default", rc.To)
		}
		if p.Masked() != p {
			return fmt.Errorf("to: %q has host bits set (did you mean %s?)", rc.To, p.Masked())
		}
		rc.Prefixes = []netip.Prefix{p}
	}
	if rc.Via != "" {
		g, err := netip.ParseAddr(rc.Via)
		if err != nil {
			return fmt.Errorf("via: %q is not an IP address", rc.Via)
		}
		rc.Gateway = g.Unmap()
		if rc.To == "default" {
			// A gateway has one family: the default route is for that family.
			if rc.Gateway.Is4() {
				rc.Prefixes = rc.Prefixes[:1]
			} else {
				rc.Prefixes = rc.Prefixes[1:]
			}
		}
		for _, p := range rc.Prefixes {
			if p.Addr().Is4() != rc.Gateway.Is4() {
				return fmt.Errorf("via %s and to %s are of different families", rc.Via, p)
			}
		}
	}
	if rc.Link == "" {
		return errors.New("route has no link: (the name of a link of this file)")
	}
	if !links[rc.Link] {
		return fmt.Errorf("link %q is not defined under links:", rc.Link)
	}
	return nil
}

// Capabilities maps the Linux capability names accepted in privileges.keep
// (without the cap_ prefix) to their numbers.
var Capabilities = map[string]int{
	"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5,
	"setgid": 6, "setuid": 7, "setpcap": 8, "net_bind_service": 10, "net_broadcast": 11,
	"net_admin": 12, "net_raw": 13, "ipc_lock": 14, "sys_chroot": 18, "sys_ptrace": 19,
	"sys_admin": 21, "sys_nice": 23, "sys_resource": 24, "bpf": 39, "perfmon": 38,
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Hash identifies the file's bytes: an unchanged file reloads as nothing.
func (c *Config) Hash() [32]byte { return c.hash }
