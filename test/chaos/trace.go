package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// apiTrace writes a line per API request to a file: when, what, the
// answer, and the body with long strings cut short. With it, a mismatch
// comes with the requests that touched its user or device. It also notes
// when each partition of the sink's targets topic had a request, for
// stalls.
type apiTrace struct {
	elapsed    func() time.Duration
	partitions int // of the sink's targets topic
	mu         sync.Mutex
	f          *os.File
	w          *bufio.Writer
	// requests are, by targets partition (targets/0, …), when a request
	// for one of its targets arrived.
	requests *activity
}

func newAPITrace(path string, partitions int, elapsed func() time.Duration) (*apiTrace, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for p := range partitions {
		names = append(names, targetsPartitionName(p))
	}
	return &apiTrace{elapsed: elapsed, partitions: partitions, f: f, w: bufio.NewWriterSize(f, 1<<16), requests: newActivity(names)}, nil
}

func targetsPartitionName(p int) string { return fmt.Sprintf("targets/%d", p) }

func (a *apiTrace) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := a.elapsed()
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 4<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rec := &statusRecorder{ResponseWriter: w}
		target, hasTarget := targetOf(r, body)
		defer func() {
			status := fmt.Sprint(rec.status)
			if rec.status == 0 {
				status = "cut" // a fault reset the connection, before or after applying
			}
			a.mu.Lock()
			fmt.Fprintf(a.w, "+%8.3fs %s %s -> %s %s\n", at.Seconds(), r.Method, r.URL.Path, status, abbreviateJSON(body))
			a.mu.Unlock()
			if hasTarget {
				a.requests.add(targetsPartitionName(targetPartition(target, a.partitions)), at)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// targetOf names the sink's target a request is for, as the targets
// topic keys it (transform.Target.Key): "user:<external id>" or
// "device:<id>". Requests that name none (a credentials check) report
// false.
func targetOf(r *http.Request, body []byte) (string, bool) {
	var seg []string
	for _, s := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		seg = append(seg, u)
	}
	route := r.Method + " " + strings.Join(routeOf(seg), "/")
	switch route {
	case "PATCH apps/*/users/by/external_id/*", "POST apps/*/users/by/external_id/*/subscriptions":
		return "user:" + seg[4], true
	case "PUT apps/*/users/*":
		return "user:" + seg[3], true
	case "PATCH apps/*/subscriptions/*/owner":
		return "device:" + seg[3], true
	case "PUT players/*":
		return "device:" + seg[1], true
	case "POST apps/*/users": // create user: a user's, or an unlink's (a new anonymous user for the device)
		var req struct {
			Identity      map[string]string `json:"identity"`
			Subscriptions []struct {
				ID string `json:"id"`
			} `json:"subscriptions"`
		}
		if json.Unmarshal(body, &req) != nil {
			return "", false
		}
		if ext := req.Identity["external_id"]; ext != "" {
			return "user:" + ext, true
		}
		if len(req.Subscriptions) > 0 && req.Subscriptions[0].ID != "" {
			return "device:" + req.Subscriptions[0].ID, true
		}
	case "POST players": // an email or SMS record, the user's
		var req struct {
			ExternalUserID string `json:"external_user_id"`
		}
		if json.Unmarshal(body, &req) == nil && req.ExternalUserID != "" {
			return "user:" + req.ExternalUserID, true
		}
	}
	return "", false
}

// routeOf replaces the ids in a path's segments by "*".
func routeOf(seg []string) []string {
	out := slices.Clone(seg)
	for i := range out {
		switch {
		case i > 0 && (seg[i-1] == "apps" || seg[i-1] == "players" || seg[i-1] == "subscriptions" || seg[i-1] == "external_id"):
			out[i] = "*"
		case i == 3 && seg[0] == "apps" && seg[2] == "users" && seg[3] != "by":
			out[i] = "*"
		}
	}
	return out
}

// targetPartition is the targets topic's partition of a target, as the
// sink's writer places it.
func targetPartition(target string, partitions int) int {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	return broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: []byte(target)}, ps...)
}

// activity notes, by partition, when the stage that writes it was at
// work on it: the API requests for the targets of a targets partition,
// the produce requests that carry records for a partition of a change
// topic. Stalls are its longest gaps. Safe for concurrent use.
type activity struct {
	mu    sync.Mutex
	names []string                   // every partition, sorted: one with no writes at all stalls too
	at    map[string][]time.Duration // from the start of the run
}

func newActivity(names []string) *activity {
	return &activity{names: slices.Sorted(slices.Values(names)), at: map[string][]time.Duration{}}
}

func (a *activity) add(name string, at time.Duration) {
	a.mu.Lock()
	a.at[name] = append(a.at[name], at)
	a.mu.Unlock()
}

// sort orders each partition's times: writers that ran side by side
// appended them slightly out of order.
func (a *activity) sort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, times := range a.at {
		slices.Sort(times)
	}
}

// stall is the longest time, within [from, to), that one partition went
// without a write, counted from from; and which partition. Call sort first.
func (a *activity) stall(from, to time.Duration) (time.Duration, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var longest time.Duration
	which := ""
	for _, name := range a.names {
		last := from
		times := a.at[name]
		for _, at := range times[sort.Search(len(times), func(i int) bool { return times[i] >= from }):] {
			if at >= to {
				break
			}
			if gap := at - last; gap > longest {
				longest, which = gap, name
			}
			last = at
		}
		if gap := to - last; gap > longest {
			longest, which = gap, name
		}
	}
	return longest, which
}

// first is the earliest write at or after from, to any partition; false
// when there is none. Call sort first.
func (a *activity) first(from time.Duration) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var earliest time.Duration
	found := false
	for _, times := range a.at {
		i := sort.Search(len(times), func(i int) bool { return times[i] >= from })
		if i < len(times) && (!found || times[i] < earliest) {
			earliest, found = times[i], true
		}
	}
	return earliest, found
}

// observeProduce notes, for every produce request the broker gets that
// carries records for a partition of topics, when it arrived: the
// connector's writes (the sinks write other topics). It counts every
// request, whatever the broker answers: one that an injected fault fails
// is the connector at work, retrying. The observer is a kfake fault that
// never matches, so it fails nothing and leaves the injected faults their
// hits.
func observeProduce(c *kfake.Cluster, topics []string, partitions int, elapsed func() time.Duration) *activity {
	var names []string
	for _, t := range topics {
		for p := range partitions {
			names = append(names, changePartitionName(t, int32(p)))
		}
	}
	a := newActivity(names)
	var mu sync.Mutex
	var last kmsg.Request // kfake asks once per partition of a request: note each request once
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Observe: true, Count: -1, When: func(req kmsg.Request) bool {
		mu.Lock()
		seen := req == last
		last = req
		mu.Unlock()
		if seen {
			return false
		}
		produce, ok := req.(*kmsg.ProduceRequest)
		if !ok {
			return false
		}
		at := elapsed()
		for _, t := range produce.Topics {
			if !slices.Contains(topics, t.Topic) {
				continue
			}
			for _, p := range t.Partitions {
				if len(p.Records) > 0 {
					a.add(changePartitionName(t.Topic, p.Partition), at)
				}
			}
		}
		return false
	}})
	return a
}

func changePartitionName(topic string, p int32) string {
	return fmt.Sprintf("%s/%d", strings.TrimPrefix(topic, "cdc.public."), p)
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
			if mentionsAnyForm(line, id) {
				out[id] = append(out[id], line)
			}
		}
	}
	return out
}

// mentionsAnyForm reports whether line names id as it is or as JSON
// writes it (json.Marshal escapes & < > and control characters).
func mentionsAnyForm(line, id string) bool {
	if mentions(line, id) {
		return true
	}
	b, _ := json.Marshal(id)
	escaped := string(b[1 : len(b)-1])
	return escaped != id && mentions(line, escaped)
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

// kafkaHistory reads the change topics and returns, for each of ids
// (external ids, device ids, addresses), the events of every row that
// ever named it in an image: a delete under REPLICA IDENTITY DEFAULT, and
// an update that left it alone, do not name it. Each row's events in
// partition order.
func kafkaHistory(ctx context.Context, brokers, topics, ids []string) (map[string][]string, error) {
	rowsOf := map[string][]string{} // topic NUL key → the ids its events name
	err := readTopics(ctx, brokers, topics, func(r *kgo.Record) {
		row := r.Topic + "\x00" + string(r.Key)
		for _, id := range ids {
			if (mentionsAnyForm(string(r.Key), id) || mentionsAnyForm(string(r.Value), id)) && !slices.Contains(rowsOf[row], id) {
				rowsOf[row] = append(rowsOf[row], id)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	err = readTopics(ctx, brokers, topics, func(r *kgo.Record) {
		for _, id := range rowsOf[r.Topic+"\x00"+string(r.Key)] {
			out[id] = append(out[id], describeRecord(r))
		}
	})
	return out, err
}

// targetsHistory reads the sink's targets topic and returns, for each of
// targets ("user:<external id>" or "device:<id>"), its records there:
// the contributions of rows, and in the player model the memberships,
// replies and links. committed are the group's offsets of the topic, by
// partition: a record at or past its partition's is not done.
func targetsHistory(ctx context.Context, brokers []string, targets []string, committed map[int]int64) (map[string][]string, error) {
	out := map[string][]string{}
	err := readTopics(ctx, brokers, []string{targetsTopic}, func(r *kgo.Record) {
		target, rest, _ := strings.Cut(string(r.Key), "\x00")
		if !slices.Contains(targets, target) {
			return
		}
		done := "done"
		if r.Offset >= committed[int(r.Partition)] {
			done = "NOT DONE"
		}
		out[target] = append(out[target], fmt.Sprintf("targets/%d@%d (%s) %q %s", r.Partition, r.Offset, done,
			strings.ReplaceAll(rest, "\x00", " "), abbreviateJSON(r.Value)))
	})
	return out, err
}

// readTopics calls f with every record topics hold now, in partition order.
func readTopics(ctx context.Context, brokers, topics []string, f func(*kgo.Record)) error {
	client, done := broker.Plain(brokers).Client(10 * time.Second)
	defer done()
	ends, err := endOffsets(ctx, client, topics)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	next := map[topicPartition]int64{}
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
			return ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			next[topicPartition{r.Topic, r.Partition}] = r.Offset + 1
			f(r)
		})
	}
	return nil
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
