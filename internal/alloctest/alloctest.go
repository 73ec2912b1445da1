// Package alloctest counts heap allocations exactly, for the zero-allocation
// tests of every package (pipeline/wire included, which pipelinetest cannot
// serve: it imports the pipeline). pipelinetest.CountMallocs is this
// package's Count.
//
// Why runtime.ReadMemStats and not runtime/metrics: an allocation from a
// P's cached span is published to the heap statistics only when that cache
// is refilled or flushed. runtime/metrics reads the statistics without
// flushing, so a window of 200 allocations of 32 bytes (one span holds 256
// of them) can measure 0. ReadMemStats stops the world and flushes every
// P's cache first (runtime.flushallmcaches), so it sees every object.
//
// What ReadMemStats costs, and how Count keeps it out of the result:
// stopping and restarting the world may wake an idle P, and when no idle OS
// thread is parked for it the runtime starts one, which allocates (an m, its
// signal stack, its g0: 7 objects seen). Count therefore
//
//   - locks the calling goroutine to its OS thread, so the window opens
//     and closes on the same thread;
//   - turns the collector off for the whole measurement (the GC's workers
//     and its own allocations are not the code under test's);
//   - parks idle OS threads once per process (parkIdleThreads), and calls
//     ReadMemStats a few times before the window, so that the threads the
//     stop-the-world machinery or a woken goroutine needs exist and wait;
//   - fills the runtime's cache of wait records (warmSudogs), which a GC
//     empties and a goroutine blocking on a contended lock refills by
//     allocating;
//   - measures an empty window the same way right before the real one and
//     subtracts it (whatever a pair of ReadMemStats calls costs by itself).
//
// There is no best-of-N: the result is one window over all the work. The
// zero-allocation tests run at least 10,000 packets through it, so a real
// allocation of one per 64-packet batch shows as ≥ 156.
package alloctest

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
)

var (
	mu            sync.Mutex // one measurement at a time: the MemStats below are shared
	before, after runtime.MemStats

	// Set by Trace (under mu): the windows record every allocation's stack.
	tracing    bool
	traceRate  int    // runtime.MemProfileRate before Trace
	lastStacks string // the allocating stacks of the last window that allocated
)

// Count runs f once and returns how many heap allocations (objects, tiny
// ones included: runtime.MemStats.Mallocs) happened meanwhile, in any
// goroutine: keep the others quiet, or count them in. Run it outside -race,
// which allocates on its own.
func Count(f func()) uint64 {
	n, _ := CountWithBaseline(f)
	return n
}

// CountWithBaseline is Count that also returns the baseline it subtracted:
// the allocations of an empty window measured the same way just before.
func CountWithBaseline(f func()) (n, baseline uint64) {
	mu.Lock()
	defer mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// SetGCPercent(-1) waits for a running cycle to end, so no mark
	// worker runs from here on.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	parkThreads.Do(func() { parkIdleThreads(2*runtime.GOMAXPROCS(0) + 2) })
	warmSudogs(512)
	for range 4 {
		runtime.ReadMemStats(&before)
	}
	baseline = window(func() {})
	var pre map[[32]uintptr]int64
	if tracing {
		pre = profile()
		runtime.MemProfileRate = 1 // published by the window's stop-the-world
	}
	n = window(f)
	if tracing {
		runtime.MemProfileRate = 0
		if n > 0 {
			// Publish what the window recorded (the next window's
			// profile starts from it), and show it if it counts.
			runtime.GC()
			runtime.GC()
			if n > baseline {
				lastStacks = stacks(pre)
			}
		}
	}
	if n < baseline {
		return 0, baseline
	}
	return n - baseline, baseline
}

// Trace makes every window from now on until the returned func is called
// record the stack of each heap allocation it sees (runtime.MemProfileRate
// = 1 inside the window only), for Stacks. Call it before the warm-up: it
// turns the default sampling off and runs the collector twice, which
// publishes what was sampled before, so that the profile's growth over a
// window is that window's allocations and nothing else. Recording costs
// nothing while nothing allocates.
func Trace() (stop func()) {
	mu.Lock()
	defer mu.Unlock()
	traceRate = runtime.MemProfileRate
	runtime.MemProfileRate = 0
	runtime.GC()
	runtime.GC()
	tracing, lastStacks = true, ""
	return func() {
		mu.Lock()
		defer mu.Unlock()
		tracing, lastStacks = false, ""
		runtime.MemProfileRate = traceRate
	}
}

// Stacks returns, under Trace, the allocating stacks of the last window that
// allocated more than its baseline: each stack with how many objects it
// allocated, most first. Empty without Trace or when no window allocated.
func Stacks() string {
	mu.Lock()
	defer mu.Unlock()
	return lastStacks
}

// profile returns the objects allocated so far per stack, as published:
// a sample is published by the second collection after it.
func profile() map[[32]uintptr]int64 {
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+50)
	}
	m := make(map[[32]uintptr]int64, len(recs))
	for _, r := range recs {
		m[r.Stack0] += r.AllocObjects
	}
	return m
}

// stacks formats the stacks whose allocations grew since pre: the window's,
// recorded at MemProfileRate 1 and published since.
func stacks(pre map[[32]uintptr]int64) string {
	type grown struct {
		stk [32]uintptr
		n   int64
	}
	var gs []grown
	total := int64(0)
	for stk, n := range profile() {
		if d := n - pre[stk]; d > 0 {
			gs = append(gs, grown{stk, d})
			total += d
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].n > gs[j].n })
	var b strings.Builder
	fmt.Fprintf(&b, "%d objects allocated in the window, by stack:\n", total)
	for _, g := range gs {
		fmt.Fprintf(&b, "%d objects:\n", g.n)
		pcs := g.stk[:]
		for i, pc := range pcs {
			if pc == 0 {
				pcs = pcs[:i]
				break
			}
		}
		frames := runtime.CallersFrames(pcs)
		for {
			f, more := frames.Next()
			fmt.Fprintf(&b, "\t%s\n\t\t%s:%d\n", f.Function, f.File, f.Line)
			if !more {
				break
			}
		}
	}
	return b.String()
}

var parkThreads sync.Once

// parkIdleThreads makes the runtime start k more OS threads and park them
// idle: k goroutines each lock a thread and block, so that each needs a
// thread of its own, then all unlock and end, and their threads wait on the
// runtime's idle list from then on. A goroutine woken inside a window (the
// scavenger, a timer, a reader) then gets an idle thread instead of a new
// one, whose start allocates.
func parkIdleThreads(k int) {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for range k {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			ready.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
}

// warmSudogs fills the runtime's caches of wait records (sudogs) with k of
// them. A goroutine that blocks on a contended mutex or a channel takes a
// sudog from its P's cache, refilled from a central one that every GC
// empties; with both empty it allocates one (112 bytes). Two goroutines
// sharing a Pool (a link's reader thread and a writer) contend for its
// lock now and then, and the first such wait after a GC allocated in the
// TUN test's window. Called with the collector off, so the central cache
// stays full for the window. This is the runtime's warm-up, like the pools':
// a packet path that allocates keeps allocating after it.
func warmSudogs(k int) {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for range k {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	time.Sleep(time.Millisecond) // let the last ones block on release
	close(release)
	done.Wait()
}

func window(f func()) uint64 {
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}
