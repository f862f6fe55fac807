// Package e2e runs the built onesignal-cdc binary against a real PostgreSQL,
// the kfake broker and the OneSignal emulator, as a user would.
package e2e

import (
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// baseConfig is the configuration of a daemon on st that most tests share:
// the users and devices tables of schema.
func baseConfig(st *daemontest.Stack) config.Config {
	c := st.Config()
	e2eSettings(&c)
	c.Postgres.SnapshotChunkSize = 1000
	c.OneSignal.Concurrency = 8
	c.Mapping = transform.Mapping{Users: usersMapping(), Devices: devicesMapping()}
	return c
}

// e2eSettings sets what the tests' daemons share: the publication cdc,
// the connector's status every 200 ms, topics cdc.* of four partitions,
// and the consumer group e2e.
func e2eSettings(c *config.Config) {
	c.Postgres.Publication = "cdc"
	c.Postgres.StatusInterval = 200 * time.Millisecond
	c.Kafka.TopicPrefix = "cdc"
	c.Kafka.Partitions = 4
	c.Kafka.ConsumerGroup = "e2e"
}

// usersMapping maps schema's users table: its plan, score and country
// columns give the tags plan, level and geo.
func usersMapping() *transform.UsersMapping {
	return &transform.UsersMapping{Table: "public.users", ExternalID: "external_id",
		Tags: map[string]string{"plan": "", "score": "level", "country": "geo"}}
}

// devicesMapping maps schema's devices table: a device is owned by the user
// of user_external_id.
func devicesMapping() *transform.DevicesMapping {
	return &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"}
}
