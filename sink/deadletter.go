package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// Header keys of a dead letter. They are Kafka Connect's, so tools that
// read its dead-letter queues read ours. Letter writes and reads them.
const (
	HeaderTopic     = "__connect.errors.topic"
	HeaderPartition = "__connect.errors.partition"
	HeaderOffset    = "__connect.errors.offset"
	HeaderConnector = "__connect.errors.connector.name"
	HeaderStage     = "__connect.errors.stage"
	HeaderClass     = "__connect.errors.exception.class.name"
	HeaderMessage   = "__connect.errors.exception.message"
	HeaderStatus    = "onesignal_cdc.errors.http.status" // for the onesignal stage
	// HeaderValueDropped marks a dead letter whose value, too large for
	// the dead-letter topic, was left out; it holds the value's size in
	// bytes. The original is where the other headers say, until the
	// topic's retention removes it.
	HeaderValueDropped = "onesignal_cdc.errors.value.dropped"
	// HeaderSourceTopic, HeaderSourcePartition and HeaderSourceOffset say,
	// on a dead-lettered contribution of the targets topic, where the
	// event it came from is.
	HeaderSourceTopic     = "onesignal_cdc.source.topic"
	HeaderSourcePartition = "onesignal_cdc.source.partition"
	HeaderSourceOffset    = "onesignal_cdc.source.offset"
)

// Letter is what a dead letter's headers say: the sink writes them, and
// ReadLetter reads them back (deadletter.Replay does).
type Letter struct {
	// Topic, Partition and Offset are where the rejected message was.
	Topic     string
	Partition int
	Offset    int64
	Connector string // Config.Name
	Stage     string // "decode", "transform" or "onesignal"
	Reason    string // why, in words
	Status    int    // OneSignal's HTTP status, for the onesignal stage; 0 otherwise
	// Source is, for a contribution of the targets topic, where the event
	// it came from is; nil for any other message.
	Source *desired.Source
	// ValueDropped says the message's value, too large for the
	// dead-letter topic, was left out; ValueSize is then its size in bytes.
	ValueDropped bool
	ValueSize    int
}

// appendHeaders returns hs (the rejected message's own headers) with
// l's after them.
func (l Letter) appendHeaders(hs []kafka.Header) []kafka.Header {
	num := func(n int64) []byte { return strconv.AppendInt(nil, n, 10) }
	hs = append(hs,
		kafka.Header{Key: HeaderTopic, Value: []byte(l.Topic)},
		kafka.Header{Key: HeaderPartition, Value: num(int64(l.Partition))},
		kafka.Header{Key: HeaderOffset, Value: num(l.Offset)},
		kafka.Header{Key: HeaderConnector, Value: []byte(l.Connector)},
		kafka.Header{Key: HeaderStage, Value: []byte(l.Stage)},
		kafka.Header{Key: HeaderClass, Value: []byte(errorClass[l.Stage])},
		kafka.Header{Key: HeaderMessage, Value: []byte(l.Reason)},
	)
	if l.Status != 0 {
		hs = append(hs, kafka.Header{Key: HeaderStatus, Value: num(int64(l.Status))})
	}
	if l.Source != nil {
		hs = append(hs,
			kafka.Header{Key: HeaderSourceTopic, Value: []byte(l.Source.Topic)},
			kafka.Header{Key: HeaderSourcePartition, Value: num(int64(l.Source.Partition))},
			kafka.Header{Key: HeaderSourceOffset, Value: num(l.Source.Offset)})
	}
	if l.ValueDropped {
		hs = append(hs, kafka.Header{Key: HeaderValueDropped, Value: num(int64(l.ValueSize))})
	}
	return hs
}

// ReadLetter reads the headers of dead letter m. ok is false when those
// that say where the rejected message was are missing or unreadable:
// whatever wrote m, it was not the sink.
func ReadLetter(m kafka.Message) (l Letter, ok bool) {
	l.Topic = headerValue(m, HeaderTopic)
	p, err1 := strconv.Atoi(headerValue(m, HeaderPartition))
	off, err2 := strconv.ParseInt(headerValue(m, HeaderOffset), 10, 64)
	l.Partition, l.Offset = p, off
	l.Connector, l.Stage, l.Reason = headerValue(m, HeaderConnector), headerValue(m, HeaderStage), headerValue(m, HeaderMessage)
	l.Status, _ = strconv.Atoi(headerValue(m, HeaderStatus))
	if topic := headerValue(m, HeaderSourceTopic); topic != "" {
		sp, err1 := strconv.Atoi(headerValue(m, HeaderSourcePartition))
		so, err2 := strconv.ParseInt(headerValue(m, HeaderSourceOffset), 10, 64)
		if err1 == nil && err2 == nil {
			l.Source = &desired.Source{Topic: topic, Partition: sp, Offset: so}
		}
	}
	if size, found := header(m, HeaderValueDropped); found {
		l.ValueDropped = true
		l.ValueSize, _ = strconv.Atoi(size)
	}
	return l, l.Topic != "" && err1 == nil && err2 == nil
}

// WithoutLetter returns hs without a dead letter's headers, and without
// the redelivery mark: the headers the message had when the sink first
// read it. Besides the keys above, it leaves out every key in Kafka
// Connect's namespace of error headers and in ours.
func WithoutLetter(hs []kafka.Header) []kafka.Header {
	var out []kafka.Header
	for _, h := range hs {
		switch {
		case strings.HasPrefix(h.Key, "__connect.errors."), strings.HasPrefix(h.Key, "onesignal_cdc.errors."),
			h.Key == HeaderSourceTopic, h.Key == HeaderSourcePartition, h.Key == HeaderSourceOffset,
			h.Key == HeaderRedelivery:
			continue
		}
		out = append(out, h)
	}
	return out
}

// DeadLetter is a message the sink wrote to the dead-letter topic, and why.
type DeadLetter struct {
	// Topic, Partition and Offset are where the change came from: the
	// event's, also for a contribution of the targets topic that
	// OneSignal refused.
	Topic     string
	Partition int
	Offset    int64
	Stage     string // "decode", "transform" or "onesignal"
	Reason    string // as in the dead letter's HeaderMessage
	Status    int    // OneSignal's HTTP status; 0 when the stage is not onesignal
}

// errorClass names, in a dead letter's HeaderClass, the kind of failure
// of each stage, in the dotted form Kafka Connect's tools expect there.
var errorClass = map[string]string{
	"decode":    "onesignal_cdc.DecodeError",
	"transform": "onesignal_cdc.MappingError",
	"onesignal": "onesignal_cdc.OneSignalRejection",
}

// rejected is a message that can never be applied as it is.
type rejected struct {
	stage  string // "decode", "transform" or "onesignal"
	status int    // the HTTP status, for the onesignal stage
	err    error
}

func (r *rejected) Error() string { return r.err.Error() }
func (r *rejected) Unwrap() error { return r.err }

// reject dead-letters m and marks it done, or returns rej when there is
// no dead-letter topic.
func (g *generation) reject(ctx context.Context, m *fetched, rej *rejected) error {
	s := g.s
	if s.cfg.DeadLetters == nil {
		return rej
	}
	if !m.claim() {
		return nil
	}
	if err := s.deadLetter(ctx, m.msg, rej); err != nil {
		return err
	}
	m.finish()
	return nil
}

// deadLetter writes a rejected message, as it was, to the dead-letter
// topic with the reason in its headers, retrying until Kafka holds it.
func (s *Sink) deadLetter(ctx context.Context, msg kafka.Message, rej *rejected) error {
	l := Letter{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Connector: s.cfg.Name, Stage: rej.stage, Reason: rej.Error(), Status: rej.status}
	origin := DeadLetter{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}
	if msg.Topic == s.cfg.TargetsTopic {
		// A contribution names the event it came from.
		if rec, err := desired.Decode(msg.Key, msg.Value); err == nil && rec.Kind == desired.KindContribution {
			origin = DeadLetter{Topic: rec.Source.Topic, Partition: rec.Source.Partition, Offset: rec.Source.Offset}
			l.Source = &rec.Source
		}
	}
	dl := kafka.Message{Topic: s.cfg.DeadLetterTopic, Key: msg.Key, Value: msg.Value, Headers: l.appendHeaders(slices.Clip(msg.Headers))}
	err := s.cfg.Retry.Do(ctx, func() error {
		s.deadLetterMu.RLock()
		err := s.cfg.DeadLetters.WriteMessages(ctx, dl)
		s.deadLetterMu.RUnlock()
		if tooLarge(err) && dl.Value != nil {
			dl, l, err = s.writeLarge(ctx, dl, msg, l)
		}
		return broker.ClassifyWrite(err)
	}, func(err error, wait time.Duration) {
		s.log.Warn("dead-letter write failed; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	s.stats.deadLettered.Add(1)
	if s.cfg.DeadLettered != nil {
		origin.Stage, origin.Reason, origin.Status = l.Stage, l.Reason, l.Status
		s.cfg.DeadLettered(origin)
	}
	s.log.Warn("message rejected; it is in the dead-letter topic",
		zap.String("topic", msg.Topic), zap.Int("partition", msg.Partition), zap.Int64("offset", msg.Offset),
		zap.String("stage", rej.stage), zap.String("dead_letter_topic", s.cfg.DeadLetterTopic), zap.Error(rej.err))
	return nil
}

// writeLarge writes a dead letter that Kafka refused as too large. The
// writer batches concurrent writes, so it may have been another dead
// letter's size that counted: the write is tried again with no other in
// flight. If this one alone is too large for the dead-letter topic (a
// source topic may take larger messages than it: Kafka's default is 1
// MiB), retrying would never end and hold back every message after it, so
// it goes without its value, saying where the original is. It returns
// the dead letter as written, and its headers.
func (s *Sink) writeLarge(ctx context.Context, dl, msg kafka.Message, l Letter) (kafka.Message, Letter, error) {
	s.deadLetterMu.Lock()
	defer s.deadLetterMu.Unlock()
	err := s.cfg.DeadLetters.WriteMessages(ctx, dl)
	if !tooLarge(err) {
		return dl, l, err
	}
	dl, l = withoutValue(dl, msg, l)
	return dl, l, s.cfg.DeadLetters.WriteMessages(ctx, dl)
}

// tooLarge reports whether a write failed because a message is larger
// than the topic (or the writer) takes.
func tooLarge(err error) bool {
	if errors.Is(err, kafka.MessageSizeTooLarge) {
		return true
	}
	if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
		for _, e := range we {
			if errors.Is(e, kafka.MessageSizeTooLarge) {
				return true
			}
		}
	}
	return false
}

// withoutValue is the dead letter dl of msg with its value left out, and
// the reason saying so and where the original is.
func withoutValue(dl kafka.Message, msg kafka.Message, l Letter) (kafka.Message, Letter) {
	l.ValueDropped, l.ValueSize = true, len(dl.Value)
	l.Reason = fmt.Sprintf("%s (the message's value, %d bytes, is left out of this dead letter: it is larger than %s takes; "+
		"the original is in %s, partition %d, offset %d, until the topic's retention removes it)",
		l.Reason, l.ValueSize, dl.Topic, msg.Topic, msg.Partition, msg.Offset)
	dl.Headers = l.appendHeaders(slices.Clip(msg.Headers))
	dl.Value = nil
	return dl, l
}

// header is the value of m's header key, and whether m has one.
func header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// headerValue is the value of m's header key, "" when it has none.
func headerValue(m kafka.Message, key string) string {
	v, _ := header(m, key)
	return v
}
