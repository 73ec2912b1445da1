package pipeline

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Module is anything registered in the module registry. New returns a zero
// value of the module's config struct; the lifecycle of an instance is
//
//	New → strict decode of its YAML → Provision → Validate → (Start …) Stop → Cleanup
//
// with Cleanup also after a failed Provision or Validate. The optional
// phases are the interfaces Provisioner, Validator, Stopper and
// CleanerUpper. What a module does is given by its role interface:
// LinkModule, NetworkModule, TransportModule or HookModule (filterhook.go:
// the filter, which installs tables at the hooks; its matchers and targets
// are modules too, filter.match.<name> and filter.target.<name>, made by the
// filter for each rule).
type Module interface {
	PipelineModule() ModuleInfo
}

// ModuleInfo describes a registered module.
type ModuleInfo struct {
	// ID is namespaced: link.tun, network.ipv4, transport.udp,
	// filter.match.<name>, filter.target.<name>.
	ID string
	// Summary is one line for `pipectl modules`.
	Summary string
	// New returns a new, zero instance.
	New func() Module
}

// Namespace is the ID up to its last dot ("link" for "link.tun").
func (mi ModuleInfo) Namespace() string {
	if i := strings.LastIndexByte(mi.ID, '.'); i > 0 {
		return mi.ID[:i]
	}
	return ""
}

// Lifecycle phases a module may implement.
type (
	// Provisioner sets defaults and builds the module's runtime objects. It
	// must not open devices or start goroutines (pipectl validate runs it).
	Provisioner interface{ Provision(ctx *Context) error }
	// Validator checks the provisioned configuration.
	Validator interface{ Validate() error }
	// Stopper stops what the module started, when its generation ends.
	Stopper interface{ Stop() error }
	// CleanerUpper releases what Provision made; it must work after a
	// half-done Provision.
	CleanerUpper interface{ Cleanup() error }
	// Starter starts what a module runs while its generation runs (the
	// filter plugins' processes). Start is called only for a generation
	// built to run — never by pipectl validate (Check) — after every
	// module's Provision and Validate and after the links are open, in
	// module order, before the generation is swapped in. An error fails
	// the build and the running generation stays; Cleanup then runs and
	// must also undo what Start did. Stop is called when the generation
	// that started ends.
	Starter interface{ Start() error }
	// Refresher renews, in place, what a module runs outside the
	// generation's inputs (the plugins: section: a plugin whose binary
	// changed is replaced make-before-break). Stack.Apply of an unchanged
	// file — no new generation — calls Refresh on the running generation's
	// modules that have it, in module order; each returns one line per
	// thing it renewed ("plugin blk: new binary …, replaced"), which
	// ApplyReport returns. An error fails the reload (what an earlier
	// module renewed stays renewed).
	Refresher interface {
		Refresh() (renewed []string, err error)
	}
)

// LinkModule is a link driver's module (link.tun, link.channel, …).
type LinkModule interface {
	Module
	// LinkKey identifies the device behind the link: a reload that keeps a
	// link of the same name and the same key hands the open endpoint over
	// instead of reopening it. Two keys differ when the device would have
	// to be reopened (another device name, another namespace, another
	// framing).
	LinkKey() string
	// OpenLink opens the device. Called after Validate, only when the
	// stack has no endpoint with this name and key.
	OpenLink(ctx *Context) (LinkEndpoint, error)
}

// NetworkModule provides a network protocol (network.ipv4, network.arp).
type NetworkModule interface {
	Module
	// NetworkProtocol returns the protocol object built by Provision.
	NetworkProtocol() NetworkProtocol
}

// TransportModule provides a transport protocol (transport.udp).
type TransportModule interface {
	Module
	// TransportProtocol returns the protocol object built by Provision.
	TransportProtocol() TransportProtocol
}

// SectionModules are the modules configured by a top-level section of the
// pipeline file named after them (filter:) instead of an entry of modules:;
// their IDs have no namespace.
var SectionModules = map[string]bool{"filter": true, "plugins": true}

var (
	registryMu sync.RWMutex
	registry   = map[string]ModuleInfo{}
	idPattern  = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
)

// RegisterModule registers a module; call it from init(). Every module
// registers on every OS; one that cannot work on this OS fails in Provision
// with "not supported on <os>". It panics on a malformed or duplicate ID (a
// programming error found at start-up).
func RegisterModule(m Module) {
	mi := m.PipelineModule()
	if !idPattern.MatchString(mi.ID) && !SectionModules[mi.ID] {
		panic(fmt.Sprintf("pipeline: module ID %q is not namespaced (want e.g. link.tun)", mi.ID))
	}
	if mi.New == nil {
		panic(fmt.Sprintf("pipeline: module %s has no New", mi.ID))
	}
	if v := mi.New(); v == nil {
		panic(fmt.Sprintf("pipeline: module %s: New returned nil", mi.ID))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[mi.ID]; dup {
		panic(fmt.Sprintf("pipeline: module %s registered twice", mi.ID))
	}
	registry[mi.ID] = mi
}

// LookupModule returns the registered module with this ID.
func LookupModule(id string) (ModuleInfo, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	mi, ok := registry[id]
	return mi, ok
}

// Modules lists the registered modules sorted by ID; with a namespace
// ("link") only that namespace's.
func Modules(namespace string) []ModuleInfo {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var out []ModuleInfo
	for _, mi := range registry {
		if namespace == "" || mi.Namespace() == namespace || strings.HasPrefix(mi.ID, namespace+".") {
			out = append(out, mi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
