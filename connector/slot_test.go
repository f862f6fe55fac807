package connector

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
)

func TestAKeepaliveWithNothingInFlightConfirmsTheServersWALEnd(t *testing.T) {
	due := time.Now().Add(time.Hour)
	s := &session{tracker: checkpoint.NewLSNTracker(0x100), nextStatus: due}
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s.keepalive(pglogrepl.PrimaryKeepaliveMessage{ServerWALEnd: 0x200, ServerTime: at})
	if got := s.tracker.Confirmed(); got != 0x200 {
		t.Errorf("confirmed %s, want the WAL end 0/200", got)
	}
	if !s.caughtUp.Equal(at) {
		t.Errorf("caught up at %v, want the keepalive's server time %v", s.caughtUp, at)
	}
	if !s.nextStatus.Equal(due) {
		t.Error("a keepalive that asked for no reply moved the next status update")
	}
	s.keepalive(pglogrepl.PrimaryKeepaliveMessage{ServerWALEnd: 0x200, ServerTime: at, ReplyRequested: true})
	if !s.nextStatus.IsZero() {
		t.Errorf("next status update at %v after a keepalive asking for a reply, want at once", s.nextStatus)
	}
}

func TestAKeepaliveWithATransactionInFlightConfirmsNothing(t *testing.T) {
	s := &session{tracker: checkpoint.NewLSNTracker(0x100)}
	txn := s.tracker.Begin()
	txn.Add() // an event Kafka has not acknowledged
	s.keepalive(pglogrepl.PrimaryKeepaliveMessage{ServerWALEnd: 0x200, ServerTime: time.Now()})
	if got := s.tracker.Confirmed(); got != 0x100 {
		t.Errorf("confirmed %s with a transaction in flight, want 0/100 still", got)
	}
	if !s.caughtUp.IsZero() {
		t.Errorf("caught up at %v with a transaction in flight", s.caughtUp)
	}
}

func TestParsePGDurationReadsWalSenderTimeoutAsCurrentSettingShowsIt(t *testing.T) {
	for _, c := range []struct {
		setting string
		want    time.Duration
	}{
		{"60s", time.Minute},
		{"1min", time.Minute},
		{"500ms", 500 * time.Millisecond},
		{"2h", 2 * time.Hour},
		{"1d", 24 * time.Hour},
		{"0", 0},
		{"1500", 1500 * time.Millisecond}, // no unit: milliseconds
		{"soon", 0},
		{"xs", 0},
	} {
		if got := parsePGDuration(c.setting); got != c.want {
			t.Errorf("parsePGDuration(%q) = %v, want %v", c.setting, got, c.want)
		}
	}
}
