package connector_test

import (
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// A 2 MB value would make a 2 MB event, which Kafka (1 MiB by default) and
// kafka-go's writer refuse: the connector would stop at it for good.
func TestAColumnValueTooLargeForKafkaIsSentAsThePlaceholderAndTheStreamGoesOn(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, bio text)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	db.Exec(t, `INSERT INTO users VALUES ('before', 'free', 'short')`)
	db.Exec(t, `INSERT INTO users VALUES ('huge', 'pro', repeat('x', 2 * 1024 * 1024))`)
	db.Exec(t, `UPDATE users SET plan = 'gold' WHERE external_id = 'huge'`) // the unchanged TOAST value is not sent
	db.Exec(t, `INSERT INTO users VALUES ('after', 'free', 'short')`)

	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(4))
	evs := decodeAll(t, recs)
	byID := map[string][]*event.Envelope{}
	for i, ev := range evs {
		if len(recs[i].Value) > 1<<20 {
			t.Errorf("record %d is %d bytes, over Kafka's default limit", i, len(recs[i].Value))
		}
		id, _ := ev.After.Get("external_id")
		byID[string(id)] = append(byID[string(id)], ev)
	}
	if len(byID[`"before"`]) != 1 || len(byID[`"after"`]) != 1 {
		t.Errorf("the rows around the huge one: %d and %d events, want 1 each", len(byID[`"before"`]), len(byID[`"after"`]))
	}
	huge := byID[`"huge"`]
	if len(huge) != 2 {
		t.Fatalf("the huge row has %d events, want the insert and the update", len(huge))
	}
	if bio, _ := huge[0].After.Get("bio"); !event.IsOversized(bio) {
		t.Errorf("the insert's bio is %.40s…, want %q", bio, event.Oversized)
	}
	if plan, _ := huge[0].After.Get("plan"); string(plan) != `"pro"` {
		t.Errorf("the insert's plan is %s, want \"pro\": only the huge column is left out", plan)
	}
	if bio, _ := huge[1].After.Get("bio"); !event.IsUnavailable(bio) {
		t.Errorf("the update's bio is %.40s…, want the unchanged-TOAST placeholder", bio)
	}
}
