package filter

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipestack/pipestack/pipeline"
)

// tokenize splits an iptables rule as a shell would: blanks separate
// words, single and double quotes group them ("--comment 'two words'"),
// a backslash outside single quotes takes the next byte as it is.
func tokenize(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in := false // inside a word
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && quote != '\'':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("a backslash ends the rule")
			}
			i++
			cur.WriteByte(s[i])
			in = true
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, in = ch, true
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// quoteArg quotes s so that tokenize reads it back as one word.
func quoteArg(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// baseOpts are the options of iptables itself (not of a match).
var baseOpts = map[string]string{
	"-p": "proto", "--protocol": "proto",
	"-s": "src", "--source": "src", "--src": "src",
	"-d": "dst", "--destination": "dst", "--dst": "dst",
	"-i": "in", "--in-interface": "in",
	"-o": "out", "--out-interface": "out",
}

// parseRule parses a rule in iptables syntax (without -A CHAIN) into the
// same YAML mappings the structured form gives, so that both build the
// same modules.
func parseRule(s string) (*ruleSrc, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("empty rule")
	}
	at := &yaml.Node{}
	src := &ruleSrc{at: at, base: mapping(at)}
	type open struct {
		name string
		node *yaml.Node
		opts []Opt
	}
	var matches []*open
	var tgt *open
	proto := ""
	invert := false
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		arg := func() (string, error) {
			if i+1 >= len(toks) || toks[i+1] == "!" {
				return "", fmt.Errorf("option %q requires an argument", tok)
			}
			i++
			return toks[i], nil
		}
		if tok == "!" {
			if invert {
				return nil, errors.New("multiple \"!\" flags not allowed")
			}
			invert = true
			continue
		}
		inv := invert
		invert = false
		bang := ""
		if inv {
			bang = "!"
		}
		switch tok {
		case "-4", "--ipv4", "-6", "--ipv6":
			if inv {
				return nil, fmt.Errorf("\"!\" not allowed before %s", tok)
			}
			f := 4
			if tok == "-6" || tok == "--ipv6" {
				f = 6
			}
			if src.family != 0 && src.family != f {
				return nil, errors.New("-4 and -6 together")
			}
			src.family = f
			continue
		case "-f", "--fragment":
			if hasKey(src.base, "fragment") {
				return nil, fmt.Errorf("multiple %s flags not allowed", tok)
			}
			addKV(src.base, at, "fragment", bang+"true")
			continue
		case "-m", "--match":
			if inv {
				return nil, fmt.Errorf("\"!\" not allowed before %s", tok)
			}
			name, err := arg()
			if err != nil {
				return nil, err
			}
			name = strings.ToLower(name)
			if name == "icmp6" {
				name = "icmpv6"
			}
			if !isMatch(name) {
				return nil, fmt.Errorf("unknown match %q (iptables: \"Couldn't load match `%s'\")", name, name)
			}
			// A second -m of one name is a second instance, as in
			// iptables: the options after it are its own (the search
			// below looks at the latest match first).
			mi, _ := pipeline.LookupModule("filter.match." + name)
			var opts []Opt
			if m, ok := mi.New().(Match); ok {
				opts = m.Options()
			}
			matches = append(matches, &open{name: name, node: mapping(at), opts: opts})
			continue
		case "-j", "--jump", "-g", "--goto":
			if inv {
				return nil, fmt.Errorf("\"!\" not allowed before %s", tok)
			}
			if tgt != nil {
				return nil, errors.New("a rule has one -j or -g")
			}
			name, err := arg()
			if err != nil {
				return nil, err
			}
			t := &open{node: mapping(at)}
			lower := strings.ToLower(name)
			if tok == "-g" || tok == "--goto" {
				t.name = "goto"
				addKV(t.node, at, "chain", name)
			} else if isTarget(lower) && (name == lower || name == strings.ToUpper(name)) {
				t.name = lower
				mi, _ := pipeline.LookupModule("filter.target." + lower)
				if tm, ok := mi.New().(Target); ok {
					t.opts = tm.Options()
				}
			} else {
				t.name = "jump"
				addKV(t.node, at, "chain", name)
			}
			tgt = t
			continue
		}
		if key, ok := baseOpts[tok]; ok {
			v, err := arg()
			if err != nil {
				return nil, err
			}
			if hasKey(src.base, key) {
				return nil, fmt.Errorf("multiple %s flags not allowed", tok)
			}
			addKV(src.base, at, key, bang+v)
			if key == "proto" {
				proto = v
			}
			continue
		}
		if !strings.HasPrefix(tok, "--") {
			return nil, fmt.Errorf("bad argument %q", tok)
		}
		name := tok[2:]
		// The option belongs to the target (after -j), else to the
		// latest match that has it, else to the match -p implies.
		var owner *open
		var opt Opt
		find := func(o *open) bool {
			for _, op := range o.opts {
				if op.matches(name) {
					owner, opt = o, op
					return true
				}
			}
			return false
		}
		if tgt == nil || !find(tgt) {
			for j := len(matches) - 1; j >= 0 && owner == nil; j-- {
				find(matches[j])
			}
		}
		if owner == nil {
			if pm := protoMatcher(proto); pm != "" {
				mi, _ := pipeline.LookupModule("filter.match." + pm)
				m := mi.New().(Match)
				o := &open{name: pm, node: mapping(at), opts: m.Options()}
				if find(o) {
					dup := false
					for _, m := range matches {
						if m.name == pm {
							owner, dup = m, true
						}
					}
					if !dup {
						matches = append(matches, o)
					}
				}
			}
		}
		if owner == nil {
			return nil, fmt.Errorf("unknown option %q", tok)
		}
		if inv && !opt.Invert {
			return nil, fmt.Errorf("\"!\" not allowed before %s", tok)
		}
		if hasKey(owner.node, opt.key()) {
			return nil, fmt.Errorf("multiple --%s flags not allowed", opt.Name)
		}
		var val string
		switch opt.Args {
		case 0:
			val = bang + "true"
		case 1:
			v, err := arg()
			if err != nil {
				return nil, err
			}
			val = bang + v
		case 2:
			a, err := arg()
			if err != nil {
				return nil, err
			}
			b, err := arg()
			if err != nil {
				return nil, err
			}
			val = bang + a + " " + b
		}
		addKV(owner.node, at, opt.key(), val)
	}
	if invert {
		return nil, errors.New("\"!\" at the end of the rule")
	}
	for _, m := range matches {
		src.matches = append(src.matches, matchSrc{name: m.name, node: m.node})
	}
	if tgt != nil {
		src.target, src.tnode = tgt.name, tgt.node
	}
	return src, nil
}
