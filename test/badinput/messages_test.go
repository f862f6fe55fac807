package badinput

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// usersTopic is the topic the sink reads the users table from.
const usersTopic = "cdc.public.users"

// userEvent is the event of an insert into public.users: the row has
// the external id and plan, as JSON values.
func userEvent(externalID, plan json.RawMessage) *event.Envelope {
	return &event.Envelope{
		Op:     event.OpCreate,
		After:  event.Row{{Name: "external_id", Value: externalID}, {Name: "plan", Value: plan}},
		Source: event.Source{Version: "badinput", Connector: "postgresql", Name: "cdc", Snapshot: "false", Schema: "public", Table: "users"},
	}
}

// str is s as a JSON string.
func str(s string) json.RawMessage { return event.AppendString(nil, s) }

// encode returns ev's JSON after f changed it.
func encode(ev *event.Envelope, f func(*event.Envelope)) []byte {
	if f != nil {
		f(ev)
	}
	return ev.Encode(nil)
}

// messageCase is one message fed straight to the sink's topic, between
// two good events of users "msg-<no>-before" and "msg-<no>-after", rows
// of their own (one Kafka key is one row) in the same partition.
type messageCase struct {
	name   string
	key    []byte // default "msg-<no>" as JSON
	value  []byte
	stage  string                       // the dead letter's stage ("" for none)
	reason []string                     // what its reason holds; nil: no dead letter
	tags   map[string]map[string]string // users that must end up with these tags
}

// targetCase is a record fed straight to the sink's targets topic that is
// not a record of this sink: written there by another program, or by a
// newer version of the sink. It goes ahead of the contribution of a user
// of the case's, "tgt-<no>", in the same partition.
type targetCase struct {
	name   string
	key    []byte // default "user:tgt-<no>", NUL, "c", NUL, "row"
	value  []byte
	reason []string // what the dead letter's reason holds
}

// TestKafkaMessagesFedToTheSink writes messages that are no change event,
// or odd ones, into the topic `onesignal-cdc sink` reads, and records that
// are not the sink's into its targets topic.
func TestKafkaMessagesFedToTheSink(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// A topic that takes messages up to 4 MiB, as one written by Debezium
	// with a raised limit may; the dead-letter topic keeps Kafka's 1 MiB.
	const usersPartitions = 2
	s.createTopic(t, usersTopic, usersPartitions, map[string]string{"max.message.bytes": "4194304"})
	huge := strings.Repeat("z", twoMB)

	cases := []messageCase{
		1: {
			name:  "a message that is not JSON is dead-lettered at the decode stage, saying so",
			value: []byte("hello, world"),
			stage: "decode", reason: []string{"event is not a JSON object", "invalid character 'h'"},
		},
		2: {
			name:  "JSON cut short is dead-lettered at the decode stage",
			value: encode(userEvent(str("msg-2"), str("pro")), nil)[:40],
			stage: "decode", reason: []string{"event is not a JSON object", "unexpected end of JSON input"},
		},
		3: {
			name:  "a JSON array is dead-lettered at the decode stage",
			value: []byte(`[1, 2, 3]`),
			stage: "decode", reason: []string{"event is not a JSON object: it is a JSON array"},
		},
		4: {
			name:  "JSON that is not a change envelope is dead-lettered, saying it is none",
			value: []byte(`{"hello": "world"}`),
			stage: "decode", reason: []string{`event has no "op": not a Debezium change envelope`},
		},
		5: {
			name: "a change event of a table the mapping does not name is dead-lettered, naming the mapping",
			value: encode(userEvent(str("msg-5"), str("pro")), func(e *event.Envelope) {
				e.Source.Table = "orders"
			}),
			stage: "transform", reason: []string{`table "public.orders" is not in the mapping: add it to mapping.users, mapping.sources or mapping.devices, or stop publishing it`},
		},
		6: {
			name: "an event with an op code that is not Debezium's is dead-lettered, naming the codes",
			value: encode(userEvent(str("msg-6"), str("pro")), func(e *event.Envelope) {
				e.Op = "x"
			}),
			stage: "decode", reason: []string{`event op "x" is not one of c, u, d, r, t`},
		},
		7: {
			name: "a delete without its old row is dead-lettered, naming REPLICA IDENTITY",
			value: encode(userEvent(str("msg-7"), str("pro")), func(e *event.Envelope) {
				e.Op, e.After = event.OpDelete, nil
			}),
			stage: "decode", reason: []string{`event op "d" has no "before" row: set REPLICA IDENTITY on the source table`},
		},
		8: {
			name:  "an insert whose row is not a JSON object is dead-lettered at the decode stage",
			value: []byte(`{"before":null,"after":"external_id=msg-8","source":{"schema":"public","table":"users"},"op":"c","ts_ms":1}`),
			stage: "decode", reason: []string{"row is not a JSON object"},
		},
		9: {
			name:  "an empty message (a tombstone) is skipped, not dead-lettered",
			value: nil,
		},
		10: {
			name:  "Kafka Connect's tombstone envelope is skipped, not dead-lettered",
			value: []byte(`{"schema":null,"payload":null}`),
		},
		11: {
			name:  "a key that is not JSON does not matter: the event is applied",
			key:   []byte("not json {"),
			value: encode(userEvent(str("msg-11"), str("applied")), nil),
			tags:  map[string]map[string]string{"msg-11": {"plan": "applied"}},
		},
		12: {
			name:  "an event in Debezium's schema wrapper is applied",
			value: []byte(`{"schema":{"type":"struct","optional":false},"payload":` + string(encode(userEvent(str("msg-12"), str("wrapped")), nil)) + `}`),
			tags:  map[string]map[string]string{"msg-12": {"plan": "wrapped"}},
		},
		13: {
			name:  "a number as the external id is the user with those digits",
			value: encode(userEvent(json.RawMessage(`1300013`), str("numeric")), nil),
			tags:  map[string]map[string]string{"1300013": {"plan": "numeric"}},
		},
		14: {
			name:  "a JSON object as the external id is dead-lettered with the reason",
			value: encode(userEvent(json.RawMessage(`{"id": "msg-14"}`), str("x")), nil),
			stage: "transform", reason: []string{`column "external_id"`, "holds a JSON object or array"},
		},
		15: {
			name:  "a tag holding U+FFFD (bytes that were not UTF-8) keeps it",
			value: encode(userEvent(str("msg-15"), str("caf\uFFFD")), nil),
			tags:  map[string]map[string]string{"msg-15": {"plan": "caf\uFFFD"}},
		},
		16: {
			name:  "an external id holding U+FFFD (bytes that were not UTF-8) is dead-lettered, naming the fix",
			value: encode(userEvent(str("msg-16-\uFFFD"), str("x")), nil),
			stage: "transform", reason: []string{`column "external_id"`, "not UTF-8", "fix the bytes in the row, or move the data to a UTF8 database"},
		},
		17: {
			name:  "an external id of raw bytes that are not UTF-8 in the JSON is dead-lettered, naming the fix",
			value: []byte("{\"before\":null,\"after\":{\"external_id\":\"msg-17-\xff\",\"plan\":\"x\"},\"source\":{\"schema\":\"public\",\"table\":\"users\"},\"op\":\"c\",\"ts_ms\":1}"),
			stage: "transform", reason: []string{`column "external_id"`, "not UTF-8"},
		},
		18: {
			name:  "an external id the connector left out for its size is dead-lettered with the reason",
			value: encode(userEvent(event.OversizedValue(), str("x")), nil),
			stage: "transform", reason: []string{`column "external_id"`, event.Oversized},
		},
		19: {
			name:  "a 2 MB message, on a topic that takes it, is dead-lettered without its value, naming where the original is",
			value: encode(userEvent(str("msg-19"), str(huge)), nil),
			stage: "transform", reason: []string{
				"what the row gives user msg-19 takes", "more than the 256 KiB the sink writes of one row to its topics", "shorten the mapped values",
				"the message's value", "is left out", usersTopic,
			},
		},
	}

	targetCases := []targetCase{
		1: {
			name:   "a record of the targets topic that is not JSON is dead-lettered at the decode stage, and the user's next record applies",
			value:  []byte("hello, world"),
			reason: []string{"not a record of the sink's targets topic", "invalid character 'h'"},
		},
		2: {
			name:   "a record of the targets topic in a newer format version is dead-lettered, naming the newer sink, and the user's next record applies",
			value:  []byte(`{"v":2,"kind":"contribution","row":"row","tags":{"plan":"from-the-future"}}`),
			reason: []string{"not a record of the sink's targets topic", "format version 2, this sink reads 1", "run the sink's newer version"},
		},
		3: {
			name:   "a record of the targets topic whose key names no user or device is dead-lettered, and the partition's next record applies",
			key:    []byte("orders:7"),
			value:  []byte(`{"v":1,"kind":"contribution","row":"row","tags":{"plan":"x"}}`),
			reason: []string{"not a record of the sink's targets topic", `key "orders:7" names no user or device`},
		},
		4: {
			name:   "a record of the targets topic of a kind the sink does not write is dead-lettered, and the user's next record applies",
			value:  []byte(`{"v":1,"kind":"wish","row":"row"}`),
			reason: []string{"not a record of the sink's targets topic", `kind "wish"`},
		},
		5: {
			name:   "a record of the targets topic whose key does not match its value is dead-lettered, and the user's next record applies",
			value:  []byte(`{"v":1,"kind":"member","device":"dev-5"}`),
			reason: []string{"not a record of the sink's targets topic", "does not match its value"},
		},
	}

	cfg := s.usersConfig(t)
	daemon := daemontest.Start(t, daemontest.Sink, cfg)

	want := map[string]map[string]string{}
	var msgs []kafka.Message

	// The records that are not the sink's go in before any event, so
	// that the contribution of their case's user, which the sink writes
	// from the user's event, follows each in its partition.
	partitions := waitForTopic(t, s.Kafka.Brokers(), targetsTopic, 60*time.Second)
	var foreign []kafka.Message
	targetUsers := make([]string, len(targetCases))
	for no, c := range targetCases {
		if c.name == "" {
			continue
		}
		key := c.key
		if key == nil {
			key = []byte(fmt.Sprintf("user:tgt-%d\x00c\x00row", no))
		}
		targetCases[no].key = key
		user := userBeside(key, fmt.Sprintf("tgt-%d", no), partitions)
		targetUsers[no] = user
		foreign = append(foreign, kafka.Message{Key: key, Value: c.value})
		msgs = append(msgs, kafka.Message{Key: str(user), Value: encode(userEvent(str(user), str("kept")), nil)})
		want[user] = map[string]string{"plan": "kept"}
	}
	s.produce(t, targetsTopic, foreign...)
	for no, c := range cases {
		if c.name == "" {
			continue
		}
		key := c.key
		if key == nil && c.value != nil {
			key = str(fmt.Sprintf("msg-%d", no))
		}
		place := key
		if place == nil {
			place = str(fmt.Sprintf("msg-%d", no)) // the tombstone's partition is as good as any
		}
		neighbour := func(side string) kafka.Message {
			id := fmt.Sprintf("msg-%d-%s", no, side)
			want[id] = map[string]string{"plan": "kept"}
			return kafka.Message{Key: keyBeside(place, id, usersPartitions), Value: encode(userEvent(str(id), str("kept")), nil)}
		}
		msgs = append(msgs, neighbour("before"), kafka.Message{Key: key, Value: c.value}, neighbour("after"))
		for id, tags := range c.tags {
			want[id] = tags
		}
	}
	s.produce(t, usersTopic, msgs...)
	s.waitForTags(t, want, 90*time.Second)
	waitForCommitted(t, s.Kafka.Brokers(), "badinput", []string{usersTopic}, 60*time.Second)

	byKey := map[string][]deadLetter{}
	for _, dl := range s.deadLetters(t) {
		byKey[string(dl.Key)] = append(byKey[string(dl.Key)], dl)
	}
	for no, c := range cases {
		if c.name == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			key := string(str(fmt.Sprintf("msg-%d", no)))
			if c.key != nil {
				key = string(c.key)
			}
			dls := byKey[key]
			delete(byKey, key)
			switch {
			case c.reason == nil && len(dls) > 0:
				t.Errorf("dead-lettered, want it applied or skipped: %v", dls)
			case c.reason != nil && len(dls) != 1:
				t.Errorf("%d dead letters, want 1: %v", len(dls), dls)
			case c.reason != nil:
				dl := dls[0]
				if dl.stage != c.stage {
					t.Errorf("stage %q, want %q", dl.stage, c.stage)
				}
				for _, r := range c.reason {
					if !strings.Contains(dl.reason, r) {
						t.Errorf("the dead letter's reason lacks %q:\n%s", r, dl.reason)
					}
				}
				if dl.header(sink.HeaderTopic) != usersTopic || dl.header(sink.HeaderOffset) == "" {
					t.Errorf("the dead letter does not say where the message was: %v", dl.Headers)
				}
			}
			for id, tags := range c.tags {
				got := s.userTags(id)
				for k, v := range tags {
					if got[k] != v {
						t.Errorf("user %q: tag %q is %.40q, want %.40q", id, k, got[k], v)
					}
				}
			}
			for _, side := range []string{"before", "after"} {
				if got := s.userTags(fmt.Sprintf("msg-%d-%s", no, side)); got["plan"] != "kept" {
					t.Errorf("the message %s it was not applied: tags %v", side, got)
				}
			}
		})
	}
	for no, c := range targetCases {
		if c.name == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			dls := byKey[string(c.key)]
			delete(byKey, string(c.key))
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1: %v", len(dls), dls)
			}
			dl := dls[0]
			if dl.stage != "decode" || dl.header(sink.HeaderTopic) != targetsTopic || dl.header(sink.HeaderOffset) == "" {
				t.Errorf("stage %q, from %s@%s: want decode, from %s", dl.stage, dl.header(sink.HeaderTopic), dl.header(sink.HeaderOffset), targetsTopic)
			}
			if !bytes.Equal(dl.Value, c.value) {
				t.Errorf("the dead letter holds %q, want the record as it was, %q", dl.Value, c.value)
			}
			for _, r := range c.reason {
				if !strings.Contains(dl.reason, r) {
					t.Errorf("the dead letter's reason lacks %q:\n%s", r, dl.reason)
				}
			}
			if got := s.userTags(targetUsers[no]); got["plan"] != "kept" {
				t.Errorf("the contribution after it was not applied: user %q has tags %v", targetUsers[no], got)
			}
		})
	}
	for key, dls := range byKey {
		t.Errorf("dead letters of no case (key %q): %v", key, dls)
	}
	if !daemon.Running() {
		t.Fatalf("the daemon stopped:\n%s", daemon.Tail(4<<10))
	}
}

// keyBeside returns a key of a row of its own, named after id, that
// murmur2 puts in the partition (of partitions) that key is in: a
// neighbour that must get past the message of key in its partition.
func keyBeside(key []byte, id string, partitions int) []byte {
	return str(nameBeside(kafka.Murmur2Balancer{Consistent: true}, key, id, partitions, func(name string) []byte { return str(name) }))
}

// userBeside returns the external id of a user, named after id, whose
// records the sink writes to the partition of the targets topic (of
// partitions) that a record keyed key is in.
func userBeside(key []byte, id string, partitions int) string {
	return nameBeside(broker.KeyPrefixBalancer{}, key, id, partitions, func(name string) []byte {
		return []byte(transform.User(name).Key() + "\x00")
	})
}

// nameBeside returns id, or id#n with the smallest n that it takes, such
// that balance puts a message keyed keyOf(name) in the partition (of
// partitions) that it puts one keyed key in.
func nameBeside(balance kafka.Balancer, key []byte, id string, partitions int, keyOf func(string) []byte) string {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	want := balance.Balance(kafka.Message{Key: key}, ps...)
	for n := 0; ; n++ {
		name := id
		if n > 0 {
			name = fmt.Sprintf("%s#%d", id, n)
		}
		if balance.Balance(kafka.Message{Key: keyOf(name)}, ps...) == want {
			return name
		}
	}
}
