package connector

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/internal/suggest"
)

// Finding is one thing about the source database that keeps the connector
// from working, and what fixes it.
type Finding struct {
	Problem string // what is wrong and what follows from it
	Fix     string // what to do, with the exact statement where there is one
}

func (f Finding) String() string { return f.Problem + "; fix: " + f.Fix }

// Findings is every problem Inspect found. As an error it lists each problem
// with its fix, one after the other.
type Findings []Finding

func (fs Findings) Error() string {
	var b strings.Builder
	if len(fs) == 1 {
		b.WriteString("the source database is not ready for the connector (1 problem):")
	} else {
		fmt.Fprintf(&b, "the source database is not ready for the connector (%d problems):", len(fs))
	}
	for _, f := range fs {
		b.WriteString("\n  - ")
		b.WriteString(f.Problem)
		b.WriteString("\n    fix: ")
		b.WriteString(f.Fix)
	}
	return b.String()
}

// Inspect checks the database conn is connected to, as the role it is
// connected as, for everything the connector needs of it under cfg (Slot,
// Publication, Tables and Columns): wal_level, the REPLICATION privilege,
// a free slot and wal sender, tables that exist, hold every mapped column
// and carry a key for updates and deletes, a publication that covers them
// (or the right to create or extend it), and a usable slot. It changes
// nothing.
//
// It returns every problem at once; no problems means setup can go ahead.
// The warnings are what lets the connector work, but not as well as it
// could, and that it cannot mend itself (a publication someone else owns
// that publishes columns the mapping does not read). The error is for a
// check that could not run, such as a broken connection, which a later
// attempt may get past. Setup calls it on every connect; `onesignal-cdc
// validate --online` calls it alone.
func Inspect(ctx context.Context, conn *pgx.Conn, cfg Config) (problems, warnings Findings, err error) {
	c := &checker{conn: conn, cfg: cfg}
	if err := c.run(ctx); err != nil {
		return nil, nil, fmt.Errorf("check the source database: %w", err)
	}
	return c.found, c.warned, nil
}

// checker holds what Inspect learned about the server, the role and the
// tables, for the later checks that depend on it.
type checker struct {
	conn   *pgx.Conn
	cfg    Config
	found  Findings
	warned Findings

	version       int // server_version_num, e.g. 150004
	database      string
	role          string
	super         bool
	replication   bool   // the REPLICATION attribute, or rds_replication on Amazon RDS
	createInDB    bool   // CREATE on the database, which CREATE PUBLICATION needs
	provider      string // one of the provider* roles when the server is a managed service
	walLevel      string
	walSenders    int
	maxSlots      int
	slotsInUse    int         // every slot on the server, ours included
	inactiveSlots []string    // slots no walsender holds right now
	slot          *slotInfo   // nil when the slot does not exist yet
	tables        []tableInfo // the configured tables that exist
}

type slotInfo struct {
	slotType  string
	plugin    *string // nil for a physical slot
	database  *string // nil for a physical slot
	walStatus *string // nil before PostgreSQL 13
}

type tableInfo struct {
	schema, name string
	owner        string
	owned        bool // the role has its owner's privileges
}

func (c *checker) add(problem, fix string) {
	c.found = append(c.found, Finding{Problem: problem, Fix: fix})
}

func (c *checker) warn(problem, fix string) {
	c.warned = append(c.warned, Finding{Problem: problem, Fix: fix})
}

func (c *checker) run(ctx context.Context) error {
	if err := c.loadServer(ctx); err != nil {
		return err
	}
	if err := c.loadSlots(ctx); err != nil {
		return err
	}
	c.checkServer()
	c.checkRole()
	if err := c.checkTables(ctx); err != nil {
		return err
	}
	if err := c.checkExpressions(ctx); err != nil {
		return err
	}
	if err := c.checkPublication(ctx); err != nil {
		return err
	}
	c.checkSlot()
	return nil
}

// Managed services keep superuser to themselves and name the switches for
// logical replication their own way; their admin roles tell them apart.
const (
	providerRDS      = "rds_replication"   // Amazon RDS and Aurora
	providerCloudSQL = "cloudsqlsuperuser" // Google Cloud SQL
	providerAzure    = "azure_pg_admin"    // Azure Database for PostgreSQL
)

func (c *checker) loadServer(ctx context.Context) error {
	var providers []string
	err := c.conn.QueryRow(ctx, `
		SELECT current_setting('server_version_num')::int,
		       current_setting('wal_level'),
		       current_setting('max_wal_senders')::int,
		       current_setting('max_replication_slots')::int,
		       current_database(),
		       r.rolname::text, r.rolsuper,
		       r.rolreplication OR COALESCE(
		           (SELECT pg_has_role(r.oid, m.oid, 'MEMBER') FROM pg_roles m WHERE m.rolname = $1), false),
		       has_database_privilege(current_database(), 'CREATE'),
		       ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname IN ($1, $2, $3))
		FROM pg_roles r WHERE r.rolname = current_user`,
		providerRDS, providerCloudSQL, providerAzure,
	).Scan(&c.version, &c.walLevel, &c.walSenders, &c.maxSlots, &c.database,
		&c.role, &c.super, &c.replication, &c.createInDB, &providers)
	if err != nil {
		return fmt.Errorf("read server settings and role: %w", err)
	}
	for _, p := range []string{providerRDS, providerCloudSQL, providerAzure} {
		if contains(providers, p) {
			c.provider = p
			break
		}
	}
	return nil
}

func (c *checker) loadSlots(ctx context.Context) error {
	walStatus := "NULL::text"
	if c.version >= 130000 {
		walStatus = "wal_status"
	}
	var s slotInfo
	err := c.conn.QueryRow(ctx,
		`SELECT slot_type, plugin::text, database::text, `+walStatus+` FROM pg_replication_slots WHERE slot_name = $1`,
		c.cfg.Slot).Scan(&s.slotType, &s.plugin, &s.database, &s.walStatus)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("look up replication slot %q: %w", c.cfg.Slot, err)
	default:
		c.slot = &s
	}
	err = c.conn.QueryRow(ctx, `
		SELECT count(*), ARRAY(SELECT slot_name::text FROM pg_replication_slots WHERE NOT active ORDER BY 1)
		FROM pg_replication_slots`).Scan(&c.slotsInUse, &c.inactiveSlots)
	if err != nil {
		return fmt.Errorf("count replication slots: %w", err)
	}
	return nil
}

func (c *checker) checkServer() {
	if c.walLevel != "logical" {
		fix := "as a superuser run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
		switch c.provider {
		case providerRDS:
			fix = "set rds.logical_replication = 1 in the instance's DB parameter group, then reboot the instance"
		case providerCloudSQL:
			fix = "set the database flag cloudsql.logical_decoding to on (the instance restarts)"
		case providerAzure:
			fix = "set the server parameter wal_level to logical, then restart the server"
		}
		c.add(fmt.Sprintf("wal_level is %q; logical replication needs \"logical\"", c.walLevel), fix)
	}
	if c.walSenders <= 0 {
		c.add("max_wal_senders is 0, so the server accepts no replication connection",
			"as a superuser run ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL")
	}
	if c.slot == nil && c.slotsInUse >= c.maxSlots {
		fix := "raise the limit: as a superuser run ALTER SYSTEM SET max_replication_slots = " +
			strconv.Itoa(c.slotsInUse+1) + "; then restart PostgreSQL"
		if len(c.inactiveSlots) > 0 {
			// Only the operator knows whether an idle slot is abandoned.
			shown := c.inactiveSlots
			if len(shown) > 5 {
				shown = shown[:5]
			}
			fix = "drop a slot nothing uses any more (inactive now: " + strings.Join(shown, ", ") +
				") with SELECT pg_drop_replication_slot('name'); or " + fix
		}
		c.add(fmt.Sprintf("replication slot %q does not exist and cannot be created: all %d slots (max_replication_slots) are taken",
			c.cfg.Slot, c.maxSlots), fix)
	}
}

func (c *checker) checkRole() {
	if c.super || c.replication {
		return
	}
	role := pgx.Identifier{c.role}.Sanitize()
	fix := "as a superuser run ALTER ROLE " + role + " WITH REPLICATION; " +
		"(on a managed service, grant the role it provides for replication instead)"
	switch c.provider {
	case providerRDS:
		fix = "as the master user run GRANT rds_replication TO " + role + ";"
	case providerCloudSQL:
		fix = "as a member of cloudsqlsuperuser run ALTER ROLE " + role + " WITH REPLICATION;"
	case providerAzure:
		fix = "as a member of azure_pg_admin run ALTER ROLE " + role + " WITH REPLICATION;"
	}
	c.add(fmt.Sprintf("role %q may not replicate: it has neither the REPLICATION attribute nor superuser", c.role), fix)
}

func (c *checker) checkTables(ctx context.Context) error {
	for _, t := range c.cfg.Tables {
		schema, name, ok := strings.Cut(t, ".")
		if !ok || schema == "" || name == "" {
			c.add(fmt.Sprintf("table %q is not named as schema.table", t),
				`name it with its schema, e.g. "public.`+t+`"`)
			continue
		}
		ident := pgx.Identifier{schema, name}.Sanitize()
		var (
			kind, persistence, identity, owner string
			hasPK, hasIdentityIndex, owned     bool
		)
		err := c.conn.QueryRow(ctx, `
			SELECT c.relkind::text, c.relpersistence::text, c.relreplident::text,
			       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
			       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
			       pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'USAGE')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`,
			schema, name).Scan(&kind, &persistence, &identity, &hasPK, &hasIdentityIndex, &owner, &owned)
		if errors.Is(err, pgx.ErrNoRows) {
			fix, err := c.missingTableFix(ctx, schema, name, ident)
			if err != nil {
				return err
			}
			c.add(fmt.Sprintf("table %s.%s does not exist", schema, name), fix)
			continue
		}
		if err != nil {
			return fmt.Errorf("look up table %s: %w", t, err)
		}

		switch {
		case kind == "p" && c.version < 130000:
			c.add(fmt.Sprintf("table %s.%s is partitioned, and PostgreSQL before 13 cannot publish a partitioned table", schema, name),
				"map one of its partitions instead, or upgrade to PostgreSQL 13 or later")
			continue
		case kind != "r" && kind != "p":
			c.add(fmt.Sprintf("%s.%s is a %s, not a table: logical replication carries only tables", schema, name, relkindName(kind)),
				"map the table it is based on instead")
			continue
		case persistence != "p":
			c.add(fmt.Sprintf("table %s.%s is unlogged or temporary: its changes never reach the WAL, so there is nothing to replicate", schema, name),
				"as its owner run ALTER TABLE "+ident+" SET LOGGED;")
			continue
		}

		keyFix := "add a primary key (ALTER TABLE " + ident + " ADD PRIMARY KEY (…);), " +
			"or make the whole old row the key: ALTER TABLE " + ident + " REPLICA IDENTITY FULL;"
		// The danger is to the application, not only to the connector.
		const consequence = "once it is in the publication, every UPDATE and DELETE on it fails " +
			"(\"cannot update table … because it does not have a replica identity and publishes updates\")"
		switch {
		case identity == "d" && !hasPK:
			c.add(fmt.Sprintf("table %s.%s has no primary key and REPLICA IDENTITY DEFAULT: %s", schema, name, consequence), keyFix)
		case identity == "n":
			c.add(fmt.Sprintf("table %s.%s has REPLICA IDENTITY NOTHING: %s", schema, name, consequence),
				"as its owner run ALTER TABLE "+ident+" REPLICA IDENTITY DEFAULT; if it has a primary key, or else "+keyFix)
		case identity == "i" && !hasIdentityIndex:
			c.add(fmt.Sprintf("table %s.%s has REPLICA IDENTITY USING INDEX, but that index is gone: %s", schema, name, consequence),
				"point it at a unique index (ALTER TABLE "+ident+" REPLICA IDENTITY USING INDEX …;), or "+keyFix)
		case !hasPK && c.cfg.InitialSnapshot && c.slot == nil:
			// Streaming works through REPLICA IDENTITY FULL; the snapshot,
			// about to run with the new slot, reads in primary-key order.
			c.add(fmt.Sprintf("table %s.%s has no primary key, which the initial snapshot needs to read it in chunks", schema, name),
				"add a primary key (ALTER TABLE "+ident+" ADD PRIMARY KEY (…);), or set postgres.snapshot: never to stream only the changes from now on")
		}
		c.tables = append(c.tables, tableInfo{schema: schema, name: name, owner: owner, owned: owned})
		if err := c.checkColumns(ctx, t, schema, name); err != nil {
			return err
		}
	}
	return nil
}

// checkColumns reports every column the mapping reads from table t that
// the table does not have. Left alone, each change of the table would be
// dead-lettered by the sink (its row lacks the column), or, for a table
// that is never written, nothing would ever say so.
func (c *checker) checkColumns(ctx context.Context, t, schema, name string) error {
	mapped := c.cfg.Columns[t]
	if len(mapped) == 0 {
		return nil
	}
	rows, err := c.conn.Query(ctx, `
		SELECT a.attname::text
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, schema, name)
	if err != nil {
		return fmt.Errorf("list the columns of %s: %w", t, err)
	}
	columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list the columns of %s: %w", t, err)
	}
	cols := make([]string, 0, len(mapped))
	for col := range mapped {
		cols = append(cols, col)
	}
	sort.Strings(cols)
	for _, col := range cols {
		if contains(columns, col) {
			continue
		}
		key := mapped[col]
		fix := "correct " + key + "."
		if near, ok := suggest.Closest(col, columns); ok {
			fix = fmt.Sprintf("correct %s: did you mean %q?", key, near)
		}
		fix += " Column names are matched exactly, case included. The table's columns: " + listColumns(columns)
		c.add(fmt.Sprintf("table %s.%s has no column %q, which %s names: every change of the table would be dead-lettered instead of reaching OneSignal",
			schema, name, col, key), fix)
	}
	return nil
}

// listColumns shows a table's columns, the first 40 of a wide one.
func listColumns(cols []string) string {
	const most = 40
	if len(cols) > most {
		return strings.Join(cols[:most], ", ") + fmt.Sprintf(" and %d more", len(cols)-most)
	}
	return strings.Join(cols, ", ")
}

// missingTableFix names the table exactly as it was looked up, and the
// tables that differ from it only in case or schema: the usual slips.
func (c *checker) missingTableFix(ctx context.Context, schema, name, ident string) (string, error) {
	rows, err := c.conn.Query(ctx, `
		SELECT n.nspname::text || '.' || c.relname::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE lower(c.relname) = lower($1) AND c.relkind IN ('r', 'p')
		ORDER BY 1 LIMIT 5`, name)
	if err != nil {
		return "", fmt.Errorf("look for tables like %s.%s: %w", schema, name, err)
	}
	similar, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("look for tables like %s.%s: %w", schema, name, err)
	}
	fix := fmt.Sprintf("create %s in database %q, or correct the table in the mapping: it is matched exactly, "+
		"schema and case included, and search_path plays no part (unquoted names in SQL are folded to lower case)",
		ident, c.database)
	if len(similar) > 0 {
		fix += "; similar tables: " + strings.Join(similar, ", ")
	}
	return fix, nil
}

func relkindName(kind string) string {
	switch kind {
	case "v":
		return "view"
	case "m":
		return "materialized view"
	case "f":
		return "foreign table"
	case "S":
		return "sequence"
	case "i", "I":
		return "index"
	case "c":
		return "composite type"
	case "t":
		return "TOAST table"
	}
	return "relation of kind " + strconv.Quote(kind)
}

func (c *checker) checkPublication(ctx context.Context) error {
	pub := pgx.Identifier{c.cfg.Publication}.Sanitize()
	names := make([]string, len(c.tables))
	for i, t := range c.tables {
		names[i] = t.schema + "." + t.name
	}
	var pl planner
	v, err := pl.view(ctx, c.conn, c.cfg.Publication, names, c.cfg.Publish)
	if err != nil {
		return err
	}
	if !v.info.exists {
		c.checkCreatePublication(pub, names, v)
		return nil
	}
	var (
		insert, update, del bool
		owner               = v.info.owner
		ownsPub             = v.info.owns
	)
	err = c.conn.QueryRow(ctx, `SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1`,
		c.cfg.Publication).Scan(&insert, &update, &del)
	if err != nil {
		return fmt.Errorf("look up publication %q: %w", c.cfg.Publication, err)
	}

	var missing []string
	for _, a := range []struct {
		on   bool
		name string
	}{{insert, "insert"}, {update, "update"}, {del, "delete"}} {
		if !a.on {
			missing = append(missing, a.name)
		}
	}
	if len(missing) > 0 {
		c.add(fmt.Sprintf("publication %q does not publish %s, so those changes would never reach OneSignal",
			c.cfg.Publication, strings.Join(missing, " or ")),
			"as its owner ("+owner+") run ALTER PUBLICATION "+pub+" SET (publish = 'insert, update, delete');")
	}
	if v.info.all {
		return nil
	}
	for _, t := range c.tables {
		name := t.schema + "." + t.name
		if v.covered[name] || c.super || ownsPub && t.owned {
			continue // covered, or setup adds it
		}
		ident := pgx.Identifier{t.schema, t.name}.Sanitize()
		spec := ident
		if p := v.plans[name]; p != nil {
			spec = p.spec()
		}
		c.add(fmt.Sprintf("publication %q does not cover table %s.%s, and role %q cannot add it: "+
			"that takes a superuser, or the owner of both the publication (%s) and the table (%s)",
			c.cfg.Publication, t.schema, t.name, c.role, owner, t.owner),
			"an admin must run ALTER PUBLICATION "+pub+" ADD TABLE "+spec+";")
	}
	if v.info.version < 150000 {
		return nil
	}
	for _, t := range c.tables {
		name := t.schema + "." + t.name
		p, e := v.plans[name], v.entries[name]
		if p == nil || !e.named || v.mayChange(name) {
			continue // not listed by name (it cannot say more), or setup changes it
		}
		d := compare(p, v.cats[name], e)
		if !d.any() {
			continue
		}
		fix := fmt.Sprintf("as the owner of the publication (%s) and of the table (%s) run %s", owner, t.owner, fixStatement(c.cfg.Publication, []*tablePlan{p}))
		if d.harmful() {
			c.add(d.describe(p, c.cfg.Publication, e), fix)
		} else {
			c.warn(d.describe(p, c.cfg.Publication, e), fix)
		}
	}
	return nil
}

// checkCreatePublication reports when setup could not create the missing
// publication: CREATE PUBLICATION … FOR TABLE takes CREATE on the database
// and ownership of every table.
func (c *checker) checkCreatePublication(pub string, names []string, v *pubView) {
	if len(c.tables) == 0 || c.super {
		return
	}
	var notOwned []string
	for _, t := range c.tables {
		if !t.owned {
			notOwned = append(notOwned, fmt.Sprintf("%s.%s (owned by %s)", t.schema, t.name, t.owner))
		}
	}
	var lacks []string
	if !c.createInDB {
		lacks = append(lacks, fmt.Sprintf("CREATE on database %q", c.database))
	}
	if len(notOwned) > 0 {
		lacks = append(lacks, "ownership of "+strings.Join(notOwned, ", "))
	}
	if len(lacks) == 0 {
		return
	}
	specs := tableList(names)
	if len(v.plans) == len(names) {
		plans := make([]*tablePlan, len(names))
		for i, n := range names {
			plans[i] = v.plans[n]
		}
		specs = specList(plans)
	}
	c.add(fmt.Sprintf("publication %q does not exist, and role %q cannot create it: it lacks %s",
		c.cfg.Publication, c.role, strings.Join(lacks, " and ")),
		"an admin must run CREATE PUBLICATION "+pub+" FOR TABLE "+specs+";")
}

func (c *checker) checkSlot() {
	s := c.slot
	if s == nil {
		return // setup creates it
	}
	drop := "SELECT pg_drop_replication_slot(" + literal(c.cfg.Slot) + ");"
	otherSlot := "set postgres.slot to another name, or, if nothing else uses this slot, drop it: " + drop
	switch {
	case s.slotType != "logical" || s.plugin == nil:
		c.add(fmt.Sprintf("replication slot %q is a %s slot; the connector needs a logical one with plugin pgoutput", c.cfg.Slot, s.slotType), otherSlot)
	case *s.plugin != "pgoutput":
		c.add(fmt.Sprintf("replication slot %q uses plugin %q; the connector needs pgoutput", c.cfg.Slot, *s.plugin), otherSlot)
	case s.database == nil || *s.database != c.database:
		db := ""
		if s.database != nil {
			db = *s.database
		}
		c.add(fmt.Sprintf("replication slot %q belongs to database %q; the connector reads %q", c.cfg.Slot, db, c.database), otherSlot)
	case s.walStatus != nil && *s.walStatus == "lost":
		c.add(fmt.Sprintf("replication slot %q is invalidated (wal_status lost): PostgreSQL removed WAL it still needed, "+
			"so changes made since the connector last confirmed were never captured and may be missing downstream", c.cfg.Slot),
			"drop the slot ("+drop+"), let the connector create a new one, and re-snapshot the tables into OneSignal; "+
				"to keep it from recurring, raise max_slot_wal_keep_size or keep the connector running")
	}
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
