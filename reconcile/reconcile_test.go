package reconcile_test

import (
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// mapped is a mapping that names plan and score.
func mapped(tag string) bool { return tag == "plan" || tag == "score" || tag == "plan_old" }

func live(tags map[string]string) desired.User { return desired.User{Tags: tags, Live: true} }

func TestCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		want    reconcile.Want
		have    reconcile.Have
		drift   []reconcile.Drift
		ignored map[string]int
	}{
		{
			name: "a user in step is no drift",
			want: reconcile.Want{Users: map[string]desired.User{"u/1": live(map[string]string{"plan": "pro"})}},
			have: reconcile.Have{Users: map[string]reconcile.User{"u/1": {Tags: map[string]string{"plan": "pro"}}}},
		},
		{
			name:  "a user a row feeds and OneSignal lacks is missing",
			want:  reconcile.Want{Users: map[string]desired.User{"Zoë": live(map[string]string{"plan": "pro"})}},
			drift: []reconcile.Drift{{Kind: reconcile.MissingUser, ExternalID: "Zoë"}},
		},
		{
			name:  "a user to delete that OneSignal still has is undeleted",
			want:  reconcile.Want{Users: map[string]desired.User{"u": {Delete: true}}},
			have:  reconcile.Have{Users: map[string]reconcile.User{"u": {}}},
			drift: []reconcile.Drift{{Kind: reconcile.UndeletedUser, ExternalID: "u"}},
		},
		{
			name: "a user no row feeds any more and OneSignal lacks is no drift",
			want: reconcile.Want{Users: map[string]desired.User{"u": {Tags: map[string]string{"plan": ""}}}},
		},
		{
			name: "wrong and missing mapped tags are each reported, and a tag to delete that OneSignal lacks is not",
			want: reconcile.Want{Users: map[string]desired.User{"u": live(map[string]string{"plan": "pro", "score": "7", "plan_old": ""})}},
			have: reconcile.Have{Users: map[string]reconcile.User{"u": {Tags: map[string]string{"plan": "free"}}}},
			drift: []reconcile.Drift{
				{Kind: reconcile.MissingTag, ExternalID: "u", Tag: "score", Want: "7"},
				{Kind: reconcile.WrongTag, ExternalID: "u", Tag: "plan", Want: "pro", Have: "free"},
			},
		},
		{
			name:  "a mapped tag no live row gives any more is stale when OneSignal still has it",
			want:  reconcile.Want{Users: map[string]desired.User{"u": live(map[string]string{"plan": ""})}},
			have:  reconcile.Have{Users: map[string]reconcile.User{"u": {Tags: map[string]string{"plan": "pro"}}}},
			drift: []reconcile.Drift{{Kind: reconcile.StaleTag, ExternalID: "u", Tag: "plan", Have: "pro"}},
		},
		{
			name:  "a mapped tag no row of the user gave is extra",
			want:  reconcile.Want{Users: map[string]desired.User{"u": live(map[string]string{"plan": "pro"})}},
			have:  reconcile.Have{Users: map[string]reconcile.User{"u": {Tags: map[string]string{"plan": "pro", "score": "3"}}}},
			drift: []reconcile.Drift{{Kind: reconcile.ExtraTag, ExternalID: "u", Tag: "score", Have: "3"}},
		},
		{
			name:    "tags the mapping does not name are ignored and counted",
			want:    reconcile.Want{Users: map[string]desired.User{"a": live(map[string]string{"plan": "pro"}), "b": live(nil)}},
			have:    reconcile.Have{Users: map[string]reconcile.User{"a": {Tags: map[string]string{"plan": "pro", "sdk_lang": "de"}}, "b": {Tags: map[string]string{"sdk_lang": "fr", "dash": "x"}}}},
			ignored: map[string]int{"sdk_lang": 2, "dash": 1},
		},
		{
			name: "users OneSignal has that the sweep does not cover are not compared",
			have: reconcile.Have{Users: map[string]reconcile.User{"other": {Tags: map[string]string{"plan": "pro"}}}},
		},
		{
			name:  "a device on another user than its row names is on the wrong owner",
			want:  reconcile.Want{Devices: map[string]desired.Device{"d 1": {Owner: "u/1"}}},
			have:  reconcile.Have{Devices: map[string]reconcile.Device{"d 1": {ExternalID: "u/2"}}},
			drift: []reconcile.Drift{{Kind: reconcile.WrongOwner, ExternalID: "u/1", DeviceID: "d 1", Want: "u/1", Have: "u/2"}},
		},
		{
			name:  "a device still linked when its row names no owner is on the wrong owner",
			want:  reconcile.Want{Devices: map[string]desired.Device{"d": {}}},
			have:  reconcile.Have{Devices: map[string]reconcile.Device{"d": {ExternalID: "u"}}},
			drift: []reconcile.Drift{{Kind: reconcile.WrongOwner, DeviceID: "d", Have: "u"}},
		},
		{
			name:  "a device a row names and OneSignal lacks is missing",
			want:  reconcile.Want{Devices: map[string]desired.Device{"d": {Owner: "u"}}},
			drift: []reconcile.Drift{{Kind: reconcile.MissingDevice, ExternalID: "u", DeviceID: "d"}},
		},
		{
			name: "in the player model each device carries its owner's mapped tags",
			want: reconcile.Want{
				Users:   map[string]desired.User{"u": live(map[string]string{"plan": "pro"})},
				Devices: map[string]desired.Device{"d1": {Owner: "u"}, "d2": {Owner: "u"}, "d3": {}},
			},
			have: reconcile.Have{PlayerModel: true, Devices: map[string]reconcile.Device{
				"d1": {ExternalID: "u", Tags: map[string]string{"plan": "pro", "sdk": "1"}},
				"d2": {ExternalID: "u", Tags: map[string]string{"plan": "free"}},
				"d3": {Tags: map[string]string{"plan": "pro"}},
			}},
			drift: []reconcile.Drift{
				{Kind: reconcile.ExtraTag, DeviceID: "d3", Tag: "plan", Have: "pro"},
				{Kind: reconcile.WrongTag, ExternalID: "u", DeviceID: "d2", Tag: "plan", Want: "pro", Have: "free"},
			},
			ignored: map[string]int{"sdk": 1},
		},
		{
			name: "in the player model a user no device carries is no drift",
			want: reconcile.Want{Users: map[string]desired.User{"u": live(map[string]string{"plan": "pro"})}},
			have: reconcile.Have{PlayerModel: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := reconcile.Compare(tc.want, tc.have, mapped)
			if !reflect.DeepEqual(r.Drift, tc.drift) {
				t.Errorf("drift = %+v\nwant    %+v", r.Drift, tc.drift)
			}
			if tc.ignored == nil {
				tc.ignored = map[string]int{}
			}
			if !reflect.DeepEqual(r.Ignored, tc.ignored) {
				t.Errorf("ignored = %v, want %v", r.Ignored, tc.ignored)
			}
			n := 0
			for _, c := range r.Counts {
				n += c
			}
			if n != len(r.Drift) || r.Users != len(tc.want.Users) || r.Devices != len(tc.want.Devices) {
				t.Errorf("counts %v, users %d, devices %d do not add up", r.Counts, r.Users, r.Devices)
			}
		})
	}
}
