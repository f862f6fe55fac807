package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schema is the source tables. bio is stored out of line and
// uncompressed (STORAGE EXTERNAL), so any value over about 2 kB is a TOAST
// value, and an update that leaves it alone sends it as "unchanged".
const schema = `
CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int, country text, bio text);
ALTER TABLE users ALTER COLUMN bio SET STORAGE EXTERNAL;
CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text);
`

// bigChanges is the size of a big transaction, in row changes.
const bigChanges = 10_000

// workload writes to the source tables from one connection, a
// transaction at a time, and records in the ledger every transaction whose
// COMMIT the server acknowledged. Its picture of the tables (which users
// and devices exist) follows its own acknowledged writes; it can be wrong
// after a commit whose outcome is unknown, which only makes a statement
// affect no row: the row changes a transaction counts are the rows each
// statement reports, so the ledger stays exact.
type workload struct {
	rng     *rand.Rand
	dsn     string
	ledger  *ledger
	elapsed func() time.Duration
	pace    time.Duration // the longest pause between transactions
	devices []string      // the device pool, seeded in the emulator

	// what the workload believes the tables hold
	live     []string // user ids with a row
	liveAt   map[string]int
	gone     []string // user ids whose row was deleted
	owned    map[string]bool
	free     []string // devices without a row
	linked   []string // devices with a row
	nextID   int
	tier     bool // users.tier exists
	platform bool // devices.platform exists

	mu          sync.Mutex
	ever        map[string]bool // every user id ever written, for the final comparison
	bigDone     int
	toastWrites int
	schemaDone  int
	attempts    int // transactions begun
	unknown     int // commits whose outcome is unknown (the connection broke)
	failed      []string
}

func newWorkload(seed uint64, dsn string, l *ledger, elapsed func() time.Duration, devices []string, initialUsers int, pace time.Duration) *workload {
	w := &workload{
		rng: rand.New(rand.NewPCG(seed, 0x776f726b)), dsn: dsn, ledger: l, elapsed: elapsed, pace: pace,
		devices: devices, liveAt: map[string]int{}, owned: map[string]bool{}, ever: map[string]bool{},
		free: slices.Clone(devices),
	}
	for range initialUsers {
		w.addLive(w.newUserID())
	}
	return w
}

func (w *workload) newUserID() string {
	w.nextID++
	id := "u-" + strconv.Itoa(w.nextID)
	w.mu.Lock()
	w.ever[id] = true
	w.mu.Unlock()
	return id
}

func (w *workload) addLive(id string) {
	if _, ok := w.liveAt[id]; ok {
		return
	}
	w.liveAt[id] = len(w.live)
	w.live = append(w.live, id)
	if i := slices.Index(w.gone, id); i >= 0 {
		w.gone = slices.Delete(w.gone, i, i+1)
	}
}

func (w *workload) removeLive(id string) {
	i, ok := w.liveAt[id]
	if !ok {
		return
	}
	last := w.live[len(w.live)-1]
	w.live[i], w.liveAt[last] = last, i
	w.live = w.live[:len(w.live)-1]
	delete(w.liveAt, id)
	w.gone = append(w.gone, id)
}

// seed inserts the initial users, before the connector starts: its
// initial snapshot reads them while the workload updates them. A TOAST
// bio among them reaches Kafka only through the snapshot, since the
// updates that leave it alone carry it as unchanged.
func (w *workload) seed(ctx context.Context, conn *pgx.Conn) error {
	batch := &pgx.Batch{}
	for _, id := range w.live {
		batch.Queue(`INSERT INTO users VALUES ($1, $2, $3, $4, $5)`, id, w.plan(), w.rng.IntN(1000), w.country(), w.bio())
	}
	return conn.SendBatch(ctx, batch).Close()
}

// statement is one SQL statement of a transaction, and what it does to
// the workload's picture of the tables once the COMMIT is acknowledged.
type statement struct {
	sql   string
	args  []any
	what  string
	apply func()
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
		case !w.tier && w.elapsed() >= schemaAt:
			err = w.changeSchema(ctx, conn)
		case len(bigAt) > 0 && w.elapsed() >= bigAt[0]:
			if err = w.commit(ctx, conn, w.big()); err == nil {
				bigAt = bigAt[1:]
				w.mu.Lock()
				w.bigDone++
				w.mu.Unlock()
			}
		default:
			err = w.commit(ctx, conn, w.small())
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

// commit runs stmts in one transaction. The transaction enters the ledger
// only once the server acknowledged its COMMIT.
func (w *workload) commit(ctx context.Context, conn *pgx.Conn, stmts []statement) error {
	w.mu.Lock()
	w.attempts++
	w.mu.Unlock()
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
		tag, err := tx.Exec(ctx, s.sql, s.args...)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		changes += int(tag.RowsAffected())
		whats = append(whats, s.what)
	}
	if err := tx.Commit(ctx); err != nil {
		w.mu.Lock()
		w.unknown++
		w.mu.Unlock()
		return err
	}
	t := &txn{xid: uint32(xid), changes: changes, what: describe(whats), at: w.elapsed()}
	var after string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&after); err == nil {
		t.after, _ = pglogrepl.ParseLSN(after)
	}
	w.ledger.commit(t)
	for _, s := range stmts {
		if s.apply != nil {
			s.apply()
		}
	}
	return nil
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

// small is a transaction of one to five statements.
func (w *workload) small() []statement {
	n := 1 + w.rng.IntN(5)
	out := make([]statement, 0, n)
	for range n {
		out = append(out, w.statement())
	}
	return out
}

// statement draws one statement, weighted towards the common ones.
func (w *workload) statement() statement {
	for {
		switch r := w.rng.IntN(100); {
		case r < 22:
			return w.insertUser(w.newUserID())
		case r < 27 && len(w.gone) > 0:
			return w.insertUser(w.gone[w.rng.IntN(len(w.gone))])
		case r < 45 && len(w.live) > 0:
			return w.updateScore()
		case r < 57 && len(w.live) > 0:
			return w.updatePlan()
		case r < 61 && len(w.live) > 0:
			return w.updateBio()
		case r < 67 && len(w.live) > 0 && w.tier:
			return w.updateTier()
		case r < 73 && len(w.live) > 1:
			return w.deleteUser()
		case r < 81 && len(w.free) > 0:
			return w.linkDevice()
		case r < 88 && len(w.linked) > 0:
			return w.moveDevice()
		case r < 93 && len(w.linked) > 0:
			return w.unlinkDevice()
		case r < 96 && len(w.linked) > 0:
			return w.deleteDevice()
		case r >= 96 && len(w.live) > 60:
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

func (w *workload) randomLive() string { return w.live[w.rng.IntN(len(w.live))] }

// randomOwner is a user with a row, one without (deleted), or one the
// users table never had: a link creates the user in OneSignal.
func (w *workload) randomOwner() string {
	switch r := w.rng.IntN(10); {
	case r < 7 && len(w.live) > 0:
		return w.randomLive()
	case r < 9 && len(w.gone) > 0:
		return w.gone[w.rng.IntN(len(w.gone))]
	}
	return "ghost-" + strconv.Itoa(w.rng.IntN(50))
}

func (w *workload) insertUser(id string) statement {
	cols := "external_id, plan, score, country, bio"
	args := []any{id, w.plan(), w.rng.IntN(1000), w.country(), w.bio()}
	if w.tier {
		cols += ", tier"
		args = append(args, []any{"gold", "silver", nil}[w.rng.IntN(3)])
	}
	marks := make([]string, len(args))
	sets := make([]string, 0, len(args)-1)
	for i := range args {
		marks[i] = "$" + strconv.Itoa(i+1)
	}
	for _, c := range strings.Split(cols, ", ")[1:] {
		sets = append(sets, c+" = excluded."+c)
	}
	return statement{
		sql:   fmt.Sprintf(`INSERT INTO users (%s) VALUES (%s) ON CONFLICT (external_id) DO UPDATE SET %s`, cols, strings.Join(marks, ", "), strings.Join(sets, ", ")),
		args:  args,
		what:  "insert user " + id,
		apply: func() { w.addLive(id) },
	}
}

// updateScore leaves bio alone: a TOAST value in it travels as unchanged.
func (w *workload) updateScore() statement {
	id := w.randomLive()
	return statement{sql: `UPDATE users SET score = $2 WHERE external_id = $1`, args: []any{id, w.rng.IntN(100000)}, what: "score of " + id}
}

func (w *workload) updatePlan() statement {
	id := w.randomLive()
	return statement{sql: `UPDATE users SET plan = $2, country = $3 WHERE external_id = $1`, args: []any{id, w.plan(), w.country()}, what: "plan of " + id}
}

func (w *workload) updateBio() statement {
	id := w.randomLive()
	return statement{sql: `UPDATE users SET bio = $2 WHERE external_id = $1`, args: []any{id, w.bio()}, what: "bio of " + id}
}

func (w *workload) updateTier() statement {
	id := w.randomLive()
	return statement{sql: `UPDATE users SET tier = $2 WHERE external_id = $1`, args: []any{id, []any{"gold", "silver", "bronze", "", nil}[w.rng.IntN(5)]}, what: "tier of " + id}
}

func (w *workload) deleteUser() statement {
	id := w.randomLive()
	return statement{sql: `DELETE FROM users WHERE external_id = $1`, args: []any{id}, what: "delete user " + id, apply: func() { w.removeLive(id) }}
}

// updateMany touches n users in one statement.
func (w *workload) updateMany(n int) statement {
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, w.randomLive())
	}
	return statement{sql: `UPDATE users SET score = score + 1 WHERE external_id = ANY($1)`, args: []any{ids}, what: fmt.Sprintf("score of %d users", n)}
}

func (w *workload) linkDevice() statement {
	i := w.rng.IntN(len(w.free))
	dev, owner := w.free[i], w.randomOwner()
	sql, args := `INSERT INTO devices (player_id, user_external_id) VALUES ($1, $2) ON CONFLICT (player_id) DO UPDATE SET user_external_id = excluded.user_external_id`, []any{dev, owner}
	if w.platform {
		sql, args = `INSERT INTO devices (player_id, user_external_id, platform) VALUES ($1, $2, $3) ON CONFLICT (player_id) DO UPDATE SET user_external_id = excluded.user_external_id`, []any{dev, owner, "android"}
	}
	return statement{sql: sql, args: args, what: "link " + dev + " to " + owner, apply: func() {
		if j := slices.Index(w.free, dev); j >= 0 {
			w.free = slices.Delete(w.free, j, j+1)
			w.linked = append(w.linked, dev)
		}
	}}
}

func (w *workload) moveDevice() statement {
	dev, owner := w.linked[w.rng.IntN(len(w.linked))], w.randomOwner()
	return statement{sql: `UPDATE devices SET user_external_id = $2 WHERE player_id = $1`, args: []any{dev, owner}, what: "move " + dev + " to " + owner}
}

// unlinkDevice is a logout: the row stays, without an owner.
func (w *workload) unlinkDevice() statement {
	dev := w.linked[w.rng.IntN(len(w.linked))]
	return statement{sql: `UPDATE devices SET user_external_id = NULL WHERE player_id = $1`, args: []any{dev}, what: "log out " + dev}
}

func (w *workload) deleteDevice() statement {
	dev := w.linked[w.rng.IntN(len(w.linked))]
	return statement{sql: `DELETE FROM devices WHERE player_id = $1`, args: []any{dev}, what: "delete device " + dev, apply: func() {
		if j := slices.Index(w.linked, dev); j >= 0 {
			w.linked = slices.Delete(w.linked, j, j+1)
			w.free = append(w.free, dev)
		}
	}}
}

// big is a transaction of bigChanges row changes that gives the sink only
// 2,000 users to write: 2,000 new users, then four updates of each.
func (w *workload) big() []statement {
	first := w.nextID + 1
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = w.newUserID()
	}
	out := []statement{{
		sql:  `INSERT INTO users (external_id, plan, score, country) SELECT 'u-' || i, 'free', i, 'DE' FROM generate_series($1::int, $2::int) i`,
		args: []any{first, first + len(ids) - 1},
		what: fmt.Sprintf("insert users u-%d to u-%d", first, first+len(ids)-1),
		apply: func() {
			for _, id := range ids {
				w.addLive(id)
			}
		},
	}}
	for round, set := range []string{`score = score + 1`, `plan = 'pro'`, `country = NULL`, `score = score * 2, plan = 'team'`} {
		out = append(out, statement{
			sql:  `UPDATE users SET ` + set + ` WHERE external_id = ANY($1)`,
			args: []any{ids},
			what: fmt.Sprintf("update %d of those (round %d)", len(ids), round+1),
		})
	}
	return out
}

// userIDs is every user id the workload ever wrote.
func (w *workload) userIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.ever))
	for id := range w.ever {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
