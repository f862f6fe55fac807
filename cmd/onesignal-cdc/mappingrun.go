package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// The app ID and key the preview's emulator serves when the configuration
// has none: the paths then show this app ID.
const (
	previewAppID = "00000000-0000-4000-8000-000000000000"
	previewKey   = "preview-key"
)

// sent is one HTTP request the sink's client made, with the answer it got.
type sent struct {
	Method string
	Path   string // escaped, below the base URL, with its query
	Body   []byte
	Status int    // 0 when no answer came
	Answer []byte // the answer's body, for a status other than 2xx
}

// recorder is the client's transport: it notes every request, in the
// order the client made them, and passes it on.
type recorder struct {
	next http.RoundTripper
	base string // the emulator's URL, cut from the paths noted

	mu   sync.Mutex
	sent []sent
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	path := req.URL.EscapedPath()
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	if base, err := url.Parse(r.base); err == nil {
		path = strings.TrimPrefix(path, strings.TrimRight(base.Path, "/"))
	}
	s := sent{Method: req.Method, Path: path, Body: body}
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		s.Status = resp.StatusCode
		if resp.StatusCode < 200 || resp.StatusCode >= 300 {
			answer, rerr := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if rerr != nil {
				return nil, rerr
			}
			s.Answer = answer
			resp.Body = io.NopCloser(bytes.NewReader(answer))
		}
	}
	r.mu.Lock()
	r.sent = append(r.sent, s)
	r.mu.Unlock()
	return resp, err
}

// runResult is what the sink did with the rows.
type runResult struct {
	Sent        []sent
	DeadLetters []sink.DeadLetter
	// Offsets is, per event topic, the row each offset holds (an index
	// into the rows given).
	Offsets map[string][]int
}

// drainPatience bounds how long a preview waits for the sink to be done.
const drainPatience = 2 * time.Minute

// runSink runs the real sink, in this process, over rows: an embedded
// Kafka in memory, a local store in memory, and an emulator of the app
// (served on 127.0.0.1) that holds nothing but devices. It returns once
// every message is done and committed, with each HTTP request the sink's
// client made. Nothing goes to onesignal.base_url or to the configured
// Kafka.
func runSink(ctx context.Context, cfg *config.Config, rows []connector.Row, devices []string) (*runResult, error) {
	emb, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start the preview's Kafka in memory: %w", err)
	}
	defer emb.Close()
	cluster := broker.Plain(emb.Brokers())

	prefix := cfg.Kafka.TopicPrefix
	var events []string
	for _, r := range rows {
		if t := prefix + "." + r.Table; !slices.Contains(events, t) {
			events = append(events, t)
		}
	}
	own := sink.TopicsFor(prefix)
	dlqTopic := cfg.Kafka.DeadLetterTopic
	if dlqTopic == "" {
		dlqTopic = prefix + ".dlq"
	}
	if err := cluster.EnsureTopics(ctx, 1, append(slices.Clone(events), dlqTopic)...); err != nil {
		return nil, fmt.Errorf("create the preview's topics: %w", err)
	}
	const groupID = "onesignal-cdc-mapping-preview"
	group := sink.Cluster{Cluster: cluster, Group: broker.GroupConfig{
		ID: groupID, Topics: append(slices.Clone(events), own.Targets),
		SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond, RebalanceTimeout: 10 * time.Second,
	}}
	if err := group.Prepare(ctx, own, 1, events); err != nil {
		return nil, fmt.Errorf("create the preview's topics: %w", err)
	}

	appID, key := cfg.OneSignal.AppID, cfg.OneSignal.APIKey.Reveal()
	if appID == "" {
		appID = previewAppID
	}
	if key == "" {
		key = previewKey
	}
	emu := emulator.New(emulator.Config{
		AppID: appID, APIKey: key,
		AcceptLegacyKeys:     cfg.OneSignal.LegacyAPIKey,
		IdentityVerification: cfg.OneSignal.IdentityVerification,
	})
	for _, d := range devices {
		emu.AddSubscription(emulator.Subscription{ID: d})
	}
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone(), base: srv.URL}
	limiter := sink.NewLimiter(nil, cfg.OneSignal.RateLimit)
	api, err := onesignal.New(onesignal.Config{
		BaseURL: srv.URL, AppID: appID, APIKey: onesignal.Secret(key),
		HTTPClient: &http.Client{Timeout: onesignal.DefaultTimeout, Transport: rec},
		Limiter:    limiter,
	})
	if err != nil {
		return nil, err
	}

	// The rows, in order, one write each: the i-th row of a topic is at
	// offset i, which is how dead letters name it.
	res := &runResult{Offsets: map[string][]int{}}
	w := cluster.NewWriter(1)
	for i, r := range rows {
		topic := prefix + "." + r.Table
		if err := w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: r.Key, Value: r.Value}); err != nil {
			w.Close()
			return nil, fmt.Errorf("write the rows to the preview's Kafka: %w", err)
		}
		res.Offsets[topic] = append(res.Offsets[topic], i)
	}
	w.Close()

	targets, rowsW := group.Writers()
	defer targets.Close()
	defer rowsW.Close()
	dlq := cluster.NewWriter(100)
	defer dlq.Close()
	var mu sync.Mutex
	s := sink.New(sink.Config{
		Model:        cfg.OneSignal.Model,
		TargetsTopic: own.Targets, RowsTopic: own.Rows,
		Targets: targets, Rows: rowsW, Kafka: group, Store: kv.NewMemory(),
		Concurrency: cfg.OneSignal.Concurrency, MaxInFlight: cfg.OneSignal.MaxInFlight,
		CommitInterval: 50 * time.Millisecond,
		DeadLetters:    dlq, DeadLetterTopic: dlqTopic,
		TagLimit: cfg.OneSignal.TagLimit,
		Limiter:  limiter,
		DeadLettered: func(d sink.DeadLetter) {
			mu.Lock()
			res.DeadLetters = append(res.DeadLetters, d)
			mu.Unlock()
		},
	}, group, forModel(cfg, api), &cfg.Mapping, zap.NewNop())

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	err = waitDrained(runCtx, cluster, groupID, append(slices.Clone(events), own.Targets), done)
	stop()
	if runErr := <-done; err == nil && runErr != nil {
		err = runErr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("run the sink in this process: %w", err)
	}
	rec.mu.Lock()
	res.Sent = slices.Clone(rec.sent)
	rec.mu.Unlock()
	mu.Lock()
	res.DeadLetters = slices.Clone(res.DeadLetters)
	mu.Unlock()
	return res, nil
}

// waitDrained waits until the group has committed every partition of
// topics (one each) to its end: every message written, the sink's own
// included, is then done. A sink that stops first ends the wait with its
// error.
func waitDrained(ctx context.Context, cluster broker.Cluster, group string, topics []string, stopped <-chan error) error {
	deadline := time.NewTimer(drainPatience)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client, done := cluster.Client(10 * time.Second)
	defer done()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-stopped:
			if err == nil {
				err = errors.New("the sink stopped before it was done")
			}
			return err
		case <-deadline.C:
			return fmt.Errorf("the sink was not done after %s", drainPatience)
		case <-tick.C:
		}
		done, err := drained(ctx, client, cluster, group, topics)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func drained(ctx context.Context, client *kafka.Client, cluster broker.Cluster, group string, topics []string) (bool, error) {
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range topics {
		req.Topics[t] = []int{0}
	}
	resp, err := client.OffsetFetch(ctx, req)
	if err != nil {
		return false, nil // the group's coordinator is not there yet
	}
	for _, t := range topics {
		end, err := cluster.EndOffset(ctx, t, 0)
		if err != nil {
			return false, err
		}
		committed := int64(-1)
		for _, p := range resp.Topics[t] {
			if p.Partition == 0 && p.Error == nil {
				committed = p.CommittedOffset
			}
		}
		if max(committed, 0) < end {
			return false, nil
		}
	}
	return true, nil
}
