package connector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

// What the publication carries. From PostgreSQL 15 on, a publication can
// list, per table, the columns it publishes and a row filter: only those
// columns are decoded and sent, only the rows the filter keeps. The
// connector asks for the columns the mapping reads plus the primary key
// and the replica identity, and for the mapping's filter where PostgreSQL
// allows it, and where it cannot list columns (PostgreSQL 14, REPLICA
// IDENTITY FULL, a publication FOR ALL TABLES) it leaves the unmapped
// columns out of its events itself. PostgreSQL's rules, which decide this:
//
//   - A column list must cover the replica identity, and a row filter may
//     read only replica-identity columns, or every UPDATE and DELETE on
//     the table fails ("cannot update table …"): the application's, not
//     ours. That is checked when rows change, not when the publication is
//     created, so the connector never asks for anything else.
//   - Under REPLICA IDENTITY FULL, PostgreSQL 15 accepts no column list at
//     all, even one naming every column (checked the same late way); a
//     row filter may read any column.
//   - A row filter is an expression of built-in immutable functions and
//     operators only (SQLSTATE 0A000 otherwise).
//   - With a row filter, an UPDATE whose old row passes and new row does
//     not is sent as a DELETE, the other way round as an INSERT.

// Publish is what the publication should carry of one table, as the
// mapping reads it (transform.Mapping.Publish).
type Publish struct {
	// Columns are the columns the mapping reads; nil: every column. The
	// connector adds the primary key and the replica identity.
	Columns []string
	// RowFilter is a PostgreSQL boolean expression over the table's
	// columns, equivalent to the mapping's filter; "": every row. It is
	// pushed down only when it reads replica-identity columns alone; the
	// transform applies the mapping's filter either way.
	RowFilter string
	// RowFilterFor, when set, writes RowFilter for the table's column
	// types (by name, as format_type writes them), which the connector
	// reads from the catalog: a filter's SQL form means what the mapping
	// means only on the types it was written for.
	RowFilterFor func(types map[string]string) string
}

// tablePlan is what the connector publishes of one table, given the
// table's catalog and what the mapping asks for.
type tablePlan struct {
	schema, name string
	// columns is the publication's column list, in column order; nil: no
	// list (every column).
	columns []string
	// filter is the row filter to publish, as Publish gave it; norm is the
	// same as PostgreSQL writes it back, to compare with the catalog. ""
	// when none is pushed down.
	filter, norm string
	// read are the columns the connector's events carry, and its snapshot
	// reads, in column order: columns, or, where the publication cannot
	// list them, what it would have listed. nil: every column.
	read []string
	// key is the primary key, in column order (nil: none).
	key []string
	// normKey is the planner's key of the filter's normalized form.
	normKey string
	// notes say why the plan carries less than Publish asked for, for the
	// log.
	notes []string
}

func (p *tablePlan) qualified() string { return p.schema + "." + p.name }

func (p *tablePlan) ident() string { return pgx.Identifier{p.schema, p.name}.Sanitize() }

// spec is the plan's entry in CREATE PUBLICATION or ALTER PUBLICATION … ADD
// TABLE: the table, its column list and its row filter.
func (p *tablePlan) spec() string {
	s := p.ident()
	if p.columns != nil {
		s += " (" + identList(p.columns) + ")"
	}
	if p.filter != "" {
		s += " WHERE (" + p.filter + ")"
	}
	return s
}

func identList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// tableCatalog is what the plan needs to know of a table.
type tableCatalog struct {
	oid       uint32
	columns   []string          // live columns, in column order
	generated []string          // generated columns, which logical replication never carries (before PostgreSQL 18)
	key       []string          // the primary key
	identity  string            // relreplident: d(efault), f(ull), i(ndex), n(othing)
	index     []string          // the replica identity index's columns (identity i)
	owned     bool              // the role has the owner's privileges
	signature string            // the columns and their types, which a normalized filter depends on
	types     map[string]string // each column's type, as format_type writes it
}

// identityColumns are the columns of the replica identity: those an old
// row image carries, and the only ones a row filter may read.
func (t *tableCatalog) identityColumns() []string {
	switch t.identity {
	case "f":
		return t.columns
	case "i":
		return t.index
	case "d":
		return t.key
	}
	return nil
}

func loadCatalog(ctx context.Context, conn *pgx.Conn, schema, name string) (*tableCatalog, error) {
	var (
		t     tableCatalog
		types []string
	)
	err := conn.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text, pg_has_role(c.relowner, 'USAGE'),
		       ARRAY(SELECT a.attname::text FROM pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
		       ARRAY(SELECT a.attname::text FROM pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '' ORDER BY a.attnum),
		       ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY a.attnum),
		       ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		             WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY a.attnum),
		       COALESCE((SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ''),
		       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name,
	).Scan(&t.oid, &t.identity, &t.owned, &t.columns, &t.generated, &t.key, &t.index, &t.signature, &types)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the catalog of %s.%s: %w", schema, name, err)
	}
	t.types = make(map[string]string, len(t.columns))
	for i, c := range t.columns {
		if i < len(types) {
			t.types[c] = types[i]
		}
	}
	return &t, nil
}

// where says what a publication can carry: from PostgreSQL 15 on, column
// lists and row filters, unless it publishes the table some other way
// than by name (FOR ALL TABLES, FOR TABLES IN SCHEMA).
type where struct {
	version int    // server_version_num
	wholly  string // why the table is published whole: "" when it is named
}

// planTable decides what to publish of a table with catalog t, given what
// the mapping asks for. filterCols are the columns the row filter reads
// (known false when they cannot be told); norm is the filter as PostgreSQL
// writes it back, "" when PostgreSQL refused it, saying refusal.
func planTable(schema, name string, t *tableCatalog, want Publish, w where, filterCols []string, known bool, norm, refusal string) tablePlan {
	p := tablePlan{schema: schema, name: name, key: t.key}
	if want.Columns != nil {
		need := map[string]bool{}
		for _, c := range want.Columns {
			need[c] = true
		}
		for _, c := range t.key {
			need[c] = true
		}
		if t.identity != "f" {
			for _, c := range t.identityColumns() {
				need[c] = true
			}
		}
		p.read = []string{}
		for _, c := range t.columns {
			if need[c] && !slices.Contains(t.generated, c) {
				p.read = append(p.read, c)
			}
		}
		switch {
		case w.version < 150000:
			p.notes = append(p.notes, "PostgreSQL before 15 publishes every column (no column lists): the connector leaves the columns the mapping does not read out of its events")
		case w.wholly != "":
			p.notes = append(p.notes, w.wholly+", which cannot list columns: the connector leaves the columns the mapping does not read out of its events")
		case t.identity == "f":
			p.notes = append(p.notes, "the table has REPLICA IDENTITY FULL, and PostgreSQL 15 refuses every UPDATE and DELETE of a table whose publication lists columns under it, even all of them: "+
				"the publication carries every column, and the connector leaves the columns the mapping does not read out of its events")
		default:
			p.columns = p.read
		}
	}
	if want.RowFilter == "" {
		return p
	}
	identity := t.identityColumns()
	var outside []string
	for _, c := range filterCols {
		if !slices.Contains(identity, c) {
			outside = append(outside, c)
		}
	}
	const instead = ": the transform applies the mapping's filter instead"
	switch {
	case w.version < 150000:
		p.notes = append(p.notes, "PostgreSQL before 15 has no row filters"+instead)
	case w.wholly != "":
		p.notes = append(p.notes, w.wholly+", which cannot filter rows"+instead)
	case !known:
		p.notes = append(p.notes, fmt.Sprintf("cannot tell which columns the filter's SQL form (%s) reads, so it is not pushed down into the publication"+instead, want.RowFilter))
	case len(outside) > 0:
		p.notes = append(p.notes, fmt.Sprintf("the filter reads %s, which the replica identity (%s) does not hold; PostgreSQL would refuse every UPDATE and DELETE of the table with such a row filter, so it is not pushed down"+instead,
			quotedList(outside), identityName(t)))
	case norm == "":
		p.notes = append(p.notes, fmt.Sprintf("PostgreSQL does not accept the filter's SQL form (%s) for this table (%s), so it is not pushed down"+instead, want.RowFilter, refusal))
	default:
		p.filter, p.norm = want.RowFilter, norm
	}
	return p
}

func identityName(t *tableCatalog) string {
	switch t.identity {
	case "d":
		if len(t.key) == 0 {
			return "DEFAULT, without a primary key: none"
		}
		return "DEFAULT: the primary key " + quotedList(t.key)
	case "i":
		return "USING INDEX: " + quotedList(t.index)
	case "f":
		return "FULL"
	}
	return "NOTHING"
}

func quotedList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = fmt.Sprintf("%q", c)
	}
	return strings.Join(q, ", ")
}

// planner computes tables' plans, keeping what PostgreSQL said of each
// row filter so that a plan made every heartbeat costs no DDL.
type planner struct {
	mu    sync.Mutex
	norms map[string]normalized // by table, filter and column signature
}

// normalized is a row filter as PostgreSQL writes it back, or why it
// refused it.
type normalized struct{ norm, refusal string }

// plan returns the plan of table ("schema.table"), nil when it does not
// exist.
func (pl *planner) plan(ctx context.Context, conn *pgx.Conn, table string, want Publish, w where) (*tablePlan, *tableCatalog, error) {
	schema, name, _ := strings.Cut(table, ".")
	cat, err := loadCatalog(ctx, conn, schema, name)
	if err != nil || cat == nil {
		return nil, nil, err
	}
	var (
		cols  []string
		known bool
		n     normalized
	)
	if want.RowFilterFor != nil {
		want.RowFilter = want.RowFilterFor(cat.types)
	}
	if want.RowFilter != "" && w.version >= 150000 && w.wholly == "" {
		cols, known = filterColumns(want.RowFilter)
		if n, err = pl.normalize(ctx, conn, cat, schema, name, want.RowFilter); err != nil {
			return nil, nil, err
		}
	}
	p := planTable(schema, name, cat, want, w, cols, known, n.norm, n.refusal)
	p.normKey = normKey(schema, name, want.RowFilter, cat)
	return &p, cat, nil
}

// normalize returns filter as PostgreSQL writes a row filter back
// (pg_get_expr), or why PostgreSQL does not accept it for the table: it
// is parsed as a CHECK constraint of a temporary copy of the table, in a
// transaction rolled back at once (which takes the TEMPORARY privilege on
// the database and SELECT on the table; without them, the filter is not
// pushed down).
func (pl *planner) normalize(ctx context.Context, conn *pgx.Conn, t *tableCatalog, schema, name, filter string) (normalized, error) {
	key := normKey(schema, name, filter, t)
	pl.mu.Lock()
	n, ok := pl.norms[key]
	pl.mu.Unlock()
	if ok {
		return n, nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return n, fmt.Errorf("check the row filter of %s.%s: %w", schema, name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a rollback that fails leaves nothing behind either
	err = execOne(ctx, tx.Conn(), `CREATE TEMPORARY TABLE onesignal_cdc_row_filter (LIKE `+pgx.Identifier{schema, name}.Sanitize()+`) ON COMMIT DROP`)
	if err == nil {
		err = execOne(ctx, tx.Conn(), `ALTER TABLE pg_temp.onesignal_cdc_row_filter ADD CONSTRAINT row_filter CHECK (`+filter+`) NOT VALID`)
	}
	if err == nil {
		err = tx.QueryRow(ctx, `SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint WHERE conrelid = 'pg_temp.onesignal_cdc_row_filter'::regclass AND conname = 'row_filter'`).Scan(&n.norm)
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && postgresClass(err) != errclass.Retryable:
		// A syntax error, a column it lacks, a type mismatch, a privilege.
		n = normalized{refusal: pgErr.Message}
	case err != nil:
		return n, fmt.Errorf("check the row filter of %s.%s: %w", schema, name, err)
	}
	pl.mu.Lock()
	if pl.norms == nil {
		pl.norms = map[string]normalized{}
	}
	pl.norms[key] = n
	pl.mu.Unlock()
	return n, nil
}

func normKey(schema, name, filter string, t *tableCatalog) string {
	return schema + "." + name + "\x00" + filter + "\x00" + t.signature
}

// refuse remembers that PostgreSQL refused p's row filter, saying why.
func (pl *planner) refuse(p *tablePlan, why string) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.norms == nil {
		pl.norms = map[string]normalized{}
	}
	pl.norms[p.normKey] = normalized{refusal: why}
}

// execOne runs one statement through the extended protocol, which refuses
// a string holding several: a filter's text can never smuggle in another.
func execOne(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
	return err
}

// published is a table's entry in the publication, as the catalog has it.
type published struct {
	named   bool     // listed by name (pg_publication_rel), not through FOR ALL TABLES or its schema
	columns []string // the column list, in column order; nil: none
	filter  string   // the row filter as pg_get_expr writes it; "": none
}

// difference is how a table's entry in the publication differs from its
// plan.
type difference struct {
	missing []string // columns the plan needs that the list leaves out
	extra   []string // columns the list carries that the plan does not (all of them: the entry has no list)
	// fullList: the entry lists columns of a REPLICA IDENTITY FULL table,
	// so PostgreSQL refuses its UPDATEs and DELETEs.
	fullList bool
	// filter: the entry's row filter is not the plan's; looser: only in
	// that the plan's is missing.
	filter, looser bool
	// badFilter: the entry's row filter reads columns outside the replica
	// identity (or ones that cannot be told), so PostgreSQL refuses the
	// table's UPDATEs and DELETEs.
	badFilter []string
}

func (d difference) any() bool {
	return len(d.missing) > 0 || len(d.extra) > 0 || d.fullList || d.filter
}

// harmful reports whether the difference loses changes or breaks the
// application's writes, rather than only decoding more than needed.
func (d difference) harmful() bool {
	return len(d.missing) > 0 || d.fullList || (d.filter && !d.looser) || len(d.badFilter) > 0
}

func compare(p *tablePlan, t *tableCatalog, e published) difference {
	var d difference
	d.fullList = e.columns != nil && t.identity == "f"
	have := e.columns
	if have == nil {
		have = t.columns
	}
	for _, c := range p.readOrAll(t) {
		if !slices.Contains(have, c) && !slices.Contains(t.generated, c) {
			d.missing = append(d.missing, c)
		}
	}
	if p.columns != nil {
		for _, c := range have {
			if !slices.Contains(p.columns, c) && !slices.Contains(t.generated, c) {
				d.extra = append(d.extra, c)
			}
		}
	}
	if e.filter != p.norm {
		d.filter = true
		d.looser = e.filter == ""
	}
	if cols, known := filterColumns(e.filter); e.filter != "" && known {
		for _, c := range cols {
			if !slices.Contains(t.identityColumns(), c) {
				d.badFilter = append(d.badFilter, c)
			}
		}
	}
	return d
}

// readOrAll is the columns the connector reads of the table.
func (p *tablePlan) readOrAll(t *tableCatalog) []string {
	if p.read != nil {
		return p.read
	}
	return t.columns
}

// fixStatement is the SQL that gives the tables of plans their planned
// entries in publication pub, touching no other table: ALTER PUBLICATION
// … SET TABLE would have to name every table of the publication.
func fixStatement(pub string, plans []*tablePlan) string {
	idents, specs := make([]string, len(plans)), make([]string, len(plans))
	for i, p := range plans {
		idents[i], specs[i] = p.ident(), p.spec()
	}
	q := pgx.Identifier{pub}.Sanitize()
	return "BEGIN; ALTER PUBLICATION " + q + " DROP TABLE " + strings.Join(idents, ", ") +
		"; ALTER PUBLICATION " + q + " ADD TABLE " + strings.Join(specs, ", ") + "; COMMIT;"
}

// describe says in words how entry differs from the plan.
func (d difference) describe(p *tablePlan, pub string, e published) string {
	var parts []string
	if len(d.missing) > 0 {
		parts = append(parts, fmt.Sprintf("its column list leaves out %s, which the connector needs (the columns the mapping reads, the primary key and the replica identity): "+
			"events would lack them, and PostgreSQL refuses UPDATE and DELETE of the table when the list leaves out a replica-identity column", quotedList(d.missing)))
	}
	if d.fullList {
		parts = append(parts, "it lists columns of a table with REPLICA IDENTITY FULL, so PostgreSQL 15 refuses every UPDATE and DELETE of the table")
	}
	if len(d.extra) > 0 {
		if e.columns == nil {
			parts = append(parts, "it publishes every column, where the connector needs only "+quotedList(p.columns)+": PostgreSQL decodes the others for nothing (the connector leaves them out of its events)")
		} else {
			parts = append(parts, "it publishes "+quotedList(d.extra)+", which the mapping does not read: PostgreSQL decodes them for nothing (the connector leaves them out of its events)")
		}
	}
	if len(d.badFilter) > 0 {
		parts = append(parts, fmt.Sprintf("its row filter (%s) reads columns outside the replica identity, so PostgreSQL refuses every UPDATE and DELETE of the table", e.filter))
	}
	switch {
	case d.filter && d.looser:
		parts = append(parts, fmt.Sprintf("it publishes every row, where the mapping's filter could leave out, in PostgreSQL, the rows it drops (%s)", p.filter))
	case d.filter && p.norm == "":
		parts = append(parts, fmt.Sprintf("it publishes only the rows where %s, and the mapping needs every row: the others never reach OneSignal", e.filter))
	case d.filter:
		parts = append(parts, fmt.Sprintf("it publishes only the rows where %s, and the mapping needs those where %s: rows between the two never reach OneSignal", e.filter, p.norm))
	}
	return fmt.Sprintf("publication %q differs from what the connector needs of table %s: %s", pub, p.qualified(), strings.Join(parts, "; "))
}

// filterColumns returns the columns a row filter's SQL reads, lower-cased
// where unquoted, as PostgreSQL folds them. known is false when the text
// holds something this reading does not follow (a qualified name, a
// parameter, an escape-string literal): the caller then assumes the worst.
// A word that is neither a keyword, a function's name nor a type's is
// taken for a column, so unknown words err on the side of "reads a
// column".
func filterColumns(sql string) (cols []string, known bool) {
	add := func(c string) {
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	typeNext := false // after ::, AS or COLLATE: a type's or a collation's name
	for i := 0; i < len(sql); {
		ch := sql[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '\'':
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], '\'')
				if k < 0 {
					return nil, false
				}
				j += k + 1
				if j < len(sql) && sql[j] == '\'' {
					j++
					continue
				}
				break
			}
			i = j
		case ch == '"':
			var b strings.Builder
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], '"')
				if k < 0 {
					return nil, false
				}
				b.WriteString(sql[j : j+k])
				j += k + 1
				if j < len(sql) && sql[j] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				break
			}
			i = j
			next := nextByte(sql, i)
			switch {
			case next == '.':
				return nil, false // a qualified name
			case typeNext:
				typeNext = false
			case next != '(':
				add(b.String())
			}
		case ch >= '0' && ch <= '9':
			for i < len(sql) && (isWordByte(sql[i]) || sql[i] == '.') {
				i++
			}
		case isWordStart(ch):
			j := i
			for j < len(sql) && (isWordByte(sql[j]) || sql[j] == '$') {
				j++
			}
			word := strings.ToLower(sql[i:j])
			i = j
			if i < len(sql) && sql[i] == '\'' {
				return nil, false // E'…', B'…', a typed literal: not followed here
			}
			next := nextByte(sql, i)
			switch {
			case next == '.':
				return nil, false
			case typeNext:
				typeNext = false
				for { // timestamp with time zone, double precision, character varying
					k := i
					for k < len(sql) && sql[k] == ' ' {
						k++
					}
					e := k
					for e < len(sql) && isWordByte(sql[e]) {
						e++
					}
					if w := strings.ToLower(sql[k:e]); e > k && typeWords[w] {
						i = e
						continue
					}
					break
				}
			case word == "collate":
				typeNext = true // a collation's name follows, not a column
			case word == "operator":
				return nil, false
			case word == "as":
				typeNext = true
			case next == '(' || keywords[word]:
			default:
				add(word)
			}
		case ch == ':' && i+1 < len(sql) && sql[i+1] == ':':
			typeNext = true
			i += 2
		case ch == '$':
			return nil, false
		case strings.IndexByte("=<>!~+-*/%^|&#@,()[]", ch) >= 0:
			i++
		default:
			return nil, false
		}
	}
	return cols, true
}

func nextByte(s string, i int) byte {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isWordStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isWordByte(c byte) bool { return isWordStart(c) || c >= '0' && c <= '9' }

// keywords are the words of a boolean expression that name no column.
var keywords = map[string]bool{
	"and": true, "or": true, "not": true, "is": true, "null": true, "true": true, "false": true,
	"unknown": true, "in": true, "any": true, "some": true, "all": true, "array": true,
	"like": true, "ilike": true, "similar": true, "to": true, "escape": true, "between": true,
	"symmetric": true, "distinct": true, "from": true, "isnull": true, "notnull": true,
	"case": true, "when": true, "then": true, "else": true, "end": true,
}

// typeWords continue a type's name after its first word.
var typeWords = map[string]bool{
	"with": true, "without": true, "time": true, "zone": true, "precision": true, "varying": true,
}

// pubInfo is what the catalog says of the publication and the role.
type pubInfo struct {
	version int  // server_version_num
	super   bool // the role is a superuser
	exists  bool
	all     bool   // FOR ALL TABLES
	owner   string // its owner
	owns    bool   // the role has the owner's privileges
}

func lookupPublication(ctx context.Context, conn *pgx.Conn, pub string) (pubInfo, error) {
	var (
		info  pubInfo
		all   *bool
		owner *string
		owns  *bool
	)
	err := conn.QueryRow(ctx, `
		SELECT current_setting('server_version_num')::int,
		       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
		       p.puballtables, pg_get_userbyid(p.pubowner)::text, pg_has_role(p.pubowner, 'USAGE')
		FROM (SELECT 1) AS one LEFT JOIN pg_publication p ON p.pubname = $1`, pub,
	).Scan(&info.version, &info.super, &all, &owner, &owns)
	if err != nil {
		return info, fmt.Errorf("look up publication %q: %w", pub, err)
	}
	if all != nil {
		info.exists, info.all, info.owner, info.owns = true, *all, *owner, *owns
	}
	return info, nil
}

// coveredTables are the tables the publication publishes, by name,
// through their schema or as all tables: "schema.table".
func coveredTables(ctx context.Context, conn *pgx.Conn, pub string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", pub, err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", pub, err)
	}
	out := make(map[string]bool, len(have))
	for _, t := range have {
		out[t] = true
	}
	return out, nil
}

// namedEntries reads the entries of the tables publication pub lists by
// name, with their column lists and row filters (PostgreSQL 15 on), by
// "schema.table".
func namedEntries(ctx context.Context, conn *pgx.Conn, pub string) (map[string]published, error) {
	rows, err := conn.Query(ctx, `
		SELECT n.nspname::text || '.' || c.relname::text, pr.prattrs IS NOT NULL,
		       ARRAY(SELECT a.attname::text FROM pg_attribute a
		             WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[]) ORDER BY a.attnum),
		       COALESCE(pg_get_expr(pr.prqual, pr.prrelid), '')
		FROM pg_publication_rel pr
		JOIN pg_publication p ON p.oid = pr.prpubid
		JOIN pg_class c ON c.oid = pr.prrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1`, pub)
	if err != nil {
		return nil, fmt.Errorf("read the column lists and row filters of publication %q: %w", pub, err)
	}
	out := map[string]published{}
	for rows.Next() {
		var (
			table   string
			hasList bool
			e       published
		)
		if err := rows.Scan(&table, &hasList, &e.columns, &e.filter); err != nil {
			return nil, fmt.Errorf("read the column lists and row filters of publication %q: %w", pub, err)
		}
		if !hasList {
			e.columns = nil
		}
		e.named = true
		out[table] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the column lists and row filters of publication %q: %w", pub, err)
	}
	return out, nil
}

// pubView is the publication as the catalog has it, with the plan of each
// mapped table that exists.
type pubView struct {
	info    pubInfo
	covered map[string]bool      // tables it publishes
	entries map[string]published // tables it names, with their lists and filters
	plans   map[string]*tablePlan
	cats    map[string]*tableCatalog
}

// view reads the publication and plans every table of tables.
func (pl *planner) view(ctx context.Context, conn *pgx.Conn, pub string, tables []string, want map[string]Publish) (*pubView, error) {
	info, err := lookupPublication(ctx, conn, pub)
	if err != nil {
		return nil, err
	}
	v := &pubView{info: info, covered: map[string]bool{}, entries: map[string]published{}, plans: map[string]*tablePlan{}, cats: map[string]*tableCatalog{}}
	if info.exists && !info.all {
		if v.covered, err = coveredTables(ctx, conn, pub); err != nil {
			return nil, err
		}
		if info.version >= 150000 {
			if v.entries, err = namedEntries(ctx, conn, pub); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range tables {
		w := where{version: info.version}
		switch {
		case info.all:
			w.wholly = fmt.Sprintf("publication %q is FOR ALL TABLES", pub)
		case v.covered[t] && !v.entries[t].named && info.version >= 150000:
			w.wholly = fmt.Sprintf("publication %q publishes the table through FOR TABLES IN SCHEMA", pub)
		}
		p, cat, err := pl.plan(ctx, conn, t, want[t], w)
		if err != nil {
			return nil, err
		}
		if p != nil {
			v.plans[t], v.cats[t] = p, cat
		}
	}
	return v, nil
}

// mayChange reports whether the role may change table's entry: ALTER
// PUBLICATION takes the publication's owner, and ADD TABLE the table's.
func (v *pubView) mayChange(table string) bool {
	return v.info.super || v.info.owns && v.cats[table] != nil && v.cats[table].owned
}

// ensurePublication creates the publication when it is missing, adds the
// mapped tables it lacks, and gives the mapped tables' entries the column
// lists and row filters of their plans where the role may change them.
// Tables other than the mapped ones are never touched. Called at setup and
// every heartbeat (a table dropped and created again left the
// publication), so it does nothing when nothing differs.
func (c *Connector) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	pub := c.cfg.Publication
	qpub := pgx.Identifier{pub}.Sanitize()
	v, err := c.planner.view(ctx, conn, pub, c.cfg.Tables, c.cfg.Publish)
	if err != nil {
		return err
	}
	c.usePlans(v.plans)
	var ordered []*tablePlan // in the order of Tables
	for _, t := range c.cfg.Tables {
		if p := v.plans[t]; p != nil {
			ordered = append(ordered, p)
		}
	}
	if !v.info.exists {
		if len(ordered) == 0 {
			return nil // no mapped table exists; Inspect says so
		}
		var sql string
		err := c.dropRefusedFilters(ordered, func() error {
			sql = "CREATE PUBLICATION " + qpub + " FOR TABLE " + specList(ordered)
			return execOne(ctx, conn, sql)
		})
		if err != nil {
			return fatal(fmt.Errorf("create publication %q: %w (create it yourself as a superuser or the tables' owner: %s;)", pub, err, sql))
		}
		c.log.Info("created publication", zap.String("publication", pub), zap.String("statement", sql))
		c.usePlans(v.plans)
		return nil
	}
	if v.info.all {
		return nil
	}
	var missing, changed []*tablePlan
	for _, p := range ordered {
		t := p.qualified()
		if !v.covered[t] {
			missing = append(missing, p)
			continue
		}
		e := v.entries[t]
		if !e.named || v.info.version < 150000 || !compare(p, v.cats[t], e).any() || !v.mayChange(t) {
			continue
		}
		if c.stuck[t] == stuckKey(p, e) {
			continue // changed so before, and the catalog still said this: again would not help
		}
		changed = append(changed, p)
	}
	if len(missing) > 0 {
		var sql string
		err := c.dropRefusedFilters(missing, func() error {
			sql = "ALTER PUBLICATION " + qpub + " ADD TABLE " + specList(missing)
			return execOne(ctx, conn, sql)
		})
		if err != nil {
			return fatal(fmt.Errorf("add tables to publication %q: %w (run as the tables' owner: %s;)", pub, err, sql))
		}
		names := make([]string, len(missing))
		for i, p := range missing {
			names[i] = p.qualified()
		}
		// At start this is set-up; while streaming it means a mapped table was
		// dropped and created again, and rows written to it before now were not
		// published.
		c.log.Warn("added tables to the publication; rows they received while outside it were not streamed",
			zap.String("publication", pub), zap.Strings("tables", names), zap.String("statement", sql))
	}
	if len(changed) > 0 {
		var sql string
		err := c.dropRefusedFilters(changed, func() error {
			sql = fixStatement(pub, changed)
			return changeEntries(ctx, conn, qpub, changed)
		})
		if err != nil {
			return fatal(fmt.Errorf("change the column lists and row filters of publication %q: %w (run as the owner of the publication and of the tables: %s)", pub, err, sql))
		}
		now, err := namedEntries(ctx, conn, pub)
		if err != nil {
			return err
		}
		for _, p := range changed {
			t := p.qualified()
			was := v.entries[t]
			if e := now[t]; compare(p, v.cats[t], e).any() {
				c.stuck[t] = stuckKey(p, e)
				c.log.Warn("the publication's entry of a mapped table still differs from what the connector set; leaving it as it is",
					zap.String("publication", pub), zap.String("table", t), zap.String("set", p.spec()),
					zap.Strings("columns", orAll(e.columns)), zap.String("row_filter", e.filter))
			}
			c.log.Info("changed the publication's column list and row filter of a mapped table",
				zap.String("publication", pub), zap.String("table", t),
				zap.Strings("columns_were", orAll(was.columns)), zap.Strings("columns", orAll(p.columns)),
				zap.String("row_filter_was", was.filter), zap.String("row_filter", p.filter))
		}
	}
	c.usePlans(v.plans)
	return nil
}

// changeEntries gives the tables of plans their planned entries, in one
// transaction: a table is dropped from the publication and added back
// with its list and filter, and changes committed after the transaction
// are published the new way, those before the old way, none not at all.
func changeEntries(ctx context.Context, conn *pgx.Conn, qpub string, plans []*tablePlan) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after a commit there is nothing to roll back
	idents := make([]string, len(plans))
	for i, p := range plans {
		idents[i] = p.ident()
	}
	if err := execOne(ctx, tx.Conn(), "ALTER PUBLICATION "+qpub+" DROP TABLE "+strings.Join(idents, ", ")); err != nil {
		return err
	}
	if err := execOne(ctx, tx.Conn(), "ALTER PUBLICATION "+qpub+" ADD TABLE "+specList(plans)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// stuckKey names a plan and the entry the catalog showed after the
// connector gave the table that plan.
func stuckKey(p *tablePlan, e published) string {
	return p.spec() + "\x00" + strings.Join(e.columns, "\x00") + "\x00" + e.filter
}

func specList(plans []*tablePlan) string {
	specs := make([]string, len(plans))
	for i, p := range plans {
		specs[i] = p.spec()
	}
	return strings.Join(specs, ", ")
}

func orAll(cols []string) []string {
	if cols == nil {
		return []string{"(every column)"}
	}
	return cols
}

// dropRefusedFilters runs run, and when PostgreSQL refuses a row filter
// (SQLSTATE 0A000: a function or operator a row filter may not use, such
// as a mutable one) runs it again without the plans' row filters, which
// the transform applies anyway; the planner remembers the refusal.
func (c *Connector) dropRefusedFilters(plans []*tablePlan, run func() error) error {
	err := run()
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		return err
	}
	var filtered []string
	for _, p := range plans {
		if p.filter != "" {
			filtered = append(filtered, p.qualified())
			c.planner.refuse(p, pgErr.Message)
			p.notes = append(p.notes, fmt.Sprintf("PostgreSQL refused the filter's SQL form (%s) as a row filter (%s), so it is not pushed down: the transform applies the mapping's filter instead", p.filter, pgErr.Message))
			p.filter, p.norm = "", ""
		}
	}
	if len(filtered) == 0 {
		return err
	}
	c.log.Warn("PostgreSQL refused a row filter; publishing every row of these tables, which the transform filters",
		zap.Strings("tables", filtered), zap.Error(err))
	return run()
}

// usePlans makes plans the ones the snapshot and the decoder follow, and
// logs what each carries less than the mapping asked for, when that
// changed.
func (c *Connector) usePlans(plans map[string]*tablePlan) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.plans = plans
	for t, p := range plans {
		notes := strings.Join(p.notes, "\n")
		if c.notes[t] == notes {
			continue
		}
		c.notes[t] = notes
		for _, n := range p.notes {
			c.log.Info("publication: "+n, zap.String("publication", c.cfg.Publication), zap.String("table", t))
		}
	}
}

// plan returns table's current plan, nil when it has none (a table that
// does not exist, or a connector that never looked).
func (c *Connector) plan(table string) *tablePlan {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	return c.plans[table]
}

// readColumns are the columns the events of table carry: nil, every one.
func (c *Connector) readColumns(table string) []string {
	if p := c.plan(table); p != nil {
		return p.read
	}
	return nil
}
