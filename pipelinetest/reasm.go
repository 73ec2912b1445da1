package pipelinetest

import (
	"testing"

	"github.com/pipestack/pipestack/modules/link/channel"
	"github.com/pipestack/pipestack/pipeline"
)

// InjectBatched injects frames into ep in batches of 1 to 3 (the batch
// that starts at frame i has up to 1+i%3 frames), so that a sequence of
// fragments meets the stack both alone and together in one batch.
func InjectBatched(ep *channel.Endpoint, frames [][]byte) {
	for i := 0; i < len(frames); {
		k := min(len(frames)-i, 1+i%3)
		ep.InjectFrames(frames[i : i+k])
		i += k
	}
}

// ReassemblyMemory returns what a stack's reassembler holds, in bytes and
// in queues; shared is the key it is shared under
// ("network.ipv4/reassembly", "network.ipv6/reassembly"). It fails t when
// the stack has none.
func ReassemblyMemory(t testing.TB, st *pipeline.Stack, shared string) (bytes, queues int) {
	t.Helper()
	r, ok := st.Shared(shared, func() any { return nil }).(interface{ Memory() (int, int) })
	if !ok {
		t.Fatalf("no reassembler shared as %s", shared)
	}
	return r.Memory()
}

// WantReassemblyEmpty fails t when the stack's reassembler (shared under
// shared) holds anything.
func WantReassemblyEmpty(t testing.TB, st *pipeline.Stack, shared string) {
	t.Helper()
	if b, q := ReassemblyMemory(t, st, shared); b != 0 || q != 0 {
		t.Fatalf("reassembly holds %d bytes in %d queues", b, q)
	}
}

// OutstandingBuffers is the number of a pool's buffers out of it:
// allocated, less those free and those Trim dropped (a collection trims
// pools, so Allocated alone overcounts; Free and Trimmed are read so that
// no trim falls between them). For a pool whose free lists never fill up
// (a release to a full list drops its packet): NewPoolLimits with high
// limits, or the default's when fewer packets than its limits are out.
func OutstandingBuffers(pool *pipeline.Pool) int {
	for {
		t := pool.Trimmed()
		small, large := pool.Free()
		if pool.Trimmed() == t {
			return int(pool.Allocated()) - int(t) - small - large
		}
	}
}

// CloseWantBuffersBack closes n's stack and fails t unless every buffer of
// pool (the one the stack was built with) is back in it.
func CloseWantBuffersBack(t testing.TB, n *Node, pool *pipeline.Pool) {
	t.Helper()
	n.Stack.Close()
	if o := OutstandingBuffers(pool); o != 0 {
		t.Fatalf("%d pool buffers not returned", o)
	}
}
