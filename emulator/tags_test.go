package emulator_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const tooManyTagChanges = `{"errors":["Please limit your tag updates to 100 per request"],"success":false}`

// someTags renders n tags t0…t(n-1) as a JSON object, each set to value.
func someTags(n int, value string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"t%d":%s`, i, value)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// tagWrites are the writes that carry tags, in both models, each
// addressing dev-1 or its owner ada; tags is a JSON object.
var tagWrites = []struct {
	name   string
	method string
	path   string
	body   func(tags string) string
	ok     int
}{
	{"update user", http.MethodPatch, userPath("external_id", "ada"), func(t string) string { return `{"properties":{"tags":` + t + `}}` }, http.StatusAccepted},
	{"create user", http.MethodPost, usersPath, func(t string) string { return `{"identity":{"external_id":"new"},"properties":{"tags":` + t + `}}` }, http.StatusCreated},
	{"edit device", http.MethodPut, playerPath("dev-1"), func(t string) string { return player(`"tags":` + t) }, http.StatusOK},
	{"add device", http.MethodPost, "/players", func(t string) string { return player(`"device_type":1,"identifier":"new","tags":` + t) }, http.StatusOK},
	{"edit tags by external id", http.MethodPut, tagsPath("ada"), func(t string) string { return `{"tags":` + t + `}` }, http.StatusOK},
}

func TestTagRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tagLimit int
		tags     string
		status   int // 0: the write's success status
		want     string
	}{
		{name: "take 100 tag changes in one request", tags: someTags(100, `"v"`)},
		{name: "refuse 101 tag changes in one request", tags: someTags(101, `"v"`), status: http.StatusBadRequest, want: tooManyTagChanges},
		{name: "count deletions as changes", tags: someTags(101, `""`), status: http.StatusBadRequest, want: tooManyTagChanges},
		{name: "take tags up to the cap", tagLimit: 3, tags: `{"a":"1","b":"2","c":"3"}`},
		{
			name: "refuse a tag over the cap", tagLimit: 2, tags: `{"a":"1","b":"2","c":"3"}`, status: http.StatusBadRequest,
			want: `{"errors":["App is limited to a maximum of 2 tags on a given player"],"success":false}`,
		},
		{name: "do not count deletions against the cap", tagLimit: 2, tags: `{"a":"1","b":"2","c":""}`},
	}
	for _, tt := range tests {
		for _, wr := range tagWrites {
			t.Run(wr.name+" should "+tt.name, func(t *testing.T) {
				t.Parallel()
				a := newAPIWith(t, func(c *emulator.Config) { c.TagLimit = tt.tagLimit })
				a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
				a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"ada"`)).must(t, http.StatusOK)
				before := a.emu.State()
				status := tt.status
				if status == 0 {
					status = wr.ok
				}
				r := a.send(wr.method, wr.path, wr.body(tt.tags)).must(t, status)
				if tt.want != "" && r.body != tt.want {
					t.Errorf("body = %s\nwant   %s", r.body, tt.want)
				}
				if tt.status != 0 && len(a.emu.State().Users) != len(before.Users) {
					t.Errorf("a refused write changed the state")
				}
			})
		}
	}
}

func TestAUserAtTheTagCapCanSwapTags(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, func(c *emulator.Config) { c.TagLimit = 2 })
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"a":"1","b":"2"}}}`).must(t, http.StatusCreated)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"a":"","c":"3"}}}`).must(t, http.StatusAccepted)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"b":"20"}}}`).must(t, http.StatusAccepted)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"d":"4"}}}`).must(t, http.StatusBadRequest)
	if ada, _ := a.emu.State().UserByExternalID("ada"); len(ada.Tags) != 2 || ada.Tags["b"] != "20" || ada.Tags["c"] != "3" {
		t.Errorf("tags = %v, want b=20 and c=3", ada.Tags)
	}
}

func TestTheTagCapCountsTheTagsOfTheUserADeviceMovesTo(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, func(c *emulator.Config) { c.TagLimit = 2 })
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"a":"1","b":"2"}}}`).must(t, http.StatusCreated)
	// dev-1's anonymous owner has room, ada has none.
	a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"ada","tags":{"c":"3"}`)).must(t, http.StatusBadRequest)
	if ext := a.emu.State().ExternalIDOf("dev-1"); ext != "" {
		t.Errorf("the refused edit moved the device to %q", ext)
	}
}

func TestTheUserModelStillRefusesNumbersAsTags(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"n":1}}}`).must(t, http.StatusBadRequest)
}
