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

	"github.com/onesignal-cdc/onesignal-cdc/retry"
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
)

// rejected is a message that can never be applied as it is.
type rejected struct {
	stage  string // "decode", "transform" or "onesignal"
	status int    // the HTTP status, for the onesignal stage
	err    error
}

func (r *rejected) Error() string { return r.err.Error() }
func (r *rejected) Unwrap() error { return r.err }

// rejectMessage dead-letters m and marks it done, or returns rej when
// there is no dead-letter topic.
func (s *Sink) rejectMessage(ctx context.Context, m *fetched, rej *rejected) error {
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
		kafka.Header{Key: HeaderClass, Value: []byte(fmt.Sprintf("%T", errors.Unwrap(rej.err)))},
		kafka.Header{Key: HeaderMessage, Value: []byte(rej.Error())},
	)
	if rej.status != 0 {
		headers = append(headers, kafka.Header{Key: HeaderStatus, Value: strconv.AppendInt(nil, int64(rej.status), 10)})
	}
	dl := kafka.Message{Topic: s.cfg.DeadLetterTopic, Key: msg.Key, Value: msg.Value, Headers: headers}
	err := s.cfg.Retry.Do(ctx, func() error { return retry.Transient(s.cfg.DeadLetters.WriteMessages(ctx, dl)) }, func(err error, wait time.Duration) {
		s.log.Warn("dead-letter write failed; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	s.stats.deadLettered.Add(1)
	s.log.Warn("message rejected; it is in the dead-letter topic",
		zap.String("topic", msg.Topic), zap.Int("partition", msg.Partition), zap.Int64("offset", msg.Offset),
		zap.String("stage", rej.stage), zap.String("dead_letter_topic", s.cfg.DeadLetterTopic), zap.Error(rej.err))
	return nil
}
