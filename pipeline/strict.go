package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes node into v (a pointer) and rejects keys that v has no
// field for, at any depth. yaml.v3's Node.Decode ignores KnownFields(true), so
// every module config and every part of a pipeline file goes through here.
// Errors carry the node's line and column; the caller adds the file name and
// the module ID.
//
// Types that implement yaml.Unmarshaler do their own checking (see
// AddressConfig); fields of type yaml.Node are taken as they are.
func DecodeStrict(node *yaml.Node, v any) error {
	return DecodeStrictWith(node, v)
}

// DecodeStrictWith is DecodeStrict for a mapping from which the caller has
// taken the keys in taken and decodes them itself (a link entry's stack
// keys name, module, mtu…; a module entry's module:). They are valid there
// too, so the message for an unknown key lists them with v's own keys, and
// may suggest one of them ("did you mean "module"?").
func DecodeStrictWith(node *yaml.Node, v any, taken ...string) error {
	if node == nil {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if err := checkKnown(node, reflect.TypeOf(v), taken); err != nil {
		return err
	}
	if err := node.Decode(v); err != nil {
		return yamlErr(node, err)
	}
	return nil
}

// PosError is an error at a line and column of the file being decoded.
type PosError struct {
	Line, Col int
	Msg       string
	// Where, when set, says what inside the module the error is about
	// ("table filter, chain input, rule 2"); the message names the
	// module as "filter (table filter, chain input, rule 2)".
	Where string
}

func (e *PosError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

func posErr(n *yaml.Node, format string, args ...any) *PosError {
	return &PosError{Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// yamlErr turns yaml.v3's "line N: cannot unmarshal …" into a PosError.
func yamlErr(n *yaml.Node, err error) error {
	var pe *PosError
	if errors.As(err, &pe) {
		return pe // from an UnmarshalYAML of ours: already placed
	}
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg := te.Errors[0]
		var line int
		if _, e := fmt.Sscanf(msg, "line %d:", &line); e == nil {
			if i := strings.Index(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			// "cannot unmarshal !!str `big` into int": point at the value
			// and name its key.
			val := ""
			if i, j := strings.IndexByte(msg, '`'), strings.LastIndexByte(msg, '`'); i >= 0 && j > i {
				val = msg[i+1 : j]
			}
			if key, v := findValue(n, line, val); v != nil && val != "" {
				if key != "" {
					msg = key + ": " + msg
				}
				return &PosError{Line: line, Col: v.Column, Msg: msg}
			}
			return &PosError{Line: line, Col: 1, Msg: msg}
		}
		return &PosError{Line: n.Line, Col: n.Column, Msg: msg}
	}
	return &PosError{Line: n.Line, Col: n.Column, Msg: err.Error()}
}

// findValue finds the scalar with this value on line under n, and the key it
// is the value of (empty in a sequence).
func findValue(n *yaml.Node, line int, val string) (string, *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.Line == line && (val == "" || v.Value == val) {
				return k.Value, v
			}
		}
	}
	for _, c := range n.Content {
		if c.Kind == yaml.ScalarNode && c.Line == line && (val == "" || c.Value == val) && n.Kind != yaml.MappingNode {
			return "", c
		}
		if k, v := findValue(c, line, val); v != nil {
			return k, v
		}
	}
	return "", nil
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	nodeType        = reflect.TypeOf(yaml.Node{})
)

// checkKnown checks node n against type t; taken are more keys valid in n
// itself (not below it), handled by the caller.
func checkKnown(n *yaml.Node, t reflect.Type, taken []string) error {
	if n == nil || t == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return nil
		}
		t = t.Elem()
	}
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // a kind mismatch is reported by Decode
		}
		if err := checkDuplicates(n); err != nil {
			return err
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				if slices.Contains(taken, k.Value) {
					continue
				}
				known := append(slices.Collect(maps.Keys(fields)), taken...)
				return UnknownKey(k, known, "")
			}
			if err := checkKnown(val, ft, nil); err != nil {
				if pe, ok := err.(*PosError); ok && val.Kind == yaml.ScalarNode {
					pe.Msg = k.Value + ": " + pe.Msg // name the key of a bad value
				}
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				if err := checkKnown(c, t.Elem(), nil); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			if err := checkDuplicates(n); err != nil {
				return err
			}
			for i := 1; i < len(n.Content); i += 2 {
				if err := checkKnown(n.Content[i], t.Elem(), nil); err != nil {
					return err
				}
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml.v3 decodes 0.5 into an integer field as 0 without a word.
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			if f, err := strconv.ParseFloat(n.Value, 64); err != nil || f != float64(int64(f)) {
				return posErr(n, "%s is not a whole number", n.Value)
			}
		}
	}
	return nil
}

// checkDuplicates reports a key given twice in mapping n, at the second
// one (yaml.v3 reports it too, but by line only, so the error would not
// point at the key).
func checkDuplicates(n *yaml.Node) error {
	if len(n.Content) < 4 {
		return nil
	}
	for i := 2; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			continue
		}
		for j := 0; j < i; j += 2 {
			if p := n.Content[j]; p.Kind == yaml.ScalarNode && p.Value == k.Value {
				return posErr(k, "key %q given twice (first at line %d, column %d)", k.Value, p.Line, p.Column)
			}
		}
	}
	return nil
}

// yamlFields maps the YAML keys of struct t (following ",inline") to types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// KnownKeys returns the YAML keys that DecodeStrict accepts at the top of a
// mapping decoded into v (a pointer to a struct), sorted; nil when v's type
// decodes itself (implements yaml.Unmarshaler) or is not a struct.
func KnownKeys(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return nil
		}
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	keys := slices.Collect(maps.Keys(yamlFields(t)))
	slices.Sort(keys)
	return keys
}

// UnknownKey is the error for key k, which is not valid where it stands:
// placed at k, it lists every key valid there (known, plus more, a phrase
// for keys that cannot be listed, e.g. "the link module's keys") and
// suggests the nearest of them when one is near (see Suggest).
func UnknownKey(k *yaml.Node, known []string, more string) *PosError {
	known = slices.Clone(known)
	slices.Sort(known)
	known = slices.Compact(known)
	msg := fmt.Sprintf("unknown field %q", k.Value)
	if s := Suggest(k.Value, known); len(s) > 0 {
		msg += ", did you mean " + quoteOr(s) + "?"
	}
	list := strings.Join(known, ", ")
	switch {
	case list == "" && more == "":
		list = "none"
	case list == "":
		list = more
	case more != "":
		list += ", and " + more
	}
	return posErr(k, "%s (known: %s)", msg, list)
}

func quoteOr(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// Suggest returns the words of known nearest to word, for a "did you mean"
// (nil: none is near). Near is, ignoring case, an edit distance of at most
// 2 (insertions, deletions, substitutions and swaps of two neighbouring
// letters) but no more than half of word's length, so that "ip" does not
// suggest "to"; or else one being a prefix of the other, the shorter at
// least 3 letters ("forward" for "forwarding", "mtuu" for "mtu"). The
// nearest win; ties are all returned, sorted, at most three.
func Suggest(word string, known []string) []string {
	w := strings.ToLower(word)
	maxDist := min(2, len(w)/2)
	best, bestScore := []string(nil), -1
	for _, k := range known {
		kl := strings.ToLower(k)
		d := editDistance(w, kl)
		score := d
		if d > maxDist {
			short, long := w, kl
			if len(short) > len(long) {
				short, long = long, short
			}
			if len(short) < 3 || !strings.HasPrefix(long, short) {
				continue
			}
			score = 100 + d // a prefix match ranks after every close one
		}
		switch {
		case bestScore < 0 || score < bestScore:
			best, bestScore = []string{k}, score
		case score == bestScore:
			best = append(best, k)
		}
	}
	slices.Sort(best)
	best = slices.Compact(best)
	if len(best) > 3 {
		return nil // too many to be a suggestion
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b
// (Levenshtein, plus a swap of two neighbouring bytes counted as one
// edit). Keys are short ASCII words: bytes will do.
func editDistance(a, b string) int {
	// rows i-2, i-1 and i of the table.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
