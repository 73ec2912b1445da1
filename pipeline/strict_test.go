package pipeline

import (
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"mtu", "mtu", 0},
		{"mtuu", "mtu", 1}, {"modul", "module", 1}, {"levle", "level", 1}, // a swap is one edit
		{"mca", "mac", 1}, {"vai", "via", 1}, {"sockt", "socket", 1},
		{"ttl", "default_ttl", 8}, {"kitten", "sitting", 3}, {"ab", "ba", 1}, {"abc", "ca", 3},
	} {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := editDistance(c.b, c.a); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (not symmetric)", c.b, c.a, got, c.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	link := []string{"addresses", "forwarding", "framing", "mac", "module", "mtu", "name", "neighbors", "queue"}
	for _, c := range []struct {
		word  string
		known []string
		want  []string
	}{
		{"modul", link, []string{"module"}},
		{"mtuu", link, []string{"mtu"}},
		{"MTU", link, []string{"mtu"}},                              // case is ignored
		{"addr", link, []string{"addresses"}},                       // a prefix
		{"forward", link, []string{"forwarding"}},                   // a prefix
		{"neighbours", link, []string{"neighbors"}},                 // distance 2
		{"ipv", []string{"ipv4", "ipv6"}, []string{"ipv4", "ipv6"}}, // ties are all given
		{"ttl", []string{"default_ttl", "icmp_rate"}, nil},          // too far
		{"xy", []string{"ip", "to"}, nil},                           // a short word needs a close match
		{"ip", []string{"id"}, []string{"id"}},
		{"colour", link, nil},
		{"m", link, nil},
		{"nmae", link, []string{"name"}},
	} {
		if got := Suggest(c.word, c.known); !slices.Equal(got, c.want) {
			t.Errorf("Suggest(%q) = %q, want %q", c.word, got, c.want)
		}
	}
}

// An unknown key is reported where it stands, with every valid key and
// the near miss; keys taken by the caller count as valid there.
func TestDecodeStrictWith(t *testing.T) {
	var v struct {
		Framing string `yaml:"framing"`
		Queue   int    `yaml:"queue"`
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("framing: ip\nmtuu: 1400\n"), &doc); err != nil {
		t.Fatal(err)
	}
	err := DecodeStrictWith(&doc, &v, "mtu", "name")
	want := `2:1: unknown field "mtuu", did you mean "mtu"? (known: framing, mtu, name, queue)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if err := yaml.Unmarshal([]byte("framing: ip\nqueue: 3\n"), &doc); err != nil {
		t.Fatal(err)
	}
	if err := DecodeStrictWith(&doc, &v, "mtu"); err != nil || v.Queue != 3 {
		t.Errorf("valid mapping: %v, %+v", err, v)
	}
	if got := KnownKeys(&v); !slices.Equal(got, []string{"framing", "queue"}) {
		t.Errorf("KnownKeys = %q", got)
	}
	if got := KnownKeys(new(AddressConfig)); got != nil {
		t.Errorf("KnownKeys of an Unmarshaler = %q, want nil", got)
	}
}
