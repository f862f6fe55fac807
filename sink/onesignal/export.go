package onesignal

import (
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/retry"
)

// The exports: OneSignal writes a gzipped CSV of every device (player
// model) or every user (user model, in beta) at about 2,000 records a
// second, and answers at once with the file's URL, which answers 404
// (older docs: 403) until the file is ready. One export runs at a time
// per account: another meanwhile is refused (a 429 in the emulator).

const (
	epExportUsers   = "POST /apps/{app_id}/users/csv_export"
	epExportPlayers = "POST /players/csv_export?app_id={app_id}"
	// epExportFile names the file's URL in errors: it is a capability
	// (anyone holding it can read every user's tags), never printed.
	epExportFile = "GET {csv_file_url}"
)

// ExportRecord is one row of an export.
type ExportRecord struct {
	// ID is the device's id (player model) or the user's onesignal_id
	// (user model).
	ID string
	// ExternalID is the external user id of the device, or the user's
	// external_id; "" when none.
	ExternalID string
	Tags       map[string]string // never nil
}

// ExportPoll is how an Export waits for its file: retry.Policy's schedule
// from First up to Max between tries, for at most Within in all.
type ExportPoll struct {
	First, Max, Within time.Duration
	// Idle bounds a download that makes no progress: the request is
	// abandoned (a *TransportError) after Idle with no byte read.
	Idle time.Duration
}

// DefaultExportPoll waits up to 6 hours, time for about 40 million
// records at OneSignal's pace, asking every 30 s at most.
var DefaultExportPoll = ExportPoll{First: retry.Export.Initial, Max: retry.Export.Max, Within: 6 * time.Hour, Idle: time.Minute}

// Export is a requested export: Records waits for its file and reads it.
type Export struct {
	Poll ExportPoll // DefaultExportPoll from Start…Export; tests shorten it

	url  string // the file's; never in an error
	http *http.Client
	// idCol and extCol are the model's column names of ExportRecord's ID
	// and ExternalID.
	idCol, extCol string
}

// StartExport asks for an export of every user (POST
// /apps/{app_id}/users/csv_export), one row per user with its
// onesignal_id, external_id and tags. OneSignal documents the route as
// beta, for apps with user-based segmentation and current App API keys.
// The request takes no token from either limiter: it is neither a write
// of a user nor a view. Another export running in the account is a
// retryable *APIError (429, or whatever OneSignal sends).
func (c *Client) StartExport(ctx context.Context) (*Export, error) {
	return c.caller.startExport(ctx, epExportUsers, c.appPath+"/users/csv_export", struct{}{}, "onesignal_id", "external_id")
}

// StartExport asks for an export of every device (POST
// /players/csv_export), one row per device with its id, external_user_id
// (asked for as an extra field) and tags.
func (c *PlayerClient) StartExport(ctx context.Context) (*Export, error) {
	body := map[string][]string{"extra_fields": {"external_user_id"}}
	return c.caller.startExport(ctx, epExportPlayers, "/players/csv_export?app_id="+url.QueryEscape(c.appID), body, "id", "external_user_id")
}

func (c *caller) startExport(ctx context.Context, endpoint, path string, body any, idCol, extCol string) (*Export, error) {
	free := *c
	free.limiter = nil
	_, answer, err := free.exchange(ctx, endpoint, path, body)
	if err != nil {
		return nil, err
	}
	var b struct {
		URL string `json:"csv_file_url"`
	}
	if answer == nil || json.Unmarshal(answer, &b) != nil {
		return nil, fmt.Errorf("%s: the answer is not {\"csv_file_url\": …}", endpoint)
	}
	if u, err := url.Parse(b.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s: csv_file_url is not an absolute http(s) URL", endpoint)
	}
	// The file may be served from elsewhere, through redirects: follow
	// them (a GET is safe to), with no overall timeout, as a big file
	// takes long; ExportPoll.Idle bounds a stall instead.
	hc := *c.http
	hc.CheckRedirect = nil
	hc.Timeout = 0
	return &Export{Poll: DefaultExportPoll, url: b.URL, http: &hc, idCol: idCol, extCol: extCol}, nil
}

// NotReadyError is an export whose file was not ready within
// ExportPoll.Within. It is retryable: start another export later.
type NotReadyError struct{ Waited time.Duration }

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%s: the export's file was not ready after %s", epExportFile, e.Waited.Round(time.Second))
}
func (e *NotReadyError) Retryable() bool { return true }

// Records waits for the file, then reads it as it downloads, calling fn
// with each record in the file's order; the file is never held whole. An
// error from fn stops the reading and is returned as is.
//
// While the file is not ready (404, or 403 as older docs say), and on
// answers worth repeating (timeouts, 429, 5xx, no answer), it asks again
// after a backoff (the server's Retry-After when longer), for at most
// Poll.Within; then a *NotReadyError. Another 4xx is a permanent
// *APIError (a 401 is fatal). A download that breaks off (a truncated
// gzip stream, a reset) is a *TransportError: call Records again to read
// the file from the start; records already given are given again. A file
// that is not the CSV expected (a missing column, tags that are not a
// JSON object) is a permanent error naming the line, never its content.
func (x *Export) Records(ctx context.Context, fn func(ExportRecord) error) error {
	b := retry.Policy{Initial: x.Poll.First, Max: x.Poll.Max}.Start()
	start := time.Now()
	for {
		done, wait, err := x.try(ctx, fn)
		if done {
			return err
		}
		next := b.Next(nil)
		if x.Poll.Within > 0 && time.Since(start)+next > x.Poll.Within { // 0: no bound
			if err != nil {
				return err
			}
			return &NotReadyError{Waited: time.Since(start)}
		}
		t := time.NewTimer(max(next, wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// try asks for the file once. It returns done with the outcome, or not
// done with the least wait the server asked for and the error that made
// it retry (nil when the file was just not ready).
func (x *Export) try(parent context.Context, fn func(ExportRecord) error) (done bool, wait time.Duration, err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	idle := x.Poll.Idle
	if idle <= 0 {
		idle = DefaultExportPoll.Idle
	}
	stall := time.AfterFunc(idle, cancel)
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.url, nil)
	if err != nil {
		return true, 0, fmt.Errorf("%s: build request: %w", epExportFile, stripURL(err))
	}
	// No Authorization: the URL is the credential, and it may be on
	// another host than the API's, which must not see the key.
	resp, err := x.http.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return true, 0, parent.Err()
		}
		return false, 0, &TransportError{Endpoint: epExportFile, Err: stripURL(err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return true, 0, x.read(&stallReader{r: resp.Body, t: stall, idle: idle}, fn)
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		drain(resp.Body)
		return false, 0, nil
	}
	kept, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	apiErr := newAPIError(epExportFile, resp, kept)
	if apiErr.Retryable() {
		return false, apiErr.RetryAfter, apiErr
	}
	return true, 0, apiErr
}

func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, maxDrain)) }

// stallReader pushes the stall timer back on every read that makes
// progress.
type stallReader struct {
	r    io.Reader
	t    *time.Timer
	idle time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.idle)
	}
	return n, err
}

// read parses the gzipped CSV from r.
func (x *Export) read(r io.Reader, fn func(ExportRecord) error) error {
	broken := func(err error) error {
		return &TransportError{Endpoint: epExportFile, Err: fmt.Errorf("read the file: %w", stripURL(err))}
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		if errors.Is(err, gzip.ErrHeader) {
			return fmt.Errorf("%s: the file is not gzipped", epExportFile)
		}
		return broken(err)
	}
	cr := csv.NewReader(zr)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return x.readError(err, broken)
	}
	idCol, extCol, tagsCol := -1, -1, -1
	for i, h := range header {
		switch h {
		case x.idCol:
			idCol = i
		case x.extCol:
			extCol = i
		case "tags":
			tagsCol = i
		}
	}
	for col, at := range map[string]int{x.idCol: idCol, x.extCol: extCol, "tags": tagsCol} {
		if at < 0 {
			return fmt.Errorf("%s: the file has no column %q", epExportFile, col)
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return x.readError(err, broken)
		}
		line, _ := cr.FieldPos(0)
		r := ExportRecord{ID: rec[idCol], ExternalID: rec[extCol], Tags: map[string]string{}}
		if cell := rec[tagsCol]; cell != "" {
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(cell), &raw); err != nil {
				return fmt.Errorf("%s: line %d: the tags are not a JSON object", epExportFile, line)
			}
			if r.Tags, err = tagStrings(raw); err != nil {
				return fmt.Errorf("%s: line %d: %w", epExportFile, line, err)
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}

// readError tells a file that breaks off (retryable) from one that is not
// CSV (permanent, by line only: a record's content holds user data).
func (x *Export) readError(err error, broken func(error) error) error {
	if pe, ok := errors.AsType[*csv.ParseError](err); ok && !errors.Is(pe.Err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: line %d is not CSV: %w", epExportFile, pe.Line, pe.Err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the file is empty", epExportFile)
	}
	return broken(err)
}
