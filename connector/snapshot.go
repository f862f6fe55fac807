package connector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/connector/pgcodec"
)

// The snapshot reads existing rows in primary-key chunks while the stream
// runs, DBLog style. For each chunk:
//
//  1. the snapshotter writes a low watermark into the WAL (a transactional
//     logical decoding message), reads the chunk, hands it to the reader,
//     and writes a high watermark;
//  2. the reader, between the two watermarks, notes the key of every row
//     of that table that the stream carries;
//  3. at the high watermark the reader produces the chunk's rows, except
//     the noted ones: the stream already carried a state of those rows at
//     least as new as the chunk's.
//
// So a chunk's rows enter Kafka at the stream position where they were
// read, and every key's events stay in order. The chunk's events belong to
// the high watermark's transaction, whose LSN is confirmed only once Kafka
// holds them. Progress (the last key of each finished chunk) is saved in
// the state store once Kafka holds the chunk, so a crash repeats at most
// the chunk in flight.

// Prefixes of the logical decoding messages the connector writes and reads.
const (
	watermarkPrefix = "onesignal_cdc_watermark"
	// SignalPrefix marks requests to a running connector, written into the
	// WAL by `onesignal-cdc snapshot`: {"snapshot": ["schema.table", …]}.
	SignalPrefix = "onesignal_cdc_signal"
)

// StateStore keeps the connector's state outside the source database.
// broker.StateStore (a compacted Kafka topic) is one.
type StateStore interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Save(ctx context.Context, key string, value []byte) error
}

// State is what the connector remembers across restarts.
type State struct {
	Slot string `json:"slot"`
	// Snapshots are the tables whose snapshot is not finished.
	Snapshots map[string]*Progress `json:"snapshots,omitempty"`
	// Tables are, per mapped table, what its rows in Kafka were read
	// under: at start, a table whose mapping changed since is snapshotted
	// again (tables.go).
	Tables map[string]TableMark `json:"tables,omitempty"`
	// InitialEnds are, per table whose initial snapshot finished, the WAL
	// position of its last chunk's high watermark. A delete before it of a
	// row the sink never saw is of a row that snapshot did not read, also
	// when Postgres streams it again after the snapshot finished (a
	// restart replays from the slot's last saved position): such deletes
	// stay marked (event.HeaderSnapshotting).
	InitialEnds map[string]pglogrepl.LSN `json:"initial_ends,omitempty"`
	// Reset allows creating a new slot after the old one was lost; set by
	// `onesignal-cdc snapshot --reset`, cleared once the slot exists.
	Reset bool `json:"reset,omitempty"`
	// Updated is when the state was last saved.
	Updated time.Time `json:"updated"`
}

// Progress is how far a table's snapshot got.
type Progress struct {
	// After is the primary key (text form) of the last row in Kafka; empty
	// means from the start.
	After []string `json:"after,omitempty"`
	Rows  int64    `json:"rows"`
	// Requested is when this snapshot was asked for; a new request while
	// one runs starts it over, and the running one must not overwrite it.
	Requested time.Time `json:"requested"`
	// Where is the row filter this snapshot applies: the publication's,
	// for the initial snapshot of a new slot only, when the sink has seen
	// no row of the table. Every other snapshot reads every row, so that a
	// row the filter now leaves out reaches the sink and loses what it
	// gave before. "": every row.
	Where string `json:"where,omitempty"`
	// Initial says the sink may have seen no row of the table (a new
	// slot, or a broker that lost the topics): while it runs, a delete of
	// a row the snapshot will not read is marked (event.HeaderSnapshotting),
	// so that the sink, which never saw the row, knows nothing is lost.
	Initial bool `json:"initial,omitempty"`
}

// stateKeeper serialises changes to the state and saves each one.
type stateKeeper struct {
	mu    sync.Mutex
	store StateStore
	st    State
}

func loadState(ctx context.Context, store StateStore, slot string) (*stateKeeper, bool, error) {
	k := &stateKeeper{store: store, st: State{Slot: slot}}
	data, err := store.Load(ctx, slot)
	if err != nil {
		return nil, false, fmt.Errorf("load connector state: %w", err)
	}
	if data == nil {
		return k, false, nil
	}
	if err := json.Unmarshal(data, &k.st); err != nil {
		return nil, false, fatal(fmt.Errorf("connector state of slot %q is not valid JSON (%v): fix or delete its record in the state topic", slot, err))
	}
	return k, true, nil
}

// update changes the state with f and saves it.
func (k *stateKeeper) update(ctx context.Context, f func(*State)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(&k.st)
	k.st.Updated = time.Now().UTC()
	data, err := json.Marshal(&k.st)
	if err != nil {
		return err
	}
	return k.store.Save(ctx, k.st.Slot, data)
}

// initial reports whether a delete of table at WAL position lsn may be of
// a row its initial snapshot did not read: the snapshot is unfinished
// (Progress.Initial), or finished after lsn (State.InitialEnds).
func (k *stateKeeper) initial(table string, lsn pglogrepl.LSN) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := k.st.Snapshots[table]; p != nil && p.Initial {
		return true
	}
	end, ok := k.st.InitialEnds[table]
	return ok && lsn < end
}

// pending returns the tables whose snapshot is unfinished, with a copy of
// their progress.
func (k *stateKeeper) pending() map[string]Progress {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]Progress, len(k.st.Snapshots))
	for t, p := range k.st.Snapshots {
		out[t] = *p
	}
	return out
}

// chunk is one snapshot read, on its way from the snapshotter to the reader.
type chunk struct {
	id    string
	table string // "schema.table"
	topic string
	key   []string // primary-key columns, in table column order
	rows  []pgcodec.SnapshotRow
	// high is the WAL position of its high watermark, set once written
	// (after the chunk went to the stream) and read only by the snapshot
	// that made it, once the chunk is done.
	high pglogrepl.LSN
	// pending counts the chunk's events not yet in Kafka, plus one held
	// until the reader has handed them all over; done closes at zero.
	pending atomic.Int64
	done    chan struct{}
	// release hands the rows' memory on to later chunks: called once done
	// is closed, when Kafka holds every event made from them.
	release func()
}

func (c *chunk) ack() {
	if c.pending.Add(-1) == 0 {
		close(c.done)
	}
}

// snapshotter reads the tables whose snapshot is pending, one chunk at a
// time per table, while the session streams.
type snapshotter struct {
	c      *Connector
	state  *stateKeeper
	chunks chan *chunk
	wake   chan struct{} // a signal added tables

	// ours are the watermark ids this snapshotter wrote and the reader has
	// not closed: watermarks replayed from an earlier session open no
	// window, so none stays open for a high watermark that never comes.
	mu   sync.Mutex
	ours map[string]bool
}

func newSnapshotter(c *Connector, state *stateKeeper) *snapshotter {
	return &snapshotter{c: c, state: state, chunks: make(chan *chunk, max(4, c.cfg.SnapshotParallelism)), wake: make(chan struct{}, 1), ours: make(map[string]bool)}
}

// claim records a watermark id before it is written.
func (s *snapshotter) claim(id string) {
	s.mu.Lock()
	s.ours[id] = true
	s.mu.Unlock()
}

// owns reports whether id is one of ours; release forgets it.
func (s *snapshotter) owns(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ours[id]
}

func (s *snapshotter) release(id string) {
	s.mu.Lock()
	delete(s.ours, id)
	s.mu.Unlock()
}

// run snapshots pending tables until ctx ends, waking when a signal adds
// more. A failure ends the session: the next one resumes from the state.
func (s *snapshotter) run(ctx context.Context) error {
	type result struct {
		table string
		err   error
	}
	running := map[string]bool{}
	results := make(chan result, len(s.c.cfg.Tables))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		for table := range s.state.pending() {
			if running[table] {
				continue // a new request for it is picked up by the running worker
			}
			running[table] = true
			wg.Go(func() {
				err := s.table(ctx, table)
				if err != nil {
					err = fmt.Errorf("snapshot of %s: %w", table, err)
				}
				results <- result{table, err}
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			if r.err != nil && ctx.Err() == nil {
				return r.err
			}
			delete(running, r.table) // still pending (asked again meanwhile): restarted above
		case <-s.wake:
		}
	}
}

// chunksInFlight is how many chunks of one table may be read ahead of the
// one Kafka is taking, beyond those read at once: reading the next
// overlaps producing the last.
const chunksInFlight = 2

// table snapshots one table, chunk by chunk, from its saved progress.
// Progress is saved in chunk order, each once Kafka holds the chunk.
//
// With SnapshotParallelism above 1 it reads several chunks at once, each
// on a connection of its own between its own watermarks: it first finds
// where the next chunks end (the key of every SnapshotChunkSize-th row,
// from the primary key's index), then reads the ranges between those keys
// side by side. The ranges do not overlap and cover every key, so each row
// is read by one chunk, within that chunk's window. Tables are snapshotted
// side by side, each with its own chunks.
func (s *snapshotter) table(ctx context.Context, table string) error {
	conn, err := s.c.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	key, keyTypes, err := primaryKey(ctx, conn, table)
	if err != nil {
		return err
	}
	p, ok := s.state.pending()[table]
	if !ok {
		return nil // finished meanwhile (a repeated signal)
	}
	parallel := max(s.c.cfg.SnapshotParallelism, 1)
	// The connections chunks are read on: conn, and one more for each
	// chunk read at once beyond the first, opened when first needed.
	pool := make(chan *pgx.Conn, parallel+1)
	pool <- conn
	var openMu sync.Mutex
	var opened []*pgx.Conn
	defer func() {
		for _, c := range opened {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	getConn := func() (*pgx.Conn, error) {
		select {
		case c := <-pool:
			return c, nil
		default:
		}
		c, err := s.c.connect(ctx)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		openMu.Lock()
		opened = append(opened, c)
		openMu.Unlock()
		return c, nil
	}
	type flight struct {
		ch       *chunk
		progress Progress
		final    bool
	}
	var flights []flight
	// settle waits for the oldest chunk to be in Kafka and saves its
	// progress. It reports false when the table was asked for again
	// meanwhile: that request stands, and the caller starts over.
	settle := func() (bool, error) {
		f := flights[0]
		flights = flights[1:]
		select {
		case <-f.ch.done:
			f.ch.release()
		case <-ctx.Done():
			return false, nil
		}
		current := true
		err := s.state.update(ctx, func(st *State) {
			cur := st.Snapshots[table]
			if cur == nil || !cur.Requested.Equal(p.Requested) {
				current = false
				return
			}
			if f.final {
				delete(st.Snapshots, table)
				if f.progress.Initial {
					if st.InitialEnds == nil {
						st.InitialEnds = map[string]pglogrepl.LSN{}
					}
					st.InitialEnds[table] = f.ch.high
				}
			} else {
				st.Snapshots[table] = &f.progress
			}
		})
		return current && err == nil, err
	}
	started, after, rows := time.Now(), p.After, p.Rows
	db := conn.Config().Database
	q := chunkQuery{table: table, key: key, keyTypes: keyTypes, filter: p.Where, columns: s.c.readColumns(table), size: s.c.cfg.SnapshotChunkSize}
	for {
		// The next round: bounded ranges, then (when the table ends within
		// the round) one range open at the end, as with one chunk at a time.
		var ranges [][2][]string // (from, to]; to nil: open, LIMIT size
		from := after
		for parallel > 1 && len(ranges) < parallel {
			to, err := q.boundary(ctx, conn, from)
			if err != nil {
				return err
			}
			if to == nil {
				break
			}
			ranges = append(ranges, [2][]string{from, to})
			from = to
		}
		if len(ranges) < parallel {
			ranges = append(ranges, [2][]string{from, nil})
		}
		chunks := make([]*chunk, len(ranges))
		lasts := make([][]string, len(ranges))
		errs := make([]error, len(ranges))
		var wg sync.WaitGroup
		for i, r := range ranges {
			wg.Go(func() {
				c, err := getConn()
				if err != nil {
					errs[i] = err
					return
				}
				defer func() { pool <- c }()
				chunks[i], lasts[i], errs[i] = s.chunk(ctx, c, db, q, r[0], r[1])
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		final := false
		for i, ch := range chunks {
			rows += int64(len(ch.rows))
			last := ranges[i][1]
			if last == nil { // the open range
				last = lasts[i]
				final = len(ch.rows) < q.size
			}
			if last != nil {
				after = last
			}
			flights = append(flights, flight{ch: ch, final: final, progress: Progress{After: after, Rows: rows, Requested: p.Requested, Initial: p.Initial}})
		}
		for len(flights) > 0 && (final || len(flights) >= chunksInFlight+parallel-1) {
			current, err := settle()
			if err != nil || !current {
				return err
			}
		}
		if final {
			s.c.log.Info("snapshot finished", zap.String("table", table), zap.Int64("rows", rows), zap.Duration("took", time.Since(started)))
			return nil
		}
	}
}

// chunk reads one chunk on conn between its watermarks and hands it to the
// reader: the rows after the key values from and up to to (nil: the next
// q.size rows).
func (s *snapshotter) chunk(ctx context.Context, conn *pgx.Conn, db string, q chunkQuery, from, to []string) (*chunk, []string, error) {
	id := randomID()
	s.claim(id)
	low, err := emitMessage(ctx, conn, watermarkPrefix, watermark{low: true, id: id, table: q.table}.String())
	if err != nil {
		return nil, nil, err
	}
	ch, last, err := s.read(ctx, conn, db, q, from, to, low)
	if err != nil {
		return nil, nil, err
	}
	ch.id = id
	select {
	case s.chunks <- ch:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	high, err := emitMessage(ctx, conn, watermarkPrefix, watermark{id: id}.String())
	if err != nil {
		return nil, nil, err
	}
	ch.high = high
	return ch, last, nil
}

// chunkQuery is what the SELECTs of a table's chunks are made of.
type chunkQuery struct {
	table         string
	key, keyTypes []string
	filter        string   // "": every row
	columns       []string // nil: every column
	size          int
}

// where renders the condition of the rows after the key values from and
// up to to (either nil: no bound), with the parameters it takes.
func (q chunkQuery) where(from, to []string) (string, [][]byte) {
	var conds []string
	var params [][]byte
	cols := make([]string, len(q.key))
	for i, k := range q.key {
		cols[i] = pgx.Identifier{k}.Sanitize()
	}
	bound := func(op string, vals []string) {
		if len(vals) != len(q.key) || len(vals) == 0 {
			return
		}
		ph := make([]string, len(q.key))
		for i := range q.key {
			params = append(params, []byte(vals[i]))
			ph[i] = fmt.Sprintf("$%d::%s", len(params), q.keyTypes[i])
		}
		conds = append(conds, "("+strings.Join(cols, ", ")+") "+op+" ("+strings.Join(ph, ", ")+")")
	}
	bound(">", from)
	bound("<=", to)
	if q.filter != "" {
		conds = append(conds, "("+q.filter+")")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), params
}

func (q chunkQuery) order() string {
	order := make([]string, len(q.key))
	for i, k := range q.key {
		order[i] = pgx.Identifier{k}.Sanitize()
	}
	return strings.Join(order, ", ")
}

func (q chunkQuery) from() string {
	schema, name, _ := strings.Cut(q.table, ".")
	return pgx.Identifier{schema, name}.Sanitize()
}

// boundary returns the key (text form) of the q.size-th row after from, or
// nil when fewer rows follow: where the next chunk of q.size rows ends.
func (q chunkQuery) boundary(ctx context.Context, conn *pgx.Conn, from []string) ([]string, error) {
	where, params := q.where(from, nil)
	sql := fmt.Sprintf("SELECT %s FROM %s%s ORDER BY %s OFFSET %d LIMIT 1", identList(q.key), q.from(), where, q.order(), q.size-1)
	rr := conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	var to []string
	for rr.NextRow() {
		for _, v := range rr.Values() {
			to = append(to, string(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("find the end of the next chunk: %w", err)
	}
	return to, nil
}

// read selects the chunk after the key values from and up to to (nil: the
// next q.size rows), in text form so its rows encode exactly as the
// stream's do: the columns the stream's events carry, and of the rows the
// filter keeps. It returns the chunk and the key of its last row.
//
// The rows' events carry the low watermark's LSN: the chunk shows the
// table as it was at or after that point.
func (s *snapshotter) read(ctx context.Context, conn *pgx.Conn, db string, q chunkQuery, from, to []string, low pglogrepl.LSN) (*chunk, []string, error) {
	table, key := q.table, q.key
	schema, name, _ := strings.Cut(table, ".")
	where, params := q.where(from, to)
	selected := "*"
	if q.columns != nil {
		selected = identList(q.columns)
	}
	limit := ""
	if to == nil {
		limit = fmt.Sprintf(" LIMIT %d", q.size)
	}
	sql := fmt.Sprintf("SELECT %s FROM %s%s ORDER BY %s%s", selected, q.from(), where, q.order(), limit)

	rr := conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	fields := rr.FieldDescriptions()
	keyIdx := make([]int, 0, len(key))
	for _, k := range key {
		for i, f := range fields {
			if f.Name == k {
				keyIdx = append(keyIdx, i)
			}
		}
	}
	ch := &chunk{table: table, topic: s.c.cfg.TopicPrefix + "." + table, key: key, done: make(chan struct{})}
	if from != nil || to != nil {
		// Not the table's first chunk: most likely a full one, q.size
		// rows, room made once (a first chunk may be a small table's all).
		ch.rows = make([]pgcodec.SnapshotRow, 0, min(q.size, 1<<14))
	}
	ch.pending.Store(1)
	var last []string
	now := time.Now().UnixMilli()
	names, oids := make([]string, len(fields)), make([]uint32, len(fields))
	for i, f := range fields {
		names[i], oids[i] = f.Name, f.DataTypeOID
	}
	codec := pgcodec.NewSnapshotCodec(pgcodec.Source{DB: db, TopicPrefix: s.c.cfg.TopicPrefix, Version: s.c.cfg.Version}, schema, name, names, oids, key)
	ch.release = codec.Release
	lastKey := make([][]byte, len(keyIdx)) // the key of the row read last, in text form
	for rr.NextRow() {
		vals := rr.Values()
		for n, i := range keyIdx {
			lastKey[n] = append(lastKey[n][:0], vals[i]...)
		}
		ch.rows = append(ch.rows, codec.Row(vals, low, now))
	}
	if _, err := rr.Close(); err != nil {
		return nil, nil, fmt.Errorf("read chunk: %w", err)
	}
	if len(ch.rows) > 0 {
		for _, k := range lastKey {
			last = append(last, string(k))
		}
	}
	return ch, last, nil
}

// primaryKey returns the table's primary-key columns in column order, with
// their types as SQL spells them.
func primaryKey(ctx context.Context, conn *pgx.Conn, table string) (cols, types []string, err error) {
	schema, name, _ := strings.Cut(table, ".")
	rows, err := conn.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
		ORDER BY a.attnum`, schema, name)
	if err != nil {
		return nil, nil, fmt.Errorf("look up the primary key of %s: %w", table, err)
	}
	for rows.Next() {
		var c, t string
		if err := rows.Scan(&c, &t); err != nil {
			return nil, nil, err
		}
		cols, types = append(cols, c), append(types, t)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("look up the primary key of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, nil, fatal(fmt.Errorf("table %s has %w: the snapshot reads in primary-key chunks; add one (ALTER TABLE … ADD PRIMARY KEY), or set postgres.snapshot: never and do not ask for a snapshot of it", table, errNoPrimaryKey))
	}
	return cols, types, nil
}

// emitMessage writes a transactional logical decoding message and returns
// its LSN.
func emitMessage(ctx context.Context, conn *pgx.Conn, prefix, content string) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, `SELECT pg_logical_emit_message(true, $1, $2)`, prefix, content).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("write %s message: %w", prefix, err)
	}
	return lsn, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Signal asks the connector streaming from the database at dsn to
// snapshot tables again, by writing a signal into the WAL: it reaches the
// connector in commit order, needs no table of ours in the source
// database, and waits in the slot while the connector is down.
func Signal(ctx context.Context, dsn string, tables []string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	content, _ := json.Marshal(signal{Snapshot: tables})
	_, err = emitMessage(ctx, conn, SignalPrefix, string(content))
	return err
}

// signal is the content of a SignalPrefix message.
type signal struct {
	Snapshot []string `json:"snapshot"`
}

// errNoPrimaryKey is in the error of primaryKey for a table without one.
var errNoPrimaryKey = errors.New("no primary key")

var errNoSnapshotSupport = errors.New("snapshots need PostgreSQL 14 or newer (pgoutput's messages option)")

// Reset allows the connector to create a new slot and re-snapshot every
// table: the way out after a slot was lost. It keeps nothing else of the
// old state.
func Reset(ctx context.Context, store StateStore, slot string) error {
	k := &stateKeeper{store: store, st: State{Slot: slot}}
	return k.update(ctx, func(st *State) { st.Reset = true })
}
