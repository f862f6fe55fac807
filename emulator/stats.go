package emulator

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"net/http"
	"sync"
)

// Stats is what the emulator has counted of the API requests it served
// (its own /emulator/ routes are not counted). GET /emulator/stats serves
// it as JSON.
type Stats struct {
	// Requests counts requests by route pattern (e.g. "PUT
	// /players/{player_id}"; "/" for unknown routes) and by the status
	// the client got: 0 when it got none, its connection cut by a fault.
	Requests map[string]map[int]int `json:"requests"`
	// TooManyRequests counts the 429s sent, by the rate limits or as
	// faults.
	TooManyRequests int `json:"too_many_requests"`
	// RateLimited counts the 429s the rate limits sent.
	RateLimited int        `json:"rate_limited"`
	Faults      FaultStats `json:"faults"`
	// Answered counts the set answers given (see Answer), by status; nil
	// when none was.
	Answered map[int]int `json:"answered,omitempty"`
}

// FaultStats counts the faults injected.
type FaultStats struct {
	Status  map[int]int `json:"status"`  // error answers, by status
	Delayed int         `json:"delayed"` // requests held back by Latency
	Resets  int         `json:"resets"`  // connections cut before applying
	Drops   int         `json:"drops"`   // connections cut after applying
}

type counters struct {
	mu sync.Mutex
	s  Stats
}

func newCounters() *counters {
	c := &counters{}
	c.reset()
	return c
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s = Stats{Requests: map[string]map[int]int{}, Faults: FaultStats{Status: map[int]int{}}, Answered: map[int]int{}}
}

func (c *counters) answered(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Answered[status]++
}

func (c *counters) request(endpoint string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byStatus := c.s.Requests[endpoint]
	if byStatus == nil {
		byStatus = map[int]int{}
		c.s.Requests[endpoint] = byStatus
	}
	byStatus[status]++
	if status == http.StatusTooManyRequests {
		c.s.TooManyRequests++
	}
}

func (c *counters) rateLimited() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.RateLimited++
}

func (c *counters) fault(add func(*FaultStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	add(&c.s.Faults)
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Requests = make(map[string]map[int]int, len(c.s.Requests))
	for k, v := range c.s.Requests {
		s.Requests[k] = maps.Clone(v)
	}
	s.Faults.Status = maps.Clone(c.s.Faults.Status)
	s.Answered = nil // none given: left out, as in the JSON
	if len(c.s.Answered) > 0 {
		s.Answered = maps.Clone(c.s.Answered)
	}
	return s
}

// count is the outermost middleware of every API route: it records the
// route and the status the client got, even when a fault cut the
// connection or aborted the handler.
func (e *Emulator) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, record: func(status int) { e.stats.request(r.Pattern, status) }}
		defer func() {
			status := cw.sent()
			p := recover() // http.ErrAbortHandler: the client got nothing
			if p != nil {
				status = 0
			}
			if !cw.recorded {
				e.stats.request(r.Pattern, status)
			}
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(cw, r)
	})
}

// countingWriter notes the status of an answer, or that there was none.
type countingWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	// record counts the request; a hijack (a fault cutting the
	// connection) counts it at once, before the client can see the cut
	// and ask for the stats, and sets recorded.
	record   func(status int)
	recorded bool
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

// Hijack lets a fault cut the connection through the wrapper.
func (c *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := c.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("emulator: the connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err == nil {
		c.hijacked = true
		if c.record != nil && !c.recorded {
			c.record(0)
			c.recorded = true
		}
	}
	return conn, rw, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// sent is the status the client got: 0 for none.
func (c *countingWriter) sent() int {
	switch {
	case c.hijacked:
		return 0
	case c.status == 0:
		return http.StatusOK // net/http sends 200 for a handler that wrote nothing
	}
	return c.status
}
