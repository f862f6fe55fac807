package daemontest

import (
	"cmp"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// The app a stack's emulator plays unless told another.
const (
	AppID  = "3c1e8f9a-0000-4000-8000-0000000da7e5"
	APIKey = "daemontest-key"
)

// Stack is what daemons run against: the source database, a Kafka broker
// in the test's process (kfake, the embedded broker: apart from the
// daemons, so that a daemon killed leaves Kafka and what it holds, and
// open to the test for faults and reading) and the OneSignal emulator
// behind real HTTP. Everything goes when the test ends.
type Stack struct {
	DB       *pgtest.DB
	Kafka    *broker.Embedded
	Emulator *emulator.Emulator
	// EmulatorConfig is what the emulator was started with, its AppID
	// and APIKey set.
	EmulatorConfig emulator.Config
	APIURL         string // the emulator's base URL
}

// StackOptions shape a stack.
type StackOptions struct {
	// Emulator configures the emulator; AppID and APIKey default to the
	// package's.
	Emulator emulator.Config
	// Cluster is the server of the database, for a test that restarts
	// it. Default nil: the test server (pgtest.NewDB).
	Cluster *pgtest.Cluster
	// Serve is what serves the API, given the emulator's handler (a
	// trace of the requests in front of it). Default: the handler.
	Serve func(http.Handler) http.Handler
}

// NewStack starts a stack for the test.
func NewStack(t testing.TB, o StackOptions) *Stack {
	t.Helper()
	s := &Stack{EmulatorConfig: o.Emulator}
	s.EmulatorConfig.AppID = cmp.Or(s.EmulatorConfig.AppID, AppID)
	s.EmulatorConfig.APIKey = cmp.Or(s.EmulatorConfig.APIKey, APIKey)
	if err := s.EmulatorConfig.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Cluster != nil {
		s.DB = o.Cluster.NewDB(t)
	} else {
		s.DB = pgtest.NewDB(t)
	}
	s.Kafka = kafkatest.Start(t)
	s.Emulator = emulator.New(s.EmulatorConfig)
	var h http.Handler = s.Emulator.Handler()
	if o.Serve != nil {
		h = o.Serve(h)
	}
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)
	s.APIURL = api.URL
	return s
}

// Config is the configuration of a daemon on the stack: the defaults,
// with the database (and a slot named after it), the broker and the
// emulator's app filled in.
func (s *Stack) Config() config.Config {
	c := config.Default()
	c.Postgres.DSN = secret.Value(s.DB.DSN)
	c.Postgres.Slot = s.DB.Name
	c.Kafka.Brokers = s.Kafka.Brokers()
	c.OneSignal.BaseURL = s.APIURL
	c.OneSignal.AppID = s.EmulatorConfig.AppID
	c.OneSignal.APIKey = secret.Value(s.EmulatorConfig.APIKey)
	return c
}

// WaitForSlot waits up to a minute until a walsender streams from the
// slot of db, as the connector does once it started. It fails the test
// at once when a process of watch (the one that runs the connector) ends
// first.
func WaitForSlot(t testing.TB, db *pgtest.DB, slot string, watch ...*Process) {
	t.Helper()
	conn := db.Conn(t)
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		_ = conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1)`, slot).Scan(&active)
		if active {
			return
		}
		for _, p := range watch {
			if !p.Running() {
				t.Fatalf("%s exited before it streamed", p)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the connector did not start streaming within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
