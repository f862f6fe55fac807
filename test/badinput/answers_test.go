package badinput

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// answerCase is an answer the emulator gives to the requests about one
// user, in place of OneSignal's.
type answerCase struct {
	name    string
	answer  emulator.Answer // Method and Path are set to the update of the case's user
	retried bool            // a transient answer: the tags must arrive, no dead letter
	reason  []string        // a permanent one: what the dead letter's reason holds
	status  string          // and its status header
}

const errorPage = `<!DOCTYPE html>
<html><head><title>%d Bad Gateway</title></head>
<body><center><h1>%d Bad Gateway</h1></center><hr><center>nginx</center></body></html>`

// TestOneSignalAnswersAreClassified sends each user's tag change into an
// answer of the emulator's: a proxy's error page, a body cut short, a
// status nobody documents, a success that says it failed. Transient ones
// must be retried until OneSignal's own answer applies the change, never
// dead-lettered; permanent ones dead-lettered with the reason.
//
// Each case's change is an update of its row, which the sink sends as an
// update of the user by external id (PATCH /users/by/external_id/<id>),
// a path of the user's own; an insert would be a create user, POST
// /users, which names no user in its path.
func TestOneSignalAnswersAreClassified(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	cases := []answerCase{
		1: {
			name:    "a 502 HTML error page is retried until OneSignal takes the change, never dead-lettered",
			answer:  emulator.Answer{Times: 2, Status: 502, Header: map[string]string{"Content-Type": "text/html"}, Body: fmt.Sprintf(errorPage, 502, 502)},
			retried: true,
		},
		2: {
			name:    "a 503 HTML error page is retried until OneSignal takes the change, never dead-lettered",
			answer:  emulator.Answer{Times: 2, Status: 503, Header: map[string]string{"Content-Type": "text/html"}, Body: fmt.Sprintf(errorPage, 503, 503)},
			retried: true,
		},
		3: {
			name:   "a 400 with JSON cut short is dead-lettered with its text and status",
			answer: emulator.Answer{Status: 400, Body: `{"errors": ["Invalid tag ke`},
			reason: []string{"HTTP 400 Bad Request", `{"errors": ["Invalid tag ke`}, status: "400",
		},
		4: {
			name:    "a 200 whose body breaks off is retried: whether OneSignal applied the change is unknown",
			answer:  emulator.Answer{Times: 2, Status: 200, Header: map[string]string{"Content-Type": "application/json"}, Body: `{"success": true}`, Cut: 5},
			retried: true,
		},
		5: {
			name:    "a 200 with JSON cut short is retried: the answer cannot be trusted",
			answer:  emulator.Answer{Times: 2, Status: 200, Body: `{"properties": {"tags": {"pla`},
			retried: true,
		},
		6: {
			name:    "a 200 with an HTML page is retried: the answer cannot be trusted",
			answer:  emulator.Answer{Times: 2, Status: 200, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><head><title>Sign in</title></head></html>"},
			retried: true,
		},
		7: {
			name:   "a 418 is dead-lettered with its status",
			answer: emulator.Answer{Status: 418},
			reason: []string{"HTTP 418 I'm a teapot"}, status: "418",
		},
		8: {
			name:   "a 451 is dead-lettered with its status",
			answer: emulator.Answer{Status: 451, Body: `{"errors": ["Unavailable For Legal Reasons"]}`},
			reason: []string{"HTTP 451 Unavailable For Legal Reasons: Unavailable For Legal Reasons"}, status: "451",
		},
		9: {
			name:    "a 509, a status no standard names, is retried like every 5xx",
			answer:  emulator.Answer{Times: 2, Status: 509},
			retried: true,
		},
		10: {
			name:    "a 599 is retried like every 5xx",
			answer:  emulator.Answer{Times: 2, Status: 599},
			retried: true,
		},
		11: {
			name:   `a 200 whose body says {"success": false} with errors is dead-lettered with the errors`,
			answer: emulator.Answer{Status: 200, Body: `{"errors": ["Invalid tag key"], "success": false}`},
			reason: []string{"HTTP 200 OK, but the body reports a failure: Invalid tag key"}, status: "200",
		},
		12: {
			name:   "a 204 with no body counts as applied",
			answer: emulator.Answer{Apply: true, Status: 204},
		},
		13: {
			name:   "a 200 with no body counts as applied",
			answer: emulator.Answer{Apply: true, Status: 200},
		},
		14: {
			name:    "a 429 without Retry-After is retried",
			answer:  emulator.Answer{Times: 2, Status: 429, Body: `{"errors": ["API rate limit exceeded."]}`},
			retried: true,
		},
	}
	var answers []emulator.Answer
	for no, c := range cases {
		if c.name == "" {
			continue
		}
		a := c.answer
		a.Method, a.Path = "PATCH", "/external_id/"+answerUser(no)
		answers = append(answers, a)
		if a.Apply {
			// An update of a user OneSignal has: its own answer would be 202.
			s.Emulator.AddUser(answerUser(no), nil)
		}
	}
	if err := s.Emulator.SetAnswers(answers...); err != nil {
		t.Fatal(err)
	}
	s.createTopic(t, usersTopic, 2, nil)
	cfg := s.usersConfig(t)
	daemon := daemontest.Start(t, daemontest.Sink, cfg)

	want := map[string]map[string]string{}
	var msgs []kafka.Message
	for no, c := range cases {
		if c.name == "" {
			continue
		}
		// Each user is a row of its own, the neighbours inserted, the
		// case's user updated. Their ids do not contain the case's user's:
		// its answer matches by a part of the path.
		for _, id := range []string{"before-" + answerUser(no), answerUser(no), "after-" + answerUser(no)} {
			ev := userEvent(str(id), str("kept"))
			if id == answerUser(no) {
				ev.Op = event.OpUpdate
			}
			msgs = append(msgs, kafka.Message{Key: str(id), Value: encode(ev, nil)})
			if id != answerUser(no) || c.reason == nil {
				want[id] = map[string]string{"plan": "kept"}
			}
		}
	}
	s.produce(t, usersTopic, msgs...)
	s.waitForTags(t, want, 90*time.Second)
	waitForCommitted(t, s.Kafka.Brokers(), "badinput", []string{usersTopic}, 60*time.Second)

	// OneSignal's refusals are of the target stage: the dead letter is
	// the user's record of the targets topic, naming the event.
	byUser := map[string][]deadLetter{}
	for _, dl := range s.deadLetters(t) {
		user := strings.TrimPrefix(desired.TargetOf(dl.Key), "user:")
		byUser[user] = append(byUser[user], dl)
	}
	answered := s.Emulator.Stats().Answered
	left := map[string]bool{} // the answers not used up
	for _, a := range s.Emulator.Answers() {
		left[a.Path] = true
	}
	for no, c := range cases {
		if c.name == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			dls := byUser[answerUser(no)]
			delete(byUser, answerUser(no))
			if answered[c.answer.Status] == 0 || (c.answer.Times > 0 && left["/external_id/"+answerUser(no)]) {
				t.Fatalf("the emulator did not give the answer %d times: the case proves nothing (answered %v)", c.answer.Times, answered)
			}
			switch {
			case c.reason == nil && len(dls) > 0:
				t.Errorf("dead-lettered, want it applied: %v", dls)
			case c.reason != nil && len(dls) != 1:
				t.Errorf("%d dead letters, want 1: %v", len(dls), dls)
			case c.reason != nil:
				dl := dls[0]
				if dl.stage != "onesignal" || dl.status != c.status {
					t.Errorf("stage %q status %q, want onesignal and %s", dl.stage, dl.status, c.status)
				}
				for _, r := range c.reason {
					if !strings.Contains(dl.reason, r) {
						t.Errorf("the dead letter's reason lacks %q:\n%s", r, dl.reason)
					}
				}
				if dl.header(sink.HeaderTopic) != targetsTopic || dl.header(sink.HeaderSourceTopic) != usersTopic || dl.header(sink.HeaderSourceOffset) == "" {
					t.Errorf("the dead letter does not say where the record and its event are: %v", dl.Headers)
				}
			}
			if c.reason == nil {
				if got := s.userTags(answerUser(no)); got["plan"] != "kept" {
					t.Errorf("the change is not in OneSignal: tags %v", got)
				}
			}
			for _, side := range []string{"before", "after"} {
				if got := s.userTags(side + "-" + answerUser(no)); got["plan"] != "kept" {
					t.Errorf("the change %s it is not in OneSignal: tags %v", side, got)
				}
			}
		})
	}
	for user, dls := range byUser {
		t.Errorf("dead letters of no case (user %q): %v", user, dls)
	}
	if !daemon.Running() {
		t.Fatalf("the daemon stopped:\n%s", daemon.Tail(4<<10))
	}
}

func answerUser(no int) string { return fmt.Sprintf("api-%d-user", no) }

// TestAnswersThatNoRequestCanGetPastStopTheSink gives the sink answers
// that mean the configuration is wrong: every request would get the same,
// so the sink must stop, naming the fix, with nothing committed past the
// message, rather than dead-letter the topic away. The message is the
// user's record in the targets topic: the event's offset may be committed
// once the record is in Kafka, the record's only once OneSignal took it.
// Each case restarts the sink, which finds the same record again; once
// the answers end, it applies it.
func TestAnswersThatNoRequestCanGetPastStopTheSink(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	cfg := s.usersConfig(t)
	const user = "stop-user"
	s.createTopic(t, usersTopic, 1, nil)
	// Rows of their own; the user's is an update, which the sink sends as
	// PATCH /users/by/external_id/stop-user, the answer's path.
	var msgs []kafka.Message
	for _, id := range []string{"stop-before", user, "stop-after"} {
		ev := userEvent(str(id), str("kept"))
		if id == user {
			ev.Op = event.OpUpdate
		}
		msgs = append(msgs, kafka.Message{Key: str(id), Value: encode(ev, nil)})
	}
	s.produce(t, usersTopic, msgs...)

	for _, c := range []struct {
		name   string
		answer emulator.Answer
		want   []string
	}{
		{
			name:   "a 401 stops the sink, naming the API key and the app, with nothing committed past the message",
			answer: emulator.Answer{Status: 401, Body: `{"errors": ["Unauthorized"]}`},
			want:   []string{"OneSignal refused the API key for app " + appID + ": set onesignal.api_key", "HTTP 401"},
		},
		{
			name:   "a 403 stops the sink, naming the app ID and the API key (the user model answers both mistakes alike), with nothing committed past the message",
			answer: emulator.Answer{Status: 403, Body: `{"errors": ["Access denied."]}`},
			want:   []string{"OneSignal refused the API key for app " + appID + ", or has no such app", "onesignal.app_id", "onesignal.api_key", "HTTP 403"},
		},
		{
			name:   "a 301 redirect is not followed: it stops the sink, naming onesignal.base_url, with nothing committed past the message",
			answer: emulator.Answer{Status: 301, Header: map[string]string{"Location": "https://api.onesignal.example/apps"}},
			want:   []string{"OneSignal's address answered with a redirect", "set onesignal.base_url", "https://api.onesignal.example"},
		},
		{
			name:   "a 302 redirect to a login page is not followed: it stops the sink, naming onesignal.base_url",
			answer: emulator.Answer{Status: 302, Header: map[string]string{"Location": "/login"}, Body: "<html><title>Sign in</title></html>"},
			want:   []string{"OneSignal's address answered with a redirect", "set onesignal.base_url", "another path of the same host"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := c.answer
			a.Method, a.Path = "PATCH", "/external_id/"+user
			if err := s.Emulator.SetAnswers(a); err != nil {
				t.Fatal(err)
			}
			p := daemontest.Start(t, daemontest.Sink, cfg)
			if code := p.Wait(t, 60*time.Second); code != 1 {
				t.Errorf("the sink exited %d, want 1", code)
			}
			for _, w := range c.want {
				if !strings.Contains(p.Output(), w) {
					t.Errorf("the log lacks %q:\n%s", w, p.Tail(3<<10))
				}
			}
			if strings.Contains(p.Output(), apiKey) {
				t.Error("the log shows the API key")
			}
			rec := s.targetRecord(t, "user:"+user)
			if where := fmt.Sprintf("%s/%d@%d", targetsTopic, rec.Partition, rec.Offset); !strings.Contains(p.Output(), where) {
				t.Errorf("the log does not name the message it stopped with, %s:\n%s", where, p.Tail(3<<10))
			}
			if off := committed(t, s.Kafka.Brokers(), "badinput", targetsTopic)[int(rec.Partition)]; off > rec.Offset {
				t.Errorf("committed offset %d of %s/%d: past the message the answer stopped, at %d", off, targetsTopic, rec.Partition, rec.Offset)
			}
			if _, ok := s.Emulator.State().UserByExternalID(user); ok {
				t.Errorf("the user is in OneSignal: a stopped request was applied")
			}
		})
	}

	t.Run("once the answers are fixed, the held message reaches OneSignal", func(t *testing.T) {
		if err := s.Emulator.SetAnswers(); err != nil {
			t.Fatal(err)
		}
		p := daemontest.Start(t, daemontest.Sink, cfg)
		s.waitForTags(t, map[string]map[string]string{"stop-before": {"plan": "kept"}, user: {"plan": "kept"}, "stop-after": {"plan": "kept"}}, 60*time.Second)
		waitForCommitted(t, s.Kafka.Brokers(), "badinput", []string{usersTopic}, 30*time.Second)
		if n := kafkatest.MessagesIn(t, s.Kafka.Brokers(), dlqTopic); n != 0 {
			t.Errorf("the dead-letter topic holds %d messages: %v", n, s.deadLetters(t))
		}
		if !p.Running() {
			t.Fatalf("the sink stopped:\n%s", p.Tail(4<<10))
		}
	})
}
