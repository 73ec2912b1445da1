package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
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
	if node == nil {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if err := checkKnown(node, reflect.TypeOf(v)); err != nil {
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

func checkKnown(n *yaml.Node, t reflect.Type) error {
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
				return posErr(k, "unknown field %q (known: %s)", k.Value, knownList(fields))
			}
			if err := checkKnown(val, ft); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				if err := checkKnown(c, t.Elem()); err != nil {
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
				if err := checkKnown(n.Content[i], t.Elem()); err != nil {
					return err
				}
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

func knownList(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
