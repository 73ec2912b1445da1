package pipelinetest

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// Watchdog ends the whole process (exit status 2, every goroutine's stack
// on stderr) when one fuzz input takes longer than d: a hang, a loop the
// input can make endless. name prefixes the message; call the returned
// stop when the input is done.
func Watchdog(name string, d time.Duration, data []byte) (stop func()) {
	tm := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		fmt.Fprintf(os.Stderr, "%s: input %x ran longer than %v\n%s", name, data, d, buf[:n])
		os.Exit(2)
	})
	return func() { tm.Stop() }
}
