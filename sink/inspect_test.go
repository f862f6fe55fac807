package sink

import (
	"context"
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

type statusErr struct{ status int }

func (e statusErr) Error() string   { return "refused" }
func (e statusErr) HTTPStatus() int { return e.status }

// failingAPI refuses the users it names.
type failingAPI struct{ refuse map[string]bool }

func (f failingAPI) SetUser(_ context.Context, id string, _ onesignal.UserWrite) error {
	if f.refuse[id] {
		return statusErr{400}
	}
	return nil
}
func (failingAPI) AddRecord(context.Context, string, string, string, map[string]string) error {
	return nil
}
func (failingAPI) LinkDevice(context.Context, string, string, onesignal.DeviceWrite) error {
	return errors.New("no answer")
}
func (failingAPI) UnlinkSubscription(context.Context, string, string, map[string]string) error {
	return nil
}
func (failingAPI) DeleteUser(context.Context, string) error { return nil }

func TestTheCallRecorderKeepsEachTargetsLastCall(t *testing.T) {
	t.Parallel()
	r := RecordCalls(failingAPI{refuse: map[string]bool{"b/ü": true}}, 2)
	ctx := t.Context()
	_ = r.SetUser(ctx, "a", onesignal.UserWrite{})
	_ = r.SetUser(ctx, "b/ü", onesignal.UserWrite{})
	_ = r.LinkDevice(ctx, "d", "a", onesignal.DeviceWrite{})
	if _, ok := r.Last(transform.User("a")); ok {
		t.Error("the recorder keeps more targets than its size")
	}
	if c, ok := r.Last(transform.User("b/ü")); !ok || c.Method != "set_user" || c.Status != 400 || c.Error != "refused" {
		t.Errorf("b/ü: %+v (%v)", c, ok)
	}
	if c, ok := r.Last(transform.Device("d")); !ok || c.Method != "link_device" || c.Error != "no answer" || c.Status != 0 {
		t.Errorf("device d: %+v (%v)", c, ok)
	}
}

func TestInspectReadsTheLastCallAndNeedsNoGeneration(t *testing.T) {
	t.Parallel()
	api := RecordCalls(failingAPI{refuse: map[string]bool{"u": true}}, 10)
	s := New(Config{}, nil, api, &transform.Mapping{}, zap.NewNop())
	_ = api.SetUser(t.Context(), "u", onesignal.UserWrite{})
	v := s.Inspect(transform.User("u"))
	if v.Running || v.Partition != -1 || v.Last == nil || v.Last.Status != 400 || v.Target != "user:u" {
		t.Errorf("the view of a sink between generations: %+v", v)
	}
}

func TestATargetsPartitionIsTheWritersOfItsRecords(t *testing.T) {
	t.Parallel()
	for _, tg := range []transform.Target{transform.User("team/ops 7%?Müller"), transform.Device("p-1"), transform.User("")} {
		rec := &desired.Record{Target: tg, Kind: desired.KindContribution, Row: "cdc.public.contacts\x00{\"Contact ID\":7}"}
		for _, n := range []int{1, 2, 12} {
			ps := make([]int, n)
			for i := range ps {
				ps[i] = i
			}
			want := broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: rec.Key()}, ps...)
			if got := TargetPartition(tg, n); got != want {
				t.Errorf("%s of %d partitions: %d, the writer's %d", tg, n, got, want)
			}
		}
	}
}
