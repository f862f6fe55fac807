// Package errclass names what an error means for the pipeline, in the
// three classes every component acts on: try the same thing again later
// (Retryable), give up on this one item and go on (Permanent: the sink
// dead-letters it), or stop until someone fixes the configuration or the
// environment (Fatal).
//
// The class is decided by behaviour, not by type: an error anywhere in a
// chain says what it is with a Fatal() bool or Retryable() bool method (as
// the OneSignal client's errors do), or by a Mark. Errors of a library
// that says nothing (pgx, kafka-go) are classified by a classifier beside
// the code that uses that library: connector (PostgreSQL), broker (Kafka),
// sink/onesignal (HTTP). The retry package retries what is Retryable.
package errclass

// Class is what an error means for trying again.
type Class uint8

// The classes. The zero value, Unknown, is a classifier's answer for an
// error it does not recognise: the caller's default then applies, so
// classifiers can be chained with cmp.Or.
const (
	Unknown   Class = iota
	Retryable       // may succeed later: wait and try again
	Permanent       // this item can never succeed: set it aside and go on
	Fatal           // nothing will succeed until someone fixes something: stop
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Fatal:
		return "fatal"
	}
	return "unknown"
}

// Worse returns the more severe of a and b: Fatal over Permanent over
// Retryable over Unknown. An error that stands for several (a batch's
// per-message errors) is as bad as the worst of them.
func Worse(a, b Class) Class { return max(a, b) }

// Mark returns err carrying class c, with err's message; errors.Is and
// errors.As see through it. Nil stays nil.
func Mark(err error, c Class) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, class: c}
}

type marked struct {
	err   error
	class Class
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() error   { return m.err }
func (m *marked) Fatal() bool     { return m.class == Fatal }
func (m *marked) Retryable() bool { return m.class == Retryable }

// Of returns the class err says it has: the outermost error of its chain
// that has a Fatal() bool method answering true, or a Retryable() bool
// method, decides (Retryable() false is Permanent). Unknown when none
// says, and for nil.
func Of(err error) Class {
	for err != nil {
		if f, ok := err.(interface{ Fatal() bool }); ok && f.Fatal() {
			return Fatal
		}
		if r, ok := err.(interface{ Retryable() bool }); ok {
			if r.Retryable() {
				return Retryable
			}
			return Permanent
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			// A joined error: the worst of what its parts say.
			c := Unknown
			for _, e := range u.Unwrap() {
				c = Worse(c, Of(e))
			}
			return c
		default:
			return Unknown
		}
	}
	return Unknown
}
