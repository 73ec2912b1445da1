package pipeline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pipestack/pipestack/pipeline"
)

func init() { pipeline.RegisterModule(new(fileTestModule)) }

// fileTestModule (transport.filetest) reads a file through
// Context.ReadFile in Provision.
type fileTestModule struct {
	File string `yaml:"file"`
}

func (*fileTestModule) PipelineModule() pipeline.ModuleInfo {
	return pipeline.ModuleInfo{ID: "transport.filetest", Summary: "test only: reads a file at Provision", New: func() pipeline.Module { return new(fileTestModule) }}
}

func (m *fileTestModule) Provision(ctx *pipeline.Context) error {
	_, err := ctx.ReadFile(m.File)
	return err
}

func (m *fileTestModule) TransportProtocol() pipeline.TransportProtocol { return fileTestProto{} }

type fileTestProto struct{}

func (fileTestProto) Number() pipeline.TransportProtocolNumber          { return 253 }
func (fileTestProto) ParsePorts([]byte) (uint16, uint16, bool)          { return 0, 0, false }
func (fileTestProto) HandlePackets(*pipeline.Batch, []*pipeline.Packet) {}

// TestReadFileMakesReloadSeeChanges: an unchanged pipeline file builds a
// new generation when a file a module read (relative to the pipeline file)
// changed, and nothing when it did not; Config.Extend makes a parsed config
// differ.
func TestReadFileMakesReloadSeeChanges(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("one"), 0o644)
	text := []byte("name: f\nmodules: [network.ipv4, {module: transport.filetest, file: data.txt}]\n")
	load := func() *pipeline.Config {
		cfg, err := pipeline.ParseConfig(filepath.Join(dir, "f.yaml"), text)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := pipeline.New(pipeline.Options{})
	defer s.Close()
	apply := func(cfg *pipeline.Config) bool {
		t.Helper()
		changed, err := s.Apply(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return changed
	}
	if !apply(load()) {
		t.Fatal("first apply: no change")
	}
	if apply(load()) {
		t.Error("unchanged file and data: a new generation")
	}
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("two"), 0o644)
	if !apply(load()) {
		t.Error("changed data file: no new generation")
	}
	if apply(load()) {
		t.Error("unchanged again: a new generation")
	}
	cfg := load()
	cfg.Extend([]byte("more"))
	if !apply(cfg) {
		t.Error("Extend: no new generation")
	}
	os.Remove(filepath.Join(dir, "data.txt"))
	if _, err := s.Apply(load()); err == nil {
		t.Error("a missing data file passed")
	}
}
