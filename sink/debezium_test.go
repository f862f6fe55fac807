package sink_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The fixtures in testdata/debezium are what Debezium 2.5's PostgreSQL
// connector (topic.prefix dbserver1, database app, plugin pgoutput) writes
// through Kafka Connect's JSON converter with schemas.enable=true: each
// message is {"key": …, "value": …}, both {"schema": …, "payload": …}, a
// null value being a tombstone. With schemas.enable=false the converter
// writes the payloads alone, which is what converted makes of them.
//
// Where Debezium's source block differs from ours: it has "sequence"
// (["<LSN of the last commit it processed>", "<lsn>"], as a string) and
// "xmin", and no "commit_lsn"; a snapshot row's "lsn" is the position the
// snapshot read at, not a change's.
const (
	dbzUsers    = "dbserver1.public.users"
	dbzDevices  = "dbserver1.public.devices"
	dbzProfiles = "dbserver1.public.profiles"
)

// dbzMapping maps Debezium's tables the way a user would.
var dbzMapping = &transform.Mapping{
	Users: &transform.UsersMapping{
		Table: "public.users", ExternalID: "external_id",
		Tags: map[string]string{"plan": "", "score": "level", "vip": "", "country": "geo"},
	},
	Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
}

// converterModes are the JSON converter's two settings.
var converterModes = []struct {
	name    string
	schemas bool
}{{"schemas.enable=true", true}, {"schemas.enable=false", false}}

// debeziumFixture reads testdata/debezium/name into messages of topic,
// with the schemas or without them.
func debeziumFixture(t *testing.T, name, topic string, schemas bool) []kafka.Message {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "debezium", name))
	if err != nil {
		t.Fatal(err)
	}
	var recs []struct{ Key, Value json.RawMessage }
	if err := json.Unmarshal(data, &recs); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	msgs := make([]kafka.Message, 0, len(recs))
	for _, r := range recs {
		msgs = append(msgs, kafka.Message{Topic: topic, Key: converted(t, r.Key, schemas), Value: converted(t, r.Value, schemas)})
	}
	return msgs
}

// converted is a key or value as the JSON converter writes it: compact,
// null as no bytes at all, and without schemas only the payload.
func converted(t *testing.T, v json.RawMessage, schemas bool) []byte {
	t.Helper()
	if bytes.Equal(v, []byte("null")) {
		return nil
	}
	if !schemas {
		var wrapped struct{ Payload json.RawMessage }
		if err := json.Unmarshal(v, &wrapped); err != nil || wrapped.Payload == nil {
			t.Fatalf("fixture %s has no payload (%v)", v, err)
		}
		v = wrapped.Payload
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// syncDebezium writes each topic's fixture, one partition a topic, runs a
// sink with m over them until every message is committed, and returns the
// emulator's state. It fails the test if anything was dead-lettered.
func syncDebezium(t *testing.T, m *transform.Mapping, devices []string, topics map[string][]kafka.Message) emulator.State {
	t.Helper()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	st.addDevices(devices...)
	for topic := range topics {
		st.eventTopics(1, topic)
	}
	r := st.start(m)
	for _, msgs := range topics {
		st.produceMessages(msgs...)
	}
	st.waitDrained()
	if n := r.sink.Stats().DeadLettered; n > 0 {
		for _, d := range st.deadLetters(int(n)) {
			t.Errorf("dead letter of %s: %s", origin(d), header(d, sink.HeaderMessage))
		}
	}
	return st.emu.State()
}

// tagsOf returns the tags of the user with external id ext; nil when
// there is no such user.
func tagsOf(s emulator.State, ext string) map[string]string {
	u, ok := s.UserByExternalID(ext)
	if !ok {
		return nil
	}
	return u.Tags
}

func TestTheSinkAppliesTopicsWrittenByDebeziumsPostgresConnector(t *testing.T) {
	t.Parallel()
	for _, mode := range converterModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			// users.json: a snapshot of u1–u3 ("r", "snapshot":"true"), then
			// streamed: insert u4, update u1 with "before" null (REPLICA
			// IDENTITY DEFAULT), delete u3 (only its key in "before") and its
			// tombstone, update u2 setting country NULL, TRUNCATE (null key,
			// no rows), insert u5. devices.json: a snapshot linking d1 to u1
			// and d2 to u2 (the last with "snapshot":"last"), then insert
			// d3 for u4, set d1's owner NULL, move d2 to u1, delete d3 and
			// its tombstone.
			s := syncDebezium(t, dbzMapping, []string{"d1", "d2", "d3"}, map[string][]kafka.Message{
				dbzUsers:   debeziumFixture(t, "users.json", dbzUsers, mode.schemas),
				dbzDevices: debeziumFixture(t, "devices.json", dbzDevices, mode.schemas),
			})
			for ext, want := range map[string]map[string]string{
				"u1": {"plan": "pro", "level": "11", "vip": "true", "geo": "DE"},
				"u2": {"plan": "pro", "level": "21", "vip": "true"}, // NULL country: the tag is gone
				"u3": {},                                            // deleted: its tags are gone
				"u4": {"plan": "free", "level": "5", "vip": "false"},
				"u5": {"plan": "trial", "level": "1", "vip": "false", "geo": "BR"}, // after the TRUNCATE
			} {
				if got := tagsOf(s, ext); !maps.Equal(got, want) {
					t.Errorf("%s has tags %v, want %v", ext, got, want)
				}
			}
			for device, want := range map[string]string{"d1": "", "d2": "u1", "d3": ""} {
				if got := s.ExternalIDOf(device); got != want {
					t.Errorf("%s belongs to %q, want %q", device, got, want)
				}
			}
		})
	}
}

// TestTheSinkTurnsDebeziumColumnValuesIntoTags pins what each of
// Debezium's JSON encodings becomes as a tag. The sink reads values, never
// schemas, so a logical type that Debezium encodes differently from us
// arrives as its encoding: numeric under decimal.handling.mode=precise
// (Debezium's default) as the base64 of its unscaled bytes, and date as a
// count of days. Users who map such columns to tags configure
// decimal.handling.mode=string; Debezium has no text form for dates.
func TestTheSinkTurnsDebeziumColumnValuesIntoTags(t *testing.T) {
	t.Parallel()
	columns := map[string]string{
		"nickname": "", "age": "", "points": "", "vip": "", "rating": "", "balance": "", "signup": "", "seen_at": "",
	}
	profiles := &transform.Mapping{Users: &transform.UsersMapping{Table: "public.profiles", ExternalID: "external_id", Tags: columns}}
	common := map[string]string{
		"nickname": "Ada <&> é",        // text
		"age":      "36",               // int2 (int16)
		"points":   "9007199254740993", // int8 above 2^53, kept exact
		"vip":      "true",             // boolean
		"rating":   "4.5",              // float8 (double)
		"seen_at":  "2024-05-01T10:00:00Z",
		"signup":   "19844", // date 2024-05-01 as io.debezium.time.Date: days since 1970
	}
	for _, fixture := range []struct {
		file, balance string
	}{
		{"profiles.precise.json", "BOI="}, // 12.50 as org.apache.kafka.connect.data.Decimal: 1250 in two bytes, base64
		{"profiles.string.json", "12.50"},
	} {
		for _, mode := range converterModes {
			t.Run(fixture.file+"/"+mode.name, func(t *testing.T) {
				t.Parallel()
				s := syncDebezium(t, profiles, nil, map[string][]kafka.Message{
					dbzProfiles: debeziumFixture(t, fixture.file, dbzProfiles, mode.schemas),
				})
				want := maps.Clone(common)
				want["balance"] = fixture.balance
				if got := tagsOf(s, "p1"); !maps.Equal(got, want) {
					t.Errorf("tags %v,\nwant %v", got, want)
				}
			})
		}
	}
}

// TestTheSinkAppliesADebeziumChangeThatCommittedAfterTheSnapshotReadItsRow:
// transaction 799 updates u9 before Debezium's snapshot takes its position
// (the slot's consistent point, or for an incremental snapshot the
// watermark) and commits after it. The snapshot reads u9 as it was, at
// lsn 24030000; the stream then carries the update, committed later but
// written earlier, at lsn 24029800. The update is u9's newest state.
func TestTheSinkAppliesADebeziumChangeThatCommittedAfterTheSnapshotReadItsRow(t *testing.T) {
	t.Parallel()
	for _, mode := range converterModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			s := syncDebezium(t, dbzMapping, nil, map[string][]kafka.Message{
				dbzUsers: debeziumFixture(t, "inflight.json", dbzUsers, mode.schemas),
			})
			want := map[string]string{"plan": "pro", "level": "2", "vip": "true", "geo": "DE"}
			if got := tagsOf(s, "u9"); !maps.Equal(got, want) {
				t.Errorf("u9 has tags %v, want %v: the update committed after the snapshot was lost", got, want)
			}
		})
	}
}

// TestTheSinkAppliesEveryChangeOfADebeziumTableWithoutAPrimaryKey:
// Debezium keys the messages of a table without a primary key with null.
// Two transactions interleave: 900 updates u8, 901 then updates u7 and
// commits first. Debezium writes them in commit order, so u8's update
// comes last with the lower lsn.
func TestTheSinkAppliesEveryChangeOfADebeziumTableWithoutAPrimaryKey(t *testing.T) {
	t.Parallel()
	for _, mode := range converterModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			msgs := debeziumFixture(t, "nokey.json", dbzUsers, mode.schemas)
			for _, m := range msgs {
				if m.Key != nil {
					t.Fatalf("fixture message with key %s; a table without a primary key has none", m.Key)
				}
			}
			s := syncDebezium(t, dbzMapping, nil, map[string][]kafka.Message{dbzUsers: msgs})
			for _, ext := range []string{"u7", "u8"} {
				want := map[string]string{"plan": "pro", "level": "2", "vip": "false", "geo": "DE"}
				if got := tagsOf(s, ext); !maps.Equal(got, want) {
					t.Errorf("%s has tags %v, want %v", ext, got, want)
				}
			}
		})
	}
}
