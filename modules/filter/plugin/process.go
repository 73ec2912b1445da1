package plugin

import (
	"context"
	"time"
)

func contextTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Second)
	}
	return 10 * time.Second
}
