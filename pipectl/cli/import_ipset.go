package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ipsetTypes are the ipset types the filter's sets have.
var ipsetTypes = map[string]bool{"hash:net": true, "hash:ip": true, "bitmap:port": true, "hash:ip,port": true, "hash:net,port": true}

// importIpset translates `ipset save` output into the lines of a sets:
// section (indented for the filter: section), and says what it left out.
// create NAME TYPE [family inet|inet6] [maxelem N] [timeout N] [counters]
// …; add NAME ELEMENT [timeout N] [packets N bytes N] ….
func importIpset(name string, data []byte) (lines []string, problems []string) {
	problem := func(ln int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: line %d: ", name, ln)+fmt.Sprintf(format, args...))
	}
	type set struct {
		name, typ    string
		timeout      string
		counters     bool
		maxelem      string
		elems        []string
		left, family string
	}
	var sets []*set
	byName := map[string]*set{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	ln := 0
	for sc.Scan() {
		ln++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "create", "-N":
			if len(f) < 3 {
				problem(ln, "create without a name and type")
				continue
			}
			s := &set{name: f[1], typ: f[2]}
			if !setNameOK(s.name) {
				problem(ln, "set name %q: up to 31 printable characters, no quotes, commas or '!', not starting with '-'", s.name)
				byName[s.name] = nil
				continue
			}
			if !ipsetTypes[s.typ] {
				problem(ln, "set %s: type %s not supported yet (the filter's sets: hash:net, hash:ip, bitmap:port, hash:ip,port, hash:net,port)", s.name, s.typ)
				byName[s.name] = nil
				continue
			}
			for i := 3; i < len(f); i++ {
				arg := func() string {
					if i+1 < len(f) {
						i++
						return f[i]
					}
					return ""
				}
				switch f[i] {
				case "timeout":
					s.timeout = arg()
				case "counters":
					s.counters = true
				case "maxelem":
					s.maxelem = arg()
				case "family":
					s.family = arg()
				case "hashsize", "bucketsize", "initval", "range", "netmask", "markmask":
					if v := arg(); f[i-1] == "netmask" && v != "32" && v != "128" {
						problem(ln, "set %s: netmask %s not supported yet (elements are kept whole)", s.name, v)
					}
				case "comment", "skbinfo", "forceadd":
					// Element comments and skbinfo are not kept.
				default:
					problem(ln, "set %s: option %s not supported yet", s.name, f[i])
				}
			}
			sets = append(sets, s)
			byName[s.name] = s
		case "add", "-A":
			if len(f) < 3 {
				problem(ln, "add without a set and an element")
				continue
			}
			s, ok := byName[f[1]]
			if !ok {
				problem(ln, "add to set %s before its create", f[1])
				continue
			}
			if s == nil {
				continue // its create was reported
			}
			e := f[2]
			for i := 3; i+1 < len(f); i += 2 {
				if f[i] == "timeout" {
					e += " timeout " + f[i+1]
				}
			}
			s.elems = append(s.elems, e)
		default:
			problem(ln, "%q is not an ipset save line (create, add)", trunc(sc.Text()))
		}
	}
	if len(sets) == 0 {
		return nil, problems
	}
	lines = append(lines, "  sets:")
	for _, s := range sets {
		lines = append(lines, fmt.Sprintf("    %s:", yamlScalar(s.name)), "      type: "+yamlScalar(s.typ))
		if s.timeout != "" && s.timeout != "0" {
			lines = append(lines, "      timeout: "+s.timeout)
		}
		if s.counters {
			lines = append(lines, "      counters: true")
		}
		if s.maxelem != "" {
			if n, err := strconv.Atoi(s.maxelem); err == nil && n >= len(s.elems) {
				lines = append(lines, "      maxelem: "+s.maxelem)
			}
		}
		if len(s.elems) == 0 {
			lines = append(lines, "      elements: []")
			continue
		}
		lines = append(lines, "      elements:")
		for _, e := range s.elems {
			lines = append(lines, "        - "+yamlScalar(e))
		}
	}
	return lines, problems
}

// setNameOK: a name the filter's sets: takes.
func setNameOK(n string) bool {
	if n == "" || len(n) > 31 || n[0] == '-' {
		return false
	}
	for _, c := range []byte(n) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("'\",!#", c) >= 0 {
			return false
		}
	}
	return true
}
