// Package broker holds what the daemon needs of Kafka besides reading and
// writing records: kafka-go settings that keep the acknowledgement chain
// honest, topic creation, the partitioners, consumer-group membership with
// its assignments (the sink's fence), and the embedded development broker.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// WriterBatchSize is the kafka-go writer BatchSize the daemon uses (the
// sink's writers; the connector writes through ProduceWriter): the most
// messages in one produce batch of one partition. kafka-go sets aside room
// for BatchSize messages in every batch it starts (one per partition per
// write), so a size far above what one write puts in one partition costs
// allocation and GC for nothing: at 1000, with the connector's 1,000-event
// writes over 6 partitions, 900 kB per write, 6 % of the connector's CPU in
// a profile of the connector under `go run ./bench -phases stream` (when
// it wrote through kafka-go's writer), and its share of GC. Batches fill and are sent at once; the rest wait
// BatchTimeout.
const WriterBatchSize = 256

// Writer settings the connector relies on: every message is acknowledged by
// all in-sync replicas before WriteMessages returns; a message's partition
// is the murmur2 hash of its key, as the Java client (and so Kafka Connect)
// computes it, so a key's events stay in order; keyless events (rows of a
// table without a key, truncates) all go to one partition, in order, not
// to a random one each; kafka-go does not retry on
// its own (the caller retries whole batches without advancing its LSN).
func NewWriter(brokers []string, batchSize int) *Writer {
	return Plain(brokers).NewWriter(batchSize)
}

// NewWriter is the package's NewWriter on c.
func (c Cluster) NewWriter(batchSize int) *Writer {
	transport := c.Transport()
	return &Writer{transport: transport, Writer: &kafka.Writer{
		Addr:         kafka.TCP(c.Brokers...),
		Transport:    transport,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    batchSize,
		BatchBytes:   1 << 20,
		BatchTimeout: 2 * time.Millisecond,
		MaxAttempts:  1,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	}}
}

// Writer is a kafka-go writer with a connection pool of its own, which
// Close ends with the writer. kafka-go's Writer.Close leaves a transport it
// was given open, and an open transport refreshes its metadata every 6 s,
// holding a connection, for as long as the process runs.
type Writer struct {
	*kafka.Writer
	transport *kafka.Transport
}

// Close sends what is pending, waits for its answers and closes the
// writer's connections.
func (w *Writer) Close() error {
	err := w.Writer.Close()
	w.transport.CloseIdleConnections()
	return err
}

// EnsureTopics creates the topics that do not exist yet, with partitions
// partitions and the broker's default replication factor.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	return Plain(brokers).EnsureTopics(ctx, partitions, topics...)
}

// EnsureTopics is the package's EnsureTopics on c.
func (c Cluster) EnsureTopics(ctx context.Context, partitions int, topics ...string) error {
	client, done := c.Client(10 * time.Second)
	defer done()
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: -1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for topic, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %q: %w", topic, err))
		}
	}
	return errors.Join(errs...)
}

// Embedded is an in-process Kafka cluster (franz-go's kfake) speaking the
// real wire protocol, for development and tests. With a data directory it
// keeps its topics, the consumer groups' offsets and the connector's state
// across restarts; without one, everything is lost when the process exits.
type Embedded struct {
	cluster *kfake.Cluster
	dir     string
	unlock  func()
}

// StartEmbedded starts a one-broker cluster in memory, listening on listen
// ("127.0.0.1:0" picks a free port).
func StartEmbedded(listen string) (*Embedded, error) { return StartEmbeddedIn(listen, "") }

// StartEmbeddedIn starts a one-broker cluster that keeps its data in dir,
// created when missing, and takes up what an earlier run left there; ""
// keeps it in memory. Every produced batch is written and fsynced
// (kfake's SyncWrites) before the broker acknowledges it, so what Kafka
// acknowledged survives the process being killed and the machine going
// down. One process at a time may use dir: a second gets an error.
func StartEmbeddedIn(listen, dir string) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	unlock := func() {}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("embedded broker data directory: %w: choose a writable kafka.embedded_data_dir", err)
		}
		if unlock, err = lockDir(dir); err != nil {
			return nil, err
		}
		// fsync per batch costs throughput (about 35,000 events/s instead of
		// 200,000 on a 2-core VM) that the sink, held to OneSignal's 1,000
		// requests/s, never uses.
		opts = append(opts, kfake.DataDir(dir), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		unlock()
		if dir != "" {
			return nil, fmt.Errorf("start the embedded broker on %s: %w (move the directory away to start over: the connector then snapshots every table again)", dir, err)
		}
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	return &Embedded{cluster: c, dir: dir, unlock: unlock}, nil
}

// Brokers returns the addresses clients connect to.
func (e *Embedded) Brokers() []string { return e.cluster.ListenAddrs() }

// Cluster exposes the kfake cluster, for tests that inject faults.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker. In memory, its data is gone; in a data
// directory, it is saved there and the directory is free for the next
// process.
func (e *Embedded) Close() {
	e.cluster.Close()
	e.unlock()
}
