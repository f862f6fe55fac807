package emulator_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func TestAnAnswerStrikesTheRequestsItNamesAndNoOthers(t *testing.T) {
	t.Parallel()
	a := newFaultyAPI(t, emulator.Faults{})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`).must(t, http.StatusCreated)
	page := "<html><head><title>502 Bad Gateway</title></head></html>"
	err := a.emu.SetAnswers(emulator.Answer{
		Method: http.MethodPatch, Path: "/external_id/ada", Times: 2,
		Status: http.StatusBadGateway, Header: map[string]string{"Content-Type": "text/html"}, Body: page,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := a.send(http.MethodPatch, userPath("external_id", "ada"), updateAda).must(t, http.StatusBadGateway)
		if r.body != page || r.header.Get("Content-Type") != "text/html" {
			t.Errorf("answer %q (%s), want the page as text/html", r.body, r.header.Get("Content-Type"))
		}
	}
	if adaPlan(a) != "" {
		t.Error("a request that got the answer was applied")
	}
	a.send(http.MethodPatch, userPath("external_id", "bob"), updateAda).must(t, http.StatusAccepted)
	a.send(http.MethodPatch, userPath("external_id", "ada"), updateAda).must(t, http.StatusAccepted) // used up
	if adaPlan(a) != "pro" {
		t.Error("the request after the answer was used up was not applied")
	}
	if got := a.emu.Answers(); len(got) != 0 {
		t.Errorf("answers left: %+v", got)
	}
	if st := a.emu.Stats(); !reflect.DeepEqual(st.Answered, map[int]int{502: 2}) {
		t.Errorf("answered %v, want 502: 2", st.Answered)
	}
}

func TestAnAnswerThatAppliesTheRequestSendsItsOwnReply(t *testing.T) {
	t.Parallel()
	a := newFaultyAPI(t, emulator.Faults{})
	_ = a.emu.SetAnswers(emulator.Answer{Path: "/external_id/ada", Apply: true, Status: http.StatusNoContent})
	a.send(http.MethodPatch, userPath("external_id", "ada"), updateAda).must(t, http.StatusNoContent)
	if adaPlan(a) != "pro" {
		t.Error("the request was not applied")
	}
}

func TestAnAnswerCanBreakOffItsBody(t *testing.T) {
	t.Parallel()
	a := newFaultyAPI(t, emulator.Faults{})
	_ = a.emu.SetAnswers(emulator.Answer{Path: "/external_id/ada", Status: http.StatusOK, Body: `{"success":true}`, Cut: 5})
	if r, err := a.try(http.MethodPatch, userPath("external_id", "ada"), updateAda); err == nil {
		t.Fatalf("got a whole answer %d %q, want one that breaks off", r.status, r.body)
	}
}

func TestAnAnswerCanRedirect(t *testing.T) {
	t.Parallel()
	a := newFaultyAPI(t, emulator.Faults{})
	_ = a.emu.SetAnswers(emulator.Answer{Status: http.StatusFound, Header: map[string]string{"Location": "https://login.example/"}})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPatch, a.url+userPath("external_id", "ada"), strings.NewReader(updateAda))
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://login.example/" {
		t.Errorf("answer %d to %q, want 302 to https://login.example/", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestAnswersAreSetOverHTTPAndBadOnesAreRefused(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, "/emulator/answers", `[{"path":"/x","times":1,"status":418,"body":"teapot"}]`, "Authorization", "").must(t, http.StatusOK)
	r := a.send(http.MethodGet, "/emulator/answers", "", "Authorization", "").must(t, http.StatusOK)
	var got []emulator.Answer
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || len(got) != 1 || got[0].Status != 418 || got[0].Body != "teapot" {
		t.Errorf("answers %s (%v), want the teapot", r.body, err)
	}
	for _, bad := range []string{
		`[{"status":99}]`,
		`[{"status":301}]`,
		`[{"status":200,"body":"ab","cut":3}]`,
		`[{"status":200,"tmes":1}]`,
	} {
		a.send(http.MethodPost, "/emulator/answers", bad, "Authorization", "").must(t, http.StatusBadRequest)
	}
	if len(a.emu.Answers()) != 1 {
		t.Error("a refused set of answers replaced the answers in force")
	}
	a.send(http.MethodPost, "/emulator/answers", `[]`, "Authorization", "").must(t, http.StatusOK)
	if len(a.emu.Answers()) != 0 {
		t.Error("[] did not end the answers")
	}
}
