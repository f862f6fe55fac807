package errclass

import (
	"errors"
	"fmt"
	"testing"
)

type says struct{ fatal, retryable bool }

func (s says) Error() string   { return "it said" }
func (s says) Fatal() bool     { return s.fatal }
func (s says) Retryable() bool { return s.retryable }

type onlyRetryable bool

func (onlyRetryable) Error() string     { return "only retryable" }
func (r onlyRetryable) Retryable() bool { return bool(r) }

type onlyFatal bool

func (onlyFatal) Error() string { return "only fatal" }
func (f onlyFatal) Fatal() bool { return bool(f) }

func TestOfReadsWhatTheErrorSaysOfItself(t *testing.T) {
	plain := errors.New("plain")
	for _, tc := range []struct {
		sentence string
		err      error
		want     Class
	}{
		{"nil has no class", nil, Unknown},
		{"an error that says nothing is unknown", plain, Unknown},
		{"a mark is found through wrapping", fmt.Errorf("write: %w", Mark(plain, Retryable)), Retryable},
		{"a permanent mark is permanent", Mark(plain, Permanent), Permanent},
		{"a fatal mark is fatal", Mark(plain, Fatal), Fatal},
		{"Fatal() true wins over Retryable() on the same error", says{fatal: true, retryable: true}, Fatal},
		{"Retryable() false is permanent", onlyRetryable(false), Permanent},
		{"Retryable() true is retryable", fmt.Errorf("call: %w", onlyRetryable(true)), Retryable},
		{"Fatal() false alone says nothing, so the error it wraps decides", fmt.Errorf("%w: %w", onlyFatal(false), Mark(plain, Retryable)), Retryable},
		{"the outermost error that speaks decides", Mark(onlyRetryable(true), Fatal), Fatal},
		{"an outer retryable mark overrides a permanent cause", Mark(onlyRetryable(false), Retryable), Retryable},
		{"a joined error is as bad as its worst part", errors.Join(Mark(plain, Retryable), Mark(plain, Permanent)), Permanent},
		{"a joined error of unknown parts is unknown", errors.Join(plain, plain), Unknown},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("%s: Of(%v) = %s, want %s", tc.sentence, tc.err, got, tc.want)
		}
	}
}

func TestMarkKeepsTheMessageAndTheChain(t *testing.T) {
	cause := errors.New("connection reset")
	err := Mark(fmt.Errorf("fetch: %w", cause), Retryable)
	if err.Error() != "fetch: connection reset" || !errors.Is(err, cause) {
		t.Errorf("Mark gave %q (is cause: %v), want the message and the chain kept", err, errors.Is(err, cause))
	}
	if Mark(nil, Fatal) != nil {
		t.Error("Mark(nil) is not nil")
	}
}

func TestWorseOrdersFatalOverPermanentOverRetryableOverUnknown(t *testing.T) {
	order := []Class{Unknown, Retryable, Permanent, Fatal}
	for i, a := range order {
		for j, b := range order {
			if got, want := Worse(a, b), order[max(i, j)]; got != want {
				t.Errorf("Worse(%s, %s) = %s, want %s", a, b, got, want)
			}
		}
	}
}
