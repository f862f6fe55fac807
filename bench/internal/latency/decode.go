package latency

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// decodeStream reads what pg_recvlogical prints from a test_decoding slot
// with include-timestamp on, one line per message:
//
//	BEGIN 7401
//	table public.bench_latency: UPDATE: id[integer]:17 external_id[text]:'lat-17' seq[bigint]:4018
//	COMMIT 7401 (at 2026-11-30 09:12:01.123456+00)
//
// and notes each transaction's commit timestamp, the moment its COMMIT
// line arrived, and the user and seq of each of its rows.
type decodeStream struct {
	table string // "public.bench_latency"
	now   func() time.Time

	mu   sync.Mutex
	txns []decodedTxn
	err  error // the first line it could not read
}

// read consumes r until it ends.
func (d *decodeStream) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var rows []row
	for sc.Scan() {
		at := d.now()
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "BEGIN "):
			rows = nil
		case strings.HasPrefix(line, "table "+d.table+": "):
			row, err := rowOf(line)
			if err != nil {
				d.fail(err)
				continue
			}
			rows = append(rows, row)
		case strings.HasPrefix(line, "COMMIT "):
			commit, err := commitTime(line)
			if err != nil {
				d.fail(err)
				continue
			}
			if len(rows) > 0 {
				d.mu.Lock()
				d.txns = append(d.txns, decodedTxn{commit: commit, decoded: at, rows: rows})
				d.mu.Unlock()
			}
			rows = nil
		}
	}
}

func (d *decodeStream) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// decoded returns the transactions read so far, in commit order, and the
// first line that could not be read.
func (d *decodeStream) decoded() ([]decodedTxn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.txns[:len(d.txns):len(d.txns)], d.err
}

// rowOf reads the user (the id column) and the seq of a row line.
func rowOf(line string) (row, error) {
	id, err := column(line, "id[integer]")
	if err != nil {
		return row{}, err
	}
	seq, err := column(line, "seq[bigint]")
	if err != nil {
		return row{}, err
	}
	return row{user: int(id), seq: seq}, nil
}

// column finds a number column's value in a row line.
func column(line, name string) (int64, error) {
	_, rest, ok := strings.Cut(line, " "+name+":")
	if !ok {
		return 0, fmt.Errorf("pg_recvlogical printed a row without %s: %q", name, line)
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("pg_recvlogical printed a row whose %s is %q: %w", name, rest, err)
	}
	return n, nil
}

// commitTime reads the timestamp of a COMMIT line. The benchmark runs
// pg_recvlogical with PGTZ=UTC, but any numeric offset is read.
func commitTime(line string) (time.Time, error) {
	_, rest, ok := strings.Cut(line, " (at ")
	if !ok || !strings.HasSuffix(rest, ")") {
		return time.Time{}, fmt.Errorf("pg_recvlogical printed a COMMIT without its time (is include-timestamp on?): %q", line)
	}
	rest = strings.TrimSuffix(rest, ")")
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"} {
		if t, err := time.Parse(layout, rest); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("pg_recvlogical printed a commit time %q that is not ISO with a numeric offset", rest)
}
