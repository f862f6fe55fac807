package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// Header keys of a dead letter. They are Kafka Connect's, so tools that
// read its dead-letter queues read ours.
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
	headers := append(slices.Clip(msg.Headers),
		kafka.Header{Key: HeaderTopic, Value: []byte(msg.Topic)},
		kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(msg.Partition), 10)},
		kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, msg.Offset, 10)},
		kafka.Header{Key: HeaderConnector, Value: []byte(s.cfg.Name)},
		kafka.Header{Key: HeaderStage, Value: []byte(rej.stage)},
		kafka.Header{Key: HeaderClass, Value: []byte(errorClass[rej.stage])},
		kafka.Header{Key: HeaderMessage, Value: []byte(rej.Error())},
	)
	if rej.status != 0 {
		headers = append(headers, kafka.Header{Key: HeaderStatus, Value: strconv.AppendInt(nil, int64(rej.status), 10)})
	}
	origin := DeadLetter{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}
	if msg.Topic == s.cfg.TargetsTopic {
		// A contribution names the event it came from.
		if rec, err := desired.Decode(msg.Key, msg.Value); err == nil && rec.Kind == desired.KindContribution {
			origin = DeadLetter{Topic: rec.Source.Topic, Partition: rec.Source.Partition, Offset: rec.Source.Offset}
			headers = append(headers,
				kafka.Header{Key: HeaderSourceTopic, Value: []byte(rec.Source.Topic)},
				kafka.Header{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(rec.Source.Partition), 10)},
				kafka.Header{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, rec.Source.Offset, 10)})
		}
	}
	dl := kafka.Message{Topic: s.cfg.DeadLetterTopic, Key: msg.Key, Value: msg.Value, Headers: headers}
	err := s.cfg.Retry.Do(ctx, func() error {
		s.deadLetterMu.RLock()
		err := s.cfg.DeadLetters.WriteMessages(ctx, dl)
		s.deadLetterMu.RUnlock()
		if tooLarge(err) && dl.Value != nil {
			dl, err = s.writeLarge(ctx, dl, msg, rej)
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
		origin.Stage, origin.Reason, origin.Status = rej.stage, headerValue(dl, HeaderMessage), rej.status
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
// the dead letter as written.
func (s *Sink) writeLarge(ctx context.Context, dl, msg kafka.Message, rej *rejected) (kafka.Message, error) {
	s.deadLetterMu.Lock()
	defer s.deadLetterMu.Unlock()
	err := s.cfg.DeadLetters.WriteMessages(ctx, dl)
	if !tooLarge(err) {
		return dl, err
	}
	dl = withoutValue(dl, msg, rej)
	return dl, s.cfg.DeadLetters.WriteMessages(ctx, dl)
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
func withoutValue(dl kafka.Message, msg kafka.Message, rej *rejected) kafka.Message {
	size := len(dl.Value)
	reason := fmt.Sprintf("%s (the message's value, %d bytes, is left out of this dead letter: it is larger than %s takes; "+
		"the original is in %s, partition %d, offset %d, until the topic's retention removes it)",
		rej.Error(), size, dl.Topic, msg.Topic, msg.Partition, msg.Offset)
	headers := make([]kafka.Header, 0, len(dl.Headers)+1)
	for _, h := range dl.Headers {
		if h.Key == HeaderMessage {
			h.Value = []byte(reason)
		}
		headers = append(headers, h)
	}
	dl.Headers = append(headers, kafka.Header{Key: HeaderValueDropped, Value: strconv.AppendInt(nil, int64(size), 10)})
	dl.Value = nil
	return dl
}

// headerValue is the value of m's header key, "" when it has none.
func headerValue(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
