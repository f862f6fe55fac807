package sink

import (
	"reflect"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

func TestADeadLettersHeadersReadBackAsTheyWereWritten(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sentence string
		letter   Letter
	}{
		{"a decode failure", Letter{Topic: "cdc.public.users", Partition: 2, Offset: 41, Connector: "onesignal-cdc", Stage: "decode", Reason: "not JSON"}},
		{"a refusal with its status", Letter{Topic: "cdc.public.users", Offset: 7, Connector: "crm", Stage: "onesignal", Reason: "HTTP 400: bad tag", Status: 400}},
		{"a contribution, naming its event", Letter{Topic: "cdc.sink-targets", Partition: 5, Offset: 9, Connector: "crm", Stage: "onesignal", Reason: "HTTP 400", Status: 400,
			Source: &desired.Source{Topic: "cdc.public.users", Partition: 1, Offset: 3}}},
		{"a letter whose value was left out", Letter{Topic: "cdc.public.users", Offset: 1, Connector: "crm", Stage: "transform", Reason: "too big", ValueDropped: true, ValueSize: 2 << 20}},
	} {
		own := []kafka.Header{{Key: "traceparent", Value: []byte("00-abc")}}
		m := kafka.Message{Headers: tc.letter.appendHeaders(own)}
		got, ok := ReadLetter(m)
		if !ok || !reflect.DeepEqual(got, tc.letter) {
			t.Errorf("%s: read back %+v (ok %v), want %+v", tc.sentence, got, ok, tc.letter)
		}
		if back := WithoutLetter(append(m.Headers, kafka.Header{Key: HeaderRedelivery, Value: []byte("dlq/0@0")})); !reflect.DeepEqual(back, own) {
			t.Errorf("%s: without the letter the headers are %v, want the message's own %v", tc.sentence, back, own)
		}
	}
}

func TestAMessageWithoutWhereItCameFromIsNoDeadLetterOfTheSinks(t *testing.T) {
	t.Parallel()
	for _, hs := range [][]kafka.Header{
		nil,
		{{Key: HeaderTopic, Value: []byte("t")}, {Key: HeaderPartition, Value: []byte("x")}, {Key: HeaderOffset, Value: []byte("1")}},
		{{Key: HeaderPartition, Value: []byte("0")}, {Key: HeaderOffset, Value: []byte("1")}},
	} {
		if _, ok := ReadLetter(kafka.Message{Headers: hs}); ok {
			t.Errorf("ReadLetter(%v) ok, want not a dead letter", hs)
		}
	}
}

func TestWithoutLetterLeavesOutKafkaConnectsOtherErrorHeadersToo(t *testing.T) {
	t.Parallel()
	hs := []kafka.Header{{Key: "__connect.errors.exception.stacktrace", Value: []byte("…")}, {Key: "app", Value: []byte("x")}}
	if got := WithoutLetter(hs); len(got) != 1 || got[0].Key != "app" {
		t.Errorf("WithoutLetter(%v) = %v, want only app", hs, got)
	}
}
