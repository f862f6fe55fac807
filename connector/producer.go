package connector

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
)

// producer writes events to Kafka and acknowledges each event's
// transaction (and snapshot chunk) once Kafka holds it.
//
// It keeps several writes in flight: events go to one of lanes lanes by a
// hash of their key, and each lane batches and writes its events one write
// at a time, in the order it got them. A key's events are always in the
// same lane, so they reach Kafka in commit order; different keys need no
// order between them. A failed write is retried whole, with backoff, for
// as long as it takes, before its lane moves on: the confirmed LSN waits
// meanwhile, since the tracker confirms only what is contiguous. A retried
// write may put an event of its own after a newer one of the same key it
// carried (kafka-go may have split it into batches of which only some
// failed); the newer one is then written again after it, so the last
// event of every key is still its newest, and the sink skips the older
// one by its position.
//
// Keyless events (a TRUNCATE) wait until every lane has written what came
// before, and are written before anything after them.
type producer struct {
	w         MessageWriter
	log       *zap.Logger
	batchSize int // events per write, per lane
	lanes     int
	obs       Observer
}

// maxBatchBytes bounds a write's bytes, and so what a lane holds in
// flight and one produce request carries: under Kafka's 1 MiB limit of a
// record batch even when all of a write's events share a partition. A
// write stops taking events past it, and the last one it takes is at most
// an event's limit (256 KiB, pgcodec) more.
const maxBatchBytes = 512 << 10

// run writes until in is closed and drained (nil) or ctx ends, or a lane
// fails for good. Events come in runs (the reader hands them over a run at
// a time, so that a channel operation is not paid per event), in order.
func (p *producer) run(ctx context.Context, in <-chan []outgoing) error {
	lanes := max(p.lanes, 1)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	chans := make([]chan []outgoing, lanes)
	var wg sync.WaitGroup
	// A lane's channel holds about a write's worth of events (batchSize)
	// while its write is in flight: dispatch cuts each run of handoff
	// events into one run per lane, so a lane's runs are about
	// handoff/lanes events long. Counted in runs of handoff, it held
	// 1/lanes of a write, and each write took what a quarter of a
	// write's room had gathered (236 events on average, in 50-message
	// partition batches, in the snapshot benchmark).
	for i := range chans {
		chans[i] = make(chan []outgoing, max(p.batchSize*lanes/handoff, 4))
		wg.Go(func() {
			if err := p.lane(ctx, chans[i]); err != nil {
				cancel(err)
			}
		})
	}
	err := p.dispatch(ctx, in, chans)
	for _, c := range chans {
		close(c)
	}
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// handoff is how many events the reader hands the producer at once, at
// most: enough that the channel operations and goroutine wake-ups are a
// small part of an event's cost, few enough that the queue's bound in
// events stays close to Config.QueueSize.
const handoff = 64

// dispatch hands each event to its lane, in runs.
func (p *producer) dispatch(ctx context.Context, in <-chan []outgoing, lanes []chan []outgoing) error {
	send := func(lane chan []outgoing, run []outgoing) error {
		select {
		case lane <- run:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// barrier returns once every lane in ls wrote what it was given.
	barrier := func(ls []chan []outgoing) error {
		var done sync.WaitGroup
		done.Add(len(ls))
		for _, l := range ls {
			if err := send(l, []outgoing{{flushed: &done}}); err != nil {
				return err
			}
		}
		waited := make(chan struct{})
		go func() { done.Wait(); close(waited) }()
		select {
		case <-waited:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Each run received is cut into the lanes' runs in place: grouped by
	// lane, in order within each, through a reused copy. The runs handed
	// to the lanes are disjoint parts of it, which the lanes only read.
	var scratch []outgoing
	var laneIdx []int
	counts, next := make([]int, len(lanes)), make([]int, len(lanes))
	spread := func(seg []outgoing) error {
		if len(seg) == 0 {
			return nil
		}
		if len(lanes) == 1 {
			return send(lanes[0], seg)
		}
		clear(counts)
		laneIdx = laneIdx[:0]
		for _, o := range seg {
			i := laneOf(o.msg.Key, len(lanes))
			laneIdx = append(laneIdx, i)
			counts[i]++
		}
		if counts[laneIdx[0]] == len(seg) {
			return send(lanes[laneIdx[0]], seg)
		}
		scratch = append(scratch[:0], seg...)
		at := 0
		for i, n := range counts {
			next[i] = at
			at += n
		}
		for j, i := range laneIdx {
			seg[next[i]] = scratch[j]
			next[i]++
		}
		at = 0
		for i, n := range counts {
			if n > 0 {
				if err := send(lanes[i], seg[at:at+n:at+n]); err != nil {
					return err
				}
			}
			at += n
		}
		return nil
	}
	for {
		var batch []outgoing
		var ok bool
		select {
		case batch, ok = <-in:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return nil
		}
		from := 0
		for j, o := range batch {
			if len(o.msg.Key) != 0 || o.op != event.OpTruncate {
				continue
			}
			if err := spread(batch[from:j:j]); err != nil {
				return err
			}
			if err := barrier(lanes); err != nil {
				return err
			}
			if err := send(lanes[0], batch[j:j+1:j+1]); err != nil {
				return err
			}
			if err := barrier(lanes[:1]); err != nil {
				return err
			}
			from = j + 1
		}
		if err := spread(batch[from:]); err != nil {
			return err
		}
	}
}

// laneOf spreads keys over n lanes (FNV-1a); keyless events go to lane 0.
func laneOf(key []byte, n int) int {
	h := uint32(2166136261)
	for _, b := range key {
		h = (h ^ uint32(b)) * 16777619
	}
	return int(h % uint32(n))
}

// lane writes the events of in, batched, one write at a time.
func (p *producer) lane(ctx context.Context, in <-chan []outgoing) error {
	batch := make([]outgoing, 0, p.batchSize)
	msgs := make([]kafka.Message, 0, p.batchSize)
	var rest []outgoing // received, not yet in a batch
	for {
		if len(rest) == 0 {
			var ok bool
			select {
			case rest, ok = <-in:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !ok {
				return nil
			}
		}
		batch, msgs = batch[:0], msgs[:0]
		size := 0
		var flushed *sync.WaitGroup
		closed := false
	fill:
		for {
			for len(rest) > 0 && len(batch) < p.batchSize && size < maxBatchBytes {
				o := rest[0]
				rest = rest[1:]
				if o.flushed != nil {
					flushed = o.flushed // everything before it is in batch
					break fill
				}
				batch, msgs = append(batch, o), append(msgs, o.msg)
				size += len(o.msg.Value) + len(o.msg.Key)
			}
			if len(rest) > 0 || len(batch) >= p.batchSize || size >= maxBatchBytes {
				break
			}
			select {
			case r, ok := <-in:
				if !ok {
					closed = true
					break fill
				}
				rest = r
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			retried, err := p.write(ctx, batch, msgs)
			if err != nil {
				return err
			}
			if retried {
				// A failed attempt's request may still be read by the
				// transport (kafka-go encodes a request it took before
				// its deadline passed even after WriteMessages gave up on
				// it): the next write gets messages of its own.
				msgs = make([]kafka.Message, 0, p.batchSize)
			}
		}
		if flushed != nil {
			flushed.Done()
		}
		if closed && len(rest) == 0 {
			return nil
		}
	}
}

// write writes one batch, retrying it whole, then acknowledges its events.
// retried reports whether an attempt failed before the one that succeeded.
func (p *producer) write(ctx context.Context, batch []outgoing, msgs []kafka.Message) (retried bool, err error) {
	err = retry.Produce.Do(ctx, func() error {
		started := time.Now()
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			p.obs.Produced(written(batch, time.Since(started)))
		} else if ctx.Err() == nil {
			p.obs.Produced(Write{Duration: time.Since(started), Err: err})
		}
		return broker.ClassifyWrite(err) // a permanent or fatal error stops the connector
	},
		func(err error, wait time.Duration) {
			retried = true
			p.log.Warn("kafka write failed; retrying", zap.Error(err), zap.Int("events", len(msgs)), zap.Duration("wait", wait))
		})
	if err != nil {
		return retried, err
	}
	for _, o := range batch {
		o.txn.Ack()
		if o.chunk != nil {
			o.chunk.ack()
		}
	}
	return retried, nil
}
