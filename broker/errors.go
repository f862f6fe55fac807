package broker

import (
	"errors"
	"io"
	"net"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

// fatalCodes are Kafka's answers that no retry gets past: the broker
// refuses this user, its credentials or a name in the configuration, and
// will refuse it the same way until someone changes the configuration or
// the cluster's rights. Each with its fix, where one fits every request
// (RunGroup words its own for a join).
var fatalCodes = map[kafka.Error]string{
	kafka.SASLAuthenticationFailed:   "check kafka.sasl.username and the password",
	kafka.UnsupportedSASLMechanism:   "set kafka.sasl.mechanism to one the brokers enable",
	kafka.TopicAuthorizationFailed:   "grant the Kafka user Describe, Read and Write on the topic (and Create where the daemon creates topics)",
	kafka.ClusterAuthorizationFailed: "grant the Kafka user Create on the cluster, or create the topics beforehand",
	kafka.GroupAuthorizationFailed:   "grant the Kafka user Read on the consumer group",
	kafka.InvalidTopic:               "check kafka.topic_prefix and the table names: a topic name takes letters, digits, '.', '_' and '-'",
	kafka.UnsupportedVersion:         "use a Kafka broker of version 1.0 or later",
	kafka.InvalidGroupId:             "",
	kafka.InvalidSessionTimeout:      "",
	kafka.InconsistentGroupProtocol:  "",
	kafka.GroupMaxSizeReached:        "",
}

// permanentCodes are Kafka's answers about the messages themselves: the
// same messages are refused again, others may not be.
var permanentCodes = []kafka.Error{kafka.MessageSizeTooLarge, kafka.RecordListTooLarge}

// Classify is the classifier of Kafka's errors, for both roles: Fatal for
// the answers in fatalCodes, Permanent for a message too large, Retryable
// for every other answer of a broker (kafka-go's Temporary ones, such as
// LEADER_NOT_AVAILABLE or NOT_ENOUGH_REPLICAS, and those it does not call
// temporary but that pass, such as BROKER_NOT_AVAILABLE during a restart,
// REBALANCE_IN_PROGRESS or UNKNOWN_SERVER_ERROR: kafka-go's reader carries
// on after each), for a network error and for a connection cut mid-answer.
// Unknown for any other error, whose meaning its caller knows: a write
// that failed so may be retried, a reader that returned io.EOF was closed.
//
// kafka.WriteErrors, one error per message of a write, is as bad as its
// worst message.
func Classify(err error) errclass.Class {
	if err == nil {
		return errclass.Unknown
	}
	if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
		c := errclass.Unknown
		for _, e := range we {
			if e != nil {
				c = errclass.Worse(c, Classify(e))
			}
		}
		return c
	}
	if code, ok := errors.AsType[kafka.Error](err); ok {
		if _, fatal := fatalCodes[code]; fatal {
			return errclass.Fatal
		}
		for _, p := range permanentCodes {
			if code == p {
				return errclass.Permanent
			}
		}
		return errclass.Retryable
	}
	if _, ok := errors.AsType[net.Error](err); ok || errors.Is(err, io.ErrUnexpectedEOF) {
		return errclass.Retryable
	}
	return errclass.Unknown
}

// ClassifyWrite returns the error of a write to Kafka marked retryable,
// unless Classify says it is permanent (a message too large) or fatal
// (the broker refuses the user or the topic): a write error Kafka's
// classifier does not know (a connection closed while the answer was
// due) is retried, the messages written again whole. Nil stays nil.
func ClassifyWrite(err error) error {
	switch Classify(err) {
	case errclass.Permanent, errclass.Fatal:
		return err
	}
	return errclass.Mark(err, errclass.Retryable)
}

// Fix names, for an error Classify calls Fatal, what to change; "" for any
// other error.
func Fix(err error) string {
	if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
		for _, e := range we {
			if fix := Fix(e); fix != "" {
				return fix
			}
		}
		return ""
	}
	if code, ok := errors.AsType[kafka.Error](err); ok {
		return fatalCodes[code]
	}
	return ""
}
