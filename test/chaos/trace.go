package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// apiTrace writes a line per API request to a file: when, what, the
// answer, and the body with long strings cut short. With it, a mismatch
// comes with the requests that touched its user or device.
type apiTrace struct {
	elapsed func() time.Duration
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
}

func newAPITrace(path string, elapsed func() time.Duration) (*apiTrace, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &apiTrace{elapsed: elapsed, f: f, w: bufio.NewWriterSize(f, 1<<16)}, nil
}

func (a *apiTrace) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := a.elapsed()
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 4<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			status := fmt.Sprint(rec.status)
			if rec.status == 0 {
				status = "cut" // a fault reset the connection, before or after applying
			}
			a.mu.Lock()
			fmt.Fprintf(a.w, "+%8.3fs %s %s -> %s %s\n", at.Seconds(), r.Method, r.URL.Path, status, abbreviateJSON(body))
			a.mu.Unlock()
		}()
		next.ServeHTTP(rec, r)
	})
}

func (a *apiTrace) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.w.Flush()
	a.f.Close()
}

// lines returns the trace lines that mention any of ids.
func (a *apiTrace) lines(ids []string) map[string][]string {
	a.mu.Lock()
	a.w.Flush()
	a.mu.Unlock()
	out := map[string][]string{}
	f, err := os.Open(a.f.Name())
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		for _, id := range ids {
			if mentions(line, id) {
				out[id] = append(out[id], line)
			}
		}
	}
	return out
}

// mentions reports whether line names id as a whole: u-5 is not in u-50.
func mentions(line, id string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], id)
		if j < 0 {
			return false
		}
		end := i + j + len(id)
		if end == len(line) || !isIDByte(line[end]) {
			return true
		}
		i = end
	}
}

func isIDByte(b byte) bool {
	return b == '-' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// statusRecorder notes the status of an answer; a hijacked connection
// (a cut) has none.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection to cut it.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// abbreviateJSON renders a JSON body with every string over 40 bytes
// replaced by its length.
func abbreviateJSON(b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return fmt.Sprintf("<%d bytes, not JSON>", len(b))
	}
	out, _ := json.Marshal(shorten(v))
	return string(out)
}

func shorten(v any) any {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			if x == event.Unavailable {
				return x
			}
			return fmt.Sprintf("<%d bytes>", len(x))
		}
	case map[string]any:
		for k, e := range x {
			x[k] = shorten(e)
		}
	case []any:
		for i, e := range x {
			x[i] = shorten(e)
		}
	}
	return v
}

// kafkaHistory reads the change topics whole and returns, for each of
// ids, the events whose key names it, in partition order.
func kafkaHistory(ctx context.Context, brokers, topics, ids []string) (map[string][]string, error) {
	ends, err := endOffsets(ctx, &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}, topics)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	next := map[topicPartition]int64{}
	out := map[string][]string{}
	caughtUp := func() bool {
		for tp, end := range ends {
			if next[tp] < end {
				return false
			}
		}
		return true
	}
	for !caughtUp() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			next[topicPartition{r.Topic, r.Partition}] = r.Offset + 1
			for _, id := range ids {
				if mentions(string(r.Key), id) {
					out[id] = append(out[id], describeRecord(r))
				}
			}
		})
	}
	return out, nil
}

func describeRecord(r *kgo.Record) string {
	where := fmt.Sprintf("%s/%d@%d", strings.TrimPrefix(r.Topic, "cdc.public."), r.Partition, r.Offset)
	ev, err := event.Decode(r.Value)
	if err != nil {
		return where + " " + err.Error()
	}
	img := func(row event.Row) string {
		if row == nil {
			return "null"
		}
		b, _ := row.MarshalJSON()
		return abbreviateJSON(b)
	}
	return fmt.Sprintf("%s op=%s tx=%d commit_lsn=%d lsn=%d snapshot=%s before=%s after=%s",
		where, ev.Op, ev.Source.TxID, ev.Source.CommitLSN, ev.Source.LSN, ev.Source.Snapshot, img(ev.Before), img(ev.After))
}
