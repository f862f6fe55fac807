package sink_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// withProperties is the CRM mapping with the contacts' language and
// country as properties, and in the user model their CRM reference as an
// alias.
func withProperties(model string) *transform.Mapping {
	u := *crm.Users
	u.Properties = map[string]string{"language": "Lang", "country": "Country Code"}
	if model == sink.ModelUser {
		u.Properties["timezone_id"] = "tz"
		u.Aliases = map[string]string{"crm_id": "CRM Ref"}
	} else {
		u.Properties["timezone"] = "tz"
	}
	return &transform.Mapping{Users: &u, Devices: crm.Devices}
}

// localized is a contacts row with the properties' columns.
func localized(id int, ext, lang, country, tz, ref string) map[string]any {
	r := contact(id, ext, "pro", 1)
	r["Lang"], r["Country Code"], r["tz"], r["CRM Ref"] = nullable(lang), nullable(country), nullable(tz), nullable(ref)
	return r
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// hasProperties checks the user's properties (user model: its own, and
// its aliases; player model: those of its device dev).
func (st *stack) hasProperties(ext, dev string, props, aliases map[string]string) func(emulator.State) error {
	return func(s emulator.State) error {
		got := map[string]string{}
		put := func(k, v string) {
			if v != "" {
				got[k] = v
			}
		}
		if st.model == sink.ModelPlayer {
			p, ok := s.Player(dev)
			if !ok {
				return fmt.Errorf("no device %q", dev)
			}
			put("language", p.Language)
			put("country", p.Country)
			if p.Timezone != nil {
				put("timezone", fmt.Sprint(*p.Timezone))
			}
		} else {
			u, ok := s.UserByExternalID(ext)
			if !ok {
				return fmt.Errorf("no user %q", ext)
			}
			put("language", u.Language)
			put("country", u.Country)
			put("timezone_id", u.TimezoneID)
			gotAliases := maps.Clone(u.Identity)
			delete(gotAliases, "external_id")
			delete(gotAliases, "onesignal_id")
			if !maps.Equal(gotAliases, aliases) {
				return fmt.Errorf("user %q has aliases %v, want %v", ext, gotAliases, aliases)
			}
		}
		if !maps.Equal(got, props) {
			return fmt.Errorf("%q has properties %v, want %v", ext, got, props)
		}
		return nil
	}
}

func TestAUsersPropertiesAndAliasesFollowItsRow(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.addDevices("loc-1")
		st.start(withProperties(st.model))
		tz := "Europe/Berlin"
		if st.model == sink.ModelPlayer {
			tz = "3600"
		}
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: localized(1, "Jürgen/1 ?", "de", "DE", tz, "C-0001")},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(1, "loc-1"), after: device(1, "loc-1", "Jürgen/1 ?")},
		)
		props := map[string]string{"language": "de", "country": "DE"}
		aliases := map[string]string{}
		if st.model == sink.ModelUser {
			props["timezone_id"], aliases["crm_id"] = tz, "C-0001"
		} else {
			props["timezone"] = tz
		}
		st.eventually("the properties", all(st.userWith("loc-1", "Jürgen/1 ?", map[string]string{"plan": "pro", "score": "1"}),
			st.hasProperties("Jürgen/1 ?", "loc-1", props, aliases)))
		st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: localized(1, "Jürgen/1 ?", "fr", "FR", tz, "C-0001-b")})
		props["language"], props["country"] = "fr", "FR"
		if st.model == sink.ModelUser {
			aliases["crm_id"] = "C-0001-b"
		}
		st.eventually("the changed properties", st.hasProperties("Jürgen/1 ?", "loc-1", props, aliases))
	})
}

func TestABadPropertyIsDeadLetteredAndTheRestGoesOut(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.addDevices("loc-2")
		st.start(withProperties(st.model))
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: localized(2, "Zoë", "German", "DE", "", "")},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(2, "loc-2"), after: device(2, "loc-2", "Zoë")},
		)
		st.eventually("the tags and the good property", all(st.userWith("loc-2", "Zoë", map[string]string{"plan": "pro", "score": "1"}),
			st.hasProperties("Zoë", "loc-2", map[string]string{"country": "DE"}, map[string]string{})))
		dead := st.deadLetters(1)
		if why := header(dead[0], sink.HeaderMessage); !strings.Contains(why, "mapping.users.properties.language") || !strings.Contains(why, "ISO 639-1") {
			t.Errorf("the dead letter says %q; want the field and its rule", why)
		}
	})
}

func TestADeletedUserRowWithOnDeleteDeleteUserDeletesTheUser(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	st.addDevices("del-1")
	u := *crm.Users
	u.OnDelete = transform.OnDeleteDeleteUser
	st.start(&transform.Mapping{Users: &u, Devices: crm.Devices})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(3), after: contact(3, "erase me", "pro", 1)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(4), after: contact(4, "keep me", "free", 2)},
		change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(3, "del-1"), after: device(3, "del-1", "erase me")},
	)
	st.eventually("the users", all(st.userWith("del-1", "erase me", map[string]string{"plan": "pro", "score": "1"}), st.hasTags("keep me", map[string]string{"plan": "free", "score": "2"})))
	// A key change is not a delete: the user stays, whichever half comes first.
	st.produce(change{topic: contactsTopic, op: event.OpDelete, key: contactKey(4), commit: 7000, headers: newKey(contactKey(5))})
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(5), after: contact(5, "keep me", "free", 2), commit: 7000})
	st.produce(change{topic: contactsTopic, op: event.OpDelete, key: contactKey(3)})
	st.eventually("the erased user gone with its device", func(s emulator.State) error {
		if u, ok := s.UserByExternalID("erase me"); ok {
			return fmt.Errorf("user %q is still there: %+v", "erase me", u)
		}
		if _, ok := s.Player("del-1"); ok {
			return fmt.Errorf("its device is still there")
		}
		return nil
	})
	st.settle()
	st.eventually("the user whose key changed kept", st.hasTags("keep me", map[string]string{"plan": "free", "score": "2"}))
	if n := st.emu.Stats().Requests["DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}"][200]; n != 1 {
		t.Errorf("%d delete user requests answered 200, want 1: %v", n, st.emu.Stats().Requests)
	}
}

func TestAUserInsertedAgainAfterItsDeleteIsCreatedOnceOneSignalHasDeletedIt(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{DeleteDelay: 4 * time.Second})
	u := *crm.Users
	u.OnDelete = transform.OnDeleteDeleteUser
	st.start(&transform.Mapping{Users: &u, Devices: crm.Devices})
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(6), after: contact(6, "again", "pro", 1)})
	st.eventually("the user", st.hasTags("again", map[string]string{"plan": "pro", "score": "1"}))
	st.produce(change{topic: contactsTopic, op: event.OpDelete, key: contactKey(6)})
	st.eventually("the user being deleted", func(s emulator.State) error {
		if u, ok := s.UserByExternalID("again"); ok && !u.Deleting {
			return fmt.Errorf("user %q is not being deleted", "again")
		}
		return nil
	})
	// Inserted again while OneSignal is still deleting it: a write now
	// would land on the user being deleted, and be lost with it.
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(7), after: contact(7, "again", "gold", 2)})
	time.Sleep(4 * time.Second) // past the delay
	st.eventually("the user created again with its new row's tags", st.hasTags("again", map[string]string{"plan": "gold", "score": "2"}))
}

// newKey is the header the connector gives the delete half of a primary
// key change.
func newKey(key map[string]any) []kafka.Header {
	b, _ := row(key).MarshalJSON()
	return []kafka.Header{{Key: event.HeaderNewKey, Value: b}}
}
