package connector_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// finding is what a test expects of one connector.Finding: text that its
// Problem and its Fix must each contain.
type finding struct{ problem, fix string }

// check runs connector.Inspect on conn for the tables, with the slot named
// after the database and the publication "cdc".
func check(t *testing.T, conn *pgx.Conn, db *pgtest.DB, tables ...string) connector.Findings {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, _, err := connector.Inspect(ctx, conn, checkConfig(db.Name, tables...))
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return got
}

func checkConfig(slot string, tables ...string) connector.Config {
	return connector.Config{Slot: slot, Publication: "cdc", Tables: tables}
}

// expect fails t unless got holds exactly the wanted findings, in order.
func expect(t *testing.T, got connector.Findings, want ...finding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Problem, w.problem) {
			t.Errorf("finding %d: problem %q\n\tdoes not contain %q", i, got[i].Problem, w.problem)
		}
		if !strings.Contains(got[i].Fix, w.fix) {
			t.Errorf("finding %d: fix %q\n\tdoes not contain %q", i, got[i].Fix, w.fix)
		}
	}
}

// connectAs creates a login role for this test with the given attributes,
// dropped at cleanup, and connects to db as it.
func connectAs(t *testing.T, db *pgtest.DB, suffix, attributes string) (conn *pgx.Conn, role string) {
	t.Helper()
	role = db.Name + "_" + suffix
	ident := pgx.Identifier{role}.Sanitize()
	db.Exec(t, "CREATE ROLE "+ident+" LOGIN "+attributes)
	t.Cleanup(func() { db.Exec(t, "DROP OWNED BY "+ident+"; DROP ROLE "+ident) })

	cfg, err := pgx.ParseConfig(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role // the test server trusts every local user
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, role
}

func TestCheckFindsNothingWrongWithTablesThatHaveAKeyOrAFullReplicaIdentity(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `
		CREATE TABLE users (external_id text PRIMARY KEY, plan text);
		CREATE TABLE devices (device_id text, external_id text);
		ALTER TABLE devices REPLICA IDENTITY FULL;
		CREATE TABLE tags (external_id text NOT NULL, tag text);
		CREATE UNIQUE INDEX tags_external_id ON tags (external_id);
		ALTER TABLE tags REPLICA IDENTITY USING INDEX tags_external_id`)
	conn := db.Conn(t)
	tables := []string{"public.users", "public.devices", "public.tags"}

	expect(t, check(t, conn, db, tables...)) // setup will create the publication and the slot

	db.Exec(t, `CREATE PUBLICATION cdc FOR TABLE users, devices, tags`)
	db.Exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, db.Name)
	expect(t, check(t, conn, db, tables...))
}

func TestCheckReportsATableWithoutAPrimaryKey(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text, plan text)`)

	expect(t, check(t, db.Conn(t), db, "public.users"), finding{
		problem: "table public.users has no primary key and REPLICA IDENTITY DEFAULT: once it is in the publication, every UPDATE and DELETE on it fails",
		fix:     `add a primary key (ALTER TABLE "public"."users" ADD PRIMARY KEY (…);), or make the whole old row the key: ALTER TABLE "public"."users" REPLICA IDENTITY FULL;`,
	})
}

func TestCheckReportsReplicaIdentityNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text); ALTER TABLE users REPLICA IDENTITY NOTHING`)

	expect(t, check(t, db.Conn(t), db, "public.users"), finding{
		problem: "table public.users has REPLICA IDENTITY NOTHING: once it is in the publication, every UPDATE and DELETE on it fails",
		fix:     `ALTER TABLE "public"."users" REPLICA IDENTITY DEFAULT; if it has a primary key, or else add a primary key`,
	})
}

func TestCheckReportsOtherTablesThatCannotBeReplicated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, sql string
		want      finding
	}{{
		name: "a replica identity index that was dropped",
		sql: `CREATE TABLE users (external_id text NOT NULL);
			CREATE UNIQUE INDEX users_external_id ON users (external_id);
			ALTER TABLE users REPLICA IDENTITY USING INDEX users_external_id;
			DROP INDEX users_external_id`,
		want: finding{
			problem: "table public.users has REPLICA IDENTITY USING INDEX, but that index is gone",
			fix:     `point it at a unique index (ALTER TABLE "public"."users" REPLICA IDENTITY USING INDEX …;), or add a primary key`,
		},
	}, {
		name: "an unlogged table",
		sql:  `CREATE UNLOGGED TABLE users (external_id text PRIMARY KEY)`,
		want: finding{
			problem: "table public.users is unlogged or temporary: its changes never reach the WAL",
			fix:     `as its owner run ALTER TABLE "public"."users" SET LOGGED;`,
		},
	}, {
		name: "a view",
		sql:  `CREATE TABLE accounts (external_id text PRIMARY KEY); CREATE VIEW users AS SELECT * FROM accounts`,
		want: finding{
			problem: "public.users is a view, not a table: logical replication carries only tables",
			fix:     "map the table it is based on instead",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			db.Exec(t, tc.sql)
			expect(t, check(t, db.Conn(t), db, "public.users"), tc.want)
		})
	}
}

func TestCheckReportsAMissingTableByItsExactNameAndSuggestsTheLikelyOne(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY)`)

	expect(t, check(t, db.Conn(t), db, "public.Users"), finding{
		problem: "table public.Users does not exist",
		fix: `create "public"."Users" in database "` + db.Name + `", or correct the table in the mapping: ` +
			`it is matched exactly, schema and case included, and search_path plays no part ` +
			`(unquoted names in SQL are folded to lower case); similar tables: public.users`,
	})
}

// A mapped column the table does not have would dead-letter every change:
// each is named with its setting, the closest column and the table's
// columns; a quoted mixed-case column counts as written.
func TestCheckReportsEveryMappedColumnTheTableLacksNamingTheClosest(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (id int PRIMARY KEY, external_id text, plan text, score int, "Email" text);
		CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text)`)
	cfg := checkConfig(db.Name, "public.users", "public.devices")
	cfg.Columns = map[string]map[string]string{
		"public.users": {
			"externalid": "mapping.users.external_id", "plan": "mapping.users.tags", "scor": "mapping.users.tags",
			"Email": "mapping.users.email", "mobile": "mapping.users.phone",
		},
		"public.devices": {"device_id": "mapping.devices.device_id", "user_external_id": "mapping.devices.external_id"},
	}
	got, _, err := connector.Inspect(t.Context(), db.Conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const users = "The table's columns: id, external_id, plan, score, Email"
	expect(t, got, finding{
		problem: `table public.users has no column "externalid", which mapping.users.external_id names: every change of the table would be dead-lettered instead of reaching OneSignal`,
		fix:     `correct mapping.users.external_id: did you mean "external_id"? Column names are matched exactly, case included. ` + users,
	}, finding{
		problem: `table public.users has no column "mobile", which mapping.users.phone names`,
		fix:     "correct mapping.users.phone. Column names are matched exactly, case included. " + users,
	}, finding{
		problem: `table public.users has no column "scor", which mapping.users.tags names`,
		fix:     `correct mapping.users.tags: did you mean "score"?`,
	}, finding{
		problem: `table public.devices has no column "device_id", which mapping.devices.device_id names`,
		fix:     "The table's columns: player_id, user_external_id",
	})
}

func TestCheckReportsARoleWithoutTheReplicationAttribute(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY); CREATE PUBLICATION cdc FOR TABLE users`)
	conn, role := connectAs(t, db, "norepl", "")

	expect(t, check(t, conn, db, "public.users"), finding{
		problem: `role "` + role + `" may not replicate: it has neither the REPLICATION attribute nor superuser`,
		fix:     `as a superuser run ALTER ROLE "` + role + `" WITH REPLICATION;`,
	})
}

func TestCheckReportsAPublicationThatDoesNotPublishDeletes(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY); CREATE PUBLICATION cdc FOR TABLE users WITH (publish = 'insert, update')`)

	expect(t, check(t, db.Conn(t), db, "public.users"), finding{
		problem: `publication "cdc" does not publish delete, so those changes would never reach OneSignal`,
		fix:     `as its owner (postgres) run ALTER PUBLICATION "cdc" SET (publish = 'insert, update, delete');`,
	})
}

func TestCheckReportsATableThePublicationLacksAndARoleThatDoesNotOwnItCannotAdd(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `
		CREATE TABLE users (external_id text PRIMARY KEY);
		CREATE TABLE devices (device_id text PRIMARY KEY);
		CREATE PUBLICATION cdc FOR TABLE users`)
	conn, role := connectAs(t, db, "repl", "REPLICATION")

	expect(t, check(t, conn, db, "public.users", "public.devices"), finding{
		problem: `publication "cdc" does not cover table public.devices, and role "` + role + `" cannot add it: ` +
			`that takes a superuser, or the owner of both the publication (postgres) and the table (postgres)`,
		fix: `an admin must run ALTER PUBLICATION "cdc" ADD TABLE "public"."devices";`,
	})
}

func TestCheckReportsAPublicationTheRoleCannotCreate(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY); CREATE TABLE devices (device_id text PRIMARY KEY)`)
	conn, role := connectAs(t, db, "repl", "REPLICATION")

	expect(t, check(t, conn, db, "public.users", "public.devices"), finding{
		problem: `publication "cdc" does not exist, and role "` + role + `" cannot create it: it lacks CREATE on database "` + db.Name +
			`" and ownership of public.users (owned by postgres), public.devices (owned by postgres)`,
		fix: `an admin must run CREATE PUBLICATION "cdc" FOR TABLE "public"."users", "public"."devices";`,
	})
}

func TestCheckReportsASlotWithAnotherPlugin(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY)`)
	db.Exec(t, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, db.Name)

	expect(t, check(t, db.Conn(t), db, "public.users"), finding{
		problem: `replication slot "` + db.Name + `" uses plugin "test_decoding"; the connector needs pgoutput`,
		fix:     `set postgres.slot to another name, or, if nothing else uses this slot, drop it: SELECT pg_drop_replication_slot('` + db.Name + `');`,
	})
}

func TestCheckReportsEveryServerSettingThatRulesOutLogicalReplicationAtOnce(t *testing.T) {
	t.Parallel()
	conn := connect(t, pgtest.StartCluster(t, "wal_level=replica", "max_wal_senders=0", "max_replication_slots=0").DSN)
	if _, err := conn.Exec(context.Background(), `CREATE TABLE users (external_id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}

	got, _, err := connector.Inspect(context.Background(), conn, checkConfig("cdc", "public.users"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got,
		finding{
			problem: `wal_level is "replica"; logical replication needs "logical"`,
			fix:     "as a superuser run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
		},
		finding{
			problem: "max_wal_senders is 0, so the server accepts no replication connection",
			fix:     "as a superuser run ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL",
		},
		finding{
			problem: `replication slot "cdc" does not exist and cannot be created: all 0 slots (max_replication_slots) are taken`,
			fix:     "raise the limit: as a superuser run ALTER SYSTEM SET max_replication_slots = 1; then restart PostgreSQL",
		})
}

func TestCheckReportsAnInvalidatedSlotAndThatChangesMayBeMissing(t *testing.T) {
	t.Parallel()
	// Every WAL segment past the slot's position is beyond 1MB: the next
	// checkpoint removes it and invalidates the slot.
	conn := connect(t, pgtest.StartCluster(t, "wal_level=logical", "max_slot_wal_keep_size=1MB", "wal_keep_size=0").DSN)
	ctx := context.Background()
	run := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	run(`CREATE TABLE users (external_id text PRIMARY KEY)`)
	run(`SELECT pg_create_logical_replication_slot('cdc', 'pgoutput')`)
	waitFor(t, 30*time.Second, "the slot to be invalidated", func() bool {
		run(`INSERT INTO users SELECT md5(random()::text) FROM generate_series(1, 100)`)
		run(`SELECT pg_switch_wal()`)
		run(`CHECKPOINT`)
		var status string
		if err := conn.QueryRow(ctx, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'cdc'`).Scan(&status); err != nil {
			t.Fatal(err)
		}
		return status == "lost"
	})

	got, _, err := connector.Inspect(ctx, conn, checkConfig("cdc", "public.users"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, finding{
		problem: `replication slot "cdc" is invalidated (wal_status lost): PostgreSQL removed WAL it still needed, ` +
			"so changes made since the connector last confirmed were never captured and may be missing downstream",
		fix: "drop the slot (SELECT pg_drop_replication_slot('cdc');), let the connector create a new one, and re-snapshot the tables into OneSignal",
	})
}

// discard is a Kafka writer that is never reached.
type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func TestConnectorStopsWithEveryFindingInsteadOfRetrying(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text, plan text)`)
	cfg := checkConfig(db.Name, "public.users", "public.devices")
	cfg.DSN = db.DSN
	cfg.TopicPrefix = "cdc"

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := connector.New(cfg, discard{}, zaptest.NewLogger(t)).Run(ctx)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Run took %s: it should stop at once on a misconfigured database", took)
	}
	var findings connector.Findings
	if !errors.As(err, &findings) {
		t.Fatalf("Run returned %v, want the findings", err)
	}
	t.Log(err)
	expect(t, findings,
		finding{problem: "table public.users has no primary key", fix: `ALTER TABLE "public"."users" REPLICA IDENTITY FULL;`},
		finding{problem: "table public.devices does not exist", fix: `create "public"."devices"`})
	for _, line := range []string{
		"the source database is not ready for the connector (2 problems):\n  - table public.users has no primary key",
		"\n    fix: add a primary key",
		"\n  - table public.devices does not exist",
	} {
		if !strings.Contains(err.Error(), line) {
			t.Errorf("error %q\n\tdoes not contain %q", err, line)
		}
	}

	// Nothing was created before the checks passed.
	var pubs int
	if err := db.Conn(t).QueryRow(ctx, `SELECT count(*) FROM pg_publication`).Scan(&pubs); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.SlotConfirmedFlush(t, db.Name); ok || pubs != 0 {
		t.Errorf("slot exists: %v, publications: %d; the connector should change nothing before its checks pass", ok, pubs)
	}
}

// connect opens a connection to dsn, closed at cleanup.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestCheckReportsAKeylessTableTheInitialSnapshotCannotRead(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE devices (device_id text, external_id text); ALTER TABLE devices REPLICA IDENTITY FULL`)
	conn := db.Conn(t)
	cfg := checkConfig(db.Name, "public.devices")
	cfg.InitialSnapshot = true
	got, _, err := connector.Inspect(t.Context(), conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, finding{"has no primary key, which the initial snapshot needs", "postgres.snapshot: never"})

	// Once the slot exists the snapshot is behind it: streaming needs only
	// the replica identity.
	db.Exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, db.Name)
	got, _, err = connector.Inspect(t.Context(), conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got)
}
