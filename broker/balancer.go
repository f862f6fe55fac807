package broker

import (
	"bytes"

	"github.com/segmentio/kafka-go"
)

// KeySeparator ends the part of a key that KeyPrefixBalancer partitions by.
// PostgreSQL text cannot hold it, so no external id or device id does.
const KeySeparator = '\x00'

// KeyPrefixBalancer partitions a message by the part of its key before the
// first KeySeparator (the whole key when it has none), hashed with murmur2
// as the Java client and kafka.Murmur2Balancer hash a key. With keys
// "<target>\x00<row>", every record of one target lands in one partition,
// while compaction keeps the newest record of each target and row.
type KeyPrefixBalancer struct{}

// Balance is kafka.Balancer's.
func (KeyPrefixBalancer) Balance(msg kafka.Message, partitions ...int) int {
	key := msg.Key
	if i := bytes.IndexByte(key, KeySeparator); i >= 0 {
		key = key[:i:i]
	}
	return kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, partitions...)
}

// MessagePartition is a balancer that writes each message to the partition
// its Partition field names, a field kafka-go's Writer otherwise ignores:
// for a changelog whose records go to the partition number of the event
// they came from. Check first that the topic has that partition
// (PartitionCount): a write to one it lacks fails.
type MessagePartition struct{}

// Balance is kafka.Balancer's.
func (MessagePartition) Balance(msg kafka.Message, _ ...int) int { return msg.Partition }
