package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"time"
)

// watchEvery is how often reload: watch looks at the binary.
var watchEvery = 500 * time.Millisecond

// watch replaces the plugin when its binary is replaced (renamed into
// place: another inode, or other contents) while the declaration in force
// (the newest generation's, p.decl) says reload: watch. It ends when the
// plugin stops. A replacement that fails to start (or whose sha256 does
// not match a pinned one) is logged and the running version stays; the
// same binary is not tried again until it changes once more.
func (p *Plugin) watch(every time.Duration) {
	defer close(p.watchDone)
	d := p.decl.Load()
	last, _ := os.Stat(d.path)
	lastSum := d.binSum
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-p.quit:
			return
		}
		d := p.decl.Load()
		st, err := os.Stat(d.path)
		if err != nil || last != nil && os.SameFile(st, last) && st.ModTime().Equal(last.ModTime()) && st.Size() == last.Size() {
			continue
		}
		if !d.watch {
			last, lastSum = st, [32]byte{}
			continue
		}
		last = st
		bin, err := os.ReadFile(d.path)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(bin)
		if sum == lastSum {
			continue
		}
		lastSum = sum
		nd := *d
		nd.binSum = sum
		nd.key = nd.versionKey()
		replaced, err := p.replace(p.launcherOf(&nd), &nd)
		if err != nil {
			p.log.Error().Err(err).Str("sha256", hex.EncodeToString(sum[:])).Msg("reload: watch: the new binary did not start; the running version stays")
			continue
		}
		if !replaced {
			continue // a reload replaced it already
		}
		p.log.Info().Str("sha256", hex.EncodeToString(sum[:])).Msg("reload: watch: binary replaced")
	}
}
