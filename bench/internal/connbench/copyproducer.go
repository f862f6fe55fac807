package connbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/broker"
)

// The snapshot's ceiling on this machine: what any snapshotter into the
// same broker pays at least. A minimal producer streams the rows of
// `COPY (SELECT * FROM t) TO STDOUT` into Kafka, one message per row (the
// row's text line, keyed by its first column), in writes of copyBatch
// messages with copyWriters writes in flight, through the connector's
// writer settings. It does no JSON, no watermarks and no bookkeeping, so
// the connector's snapshot can at best match it; and the COPY's backend's
// CPU per row is what reading the rows costs the server at least.

const (
	envCopy     = "ONESIGNAL_CDC_BENCH_COPY"
	copyBatch   = 1000
	copyWriters = 4
)

// copyConfig configures the COPY producer child.
type copyConfig struct {
	DSN     string   `json:"dsn"`
	Table   string   `json:"table"`
	Topic   string   `json:"topic"`
	Brokers []string `json:"brokers"`
	// KeyBytes and ValueBytes, when above zero, pad each message's key and
	// value to that size (with copies of the line's own bytes).
	KeyBytes   int `json:"key_bytes,omitempty"`
	ValueBytes int `json:"value_bytes,omitempty"`
}

// copyOutput is what the child prints on its last line of standard output.
type copyOutput struct {
	Rows       int64         `json:"rows"`
	ServerCPU  time.Duration `json:"server_cpu"` // the COPY's backend
	CopyFinish time.Duration `json:"copy_finish"`
}

// runCopyProducer is the "copy" child.
func runCopyProducer(ctx context.Context, cfg copyConfig) error {
	conn, err := pgconn.Connect(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pid := conn.PID()
	cpuBefore, err := backendCPU(pid)
	if err != nil {
		return err
	}
	w := broker.NewEagerWriter(cfg.Brokers)
	defer w.Close()

	batches := make(chan []kafka.Message, copyWriters)
	var wg sync.WaitGroup
	var werr error
	var once sync.Once
	for range copyWriters {
		wg.Go(func() {
			for b := range batches {
				if err := w.WriteMessages(ctx, b...); err != nil {
					once.Do(func() { werr = err })
				}
			}
		})
	}
	lines := &lineSplitter{topic: cfg.Topic, out: batches, keyBytes: cfg.KeyBytes, valueBytes: cfg.ValueBytes}
	started := time.Now()
	tag, err := conn.CopyTo(ctx, lines, "COPY (SELECT * FROM "+cfg.Table+") TO STDOUT")
	copied := time.Since(started)
	lines.flush()
	close(batches)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("COPY: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("write to Kafka: %w", werr)
	}
	cpuAfter, err := backendCPU(pid)
	if err != nil {
		return err
	}
	out, _ := json.Marshal(copyOutput{Rows: tag.RowsAffected(), ServerCPU: cpuAfter - cpuBefore, CopyFinish: copied})
	fmt.Printf("%s\n", out)
	return nil
}

// lineSplitter turns COPY's text output into one message per line.
type lineSplitter struct {
	topic                string
	keyBytes, valueBytes int // pad to these sizes, when above zero
	out                  chan<- []kafka.Message
	part                 []byte // a line split between writes
	batch                []kafka.Message
	slab                 []byte
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.part = append(l.part, p...)
			break
		}
		line := p[:i]
		if len(l.part) > 0 {
			line = append(l.part, line...)
			l.part = l.part[:0]
		}
		l.add(line)
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineSplitter) add(line []byte) {
	key := line
	if i := bytes.IndexByte(line, '\t'); i >= 0 {
		key = line[:i]
	}
	var k, v []byte
	if l.keyBytes > 0 || l.valueBytes > 0 {
		k, v = l.padded(key, l.keyBytes), l.padded(line, l.valueBytes)
	} else {
		v = l.padded(line, 0)
		k = v[:len(key)]
	}
	l.batch = append(l.batch, kafka.Message{Topic: l.topic, Key: k, Value: v})
	if len(l.batch) == copyBatch {
		l.flush()
	}
}

// padded copies b into the slab, followed by copies of itself up to size
// bytes in all.
func (l *lineSplitter) padded(b []byte, size int) []byte {
	size = max(size, len(b))
	if cap(l.slab)-len(l.slab) < size {
		l.slab = make([]byte, 0, max(64<<10, size))
	}
	s := len(l.slab)
	for len(l.slab)-s < size && len(b) > 0 {
		l.slab = append(l.slab, b[:min(len(b), size-(len(l.slab)-s))]...)
	}
	return l.slab[s:len(l.slab):len(l.slab)]
}

func (l *lineSplitter) flush() {
	if len(l.batch) > 0 {
		l.out <- l.batch
		l.batch = make([]kafka.Message, 0, copyBatch)
	}
}

// backendCPU is the CPU time a server process has used, from /proc (the
// server runs on this machine).
func backendCPU(pid uint32) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("the backend's CPU time: %w", err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 14th and 15th of the line.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// copyRun is one run of the COPY producer against a fresh broker.
type copyRun struct {
	run
	serverCPU time.Duration
}

func (b *Bench) copyToKafka(ctx context.Context, table string, keyBytes, valueBytes int) (copyRun, error) {
	br, err := harness.StartBroker(ctx)
	if err != nil {
		return copyRun{}, err
	}
	defer br.Stop(10 * time.Second) //nolint:errcheck // stopped below; this is for the error paths
	topic := topicPrefix + ".copy." + table
	if err := broker.EnsureTopics(ctx, br.Brokers, partitions, topic); err != nil {
		return copyRun{}, err
	}
	cfg, err := json.Marshal(copyConfig{DSN: b.DB.DSN, Table: table, Topic: topic, Brokers: br.Brokers, KeyBytes: keyBytes, ValueBytes: valueBytes})
	if err != nil {
		return copyRun{}, err
	}
	var out bytes.Buffer
	p, err := harness.StartChild("copy", []string{envCopy + "=" + string(cfg)}, &out)
	if err != nil {
		return copyRun{}, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop(10 * time.Second)
		return copyRun{}, ctx.Err()
	case <-time.After(b.Opts.Timeout):
		_ = p.Stop(10 * time.Second)
		return copyRun{}, fmt.Errorf("the COPY producer did not finish within %s", b.Opts.Timeout)
	}
	if err := p.Err(); err != nil {
		return copyRun{}, fmt.Errorf("the COPY producer: %w", err)
	}
	var r copyRun
	r.elapsed = time.Since(p.Started)
	r.cpu, r.maxRSS = p.Usage()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var o copyOutput
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &o); err != nil {
		return copyRun{}, fmt.Errorf("the COPY producer said %q", out.String())
	}
	if o.Rows != int64(b.Opts.Rows) {
		return copyRun{}, fmt.Errorf("COPY read %d rows, want %d", o.Rows, b.Opts.Rows)
	}
	kc := &kafka.Client{Addr: kafka.TCP(br.Brokers...), Timeout: 5 * time.Second}
	if r.events, err = kafkaCount(ctx, kc, topic); err != nil {
		return copyRun{}, err
	}
	if r.events != o.Rows {
		return copyRun{}, fmt.Errorf("kafka holds %d of the COPY's %d rows", r.events, o.Rows)
	}
	r.serverCPU = o.ServerCPU
	_ = br.Stop(10 * time.Second)
	r.brokerCPU, _ = br.Usage()
	return r, nil
}
