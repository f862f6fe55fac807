package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// externalIDKeyedSchema is the schema the harness's workload had before
// it became CRM-shaped: users keyed by their external id, so one row is
// one Kafka key is one OneSignal user. The regression tests below were
// written on it, and keep it. bio is stored out of line and uncompressed
// (STORAGE EXTERNAL), so any value over about 2 kB is a TOAST value.
const externalIDKeyedSchema = `
CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int, country text, bio text);
ALTER TABLE users ALTER COLUMN bio SET STORAGE EXTERNAL;
CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text);
`

// TestAKeyChangeDoesNotClearTheTagsOfTheOldKeyInsertedAgain changes the
// external id (the primary key) of rows and then inserts rows under the
// old ids again, while the partition of the new ids lags behind (its
// fetches fail). The key change and the new insert travel in different
// partitions, consumed independently; OneSignal must still end with the
// tags of the rows that exist: the late key change must not clear the
// tags of an old id whose row came back. (The chaos workload changes keys
// all the time, but not in this precise shape.)
func TestAKeyChangeDoesNotClearTheTagsOfTheOldKeyInsertedAgain(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-00000000ce45", APIKey: "key"}})
	db, kb, emu := st.DB, st.Kafka, st.Emulator
	db.Exec(t, externalIDKeyedSchema)
	c := st.Config()
	c.Postgres.Publication, c.Postgres.StatusInterval = "regress", 200*time.Millisecond
	c.Kafka.TopicPrefix, c.Kafka.Partitions, c.Kafka.ConsumerGroup = "cdc", 4, "regress"
	c.Mapping.Users = &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": ""}}
	c.Ops.Listen = ""
	daemontest.StartWith(t, opsOff, daemontest.Run, "--config", daemontest.WriteConfig(t, c))
	waitUntil(t, time.Minute, "the slot to stream", func() bool { ok, _ := slotActive(context.Background(), db.DSN, db.Name); return ok })

	// Pairs of ids whose new key is in partition 0 and whose old key is not.
	partition := func(id string) int {
		return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(`{"external_id":"` + id + `"}`)}, 0, 1, 2, 3)
	}
	type pair struct{ old, new string }
	var pairs []pair
	for i := 0; len(pairs) < 10; i++ {
		p := pair{fmt.Sprintf("old-%d", i), fmt.Sprintf("new-%d", i)}
		if partition(p.new) == 0 && partition(p.old) != 0 {
			pairs = append(pairs, p)
		}
	}
	planOf := func(id string) string {
		u, _ := emu.State().UserByExternalID(id)
		return u.Tags["plan"]
	}
	for _, p := range pairs {
		db.Exec(t, `INSERT INTO users (external_id, plan) VALUES ($1, 'first')`, p.old)
	}
	waitUntil(t, time.Minute, "the first rows in OneSignal", func() bool { return planOf(pairs[len(pairs)-1].old) == "first" })

	// Partition 0 lags: its fetches fail for a while.
	lag := kb.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "cdc.public.users", Partitions: []int32{0}, Err: kerr.NotLeaderForPartition, Count: -1})
	for _, p := range pairs {
		db.Exec(t, `UPDATE users SET external_id = $2, plan = 'moved' WHERE external_id = $1`, p.old, p.new)
		db.Exec(t, `INSERT INTO users (external_id, plan) VALUES ($1, 'again')`, p.old)
	}
	waitUntil(t, time.Minute, "the old keys inserted again to reach OneSignal", func() bool { return planOf(pairs[len(pairs)-1].old) == "again" })
	if lag.Hits() == 0 || planOf(pairs[0].new) == "moved" {
		t.Fatalf("partition 0 did not lag (%d fetches failed): the test proves nothing", lag.Hits())
	}
	lag.Remove()
	// Once the group committed everything, every operation was applied.
	client, done := broker.Plain(kb.Brokers()).Client(10 * time.Second)
	defer done()
	waitUntil(t, time.Minute, "the sink to commit everything", func() bool {
		behind, err := groupLag(context.Background(), client, "regress", []string{"cdc.public.users"})
		return err == nil && len(behind) == 0
	})

	var wrong []string
	for _, p := range pairs {
		if got := planOf(p.old); got != "again" {
			wrong = append(wrong, fmt.Sprintf("%s has plan %q, want \"again\" (its row exists)", p.old, got))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d users lost their tags to a late key change:\n%s", len(wrong), len(pairs), strings.Join(wrong, "\n"))
	}
}
