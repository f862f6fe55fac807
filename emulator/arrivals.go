package emulator

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Arrival is one API request as the emulator saw it: when it came, what it
// asked for and what the client got. A test or a benchmark that needs to
// know when a change reached OneSignal (the end-to-end latency benchmark
// in bench/) reads it from the tags in Body.
type Arrival struct {
	// At is the emulator's clock (Config.Clock) when the request came in,
	// before faults, rate limits or anything else looked at it.
	At     time.Time
	Method string
	Path   string // as sent, e.g. /apps/<app_id>/users/by/external_id/ada
	Route  string // the route pattern, as Stats.Requests counts it
	// Body is what the emulator read of the body: all of it for a request
	// it applied, nothing for one refused before reading it (a 429 of the
	// app's rate limit, say).
	Body []byte
	// Status is the status the client got: 0 when a fault cut the
	// connection, which for a dropped answer (Faults.Drop) means the write
	// was applied but the client cannot know.
	Status int
}

// arrivalHook holds the function OnArrival set; nil when none is.
type arrivalHook = atomic.Pointer[func(Arrival)]

// OnArrival has f called with every API request (not the emulator's own
// /emulator/ routes) once it has been answered, on the request's goroutine
// and before the answer leaves: f must be safe for concurrent use and
// quick. A nil f turns it off; it is off until set, and then costs the
// requests nothing.
func (e *Emulator) OnArrival(f func(Arrival)) {
	if f == nil {
		e.arrivals.Store(nil)
		return
	}
	e.arrivals.Store(&f)
}

// observe is the outermost middleware of every API route: it notes the
// arrival time first, and hands the Arrival to the hook once the request
// is answered, or cut.
func (e *Emulator) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := e.arrivals.Load()
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		a := Arrival{At: e.now(), Method: r.Method, Path: r.URL.Path, Route: r.Pattern}
		var body bytes.Buffer
		r.Body = teeBody{Reader: io.TeeReader(r.Body, &body), Closer: r.Body}
		cw := &countingWriter{ResponseWriter: w}
		defer func() {
			a.Status, a.Body = cw.sent(), body.Bytes()
			p := recover() // http.ErrAbortHandler: the client got nothing
			if p != nil {
				a.Status = 0
			}
			(*f)(a)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(cw, r)
	})
}

// teeBody is a request body that copies what is read of it.
type teeBody struct {
	io.Reader
	io.Closer
}
