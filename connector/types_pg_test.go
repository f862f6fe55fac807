package connector_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// typeColumns are the columns of the types table: each one's SQL type, the
// value written to it, and the JSON the connector must send for it (the
// encodings of docs/events.md, "Column values").
var typeColumns = []struct {
	name, sqlType, value, want string
}{
	{"c_text", "text", `E'quote " backslash \\ tab \t <é>'`, `"quote \" backslash \\ tab \t \u003cé\u003e"`},
	{"c_varchar", "varchar(10)", `'short'`, `"short"`},
	{"c_bpchar", "char(5)", `'ab'`, `"ab   "`},
	{"c_name", "name", `'pg_class'`, `"pg_class"`},
	{"c_int2", "smallint", `-32768`, `-32768`},
	{"c_int4", "integer", `2147483647`, `2147483647`},
	{"c_int8", "bigint", `9223372036854775807`, `9223372036854775807`},
	{"c_oid", "oid", `4294967295`, `4294967295`},
	{"c_numeric", "numeric", `12345678901234567890.123456789000`, `"12345678901234567890.123456789000"`},
	{"c_numeric_nan", "numeric(10,2)", `'NaN'`, `"NaN"`},
	{"c_float4", "real", `1.5`, `1.5`},
	{"c_float8", "double precision", `0.1`, `0.1`},
	{"c_float8_big", "double precision", `1e300`, `1e+300`},
	{"c_float8_nan", "double precision", `'NaN'`, `"NaN"`},
	{"c_float8_ninf", "double precision", `'-Infinity'`, `"-Infinity"`},
	{"c_bool", "boolean", `true`, `true`},
	{"c_uuid", "uuid", `'0B4F2FD0-9B8E-4A9E-8C56-0B6A2D3F0A11'`, `"0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11"`},
	{"c_date", "date", `'2024-05-01'`, `"2024-05-01"`},
	{"c_date_inf", "date", `'infinity'`, `"infinity"`},
	{"c_date_bc", "date", `'0044-03-15 BC'`, `"0044-03-15 BC"`},
	{"c_time", "time", `'12:34:56.789'`, `"12:34:56.789"`},
	{"c_timestamp", "timestamp", `'2024-05-01 12:00:00.123456'`, `"2024-05-01T12:00:00.123456"`},
	{"c_timestamp_ninf", "timestamp", `'-infinity'`, `"-infinity"`},
	// Written in New York (EDT, -04), printed by the walsender in Kolkata
	// (+05:30): "2024-05-01 21:30:00.25+05:30".
	{"c_timestamptz", "timestamptz", `'2024-05-01 12:00:00.25'`, `"2024-05-01T16:00:00.25Z"`},
	// Before time zones: Kolkata's local mean time, "+05:53:28".
	{"c_timestamptz_lmt", "timestamptz", `'1800-01-01 00:00:00+00'`, `"1800-01-01T00:00:00Z"`},
	{"c_timestamptz_inf", "timestamptz", `'infinity'`, `"infinity"`},
	{"c_json", "json", `' {"b": [1, 2], "a": null} '`, `{"b": [1, 2], "a": null}`},
	{"c_jsonb", "jsonb", `'{"b": [1, 2], "a": "<x>"}'`, `{"a": "<x>", "b": [1, 2]}`},
	{"c_bytea", "bytea", `'\x00ff0000'`, `"AP8AAA=="`},
	{"c_interval", "interval", `'1 day 02:00:00'`, `"1 day 02:00:00"`},
	{"c_mood", "mood", `'it''s "complicated"'`, `"it's \"complicated\""`},
	// An enum array's type OID is the database's own: it stays Postgres' text.
	{"c_moods", "mood[]", `ARRAY['happy', 'it''s "complicated"']::mood[]`, `"{happy,\"it's \\\"complicated\\\"\"}"`},
	{"c_int4_2d", "integer[]", `'{{1,2},{3,NULL}}'`, `[[1,2],[3,null]]`},
	{"c_int4_empty", "integer[]", `'{}'`, `[]`},
	{"c_text_arr", "text[]", `ARRAY['a,b', 'say "hi"', NULL, 'back\slash', 'NULL', '', '{x}', 'ü']`, `["a,b","say \"hi\"",null,"back\\slash","NULL","","{x}","ü"]`},
	{"c_int2_arr", "smallint[]", `'{1,-2}'`, `[1,-2]`},
	{"c_int8_arr", "bigint[]", `'{9223372036854775807}'`, `[9223372036854775807]`},
	{"c_float8_arr", "double precision[]", `'{1.5,NaN,Infinity}'`, `[1.5,"NaN","Infinity"]`},
	{"c_numeric_arr", "numeric[]", `'{1.50,NaN}'`, `["1.50","NaN"]`},
	{"c_bool_arr", "boolean[]", `'{t,f}'`, `[true,false]`},
	{"c_varchar_arr", "varchar[]", `'{x,"y z"}'`, `["x","y z"]`},
	{"c_uuid_arr", "uuid[]", `'{0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11}'`, `["0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11"]`},
	{"c_jsonb_arr", "jsonb[]", `ARRAY['{"a": 1}', '[true]', '"s"']::jsonb[]`, `[{"a": 1},[true],"s"]`},
	{"c_date_arr", "date[]", `'{2024-05-01,infinity}'`, `["2024-05-01","infinity"]`},
	{"c_timestamp_arr", "timestamp[]", `ARRAY['2024-05-01 12:00:00']::timestamp[]`, `["2024-05-01T12:00:00"]`},
	{"c_timestamptz_arr", "timestamptz[]", `ARRAY['2024-05-01 12:00:00+00', NULL]::timestamptz[]`, `["2024-05-01T12:00:00Z",null]`},
	{"c_bytea_arr", "bytea[]", `ARRAY['\x0001'::bytea, NULL]`, `["AAE=",null]`},
}

func TestConnectorSendsEachColumnTypeAsDocumented(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	// The walsender prints timestamptz in its own session's TimeZone, which
	// it takes from the database's settings.
	db.Exec(t, `ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` SET TimeZone = 'Asia/Kolkata'`)
	defs := make([]string, len(typeColumns))
	names := make([]string, len(typeColumns))
	values := make([]string, len(typeColumns))
	for i, c := range typeColumns {
		defs[i], names[i], values[i] = c.name+" "+c.sqlType, c.name, c.value
	}
	db.Exec(t, `CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s "complicated"');
		CREATE TABLE types (id integer PRIMARY KEY, `+strings.Join(defs, ", ")+`)`)
	kafka := kafkatest.Start(t)
	const topic = "cdc.public.types"
	if err := broker.EnsureTopics(context.Background(), kafka.Brokers(), 1, topic); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(db)
	cfg.Tables = []string{"public.types"}
	startConnectorWith(t, db, kafka, cfg)

	db.Exec(t, `SET TimeZone = 'America/New_York';
		INSERT INTO types (id, `+strings.Join(names, ", ")+`) VALUES (1, `+strings.Join(values, ", ")+`);
		INSERT INTO types (id) VALUES (2)`)

	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{topic}, 30*time.Second, atLeast(2))
	rows := map[string]event.Row{}
	for _, r := range recs {
		if !json.Valid(r.Value) {
			t.Fatalf("event is not valid JSON: %s", r.Value)
		}
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := ev.After.Get("id")
		rows[string(id)] = ev.After
	}
	if len(rows["1"]) == 0 || len(rows["2"]) == 0 {
		t.Fatalf("events for ids %v, want 1 and 2", keysOf(rows))
	}
	for _, c := range typeColumns {
		if got, _ := rows["1"].Get(c.name); string(got) != c.want {
			t.Errorf("%s %s written as %s: got %s, want %s", c.name, c.sqlType, c.value, got, c.want)
		}
		if got, _ := rows["2"].Get(c.name); string(got) != "null" {
			t.Errorf("%s %s NULL: got %s, want null", c.name, c.sqlType, got)
		}
	}
}

func keysOf(m map[string]event.Row) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
