package pipeline

import (
	"crypto/sha256"
	"os"
	"path/filepath"
)

// fileInput is a file a module read through Context.ReadFile while a
// generation was built: its contents are part of the generation's config.
type fileInput struct {
	path string
	sum  [32]byte
}

// inputSet collects the files read while one generation is built.
type inputSet struct{ files []fileInput }

// ReadFile reads a file that is part of the module's configuration (a list
// of prefixes, a certificate): a relative path is taken from the pipeline
// file's directory. The stack remembers the contents it read, so that
// Stack.Apply of an unchanged pipeline file (pipectl reload) still builds a
// new generation when one of these files changed. Call it from Provision
// (or Validate), not per packet.
func (c *Context) ReadFile(path string) ([]byte, error) {
	p := c.ResolvePath(path)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if c.inputs != nil {
		c.inputs.files = append(c.inputs.files, fileInput{path: p, sum: sha256.Sum256(b)})
	}
	return b, nil
}

// ResolvePath is path as ReadFile opens it: relative paths from the
// directory of the pipeline file (the working directory when there is
// none).
func (c *Context) ResolvePath(path string) string {
	if filepath.IsAbs(path) || c.File == "" {
		return path
	}
	return filepath.Join(filepath.Dir(c.File), path)
}

// changed reports whether any file read for the generation has other
// contents now (or cannot be read).
func (in *inputSet) changed() bool {
	if in == nil {
		return false
	}
	for _, f := range in.files {
		b, err := os.ReadFile(f.path)
		if err != nil || sha256.Sum256(b) != f.sum {
			return true
		}
	}
	return false
}

// Extend mixes data into the identity of a config parsed from a file (its
// Hash), for a program that adds to it from Go (a filter rule set built
// with filter.RuleSet): Stack.Apply then sees the addition as a change. A
// config built in Go (no file, zero Hash) is always applied anew and stays
// so.
func (c *Config) Extend(data []byte) {
	if c.hash == ([32]byte{}) {
		return
	}
	h := sha256.New()
	h.Write(c.hash[:])
	h.Write(data)
	copy(c.hash[:], h.Sum(nil))
}
