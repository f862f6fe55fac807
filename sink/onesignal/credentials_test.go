package onesignal_test

import (
	"context"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

func TestCheckCredentialsAcceptsTheRightKeyAndNamesAWrongOne(t *testing.T) {
	t.Parallel()
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "right"})
	for _, tc := range []struct {
		key   string
		fatal bool
	}{{"right", false}, {"wrong", true}} {
		c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: onesignal.Secret(tc.key)})
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckCredentials(context.Background())
		if tc.fatal {
			apiErr, ok := err.(*onesignal.APIError)
			if !ok || !apiErr.Fatal() {
				t.Errorf("key %q: err = %v, want a fatal API error", tc.key, err)
			}
		} else if err != nil {
			t.Errorf("key %q: %v", tc.key, err)
		}
	}
}
