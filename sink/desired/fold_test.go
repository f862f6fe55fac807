package desired

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestFoldResolvesReferencesToTheUserTheReferencedRowNamesWhateverTheOrder(t *testing.T) {
	contact := func(id int) transform.Target {
		return transform.RowOf("crm.Contacts", "Contact ID", json.RawMessage(string(rune('0'+id))))
	}
	rows := []Projected{
		{Row: "crm.Contacts\x00{\"Contact ID\":7}", Parts: transform.Projection{
			{Target: transform.User("ada/1 %?"), Tags: map[string]string{"plan": "pro"}, Props: map[string]string{"language": "fr"}},
			{Target: contact(7), Identity: "ada/1 %?"},
		}},
		{Row: "crm.subscriptions\x00{\"id\":1}", Parts: transform.Projection{
			{Target: contact(7), Tags: map[string]string{"subs": "1"}, Many: transform.ManyCount},
		}},
		{Row: "crm.subscriptions\x00{\"id\":2}", Parts: transform.Projection{
			{Target: contact(7), Tags: map[string]string{"subs": "1"}, Many: transform.ManyCount},
		}},
		{Row: "crm.devices\x00{\"device_id\":\"d-1\"}", Parts: transform.Projection{
			{Target: contact(7), Device: "d-1"},
		}},
		// Contact 9 is not among the rows: what references it reaches no one.
		{Row: "crm.subscriptions\x00{\"id\":3}", Parts: transform.Projection{
			{Target: contact(9), Tags: map[string]string{"subs": "1"}, Many: transform.ManyCount},
		}},
		{Row: "crm.devices\x00{\"device_id\":\"d-2\"}", Parts: transform.Projection{
			{Target: contact(9), Device: "d-2"},
		}},
		{Row: "crm.devices\x00{\"device_id\":\"d-3\"}", Parts: transform.Projection{
			{Target: transform.Device("d-3"), Owner: "bob"},
		}},
	}
	want := Final{
		Users: map[string]User{"ada/1 %?": {
			Tags: map[string]string{"plan": "pro", "subs": "2"}, Props: map[string]string{"language": "fr"},
			Live: true, Created: true,
		}},
		Devices: map[string]Device{"d-1": {Owner: "ada/1 %?"}, "d-3": {Owner: "bob"}},
	}
	for i := range 20 {
		shuffled := slices.Clone(rows)
		rand.New(rand.NewPCG(uint64(i), 0)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := Fold(shuffled); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestFoldGivesAUserTheNewestRowsValueOfATagTwoRowsGive(t *testing.T) {
	// Rows at one position: the greater row wins, as between the rows of
	// one snapshot chunk in the sink.
	rows := []Projected{
		{Row: "t\x00{\"id\":1}", Parts: transform.Projection{{Target: transform.User("u"), Tags: map[string]string{"plan": "free", "a": "1"}}}},
		{Row: "t\x00{\"id\":2}", Parts: transform.Projection{{Target: transform.User("u"), Tags: map[string]string{"plan": "pro"}}}},
	}
	got := Fold(rows).Users["u"].Tags
	if want := map[string]string{"plan": "pro", "a": "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	if got := Fold(nil); len(got.Users)+len(got.Devices) != 0 {
		t.Errorf("no rows give %+v", got)
	}
}
