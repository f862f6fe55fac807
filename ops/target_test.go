package ops

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestDebugTargetShowsTheSinksViewOfOneTargetWithoutSecrets(t *testing.T) {
	srv := New(Config{Secrets: []secret.Value{"the-api-key"}}, zap.NewNop())
	h := srv.Handler()
	get := func(query string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/target?"+query, nil))
		return rec.Code, rec.Body.String()
	}
	const id = "team/ops 7%?Müller"
	if code, body := get("id=" + url.QueryEscape("user:"+id)); code != http.StatusNotFound || !strings.Contains(body, "runs no sink") {
		t.Errorf("without a sink: %d %q", code, body)
	}

	var asked []transform.Target
	srv.Sink(SinkConfig{}).WatchTargets(func(tg transform.Target) sink.TargetView {
		asked = append(asked, tg)
		return sink.TargetView{Target: tg.Key(), Running: true, Holds: true, Last: &sink.Call{Method: "set_user", Status: 400, Error: "refused with key the-api-key"}}
	})
	code, body := get("id=" + url.QueryEscape("user:"+id))
	if code != http.StatusOK {
		t.Fatalf("GET /debug/target: %d %q", code, body)
	}
	var v sink.TargetView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if v.Target != "user:"+id || !v.Holds || v.Last == nil || v.Last.Status != 400 {
		t.Errorf("the view: %+v", v)
	}
	if strings.Contains(body, "the-api-key") || !strings.Contains(body, "[redacted]") {
		t.Errorf("the answer shows the key, or redacts nothing: %s", body)
	}
	if code, _ := get("device_id=" + url.QueryEscape("p 1/é")); code != http.StatusOK {
		t.Errorf("?device_id=: %d", code)
	}
	if len(asked) != 2 || asked[0] != transform.User(id) || asked[1] != transform.Device("p 1/é") {
		t.Errorf("asked for %+v", asked)
	}
	for _, q := range []string{"", "id=nonsense", "external_id="} {
		if code, body := get(q); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %q, want 400", q, code, body)
		}
	}
}
