package broker

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// countingTransport answers metadata requests for any topic with one
// partition, or fails while failing is set, and counts what it was asked.
type countingTransport struct {
	asked   int
	failing bool
}

func (c *countingTransport) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	c.asked++
	if c.failing {
		return nil, errors.New("kafka: broker not available")
	}
	name := req.(*metadataAPI.Request).TopicNames[0]
	return &metadataAPI.Response{Topics: []metadataAPI.ResponseTopic{{Name: name, Partitions: []metadataAPI.ResponsePartition{{PartitionIndex: 0}}}}}, nil
}

func askFor(t *testing.T, p *partitionCounts, topic string) error {
	t.Helper()
	_, err := p.RoundTrip(t.Context(), nil, &metadataAPI.Request{TopicNames: []string{topic}})
	return err
}

func TestTheConnectorWritersPartitionCountsAreAskedOncePerTTLAndTopic(t *testing.T) {
	tr := &countingTransport{}
	p := &partitionCounts{RoundTripper: tr, ttl: time.Hour}
	for range 1000 {
		for _, topic := range []string{"cdc.public.contacts", "cdc.public.Devices"} {
			if err := askFor(t, p, topic); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tr.asked != 2 {
		t.Errorf("the broker was asked %d times for two topics within the TTL, want 2", tr.asked)
	}
}

func TestTheConnectorWritersPartitionCountsAreAskedAgainWithinCheckEveryAnswersAfterTheTTL(t *testing.T) {
	tr := &countingTransport{}
	p := &partitionCounts{RoundTripper: tr, ttl: 20 * time.Millisecond}
	if err := askFor(t, p, "cdc.public.contacts"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	for range checkEvery {
		if err := askFor(t, p, "cdc.public.contacts"); err != nil {
			t.Fatal(err)
		}
	}
	if tr.asked != 2 {
		t.Errorf("the broker was asked %d times, want 2: once more within %d answers after the TTL", tr.asked, checkEvery)
	}
}

func TestTheConnectorWritersPartitionCountsKeepNoError(t *testing.T) {
	tr := &countingTransport{failing: true}
	p := &partitionCounts{RoundTripper: tr, ttl: time.Hour}
	for range 3 {
		if err := askFor(t, p, "cdc.public.contacts"); err == nil {
			t.Fatal("a failed metadata request answered without an error")
		}
	}
	tr.failing = false
	if err := askFor(t, p, "cdc.public.contacts"); err != nil {
		t.Fatal(err)
	}
	if tr.asked != 4 {
		t.Errorf("the broker was asked %d times, want every time until it answered (4)", tr.asked)
	}
}
