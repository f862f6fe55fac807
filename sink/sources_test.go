package sink_test

import (
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The CRM's other tables: subscriptions name their contact by foreign key
// ("Contact" → "Contact ID"), one contact having several; scores carry the
// external id in a column of their own.
const (
	subscriptionsTopic = "crm.crm.Subscriptions"
	scoresTopic        = "crm.crm.scores"
)

var contactRef = &transform.Reference{Column: "Contact", Table: "crm.Contacts", Key: "Contact ID"}

// crmSources is the users table and two more tag sources.
var crmSources = &transform.Mapping{
	Users: crm.Users,
	Sources: []transform.SourceMapping{
		{Table: "crm.Subscriptions", User: transform.SourceUser{References: contactRef}, Tags: map[string]string{"Plan Name": "plan_name"}},
		{Table: "crm.scores", User: transform.SourceUser{ExternalID: "user ref"}, Tags: map[string]string{"nps": ""}},
	},
	Devices: crm.Devices,
}

func subscription(id, contactID int, plan string) map[string]any {
	return map[string]any{"Sub ID": id, "Contact": contactID, "Plan Name": plan}
}

func subscriptionKey(id int) map[string]any { return map[string]any{"Sub ID": id} }

func score(id int, ext string, nps int) map[string]any {
	return map[string]any{"id": id, "user ref": ext, "nps": nps}
}

// withSources gives the stack the sources' topics, before a sink starts.
func (st *stack) withSources() {
	st.t.Helper()
	st.eventTopics(4, subscriptionsTopic, scoresTopic)
}

func TestAUsersTagsAreTheUnionOfEverySourceRow(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("d-1")
		st.start(crmSources)
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "ana/1 %?", "pro", 3)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(1, "d-1"), after: device(1, "d-1", "ana/1 %?")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(10), after: subscription(10, 1, "gold")},
			change{topic: scoresTopic, op: event.OpCreate, key: map[string]any{"id": 7}, after: score(7, "ana/1 %?", 9)},
		)
		st.eventually("every source's tags", st.userWith("d-1", "ana/1 %?", map[string]string{"plan": "pro", "score": "3", "plan_name": "gold", "nps": "9"}))
		st.produce(change{topic: subscriptionsTopic, op: event.OpDelete, key: subscriptionKey(10)})
		st.eventually("only the subscription's tag gone", st.userWith("d-1", "ana/1 %?", map[string]string{"plan": "pro", "score": "3", "nps": "9"}))
	})
}

func TestASourceRowThatComesBeforeItsContactReachesTheContactsUser(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("d-2")
		st.start(crmSources)
		st.produce(change{topic: subscriptionsTopic, op: event.OpSnapshot, key: subscriptionKey(20), after: subscription(20, 2, "silver")})
		st.settle()
		st.produce(
			change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(2), after: contact(2, "Zoë", "free", 1)},
			change{topic: devicesTopic, op: event.OpSnapshot, key: deviceKey(2, "d-2"), after: device(2, "d-2", "Zoë")},
		)
		st.eventually("the subscription's tag on the contact's user", st.userWith("d-2", "Zoë", map[string]string{"plan": "free", "score": "1", "plan_name": "silver"}))
	})
}

func TestAnExternalIDChangeTakesTheReferencingRowsTagsToTheNewUser(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("d-3")
		st.start(crmSources)
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(3), after: contact(3, "old id", "pro", 1)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(3, "d-3"), after: device(3, "d-3", "old id")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(30), after: subscription(30, 3, "gold")},
		)
		st.eventually("the old user", st.userWith("d-3", "old id", map[string]string{"plan": "pro", "score": "1", "plan_name": "gold"}))
		st.produce(
			change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(3), after: contact(3, "new id", "pro", 1)},
			change{topic: devicesTopic, op: event.OpUpdate, key: deviceKey(3, "d-3"), after: device(3, "d-3", "new id")},
		)
		st.eventually("the new user has every tag", st.userWith("d-3", "new id", map[string]string{"plan": "pro", "score": "1", "plan_name": "gold"}))
		st.eventually("the old user none", st.hasTags("old id", map[string]string{}))
		// A change of the subscription that arrives after the contact's
		// change, though older than it, still reaches the new user.
		st.produce(change{topic: subscriptionsTopic, op: event.OpUpdate, key: subscriptionKey(30), after: subscription(30, 3, "platinum")})
		st.eventually("the subscription's change", st.userWith("d-3", "new id", map[string]string{"plan": "pro", "score": "1", "plan_name": "platinum"}))
	})
}

func TestALateOlderChangeOfAReferencingRowStillReachesItsUser(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("d-4")
		st.start(crmSources)
		st.produce(
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(40), after: subscription(40, 4, "gold"), commit: 100},
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(4), after: contact(4, "Ünal", "pro", 1), commit: 300},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(4, "d-4"), after: device(4, "d-4", "Ünal"), commit: 300},
		)
		st.eventually("the user", st.userWith("d-4", "Ünal", map[string]string{"plan": "pro", "score": "1", "plan_name": "gold"}))
		// The subscription changed at 200, before the contact's insert at
		// 300 was read, and comes in only now.
		st.produce(change{topic: subscriptionsTopic, op: event.OpUpdate, key: subscriptionKey(40), after: subscription(40, 4, "bronze"), commit: 200})
		st.eventually("the late change", st.userWith("d-4", "Ünal", map[string]string{"plan": "pro", "score": "1", "plan_name": "bronze"}))
	})
}

func TestASourceOfSeveralRowsPerUserCountsThemOrSaysWhetherAnyIsTrue(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("d-5")
		m := &transform.Mapping{Users: crm.Users, Devices: crm.Devices, Sources: []transform.SourceMapping{
			{Table: "crm.Subscriptions", User: transform.SourceUser{References: contactRef}, Tags: map[string]string{"Sub ID": "subscriptions"}, Many: transform.ManyCount},
			{Table: "crm.scores", User: transform.SourceUser{ExternalID: "user ref"}, Tags: map[string]string{"promoter": ""}, Many: transform.ManyAny},
		}}
		st.start(m)
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(5), after: contact(5, "many", "pro", 1)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(5, "d-5"), after: device(5, "d-5", "many")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(50), after: subscription(50, 5, "a")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(51), after: subscription(51, 5, "b")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(52), after: subscription(52, 5, "c")},
			change{topic: scoresTopic, op: event.OpCreate, key: map[string]any{"id": 1}, after: map[string]any{"id": 1, "user ref": "many", "promoter": false}},
		)
		st.eventually("three subscriptions, no promoter", st.userWith("d-5", "many", map[string]string{"plan": "pro", "score": "1", "subscriptions": "3", "promoter": "false"}))
		st.produce(
			change{topic: subscriptionsTopic, op: event.OpDelete, key: subscriptionKey(51)},
			change{topic: scoresTopic, op: event.OpCreate, key: map[string]any{"id": 2}, after: map[string]any{"id": 2, "user ref": "many", "promoter": true}},
		)
		st.eventually("two subscriptions, a promoter", st.userWith("d-5", "many", map[string]string{"plan": "pro", "score": "1", "subscriptions": "2", "promoter": "true"}))
	})
}

func TestADeviceOwnedByForeignKeyFollowsItsContact(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.addDevices("fk-1", "fk-2")
		m := &transform.Mapping{Users: crm.Users, Devices: &transform.DevicesMapping{
			Table: "crm.devices", DeviceID: "device_id", Owner: &transform.DeviceOwner{References: &transform.Reference{Column: "contact_id", Table: "crm.Contacts", Key: "Contact ID"}},
		}}
		st.start(m)
		st.produce(
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(6, "fk-1"), after: device(6, "fk-1", "")},
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(6), after: contact(6, "Ōno", "pro", 1)},
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(7), after: contact(7, "Ito", "free", 2)},
		)
		st.eventually("the device linked to the contact it names", all(ownedBy("fk-1", "Ōno"), st.hasTags("Ōno", map[string]string{"plan": "pro", "score": "1"})))
		st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(6), after: contact(6, "Ōno 2", "pro", 1)})
		st.eventually("the device follows the contact's new external id", all(ownedBy("fk-1", "Ōno 2"), st.hasTags("Ōno 2", map[string]string{"plan": "pro", "score": "1"})))
		st.produce(change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(7, "fk-2"), after: device(7, "fk-2", "")})
		st.eventually("a second device", ownedBy("fk-2", "Ito"))
		st.produce(change{topic: contactsTopic, op: event.OpDelete, key: contactKey(6)})
		st.eventually("a deleted contact's device unlinked", ownedBy("fk-1", ""))
	})
}

// userWith checks that the user with external id ext owns dev and has
// exactly tags (in the player model, where tags live on devices, dev's).
func (st *stack) userWith(dev, ext string, tags map[string]string) func(emulator.State) error {
	return all(ownedBy(dev, ext), st.hasTags(ext, tags))
}

func TestARowThatStopsMatchingItsFilterIsDeletedForOneSignalAndComesBackWhole(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.withSources()
		st.addDevices("f-1")
		u := *crm.Users
		u.Filter = `row.Plan != "internal"`
		m := &transform.Mapping{Users: &u, Devices: &transform.DevicesMapping{
			Table: "crm.devices", DeviceID: "device_id", Owner: &transform.DeviceOwner{References: &transform.Reference{Column: "contact_id", Table: "crm.Contacts", Key: "Contact ID"}},
		}, Sources: []transform.SourceMapping{
			{Table: "crm.Subscriptions", User: transform.SourceUser{References: contactRef}, Tags: map[string]string{"Plan Name": "plan_name"},
				Filter: `row["Plan Name"] != "trial"`},
		}}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		st.start(m)
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "Ana Ü", "pro", 1)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(1, "f-1"), after: device(1, "f-1", "")},
			change{topic: subscriptionsTopic, op: event.OpCreate, key: subscriptionKey(1), after: subscription(1, 1, "gold")},
		)
		st.eventually("the user", st.userWith("f-1", "Ana Ü", map[string]string{"plan": "pro", "score": "1", "plan_name": "gold"}))
		st.produce(change{topic: subscriptionsTopic, op: event.OpUpdate, key: subscriptionKey(1), after: subscription(1, 1, "trial")})
		st.eventually("the filtered-out subscription's tag gone", st.userWith("f-1", "Ana Ü", map[string]string{"plan": "pro", "score": "1"}))
		st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: contact(1, "Ana Ü", "internal", 1)})
		st.eventually("the filtered-out contact's device unlinked", ownedBy("f-1", ""))
		if st.model == sink.ModelUser {
			st.eventually("and its tags gone", st.hasTags("Ana Ü", map[string]string{}))
		}
		st.produce(
			change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: contact(1, "Ana Ü", "pro", 2)},
			change{topic: subscriptionsTopic, op: event.OpUpdate, key: subscriptionKey(1), after: subscription(1, 1, "gold")},
		)
		st.eventually("everything back", st.userWith("f-1", "Ana Ü", map[string]string{"plan": "pro", "score": "2", "plan_name": "gold"}))
	})
}
