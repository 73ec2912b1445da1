package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipestack/pipestack/internal/testenv"
)

func TestPathAndCheck(t *testing.T) {
	for _, c := range []struct{ in, path, err string }{
		{"", "", ""},
		{"ps-a", "/run/netns/ps-a", ""},
		{"/proc/1/ns/net", "/proc/1/ns/net", ""},
		{"rel/path", "/run/netns/rel/path", `netns "rel/path": a name under /run/netns`},
		{"a b", "/run/netns/a b", `netns "a b"`},
	} {
		if got := Path(c.in); got != c.path {
			t.Errorf("Path(%q) = %q, want %q", c.in, got, c.path)
		}
		err := Check(c.in)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Check(%q) = %v, want %q", c.in, err, c.err)
		}
	}
}

// inode is the namespace inode of this thread's network namespace.
func inode(t *testing.T) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// Do enters a namespace made by `ip netns add`, by name and by path.
func TestDo(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "ip", "iproute2")
	b := make([]byte, 3)
	rand.Read(b)
	name := "tcns-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	var want unix.Stat_t
	if err := unix.Stat(Dir+"/"+name, &want); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{name, Dir + "/" + name} {
		var got uint64
		if err := Do(ns, func() error { got = inode(t); return nil }); err != nil {
			t.Fatal(err)
		}
		if got != want.Ino {
			t.Errorf("Do(%q): ran in namespace inode %d, want %d", ns, got, want.Ino)
		}
	}
	if err := Do("tcns-none-"+hex.EncodeToString(b), func() error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Do of a missing namespace: %v, want not exist", err)
	}
}
