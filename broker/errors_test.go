package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

func TestKafkaErrorsAreClassifiedByWhatRetryingCanChange(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		sentence string
		err      error
		want     errclass.Class
	}{
		{"a leader not available is retried", kafka.LeaderNotAvailable, errclass.Retryable},
		{"not enough replicas is retried", fmt.Errorf("write: %w", kafka.NotEnoughReplicas), errclass.Retryable},
		{"a broker not available during a restart is retried, though kafka-go does not call it temporary", kafka.BrokerNotAvailable, errclass.Retryable},
		{"an unknown server error is retried", kafka.Unknown, errclass.Retryable},
		{"a rebalance in progress is retried", kafka.RebalanceInProgress, errclass.Retryable},
		{"a refused connection is retried", fmt.Errorf("create topics: %w", refused), errclass.Retryable},
		{"a connection cut mid-answer is retried", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), errclass.Retryable},
		{"a wrong SASL password is fatal", kafka.SASLAuthenticationFailed, errclass.Fatal},
		{"a topic the user may not write is fatal", fmt.Errorf("produce: %w", kafka.TopicAuthorizationFailed), errclass.Fatal},
		{"a cluster the user may not create topics on is fatal", kafka.ClusterAuthorizationFailed, errclass.Fatal},
		{"a group the user may not read is fatal", kafka.GroupAuthorizationFailed, errclass.Fatal},
		{"an invalid topic name is fatal", kafka.InvalidTopic, errclass.Fatal},
		{"a message too large for the topic is permanent", kafka.MessageSizeTooLarge, errclass.Permanent},
		{"a message too large for the writer is permanent", kafka.MessageTooLargeError{}, errclass.Permanent},
		{"a write is as bad as its worst message", kafka.WriteErrors{nil, kafka.NotLeaderForPartition, kafka.MessageSizeTooLarge}, errclass.Permanent},
		{"a write whose failed messages are all retryable is retryable", kafka.WriteErrors{kafka.RequestTimedOut, nil}, errclass.Retryable},
		{"a closed reader's EOF is left to its caller", io.EOF, errclass.Unknown},
		{"an error that is none of Kafka's is left to its caller", errors.New("reader closed"), errclass.Unknown},
		{"a cancelled context is left to its caller", context.Canceled, errclass.Unknown},
	} {
		if got := broker.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %s, want %s", tc.sentence, tc.err, got, tc.want)
		}
	}
}

func TestAFatalKafkaErrorNamesItsFix(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{kafka.SASLAuthenticationFailed, "kafka.sasl.username"},
		{kafka.WriteErrors{nil, kafka.TopicAuthorizationFailed}, "Write on the topic"},
		{kafka.ClusterAuthorizationFailed, "create the topics beforehand"},
	} {
		if fix := broker.Fix(tc.err); !strings.Contains(fix, tc.want) {
			t.Errorf("Fix(%v) = %q, want it to say %q", tc.err, fix, tc.want)
		}
	}
	if fix := broker.Fix(kafka.LeaderNotAvailable); fix != "" {
		t.Errorf("Fix of a retryable error = %q, want none", fix)
	}
}
