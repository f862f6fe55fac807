package connector_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// A SQL_ASCII database holds text in whatever bytes were written. A value
// that is not UTF-8 reaches Kafka with U+FFFD in place of the bad bytes,
// and the rows after it follow: the stream does not stop at it.
func TestTextThatIsNotUTF8InASQLASCIIDatabaseArrivesWithReplacementCharacters(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDBWith(t, "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	db.Exec(t, `INSERT INTO users VALUES ('u1', convert_from('\x636166e9'::bytea, 'SQL_ASCII')), ('u2', 'plain')`)
	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 2 })
	plans := map[string]string{}
	for _, r := range recs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		var id, plan string
		v, _ := ev.After.Get("external_id")
		json.Unmarshal(v, &id)
		v, _ = ev.After.Get("plan")
		json.Unmarshal(v, &plan)
		plans[id] = plan
	}
	if plans["u1"] != "caf\uFFFD" || plans["u2"] != "plain" {
		t.Errorf("plans %q, want u1 caf\\uFFFD and u2 plain", plans)
	}
	if !strings.HasPrefix(plans["u1"], "caf") {
		t.Errorf("u1's plan lost its valid bytes: %q", plans["u1"])
	}
}
