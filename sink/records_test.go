package sink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

var withEmail = &transform.Mapping{Users: &transform.UsersMapping{
	Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": ""}, Email: "email",
}}

// userWithEmail is userEvent with an email column, as an update without
// an old row (REPLICA IDENTITY DEFAULT).
func userWithEmail(id, plan, email string) kafka.Message {
	m := userEvent(id, plan)
	m.Value = []byte(strings.Replace(string(m.Value), `"plan":"`+plan+`"`, `"plan":"`+plan+`","email":"`+email+`"`, 1))
	return m
}

func TestSinkSendsARecordBeforeTheTagsInWindowsOfItsOwnAndOnlyOnce(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userWithEmail("u1", "free", "a@example.com"))
	cfg, clock := manualConfig()
	api := newRecordingAPI(clock, nil)
	run := startSinkMapping(t, b, "g", api, cfg, withEmail)

	waitFor(t, "the record to be sent", func() bool { return api.count() == 1 })
	clock.Advance(time.Second)
	waitFor(t, "the tags to follow a second later", func() bool { return committed(t, b, "g") == 1 })
	// The same address again, as an update without an old row repeats it.
	produce(t, b, userWithEmail("u1", "pro", "a@example.com"))
	clock.Advance(time.Second)
	waitFor(t, "the update to be committed", func() bool { return committed(t, b, "g") == 2 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	calls := byTarget(api.recorded())["user u1"]
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.op)
	}
	if got := strings.Join(ops, " "); got != "add_email set_tags set_tags" {
		t.Fatalf("u1's calls = %s, want add_email set_tags set_tags: the record first, once", got)
	}
	if calls[0].identifier != "a@example.com" || calls[1].start.Sub(calls[0].end) < time.Second {
		t.Errorf("record %q, tags %v after it; want the address, and the tags a window later", calls[0].identifier, calls[1].start.Sub(calls[0].end))
	}
}
