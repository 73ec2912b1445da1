package conntrack

import "time"

// Describe returns the entry r refers to as `pipectl conntrack -L`
// prints it (also when not confirmed yet), and false when r no longer
// names a live entry (pipectl replay).
func (t *Table) Describe(r Ref, now time.Time) (string, bool) {
	e := t.Entry(r)
	if e == nil {
		return "", false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.Valid(r) {
		return "", false
	}
	return formatEntry(e, now), true
}
