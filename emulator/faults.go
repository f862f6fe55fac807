package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Faults make the emulator unreliable on purpose, the way the network and
// OneSignal's edge are. Each API request (not the /emulator/ routes) meets
// at most one of Reset, Drop or a Status, drawn at random with the given
// shares, and first waits out the Latency. The draws come from a generator
// seeded with Seed, so a test that sends the same requests in the same
// order meets the same faults.
type Faults struct {
	Seed int64
	// Status answers a share of requests with the status instead of
	// applying them, e.g. {500: 0.1, 503: 0.05, 429: 0.05}. Codes are
	// 400–599. A 429 carries Retry-After: RetryAfter seconds (0 means 1).
	Status     map[int]float64
	RetryAfter int
	// Latency delays every request; when LatencyMax is above it, by a time
	// drawn evenly from [Latency, LatencyMax].
	Latency, LatencyMax time.Duration
	// Reset is the share of requests whose connection is reset before they
	// are applied, with no answer.
	Reset float64
	// Drop is the share of requests that are applied, then have their
	// connection reset instead of answered: the client cannot tell them
	// from a Reset, and must repeat what it cannot know to be done.
	Drop float64
}

// Validate reports everything wrong with f at once.
func (f Faults) Validate() error {
	var errs []error
	share := func(name string, p float64) {
		if !(p >= 0 && p <= 1) {
			errs = append(errs, fmt.Errorf("fault %s has share %v: use 0 to 1", name, p))
		}
	}
	total := f.Reset + f.Drop
	share("reset", f.Reset)
	share("drop", f.Drop)
	for code, p := range f.Status {
		if code < 400 || code > 599 {
			errs = append(errs, fmt.Errorf("fault status %d is not an error status: use 400 to 599", code))
		}
		share(fmt.Sprint(code), p)
		total += p
	}
	if total > 1+1e-9 {
		errs = append(errs, fmt.Errorf("the fault shares add up to %v: at most 1", total))
	}
	if f.RetryAfter < 0 {
		errs = append(errs, fmt.Errorf("fault retry_after is %d: use 0 for 1 second", f.RetryAfter))
	}
	if f.Latency < 0 || (f.LatencyMax != 0 && f.LatencyMax < f.Latency) {
		errs = append(errs, fmt.Errorf("fault latency %v–%v: want 0 ≤ latency ≤ latency_max (or no latency_max)", f.Latency, f.LatencyMax))
	}
	return errors.Join(errs...)
}

// faultsJSON is Faults as POST /emulator/faults takes it and GET serves
// it: durations as Go duration strings ("50ms").
type faultsJSON struct {
	Seed       int64           `json:"seed"`
	Status     map[int]float64 `json:"status,omitempty"`
	RetryAfter int             `json:"retry_after,omitempty"`
	Latency    string          `json:"latency,omitempty"`
	LatencyMax string          `json:"latency_max,omitempty"`
	Reset      float64         `json:"reset,omitempty"`
	Drop       float64         `json:"drop,omitempty"`
}

func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{Seed: f.Seed, Status: f.Status, RetryAfter: f.RetryAfter, Reset: f.Reset, Drop: f.Drop}
	if f.Latency > 0 {
		j.Latency = f.Latency.String()
	}
	if f.LatencyMax > 0 {
		j.LatencyMax = f.LatencyMax.String()
	}
	return json.Marshal(j)
}

func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt fault would silently be none
	if err := dec.Decode(&j); err != nil {
		return err
	}
	out := Faults{Seed: j.Seed, Status: j.Status, RetryAfter: j.RetryAfter, Reset: j.Reset, Drop: j.Drop}
	for _, d := range []struct {
		name string
		text string
		to   *time.Duration
	}{{"latency", j.Latency, &out.Latency}, {"latency_max", j.LatencyMax, &out.LatencyMax}} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil {
			return fmt.Errorf("%s %q is not a duration: write one such as 50ms or 1.5s", d.name, d.text)
		}
		*d.to = v
	}
	*f = out
	return nil
}

// injector decides, request by request, which fault to inject.
type injector struct {
	mu     sync.Mutex
	faults Faults
	codes  []int // the keys of faults.Status, sorted, so draws are repeatable
	rng    *rand.Rand
}

func newInjector(f Faults) *injector {
	in := &injector{}
	in.set(f)
	return in
}

func (in *injector) set(f Faults) {
	f.Status = maps.Clone(f.Status)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = f
	in.codes = slices.Sorted(maps.Keys(f.Status))
	in.rng = rand.New(rand.NewPCG(uint64(f.Seed), 0))
}

func (in *injector) get() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.faults
	f.Status = maps.Clone(f.Status)
	return f
}

// fault is what one request meets.
type fault struct {
	delay       time.Duration
	reset, drop bool
	status      int // 0: none
	retryAfterS int
}

// draw decides the next request's fault. It always takes two numbers from
// the generator, so that the sequence does not depend on which faults are
// set.
func (in *injector) draw() fault {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := &in.faults
	pick, spread := in.rng.Float64(), in.rng.Float64()
	out := fault{delay: f.Latency, retryAfterS: max(f.RetryAfter, 1)}
	if f.LatencyMax > f.Latency {
		out.delay += time.Duration(spread * float64(f.LatencyMax-f.Latency))
	}
	if pick -= f.Reset; pick < 0 {
		out.reset = true
		return out
	}
	if pick -= f.Drop; pick < 0 {
		out.drop = true
		return out
	}
	for _, code := range in.codes {
		if pick -= f.Status[code]; pick < 0 {
			out.status = code
			return out
		}
	}
	return out
}

// inject is the middleware that makes the faults happen.
func (e *Emulator) inject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := e.faults.draw()
		if f.delay > 0 {
			e.stats.fault(func(c *FaultStats) { c.Delayed++ })
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				panic(http.ErrAbortHandler) // the client has gone: no answer
			}
		}
		switch {
		case f.reset:
			e.stats.fault(func(c *FaultStats) { c.Resets++ })
			cut(w)
		case f.drop:
			e.stats.fault(func(c *FaultStats) { c.Drops++ })
			next.ServeHTTP(&discardWriter{header: http.Header{}}, r)
			cut(w)
		case f.status != 0:
			e.stats.fault(func(c *FaultStats) { c.Status[f.status]++ })
			writeFault(w, f.status, f.retryAfterS)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// writeFault answers with an injected error status: OneSignal's bodies for
// the statuses it is known to send, the status text for others.
func writeFault(w http.ResponseWriter, status, retryAfter int) {
	switch status {
	case http.StatusTooManyRequests:
		writeTooManyRequests(w, retryAfter)
	case http.StatusServiceUnavailable:
		writeMessages(w, status, msgUnavailable)
	default:
		writeMessages(w, status, http.StatusText(status))
	}
}

// cut closes the connection without an answer, with a TCP reset rather
// than an orderly close: the client sees "connection reset by peer", as
// when a proxy or the network fails mid-request.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2, or a test recorder: aborting the handler is as close
		// as it gets.
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// discardWriter takes the answer to a request whose answer is dropped.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
