package emulator

import (
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// pageRows caps the users and the subscriptions the page lists; the
// state's JSON has them all.
const pageRows = 200

// servePage is GET /: a page of what the emulator holds and has counted,
// for a person who opens the URL the quickstart prints. The API routes
// are as they were; an unknown one still gets OneSignal's 404.
func (e *Emulator) servePage(w http.ResponseWriter, r *http.Request) {
	st, stats := e.State(), e.Stats()
	v := pageView{AppID: e.cfg.AppID, Users: len(st.Users), Subscriptions: len(st.Subscriptions),
		RateLimited: stats.TooManyRequests, Faults: e.Faults().active(), URL: "http://" + r.Host}
	if r.TLS != nil {
		v.URL = "https://" + r.Host
	}
	owners := make(map[string]string, len(st.Users)) // onesignal_id → external_id
	for _, u := range st.Users {
		owners[u.OneSignalID] = u.Identity[externalIDLabel]
		v.Tags += len(u.Tags)
		if len(v.UserRows) < pageRows {
			v.UserRows = append(v.UserRows, userRow(u))
		}
	}
	for _, s := range st.Subscriptions {
		if len(v.SubscriptionRows) < pageRows {
			v.SubscriptionRows = append(v.SubscriptionRows, subscriptionRow{ID: s.ID, Type: s.Type, Token: s.Token,
				OneSignalID: s.OneSignalID, ExternalID: owners[s.OneSignalID]})
		}
	}
	for _, byStatus := range stats.Requests {
		for _, n := range byStatus {
			v.Requests += n
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = page.Execute(w, v) // the client went away
}

type pageView struct {
	AppID, URL                 string
	Users, Subscriptions, Tags int
	Requests, RateLimited      int
	Faults                     bool
	UserRows                   []userView
	SubscriptionRows           []subscriptionRow
}

type userView struct {
	OneSignalID, ExternalID string
	Aliases                 []string // label=id, but external_id and onesignal_id
	Tags                    []string // key=value, sorted
	Subscriptions           []string
}

type subscriptionRow struct {
	ID, Type, Token, OneSignalID, ExternalID string
}

func userRow(u User) userView {
	v := userView{OneSignalID: u.OneSignalID, ExternalID: u.Identity[externalIDLabel], Subscriptions: u.Subscriptions}
	for _, label := range slices.Sorted(maps.Keys(u.Identity)) {
		if label != externalIDLabel && label != "onesignal_id" {
			v.Aliases = append(v.Aliases, label+"="+u.Identity[label])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(u.Tags)) {
		v.Tags = append(v.Tags, k+"="+u.Tags[k])
	}
	return v
}

// active reports whether any fault is injected.
func (f Faults) active() bool {
	return len(f.Status) > 0 || f.Latency > 0 || f.Reset > 0 || f.Drop > 0
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>OneSignal emulator · {{.Users}} users</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 20px 24px 40px; max-width: 1180px; color: #1f2328; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 26px 0 8px; }
.muted { color: #59636e; } code { font-size: 13px; }
.counts { display: flex; gap: 10px; flex-wrap: wrap; margin-top: 16px; }
.count { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; }
.count b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { font-size: 12px; color: #59636e; }
td.id { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
</style>
</head>
<body>
<h1>OneSignal emulator</h1>
<div class="muted">app <code id="app-id">{{.AppID}}</code> · an in-memory OneSignal for tests and the quickstart; this page reloads every 5 s</div>

<div class="counts">
  <div class="count" id="users"><b>{{.Users}}</b>users</div>
  <div class="count" id="subscriptions"><b>{{.Subscriptions}}</b>devices and records</div>
  <div class="count" id="tags"><b>{{.Tags}}</b>tags</div>
  <div class="count" id="requests"><b>{{.Requests}}</b>API requests</div>
  <div class="count" id="rate-limited"><b>{{.RateLimited}}</b>answered 429</div>
</div>
{{- if .Faults}}
<p id="faults"><b>Faults are being injected:</b> see <a href="/emulator/faults">/emulator/faults</a>.</p>
{{- end}}

<h2>Users</h2>
{{- if .UserRows}}
<table id="user-rows">
  <tr><th>external_id</th><th>Tags</th><th>Devices and records</th><th>Other aliases</th><th>onesignal_id</th></tr>
{{- range .UserRows}}
  <tr class="user"><td>{{if .ExternalID}}{{.ExternalID}}{{else}}<span class="muted">none</span>{{end}}</td><td>{{join .Tags ", "}}</td>
    <td class="id">{{join .Subscriptions ", "}}</td><td>{{join .Aliases ", "}}</td><td class="id">{{.OneSignalID}}</td></tr>
{{- end}}
</table>
{{- if gt .Users (len .UserRows)}}<p class="muted">The first {{len .UserRows}} of {{.Users}}; all of them are in <a href="/emulator/state">/emulator/state</a>.</p>{{end}}
{{- else}}
<p class="muted">None yet.</p>
{{- end}}

<h2>Devices and records</h2>
{{- if .SubscriptionRows}}
<table id="subscription-rows">
  <tr><th>id</th><th>Type</th><th>Token</th><th>Owner's external_id</th></tr>
{{- range .SubscriptionRows}}
  <tr class="subscription"><td class="id">{{.ID}}</td><td>{{.Type}}</td><td class="id">{{.Token}}</td>
    <td>{{if .ExternalID}}{{.ExternalID}}{{else}}<span class="muted">none ({{.OneSignalID}})</span>{{end}}</td></tr>
{{- end}}
</table>
{{- if gt .Subscriptions (len .SubscriptionRows)}}<p class="muted">The first {{len .SubscriptionRows}} of {{.Subscriptions}}; all of them are in <a href="/emulator/state">/emulator/state</a>.</p>{{end}}
{{- else}}
<p class="muted">None yet. Seed one with <code>curl -d '{"id": "…"}' -H 'Content-Type: application/json' {{.URL}}/emulator/subscriptions</code>.</p>
{{- end}}

<h2>The emulator's own routes</h2>
<ul id="routes">
  <li><a href="/emulator/state">GET /emulator/state</a>: every user and subscription, as JSON</li>
  <li><a href="/emulator/stats">GET /emulator/stats</a>: requests by route and status, faults, 429s</li>
  <li><a href="/emulator/faults">GET /emulator/faults</a> (POST to change them): the faults injected</li>
  <li><a href="/emulator/answers">GET /emulator/answers</a> (POST to change them): set answers to given requests</li>
  <li>POST /emulator/subscriptions: seed a device; POST /emulator/reset: forget everything</li>
</ul>
<p class="muted">The OneSignal API is served beside them: the user model under /apps/{app_id}/…, the player model under /players and /api/v1/players.</p>
</body>
</html>
`))
