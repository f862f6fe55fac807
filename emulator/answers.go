package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Answer is a response the emulator gives in place of OneSignal's to the
// requests it matches: what a proxy, a load balancer or a misbehaving edge
// sends (an HTML error page, a redirect, JSON cut short, a status nobody
// documents), for testing how a client classifies answers. Unlike Faults,
// which strike at random, an answer strikes exactly the requests it names,
// so a test can aim it at one user or device while the rest of the
// traffic goes on. Answers are checked in order, before the Faults; the
// first that matches is given.
type Answer struct {
	// Method and Path select the requests: the method ("" for any) and a
	// part of the path as sent, escaped (e.g. "/external_id/user%2F7";
	// "" for any).
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Times is how many requests get the answer before it is used up;
	// 0 means every request, until the answers are replaced.
	Times int `json:"times,omitempty"`
	// Apply serves the request first, as OneSignal would (faults, rate
	// limits and all), then sends this answer instead of OneSignal's: the
	// write is done, the client is told something else.
	Apply bool `json:"apply,omitempty"`

	Status int               `json:"status"` // 200–999; a 3xx wants a Location header
	Header map[string]string `json:"header,omitempty"`
	Body   string            `json:"body,omitempty"`
	// Cut sends the headers, declaring Body's whole length, and only the
	// first Cut bytes of Body, then closes the connection: an answer that
	// breaks off. 0 sends all of Body.
	Cut int `json:"cut,omitempty"`
}

// Validate reports everything wrong with a at once.
func (a Answer) Validate() error {
	var errs []error
	if a.Status < 200 || a.Status > 999 {
		errs = append(errs, fmt.Errorf("answer status %d: use 200 to 999", a.Status))
	}
	if a.Times < 0 {
		errs = append(errs, fmt.Errorf("answer times %d: use 0 for every request", a.Times))
	}
	if a.Cut < 0 || a.Cut > len(a.Body) {
		errs = append(errs, fmt.Errorf("answer cut %d: use 0 to %d, the body's length", a.Cut, len(a.Body)))
	}
	if a.Status >= 300 && a.Status < 400 && a.Header["Location"] == "" {
		errs = append(errs, fmt.Errorf("answer status %d is a redirect: give it a Location header", a.Status))
	}
	return errors.Join(errs...)
}

func (a *Answer) matches(r *http.Request) bool {
	return (a.Method == "" || a.Method == r.Method) && strings.Contains(r.URL.EscapedPath(), a.Path)
}

// answers holds the answers in force, with the uses they have left.
type answers struct {
	list []Answer // Times counts down; a used-up answer is removed
}

// take returns the answer r gets, if any, using it once.
func (as *answers) take(r *http.Request) (Answer, bool) {
	for i := range as.list {
		a := &as.list[i]
		if !a.matches(r) {
			continue
		}
		got := *a
		if a.Times > 0 {
			if a.Times--; a.Times == 0 {
				as.list = slices.Delete(as.list, i, i+1)
			}
		}
		return got, true
	}
	return Answer{}, false
}

// SetAnswers replaces the answers in force (none ends them). Answers that
// do not validate are refused and the old ones stay.
func (e *Emulator) SetAnswers(as ...Answer) error {
	var errs []error
	for i, a := range as {
		if err := a.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("answer %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	list := make([]Answer, len(as))
	for i, a := range as {
		a.Header = maps.Clone(a.Header)
		list[i] = a
	}
	e.answersMu.Lock()
	defer e.answersMu.Unlock()
	e.answers.list = list
	return nil
}

// Answers returns the answers in force, with the uses they have left.
func (e *Emulator) Answers() []Answer {
	e.answersMu.Lock()
	defer e.answersMu.Unlock()
	out := make([]Answer, len(e.answers.list))
	for i, a := range e.answers.list {
		a.Header = maps.Clone(a.Header)
		out[i] = a
	}
	return out
}

// answer is the middleware that gives the answers.
func (e *Emulator) answer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.answersMu.Lock()
		a, ok := e.answers.take(r)
		e.answersMu.Unlock()
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		e.stats.answered(a.Status)
		if a.Apply {
			next.ServeHTTP(&discardWriter{header: http.Header{}}, r)
		}
		for k, v := range a.Header {
			w.Header().Set(k, v)
		}
		if a.Cut > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(a.Body)))
		}
		w.WriteHeader(a.Status)
		if a.Cut == 0 {
			_, _ = w.Write([]byte(a.Body))
			return
		}
		_, _ = w.Write([]byte(a.Body[:a.Cut]))
		_ = http.NewResponseController(w).Flush()
		cut(w)
	})
}

// serveAnswers is GET /emulator/answers: the answers in force, as POST
// takes them.
func (e *Emulator) serveAnswers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Answers())
}

// setAnswers is POST /emulator/answers, SetAnswers over HTTP: the body, a
// JSON array of answers, replaces them ([] ends them), e.g.
//
//	[{"method": "PATCH", "path": "/external_id/user-7", "times": 2,
//	  "status": 502, "header": {"Content-Type": "text/html"},
//	  "body": "<html><title>502 Bad Gateway</title></html>"}]
//
// It answers 200 with the answers now in force, or 400 saying what is
// wrong.
func (e *Emulator) setAnswers(w http.ResponseWriter, r *http.Request) {
	var as []Answer
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields() // a misspelt field would silently answer something else
	if err := dec.Decode(&as); err != nil {
		writeMessages(w, http.StatusBadRequest, "The body must be a JSON array of answers: "+jsonProblem(err))
		return
	}
	if err := e.SetAnswers(as...); err != nil {
		writeMessages(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e.Answers())
}
