package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// retryLogInterval is how often the retries of OneSignal requests are
// logged: one line per kind of request, with counts by cause, never one per
// attempt (an outage makes thousands a second).
const retryLogInterval = 10 * time.Second

// retryLog counts the retried requests between two log lines. Safe for
// concurrent use.
type retryLog struct {
	mu     sync.Mutex
	counts map[string]map[string]int // kind of request → cause → attempts
	last   map[string]error          // kind of request → its newest error
}

// note counts one retried attempt at a request of kind that failed with
// err.
func (l *retryLog) note(kind string, err error) {
	cause := retryCause(err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts, l.last = make(map[string]map[string]int), make(map[string]error)
	}
	if l.counts[kind] == nil {
		l.counts[kind] = make(map[string]int)
	}
	l.counts[kind][cause]++
	l.last[kind] = err
}

// flush logs a line per kind of request retried since the last flush,
// such as "retrying 1,234 set_tags requests: 503 ×1,200, timeout ×34",
// and starts counting again.
func (l *retryLog) flush(log *zap.Logger, interval time.Duration) {
	l.mu.Lock()
	counts, last := l.counts, l.last
	l.counts, l.last = nil, nil
	l.mu.Unlock()
	for _, kind := range slices.Sorted(maps.Keys(counts)) {
		byCause := counts[kind]
		total := 0
		for _, n := range byCause {
			total += n
		}
		causes := slices.SortedFunc(maps.Keys(byCause), func(a, b string) int {
			return cmp.Or(cmp.Compare(byCause[b], byCause[a]), cmp.Compare(a, b))
		})
		parts := make([]string, len(causes))
		for i, c := range causes {
			parts[i] = c + " ×" + thousands(byCause[c])
		}
		log.Warn(fmt.Sprintf("retrying %s %s requests to OneSignal: %s", thousands(total), kind, strings.Join(parts, ", ")),
			zap.String("op", kind), zap.Int("attempts", total), zap.Duration("interval", interval),
			zap.Any("causes", byCause), zap.NamedError("last_error", last[kind]))
	}
}

// run flushes every interval until ctx ends, then once more.
func (l *retryLog) run(ctx context.Context, log *zap.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flush(log, interval)
			return
		case <-t.C:
			l.flush(log, interval)
		}
	}
}

// retryCause names why a retried attempt failed: its HTTP status;
// "deferred" for one that did the first part of its work and waits for
// the target's next window (a create that found the user); "timeout";
// "network" for a request that got no complete answer otherwise; "other".
func retryCause(err error) string {
	if h, ok := errors.AsType[statusError](err); ok && h.HTTPStatus() > 0 {
		return strconv.Itoa(h.HTTPStatus())
	}
	if _, ok := errors.AsType[*onesignal.DeferredError](err); ok {
		return "deferred"
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if _, ok := errors.AsType[*onesignal.TransportError](err); ok {
		return "network"
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return "network"
	}
	return "other"
}

// thousands writes n with commas: 1,234.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
