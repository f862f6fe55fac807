package sink

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

type httpStatusError int

func (e httpStatusError) Error() string   { return "HTTP " + thousands(int(e)) }
func (e httpStatusError) HTTPStatus() int { return int(e) }

func TestRetriesAreLoggedAsOneLinePerKindOfRequestWithCountsByCause(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	var l retryLog
	for range 1200 {
		l.note("set_tags", httpStatusError(503))
	}
	for range 34 {
		l.note("set_tags", context.DeadlineExceeded)
	}
	l.note("link", &onesignal.TransportError{Endpoint: "PUT /players/{id}", Err: errors.New("connection reset by peer")})
	l.note("link", &onesignal.DeferredError{Endpoint: "PUT /players/{id}", Reason: "the next window"})
	l.flush(zap.New(core), 10*time.Second)
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	want := []string{
		"retrying 2 link requests to OneSignal: deferred ×1, network ×1",
		"retrying 1,234 set_tags requests to OneSignal: 503 ×1,200, timeout ×34",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	l.flush(zap.New(core), 10*time.Second)
	if n := logs.Len(); n != 2 {
		t.Errorf("an interval with no retry logged %d lines more", n-2)
	}
}
