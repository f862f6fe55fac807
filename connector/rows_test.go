package connector_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func TestTheReaderReadsEachColumnTypeAsTheConnectorSendsItAndChangesNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	// The reader sets its session's TimeZone, as the connector does.
	db.Exec(t, `ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` SET TimeZone = 'Asia/Kolkata'`)
	defs := make([]string, len(typeColumns))
	names := make([]string, len(typeColumns))
	values := make([]string, len(typeColumns))
	for i, c := range typeColumns {
		defs[i], names[i], values[i] = c.name+" "+c.sqlType, c.name, c.value
	}
	db.Exec(t, `CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s "complicated"');
		CREATE TABLE types (id text PRIMARY KEY, `+strings.Join(defs, ", ")+`);
		CREATE SEQUENCE s;
		SET TimeZone = 'America/New_York';
		INSERT INTO types (id, `+strings.Join(names, ", ")+`) VALUES ('a/1 %?', `+strings.Join(values, ", ")+`);
		INSERT INTO types (id) VALUES ('b é'), ('c')`)

	r, err := connector.OpenReader(t.Context(), connector.ReaderConfig{DSN: db.DSN, TopicPrefix: "cdc", Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(t.Context())
	var rows []connector.Row
	collect := func(row connector.Row) error { rows = append(rows, row); return nil }
	if err := r.RowsWith(t.Context(), "public.types", "id", []json.RawMessage{json.RawMessage(`"a/1 %?"`), json.RawMessage(`"b é"`)}, collect); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || string(rows[0].Key) != `{"id":"a/1 %?"}` || string(rows[1].Key) != `{"id":"b é"}` {
		t.Fatalf("read %d rows, want a/1 %%? and b é by their keys: %+v", len(rows), rows)
	}
	for _, c := range typeColumns {
		if got, _ := rows[0].Event.After.Get(c.name); string(got) != c.want {
			t.Errorf("%s %s written as %s: read %s, want %s as the connector sends it", c.name, c.sqlType, c.value, got, c.want)
		}
	}
	ev, err := event.Decode(rows[0].Value)
	if err != nil || ev.Op != event.OpSnapshot || ev.Source.Snapshot != "true" || ev.Source.Version != "v1.2.3" || ev.Source.Table != "types" || ev.Source.LSN == 0 {
		t.Errorf("the value is not a snapshot read of the row: %+v (%v)", ev, err)
	}

	rows = nil
	if err := r.Rows(t.Context(), "public.types", connector.Select{Limit: 2}, collect); err != nil || len(rows) != 2 {
		t.Errorf("a limit of 2 read %d rows (%v)", len(rows), err)
	}
	if err := r.Rows(t.Context(), "public.nope", connector.Select{}, collect); err == nil || !strings.Contains(err.Error(), "no such table: public.nope") {
		t.Errorf("a missing table: %v", err)
	}
	// The transaction is read-only: a condition that writes fails (and
	// ends the reader's use).
	err = r.Rows(t.Context(), "public.types", connector.Select{Where: "nextval('s') > 0"}, collect)
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a condition that writes: %v, want the read-only transaction's refusal", err)
	}
}
