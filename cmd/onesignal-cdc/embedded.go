package main

import (
	"fmt"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
)

// commandKafka is the Kafka a one-off command (snapshot --reset, dlq
// replay) works on. With the embedded broker that is its data directory,
// opened by a broker of the command's own while no daemon holds it;
// inMemory explains why a broker in memory is out of reach. done releases
// what it started.
func commandKafka(cfg *config.Config, inMemory string) (cluster broker.Cluster, done func(), err error) {
	if !cfg.EmbeddedKafka() {
		c, err := cfg.KafkaCluster(nil)
		if err != nil {
			return broker.Cluster{}, nil, usageError{err}
		}
		return c, func() {}, nil
	}
	if cfg.Kafka.EmbeddedDataDir == "" {
		return broker.Cluster{}, nil, usageError{fmt.Errorf("kafka.brokers is [embedded] and kafka.embedded_data_dir is empty: %s", inMemory)}
	}
	emb, err := broker.StartEmbeddedIn("127.0.0.1:0", cfg.Kafka.EmbeddedDataDir)
	if err != nil {
		return broker.Cluster{}, nil, err
	}
	return broker.Plain(emb.Brokers()), emb.Close, nil
}
