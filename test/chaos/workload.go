package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schema is the source tables, shaped like a CRM's: users keyed by a
// surrogate key, the external id in a column of its own, quoted
// mixed-case column names; devices keyed by (contact, device), naming
// their owner by external id through a foreign key that follows the
// user's id changes (ON UPDATE CASCADE) and unlinks the devices of a
// deleted user (ON DELETE SET NULL). So one OneSignal user is fed by
// whichever row holds its external id at the moment, and a device moves
// by a change of its key as well as of its owner column. "Bio" is stored
// out of line and uncompressed (STORAGE EXTERNAL), so any value over about
// 2 kB is a TOAST value, and an update that leaves it alone sends it as
// "unchanged".
//
// Both tables keep REPLICA IDENTITY DEFAULT: a delete carries only the
// primary key, and the sink finds the row's targets in its row index (it
// saw every row, in the initial snapshot or in an event since). No table
// needs FULL.
//
// device_id is UNIQUE: a device is one OneSignal target, and two rows that
// named it would leave it to the row changed last, which the final rows
// cannot tell; with one row per device the expected owner is a function of
// the rows.
const schema = `
CREATE TABLE users (
	"Contact ID"   bigint PRIMARY KEY,
	"External Id"  text UNIQUE,
	"Plan"         text,
	"Score"        int,
	"Country Code" text,
	"Bio"          text,
	email          text
);
ALTER TABLE users ALTER COLUMN "Bio" SET STORAGE EXTERNAL;
CREATE TABLE devices (
	contact_id bigint NOT NULL,
	device_id  text NOT NULL UNIQUE,
	ext_id     text REFERENCES users ("External Id") ON UPDATE CASCADE ON DELETE SET NULL,
	PRIMARY KEY (contact_id, device_id)
);
CREATE INDEX devices_ext_id ON devices (ext_id);
`

// userColumns are the users table's columns the workload writes, in the
// order of its INSERTs.
const userColumns = `"Contact ID", "External Id", "Plan", "Score", "Country Code", "Bio", email`

// workload writes to the source tables from one connection, a
// transaction at a time, and records in the ledger every transaction whose
// COMMIT the server acknowledged. Its picture of the tables follows every
// statement as it is drawn, so the next statement of a transaction sees
// what the earlier ones did; an undo log takes back what a rolled-back
// savepoint, an aborted or a failed transaction did, and a commit whose
// outcome is unknown (the connection broke) makes it read the tables
// again. The row changes a transaction counts are those the statements
// report plus those their foreign keys' actions make (counted in the
// transaction just before), so the ledger stays exact.
type workload struct {
	rng     *rand.Rand
	dsn     string
	ledger  *ledger
	elapsed func() time.Duration
	pace    time.Duration // the longest pause between transactions
	pool    []string      // the device pool, seeded in the emulator

	// what the workload believes the tables hold
	users       map[int64]contact
	live        idSet[int64]     // contact ids with a row
	byExt       map[string]int64 // external id → the contact id holding it
	gone        idSet[string]    // external ids that no row holds now
	devices     map[string]deviceRow
	free        idSet[string] // devices of the pool without a row
	linked      idSet[string] // devices with a row
	undo        []func()
	resync      bool // the picture may be wrong: read the tables again
	nextContact int64
	nextExt     int
	nextEmail   int
	tier        bool // users.tier exists
	platform    bool // devices.platform exists

	mu          sync.Mutex
	ever        map[string]bool // every external id ever written, for the final comparison
	bigDone     int
	toastWrites int
	schemaDone  int
	attempts    int            // transactions begun
	unknown     int            // commits whose outcome is unknown (the connection broke)
	aborted     int            // transactions rolled back on purpose
	kinds       map[string]int // committed statements by kind (see kindNames)
	failed      []string
}

func newWorkload(seed uint64, dsn string, l *ledger, elapsed func() time.Duration, pool []string, pace time.Duration) *workload {
	w := &workload{
		rng: rand.New(rand.NewPCG(seed, 0x776f726b)), dsn: dsn, ledger: l, elapsed: elapsed, pace: pace, pool: pool,
		users: map[int64]contact{}, byExt: map[string]int64{}, devices: map[string]deviceRow{},
		ever: map[string]bool{}, kinds: map[string]int{},
	}
	for _, d := range pool {
		w.free.add(d)
	}
	return w
}

// External ids, emails and contact ids. External ids take the shapes that
// break naive clients: a slash, a percent sign, a question mark and a
// hash, spaces, non-ASCII letters and emoji, and 120 characters.
func (w *workload) newExternalID() string {
	w.nextExt++
	n := w.nextExt
	var id string
	switch n % 10 {
	case 0:
		id = fmt.Sprintf("team/ops-%d", n)
	case 1:
		id = fmt.Sprintf("pct%%20-%d", n)
	case 2:
		id = fmt.Sprintf("q?x=%d&y=#z", n)
	case 3:
		id = fmt.Sprintf("Müller %d", n)
	case 4:
		id = fmt.Sprintf("Zoë 🚀 %d", n)
	case 5:
		suffix := "-" + strconv.Itoa(n)
		id = strings.Repeat("long", 30)[:120-len(suffix)] + suffix
	default:
		id = fmt.Sprintf("u-%d", n)
	}
	w.mu.Lock()
	w.ever[id] = true
	w.mu.Unlock()
	return id
}

func (w *workload) newEmail() string {
	w.nextEmail++
	return fmt.Sprintf("user+%d@example.com", w.nextEmail)
}

func (w *workload) newContactID() int64 {
	w.nextContact++
	return w.nextContact*10 + int64(w.rng.IntN(10)) // not dense: a key change lands anywhere
}

// seed inserts the initial users, and links a third of the device pool to
// them, before the connector starts: its initial snapshot reads them while
// the workload updates them. A TOAST bio among them reaches Kafka only
// through the snapshot, since the updates that leave it alone carry it as
// unchanged.
func (w *workload) seed(ctx context.Context, conn *pgx.Conn, users int) error {
	batch := &pgx.Batch{}
	for range users {
		id, c := w.newContactID(), contact{ext: w.newExternalID(), email: w.maybeEmail()}
		bio := w.bio()
		c.toast = isTOAST(bio)
		batch.Queue(`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, c.ext, w.plan(), w.rng.IntN(1000), w.country(), bio, nullable(c.email))
		w.setUser(id, c, true)
	}
	for range len(w.pool) / 3 {
		if w.free.len() == 0 || w.live.len() == 0 {
			break
		}
		dev, owner := w.free.random(w.rng), w.live.random(w.rng)
		d := deviceRow{contact: owner, ext: w.users[owner].ext}
		batch.Queue(`INSERT INTO devices (contact_id, device_id, ext_id) VALUES ($1, $2, $3)`, d.contact, dev, nullable(d.ext))
		w.setDevice(dev, d, true)
	}
	return conn.SendBatch(ctx, batch).Close()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// statement is one SQL statement of a transaction. Drawing it changed the
// workload's picture already.
type statement struct {
	sql  string
	args []any
	what string
	kind string // counts it in the report, once committed
	// cascade, when set, counts the rows the statement's foreign key
	// actions will change; it runs just before the statement.
	cascade     string
	cascadeArgs []any
	// rolledBack, when set, makes the statement a savepoint rolled back:
	// these statements run inside it and change nothing.
	rolledBack []statement
}

// The kinds of statements the report counts.
const (
	kindInsertUser      = "users inserted"
	kindReinsertUser    = "users inserted again under a deleted external id"
	kindDeleteUser      = "users deleted"
	kindContactID       = "primary-key changes of users"
	kindExternalID      = "external-id changes"
	kindLinkDevice      = "devices linked"
	kindMoveByOwner     = "devices moved by their owner column"
	kindMoveByKey       = "devices moved by a change of their composite key"
	kindLogout          = "devices logged out"
	kindDeleteDevice    = "devices deleted"
	kindDeleteReinsert  = "rows deleted and inserted again in one transaction"
	kindSavepoint       = "savepoints rolled back"
	kindUpdateUser      = "updates of users' tags and emails"
	kindUpdateManyUsers = "updates of 10 to 60 users in one statement"
)

// kindNames lists the kinds in the order the report shows them.
var kindNames = []string{
	kindInsertUser, kindReinsertUser, kindUpdateUser, kindUpdateManyUsers, kindDeleteUser, kindContactID, kindExternalID,
	kindLinkDevice, kindMoveByOwner, kindMoveByKey, kindLogout, kindDeleteDevice, kindDeleteReinsert, kindSavepoint,
}

// run writes transactions until ctx ends. bigAt are the moments (from
// the start of the run) of the big transactions; schemaAt that of the
// schema change.
func (w *workload) run(ctx context.Context, bigAt []time.Duration, schemaAt time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := connect(ctx, w.dsn)
			if err != nil {
				w.wait(ctx, 200*time.Millisecond) // PostgreSQL is restarting
				continue
			}
			conn = c
		}
		var err error
		switch {
		case w.resync:
			if err = w.reload(ctx, conn); err == nil {
				w.resync = false
			}
		case !w.tier && w.elapsed() >= schemaAt:
			err = w.changeSchema(ctx, conn)
		case len(bigAt) > 0 && w.elapsed() >= bigAt[0]:
			if err = w.commit(ctx, conn, w.big(), false); err == nil {
				bigAt = bigAt[1:]
				w.mu.Lock()
				w.bigDone++
				w.mu.Unlock()
			}
		default:
			abort := w.rng.IntN(100) < 3
			err = w.commit(ctx, conn, w.small(), abort)
		}
		if err != nil {
			if ctx.Err() == nil && !connectionLost(err) {
				w.mu.Lock()
				w.failed = append(w.failed, err.Error())
				w.mu.Unlock()
			}
			conn.Close(context.Background())
			conn = nil
			continue
		}
		w.wait(ctx, time.Duration(w.rng.Int64N(int64(w.pace)+1)))
	}
}

func (w *workload) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// connectionLost reports whether err is the server going away or
// refusing work while it restarts, as opposed to a statement the harness
// got wrong.
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	return true // a network error, a timeout, a closed connection
}

// commit runs stmts in one transaction, and rolls it back at the end
// instead when abort. The transaction enters the ledger only once the
// server acknowledged its COMMIT; one that does not commit takes its
// changes out of the picture.
func (w *workload) commit(ctx context.Context, conn *pgx.Conn, stmts []statement, abort bool) (err error) {
	w.mu.Lock()
	w.attempts++
	w.mu.Unlock()
	committed := false
	defer func() {
		if !committed && !w.resync {
			w.undoTo(0)
		}
		w.undo = w.undo[:0]
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after a commit it is a no-op
	var xidText string
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xidText); err != nil {
		return err
	}
	xid, err := strconv.ParseUint(xidText, 10, 64)
	if err != nil {
		return fmt.Errorf("xid %q: %w", xidText, err)
	}
	changes := 0
	whats := make([]string, 0, len(stmts))
	for _, s := range stmts {
		n, err := w.exec(ctx, tx, s)
		if err != nil {
			return err
		}
		changes += n
		whats = append(whats, s.what)
	}
	if abort {
		if err := tx.Rollback(ctx); err != nil {
			return err
		}
		w.mu.Lock()
		w.aborted++
		w.mu.Unlock()
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		w.mu.Lock()
		w.unknown++
		w.mu.Unlock()
		w.resync = true
		return err
	}
	committed = true
	t := &txn{xid: uint32(xid), changes: changes, what: describe(whats), at: w.elapsed()}
	var after string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&after); err == nil {
		t.after, _ = pglogrepl.ParseLSN(after)
	}
	w.ledger.commit(t)
	w.mu.Lock()
	for _, s := range stmts {
		if s.kind != "" {
			w.kinds[s.kind]++
		}
	}
	w.mu.Unlock()
	return nil
}

// exec runs one statement and returns the row changes it made, those of
// its foreign keys' actions included.
func (w *workload) exec(ctx context.Context, tx pgx.Tx, s statement) (int, error) {
	if s.rolledBack != nil {
		if _, err := tx.Exec(ctx, `SAVEPOINT chaos`); err != nil {
			return 0, err
		}
		for _, inner := range s.rolledBack {
			if _, err := w.exec(ctx, tx, inner); err != nil {
				return 0, err
			}
		}
		_, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT chaos`)
		return 0, err
	}
	cascaded := 0
	if s.cascade != "" {
		if err := tx.QueryRow(ctx, s.cascade, s.cascadeArgs...).Scan(&cascaded); err != nil {
			return 0, fmt.Errorf("%s: count what its foreign key changes: %w", s.what, err)
		}
	}
	tag, err := tx.Exec(ctx, s.sql, s.args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s.what, err)
	}
	return int(tag.RowsAffected()) + cascaded, nil
}

// changeSchema adds a column to each table mid-stream, which the mapping
// does not name: the connector must follow the new relations, and the
// sink apply rows that carry a column more.
func (w *workload) changeSchema(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, `ALTER TABLE users ADD COLUMN IF NOT EXISTS tier text`); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE devices ADD COLUMN IF NOT EXISTS platform text`); err != nil {
		return err
	}
	w.tier, w.platform = true, true
	w.mu.Lock()
	w.schemaDone++
	w.mu.Unlock()
	return nil
}

// small is a transaction of one to five statements, or a row deleted and
// inserted again; one in twelve has a savepoint rolled back among them.
// Each statement is drawn in the order it runs, so that it sees what the
// ones before it did.
func (w *workload) small() []statement {
	var out []statement
	withSavepoint := w.rng.IntN(12) == 0
	switch r := w.rng.IntN(100); {
	case r < 4 && w.live.len() > 1:
		out = w.deleteAndReinsertUser()
	case r < 7 && w.linked.len() > 0:
		out = w.deleteAndReinsertDevice()
	default:
		n := 1 + w.rng.IntN(5)
		at := w.rng.IntN(n + 1)
		for i := 0; i <= n; i++ {
			if withSavepoint && i == at {
				out = append(out, w.savepoint())
				withSavepoint = false
			}
			if i < n {
				out = append(out, w.statement())
			}
		}
	}
	if withSavepoint {
		out = append(out, w.savepoint())
	}
	return out
}

// savepoint is one to three statements in a savepoint rolled back: they
// run, and leave nothing.
func (w *workload) savepoint() statement {
	mark := len(w.undo)
	var inner []statement
	for range 1 + w.rng.IntN(3) {
		inner = append(inner, w.statement())
	}
	w.undoTo(mark)
	return statement{what: "savepoint rolled back (" + describe(whatOf(inner)) + ")", kind: kindSavepoint, rolledBack: inner}
}

func whatOf(stmts []statement) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = s.what
	}
	return out
}

// statement draws one statement, weighted towards the common ones.
func (w *workload) statement() statement {
	for {
		switch r := w.rng.IntN(100); {
		case r < 16:
			return w.insertUser(w.newExternalID(), kindInsertUser)
		case r < 20 && w.gone.len() > 0:
			return w.insertUser(w.gone.random(w.rng), kindReinsertUser)
		case r < 34 && w.live.len() > 0:
			return w.updateScore()
		case r < 43 && w.live.len() > 0:
			return w.updatePlan()
		case r < 46 && w.live.len() > 0:
			return w.updateBio()
		case r < 49 && w.live.len() > 0:
			return w.updateEmail()
		case r < 52 && w.live.len() > 0 && w.tier:
			return w.updateTier()
		case r < 57 && w.live.len() > 1:
			return w.deleteUser()
		case r < 61 && w.live.len() > 0:
			if s, ok := w.changeContactID(); ok {
				return s
			}
		case r < 65 && w.live.len() > 0:
			if s, ok := w.changeExternalID(); ok {
				return s
			}
		case r < 73 && w.free.len() > 0 && w.live.len() > 0:
			return w.linkDevice()
		case r < 79 && w.linked.len() > 0 && w.live.len() > 0:
			return w.moveByOwner()
		case r < 85 && w.linked.len() > 0 && w.live.len() > 0:
			return w.moveByKey()
		case r < 90 && w.linked.len() > 0:
			return w.logout()
		case r < 94 && w.linked.len() > 0:
			return w.deleteDevice()
		case r >= 97 && w.live.len() > 60:
			return w.updateMany(10 + w.rng.IntN(50))
		}
	}
}

func (w *workload) plan() any {
	return []any{"free", "pro", "team", "", nil}[w.rng.IntN(5)]
}

func (w *workload) country() any {
	return []any{"DE", "FR", "US", "BR", "JP", "", nil}[w.rng.IntN(7)]
}

func (w *workload) maybeEmail() string {
	if w.rng.IntN(5) < 3 {
		return w.newEmail()
	}
	return ""
}

// isTOAST reports whether a value bio returned is a TOAST value.
func isTOAST(bio any) bool {
	s, ok := bio.(string)
	return ok && len(s) > 2000
}

// bio is NULL, a short text, or (one time in eight) a TOAST value of 9 to
// 20 kB.
func (w *workload) bio() any {
	switch r := w.rng.IntN(8); {
	case r < 3:
		return nil
	case r < 7:
		return "bio " + strconv.Itoa(w.rng.IntN(1e6))
	}
	w.mu.Lock()
	w.toastWrites++
	w.mu.Unlock()
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789 "
	b := make([]byte, 9000+w.rng.IntN(11000))
	for i := range b {
		b[i] = letters[w.rng.IntN(len(letters))]
	}
	return string(b)
}

// randomOwner is a user with a row and an external id, and its contact
// id; "" when the one drawn has no external id (the device then has no
// owner).
func (w *workload) randomOwner() (int64, string) {
	id := w.live.random(w.rng)
	return id, w.users[id].ext
}

// insertUser inserts a row with external id ext ("" draws none, one time
// in 25, for a fresh id): a user the sink must leave alone until an update
// gives it an id.
func (w *workload) insertUser(ext, kind string) statement {
	if kind == kindInsertUser && w.rng.IntN(25) == 0 {
		ext = ""
	}
	id := w.newContactID()
	c := contact{ext: ext, email: w.maybeEmail()}
	bio := w.bio()
	c.toast = isTOAST(bio)
	cols := userColumns
	args := []any{id, nullable(ext), w.plan(), w.rng.IntN(1000), w.country(), bio, nullable(c.email)}
	if w.tier {
		cols += ", tier"
		args = append(args, []any{"gold", "silver", nil}[w.rng.IntN(3)])
	}
	marks := make([]string, len(args))
	for i := range args {
		marks[i] = "$" + strconv.Itoa(i+1)
	}
	w.putUser(id, c)
	return statement{
		sql:  fmt.Sprintf(`INSERT INTO users (%s) VALUES (%s)`, cols, strings.Join(marks, ", ")),
		args: args, kind: kind,
		what: fmt.Sprintf("insert user %d %q", id, ext),
	}
}

// updateScore leaves "Bio" alone: a TOAST value in it travels as unchanged.
func (w *workload) updateScore() statement {
	id := w.live.random(w.rng)
	return statement{sql: `UPDATE users SET "Score" = $2 WHERE "Contact ID" = $1`, args: []any{id, w.rng.IntN(100000)},
		what: fmt.Sprintf("score of %d", id), kind: kindUpdateUser}
}

func (w *workload) updatePlan() statement {
	id := w.live.random(w.rng)
	return statement{sql: `UPDATE users SET "Plan" = $2, "Country Code" = $3 WHERE "Contact ID" = $1`, args: []any{id, w.plan(), w.country()},
		what: fmt.Sprintf("plan of %d", id), kind: kindUpdateUser}
}

func (w *workload) updateBio() statement {
	id := w.live.random(w.rng)
	bio := w.bio()
	c := w.users[id]
	c.toast = isTOAST(bio)
	w.putUser(id, c)
	return statement{sql: `UPDATE users SET "Bio" = $2 WHERE "Contact ID" = $1`, args: []any{id, bio},
		what: fmt.Sprintf("bio of %d", id), kind: kindUpdateUser}
}

func (w *workload) updateEmail() statement {
	id := w.live.random(w.rng)
	c := w.users[id]
	c.email = w.maybeEmail()
	w.putUser(id, c)
	return statement{sql: `UPDATE users SET email = $2 WHERE "Contact ID" = $1`, args: []any{id, nullable(c.email)},
		what: fmt.Sprintf("email of %d", id), kind: kindUpdateUser}
}

func (w *workload) updateTier() statement {
	id := w.live.random(w.rng)
	return statement{sql: `UPDATE users SET tier = $2 WHERE "Contact ID" = $1`, args: []any{id, []any{"gold", "silver", "bronze", "", nil}[w.rng.IntN(5)]},
		what: fmt.Sprintf("tier of %d", id), kind: kindUpdateUser}
}

// countDevicesOf counts the devices that name the user with a contact id
// their owner: the rows the foreign key's actions change when the user's
// row goes or its external id changes.
const countDevicesOf = `SELECT count(*) FROM devices WHERE ext_id = (SELECT "External Id" FROM users WHERE "Contact ID" = $1)`

func (w *workload) deleteUser() statement {
	id := w.live.random(w.rng)
	ext := w.users[id].ext
	w.dropUser(id)
	return statement{sql: `DELETE FROM users WHERE "Contact ID" = $1`, args: []any{id}, kind: kindDeleteUser,
		cascade: countDevicesOf, cascadeArgs: []any{id},
		what: fmt.Sprintf("delete user %d %q", id, ext)}
}

// changeContactID changes a user's primary key: the connector writes a
// delete of the old key and a create of the new one, which may reach the
// sink in either order; OneSignal must not notice, nor lose a TOAST value
// ("Bio") that the change leaves alone.
func (w *workload) changeContactID() (statement, bool) {
	id := w.live.random(w.rng)
	c := w.users[id]
	to := w.newContactID()
	w.setUserKey(id, to, c)
	return statement{sql: `UPDATE users SET "Contact ID" = $2 WHERE "Contact ID" = $1`, args: []any{id, to}, kind: kindContactID,
		what: fmt.Sprintf("contact id %d of %q becomes %d", id, c.ext, to)}, true
}

// setUserKey moves the picture's row from key id to key to, which leaves
// its external id held all along.
func (w *workload) setUserKey(id, to int64, c contact) {
	w.setUser(id, contact{}, false)
	w.setUser(to, c, true)
	w.undo = append(w.undo, func() {
		w.setUser(to, contact{}, false)
		w.setUser(id, c, true)
	})
}

// changeExternalID gives a user another external id: a fresh one, one a
// deleted row held, none (NULL), or one to a user that had none. The
// devices that named the old id follow (ON UPDATE CASCADE); a first
// external id of a user whose "Bio" is a TOAST value brings the value.
func (w *workload) changeExternalID() (statement, bool) {
	id := w.live.random(w.rng)
	c := w.users[id]
	old := c.ext
	switch r := w.rng.IntN(20); {
	case old != "" && r < 2:
		c.ext = ""
	case r < 7 && w.gone.len() > 0:
		c.ext = w.gone.random(w.rng)
	default:
		c.ext = w.newExternalID()
	}
	if old != "" {
		w.cascade(old, c.ext)
	}
	w.putUser(id, c)
	return statement{sql: `UPDATE users SET "External Id" = $2 WHERE "Contact ID" = $1`, args: []any{id, nullable(c.ext)}, kind: kindExternalID,
		cascade: countDevicesOf, cascadeArgs: []any{id},
		what: fmt.Sprintf("external id %q of %d becomes %q", old, id, c.ext)}, true
}

func (w *workload) linkDevice() statement {
	dev := w.free.random(w.rng)
	owner, ext := w.randomOwner()
	w.putDevice(dev, deviceRow{contact: owner, ext: ext})
	sql, args := `INSERT INTO devices (contact_id, device_id, ext_id) VALUES ($1, $2, $3)`, []any{owner, dev, nullable(ext)}
	if w.platform {
		sql, args = `INSERT INTO devices (contact_id, device_id, ext_id, platform) VALUES ($1, $2, $3, $4)`, append(args, "android")
	}
	return statement{sql: sql, args: args, kind: kindLinkDevice, what: fmt.Sprintf("link %s to %q", dev, ext)}
}

// moveByOwner changes the device's owner column, its key staying.
func (w *workload) moveByOwner() statement {
	dev := w.linked.random(w.rng)
	_, ext := w.randomOwner()
	d := w.devices[dev]
	d.ext = ext
	w.putDevice(dev, d)
	return statement{sql: `UPDATE devices SET ext_id = $2 WHERE device_id = $1`, args: []any{dev, nullable(ext)}, kind: kindMoveByOwner,
		what: fmt.Sprintf("move %s to %q", dev, ext)}
}

// moveByKey gives the device to another contact by changing its primary
// key (contact_id) and owner together: a delete of the old key and a
// create of the new one.
func (w *workload) moveByKey() statement {
	dev := w.linked.random(w.rng)
	owner, ext := w.randomOwner()
	d := w.devices[dev]
	if owner == d.contact {
		owner = d.contact + 1 // a contact id no row has: the key changes all the same
	}
	w.putDevice(dev, deviceRow{contact: owner, ext: ext})
	return statement{sql: `UPDATE devices SET contact_id = $2, ext_id = $3 WHERE device_id = $1`, args: []any{dev, owner, nullable(ext)}, kind: kindMoveByKey,
		what: fmt.Sprintf("move %s by key (%d → %d) to %q", dev, d.contact, owner, ext)}
}

// logout leaves the row without an owner.
func (w *workload) logout() statement {
	dev := w.linked.random(w.rng)
	d := w.devices[dev]
	d.ext = ""
	w.putDevice(dev, d)
	return statement{sql: `UPDATE devices SET ext_id = NULL WHERE device_id = $1`, args: []any{dev}, kind: kindLogout, what: "log out " + dev}
}

func (w *workload) deleteDevice() statement {
	dev := w.linked.random(w.rng)
	w.dropDevice(dev)
	return statement{sql: `DELETE FROM devices WHERE device_id = $1`, args: []any{dev}, kind: kindDeleteDevice, what: "delete device " + dev}
}

// deleteAndReinsertUser deletes a user and inserts it again, same key and
// external id, other values, in one transaction. The delete unlinks its
// devices (ON DELETE SET NULL); the insert does not link them back.
func (w *workload) deleteAndReinsertUser() []statement {
	id := w.live.random(w.rng)
	c := w.users[id]
	del := w.deleteUserByID(id)
	c.email = w.maybeEmail()
	bio := w.bio()
	c.toast = isTOAST(bio)
	w.putUser(id, c)
	ins := statement{
		sql:  `INSERT INTO users (` + userColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		args: []any{id, nullable(c.ext), w.plan(), w.rng.IntN(1000), w.country(), bio, nullable(c.email)},
		kind: kindDeleteReinsert, what: fmt.Sprintf("insert user %d %q again", id, c.ext),
	}
	return []statement{del, ins}
}

func (w *workload) deleteUserByID(id int64) statement {
	ext := w.users[id].ext
	w.dropUser(id)
	return statement{sql: `DELETE FROM users WHERE "Contact ID" = $1`, args: []any{id},
		cascade: countDevicesOf, cascadeArgs: []any{id},
		what: fmt.Sprintf("delete user %d %q", id, ext)}
}

// deleteAndReinsertDevice deletes a device row and inserts it again, same
// key, perhaps with another owner of that contact's (or none).
func (w *workload) deleteAndReinsertDevice() []statement {
	dev := w.linked.random(w.rng)
	d := w.devices[dev]
	w.dropDevice(dev)
	if w.rng.IntN(2) == 0 {
		_, d.ext = w.randomOwner()
	}
	w.putDevice(dev, d)
	return []statement{
		{sql: `DELETE FROM devices WHERE device_id = $1`, args: []any{dev}, what: "delete device " + dev},
		{sql: `INSERT INTO devices (contact_id, device_id, ext_id) VALUES ($1, $2, $3)`, args: []any{d.contact, dev, nullable(d.ext)},
			kind: kindDeleteReinsert, what: fmt.Sprintf("insert device %s again, owner %q", dev, d.ext)},
	}
}

// updateMany touches n users in one statement.
func (w *workload) updateMany(n int) statement {
	ids := make([]int64, 0, n)
	for range n {
		ids = append(ids, w.live.random(w.rng))
	}
	return statement{sql: `UPDATE users SET "Score" = "Score" + 1 WHERE "Contact ID" = ANY($1)`, args: []any{ids}, kind: kindUpdateManyUsers,
		what: fmt.Sprintf("score of %d users", n)}
}

// big is a transaction of 10,000 row changes that gives the sink only
// 2,000 users to write: 2,000 new users, then four updates of each.
func (w *workload) big() []statement {
	ids := make([]int64, 2000)
	exts := make([]string, len(ids))
	for i := range ids {
		ids[i], exts[i] = w.newContactID(), w.newExternalID()
		w.putUser(ids[i], contact{ext: exts[i]})
	}
	out := []statement{{
		sql:  `INSERT INTO users ("Contact ID", "External Id", "Plan", "Score", "Country Code") SELECT c, e, 'free', 0, 'DE' FROM unnest($1::bigint[], $2::text[]) AS t(c, e)`,
		args: []any{ids, exts},
		what: fmt.Sprintf("insert %d users, %q to %q", len(ids), exts[0], exts[len(exts)-1]),
	}}
	for round, set := range []string{`"Score" = "Score" + 1`, `"Plan" = 'pro'`, `"Country Code" = NULL`, `"Score" = "Score" * 2, "Plan" = 'team'`} {
		out = append(out, statement{
			sql:  `UPDATE users SET ` + set + ` WHERE "Contact ID" = ANY($1)`,
			args: []any{ids},
			what: fmt.Sprintf("update %d of those (round %d)", len(ids), round+1),
		})
	}
	return out
}

// externalIDs is every external id the workload ever wrote.
func (w *workload) externalIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.ever))
	for id := range w.ever {
		out = append(out, id)
	}
	return out
}
