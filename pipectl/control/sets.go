package control

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pipestack/pipestack/modules/filter"
	"github.com/pipestack/pipestack/pipeline"
)

// SetRequest is `pipectl set`'s: Op is add, del, list, flush or test;
// Name the set (list: empty for every set); Elem the element (add, del,
// test) as the file writes it; Timeout the seconds for an add (nil: the
// set's default; 0: none).
type SetRequest struct {
	Op      string `json:"op"`
	Name    string `json:"name,omitempty"`
	Elem    string `json:"elem,omitempty"`
	Timeout *int64 `json:"timeout,omitempty"`
}

// SetReply answers a set request.
type SetReply struct {
	Sets    []filter.SetInfo `json:"sets,omitempty"` // list
	Added   bool             `json:"added,omitempty"`
	Deleted int              `json:"deleted,omitempty"` // del: 1; flush: the elements removed
	Found   bool             `json:"found,omitempty"`   // test
}

// Sets serves a set request on the stack's running generation: a change
// takes effect for the next packet, without a reload, and is kept by a
// reload that leaves the set's declaration as it is.
func Sets(s *pipeline.Stack, req *SetRequest) (*SetReply, error) {
	sets := filter.StackSets(s)
	now := s.Clock().Now()
	rep := &SetReply{}
	if req.Op == "list" && req.Name == "" {
		for _, n := range filter.SetNames(sets) {
			rep.Sets = append(rep.Sets, sets[n].Info(now, true))
		}
		if rep.Sets == nil {
			rep.Sets = []filter.SetInfo{}
		}
		return rep, nil
	}
	set, ok := sets[req.Name]
	if !ok {
		if req.Name == "" {
			return nil, errors.New("set: no set named")
		}
		return nil, fmt.Errorf("set %q does not exist (ipset: \"The set with the given name does not exist\"); the running pipeline has %s", req.Name, setList(sets))
	}
	needElem := req.Op == "add" || req.Op == "del" || req.Op == "test"
	if needElem && strings.TrimSpace(req.Elem) == "" {
		return nil, fmt.Errorf("set %s: %s needs an element", req.Op, req.Name)
	}
	if req.Timeout != nil && req.Op != "add" {
		return nil, errors.New("set: a timeout goes with add")
	}
	var err error
	switch req.Op {
	case "add":
		to := time.Duration(-1)
		if req.Timeout != nil {
			if *req.Timeout < 0 || *req.Timeout > 2147483 {
				return nil, fmt.Errorf("set: timeout %d out of range 0..2147483", *req.Timeout)
			}
			to = time.Duration(*req.Timeout) * time.Second
		}
		rep.Added, err = set.Add(req.Elem, to, now)
	case "del":
		if err = set.Del(req.Elem, now); err == nil {
			rep.Deleted = 1
		}
	case "flush":
		rep.Deleted, err = set.Flush(now)
	case "test":
		rep.Found, err = set.Test(req.Elem, now)
	case "list":
		rep.Sets = []filter.SetInfo{set.Info(now, true)}
	default:
		return nil, fmt.Errorf("set: unknown op %q (add, del, list, flush, test)", req.Op)
	}
	if err != nil {
		return nil, fmt.Errorf("set %s %s: %v", req.Op, req.Name, err)
	}
	return rep, nil
}

func setList(sets map[string]*filter.Set) string {
	names := filter.SetNames(sets)
	if len(names) == 0 {
		return "no sets"
	}
	return "sets " + strings.Join(names, ", ")
}

// FormatSets prints sets as ipset list does.
func FormatSets(w io.Writer, sets []filter.SetInfo) {
	for i, s := range sets {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Name: %s\nType: %s\n", s.Name, s.Type)
		var h []string
		if s.Timeout > 0 {
			h = append(h, fmt.Sprintf("timeout %d", s.Timeout))
		}
		if s.Counters {
			h = append(h, "counters")
		}
		h = append(h, fmt.Sprintf("maxelem %d", s.MaxElem))
		fmt.Fprintf(w, "Header: %s\n", strings.Join(h, " "))
		if s.Changed {
			fmt.Fprintln(w, "Changed: at run time (pipectl set), not as the file declares it")
		}
		fmt.Fprintf(w, "Number of entries: %d\nMembers:\n", s.Entries)
		for _, e := range s.Members {
			line := e.Elem
			if s.Map {
				line += " : " + e.Verdict
			}
			if e.Timeout > 0 {
				line += fmt.Sprintf(" timeout %d", e.Timeout)
			}
			if s.Counters {
				line += fmt.Sprintf(" packets %d bytes %d", e.Packets, e.Bytes)
			}
			fmt.Fprintln(w, line)
		}
	}
}
