package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// previewed is a row the preview read, with what the mapping makes of it.
type previewed struct {
	row connector.Row
	// readFor says why a row outside the selection was read: rows of the
	// selection reference it.
	readFor string
	proj    transform.Projection
	projErr error // the projection's error; Problems come with proj
}

// mappingPreview prints, per row, the requests the sink sends for it to an
// app that holds nothing yet.
func mappingPreview(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	table := fs.String("table", "", "preview only rows of `SCHEMA.TABLE`, one of the mapped tables")
	where := fs.String("where", "", "an `SQL` condition over --table's columns, such as \"plan = 'pro'\"; it runs as the configured PostgreSQL user, in a read-only transaction")
	limit := fs.Int("limit", 10, "read at most `N` rows of each table, in primary-key order")
	asJSON := fs.Bool("json", false, "print one JSON object per row instead of text")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, config.Database)
	if err != nil {
		return usageError{err}
	}
	if m := cfg.OneSignal.Model; m != config.ModelUser && m != config.ModelPlayer {
		return usageError{fmt.Errorf("onesignal.model %q is not %s or %s: the preview shows the requests of one of the two", m, config.ModelUser, config.ModelPlayer)}
	}
	tables := cfg.Mapping.Tables()
	switch {
	case *limit < 1:
		return fs.usageError(fmt.Sprintf("--limit %d: want at least 1 row", *limit))
	case *table != "" && !slices.Contains(tables, *table):
		return fs.usageError(fmt.Sprintf("--table %q is not a mapped table (%s)", *table, strings.Join(tables, ", ")))
	case *where != "" && *table == "":
		return fs.usageError("--where reads the columns of one table: name it with --table")
	}
	out, err := preview(ctx, cfg, previewOptions{table: *table, where: *where, limit: *limit})
	if err != nil {
		return err
	}
	if *asJSON {
		return out.writeJSON(stdout)
	}
	out.writeText(stdout, cfg)
	return nil
}

// previewOptions are the rows a preview reads: at most limit of each
// mapped table, or of table alone, those where selects there.
type previewOptions struct {
	table, where string
	limit        int
}

// preview reads the rows, runs them through the sink and attributes its
// requests to them.
func preview(ctx context.Context, cfg *config.Config, opts previewOptions) (*report, error) {
	tables := cfg.Mapping.Tables()
	if opts.table != "" {
		tables = []string{opts.table}
	}
	reader, err := connector.OpenReader(ctx, connector.ReaderConfig{DSN: cfg.Postgres.DSN.Reveal(), TopicPrefix: cfg.Kafka.TopicPrefix, Version: buildVersion()})
	if err != nil {
		return nil, err
	}
	defer reader.Close(ctx)
	var rows []*previewed
	for _, t := range tables {
		sel := connector.Select{Limit: opts.limit}
		if t == opts.table {
			sel.Where = opts.where
		}
		err := reader.Rows(ctx, t, sel, func(r connector.Row) error {
			rows = append(rows, &previewed{row: r})
			return nil
		})
		if err != nil {
			return nil, whereProblem(err, opts.where, t)
		}
	}
	referenced, err := readReferenced(ctx, reader, &cfg.Mapping, rows)
	if err != nil {
		return nil, err
	}
	rows = append(rows, referenced...)
	reader.Close(ctx) // done with PostgreSQL before the sink runs

	var devices []string
	for _, p := range rows {
		p.proj, p.projErr = cfg.Mapping.Project(p.row.Event, nil)
		p.proj = p.proj.Fed() // what a row holds while it feeds no one is sent nowhere
		for _, part := range p.proj {
			switch {
			case part.Target.Device:
				devices = append(devices, part.Target.ID)
			case part.Device != "":
				devices = append(devices, part.Device)
			}
		}
	}
	res := &runResult{}
	if len(rows) > 0 {
		input := make([]connector.Row, len(rows))
		for i, p := range rows {
			input[i] = p.row
		}
		if res, err = runSink(ctx, cfg, input, devices); err != nil {
			return nil, err
		}
	}
	out := previewReport(cfg, rows, res)
	out.tables = tables
	return out, nil
}

// whereProblem words an error of reading table: one that --where's SQL
// caused is a usage error that says so.
func whereProblem(err error, where, table string) error {
	var pgErr *pgconn.PgError
	if where == "" || !errors.As(err, &pgErr) {
		return err
	}
	// Syntax and names (42), values (22), and writes the read-only
	// transaction refuses (25006); not the table's rights or the table.
	class := pgErr.Code[:2]
	if (class != "42" && class != "22" && pgErr.Code != "25006") || pgErr.Code == "42501" || pgErr.Code == "42P01" {
		return err
	}
	return usageError{fmt.Errorf("onesignal-cdc mapping preview: --where %q: %s: give an SQL condition over the columns of %s, such as %s (see onesignal-cdc mapping preview --help)",
		where, pgErr.Message, table, `"plan = 'pro' AND deleted_at IS NULL"`)}
}

// readReferenced reads the users rows that rows reference by foreign key
// (a source's user.references, the devices' owner.references) and are not
// among them, so that the references resolve as they do in the sink.
func readReferenced(ctx context.Context, reader *connector.Reader, m *transform.Mapping, rows []*previewed) ([]*previewed, error) {
	type ref struct{ table, key string }
	have := map[string]bool{}
	for _, p := range rows {
		have[p.row.Table+"\x00"+string(p.row.Key)] = true
	}
	wanted := map[ref][]json.RawMessage{}
	by := map[string]string{} // the referenced value → the first row that references it, for the report
	var order []ref
	for _, p := range rows {
		var refs []*transform.Reference
		for _, s := range m.Sources {
			if s.Table == p.row.Table && s.User.References != nil {
				refs = append(refs, s.User.References)
			}
		}
		if d := m.Devices; d != nil && d.Table == p.row.Table && d.Owner != nil && d.Owner.References != nil {
			refs = append(refs, d.Owner.References)
		}
		for _, r := range refs {
			v, ok := p.row.Event.After.Get(r.Column)
			if !ok || isNullJSON(v) || event.IsUnavailable(v) {
				continue
			}
			k := ref{r.Table, r.Key}
			if _, seen := wanted[k]; !seen {
				order = append(order, k)
			}
			id := r.Table + "\x00" + r.Key + "\x00" + string(v)
			if _, ok := by[id]; !ok {
				by[id] = rowName(p.row)
				wanted[k] = append(wanted[k], v)
			}
		}
	}
	var out []*previewed
	for _, k := range order {
		err := reader.RowsWith(ctx, k.table, k.key, wanted[k], func(r connector.Row) error {
			if have[r.Table+"\x00"+string(r.Key)] {
				return nil
			}
			have[r.Table+"\x00"+string(r.Key)] = true
			v, _ := r.Event.After.Get(k.key)
			out = append(out, &previewed{row: r, readFor: by[k.table+"\x00"+k.key+"\x00"+string(v)] + " references it"})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read the %s rows that the rows read reference: %w", k.table, err)
		}
	}
	return out, nil
}

func isNullJSON(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// rowName names a row for a person: its table and primary key.
func rowName(r connector.Row) string { return r.Table + " " + string(r.Key) }

// The preview's report, one entry per row.
type (
	previewRow struct {
		Table string          `json:"table"`
		Key   json.RawMessage `json:"key"`
		// ReadFor says why a row outside the selection was read.
		ReadFor string          `json:"read_for,omitempty"`
		Targets []previewTarget `json:"targets"`
		// Nothing says why the row feeds no user and no device.
		Nothing     string              `json:"nothing,omitempty"`
		Notes       []string            `json:"notes,omitempty"`
		DeadLetters []previewDeadLetter `json:"dead_letters,omitempty"`
	}
	previewTarget struct {
		Kind string `json:"kind"` // "user" (by external id) or "device"
		ID   string `json:"id"`
		// Via names the users row a foreign key reached the target
		// through.
		Via      string           `json:"via,omitempty"`
		Requests []previewRequest `json:"requests"`
	}
	previewRequest struct {
		Method string          `json:"method"`
		Path   string          `json:"path"`
		Body   json.RawMessage `json:"body,omitempty"`
		Status int             `json:"status"`
		Answer json.RawMessage `json:"answer,omitempty"`
	}
	previewDeadLetter struct {
		Stage  string `json:"stage"`
		Reason string `json:"reason"`
		Status int    `json:"status,omitempty"`
	}
	report struct {
		model  string
		tables []string // the tables read
		rows   []previewRow
		// other are requests no row's target explains.
		other []previewRequest
		mask  func(string) string
	}
)

// previewReport attributes the requests the sink made to the rows: each
// row's targets are those its projection names, a users row reached by a
// foreign key standing for the user it names.
func previewReport(cfg *config.Config, rows []*previewed, res *runResult) *report {
	key := cfg.OneSignal.APIKey.Reveal()
	mask := func(s string) string {
		if len(key) >= 4 {
			s = strings.ReplaceAll(s, key, secret.Redacted)
		}
		return s
	}
	out := &report{model: cfg.OneSignal.Model, mask: mask}
	// The user each referenced row names.
	names := map[transform.Target]string{}
	for _, p := range rows {
		for _, part := range p.proj {
			if part.Target.Row && part.Identity != "" {
				names[part.Target] = part.Identity
			}
		}
	}
	requests := map[transform.Target][]previewRequest{}
	used := make([]bool, len(res.Sent))
	shown := func(s sent) previewRequest {
		r := previewRequest{Method: s.Method, Path: mask(s.Path), Status: s.Status}
		r.Body = jsonOrString(mask(string(s.Body)))
		r.Answer = jsonOrString(mask(string(bytes.TrimSpace(s.Answer))))
		return r
	}
	for i, s := range res.Sent {
		if t, ok := requestTarget(s); ok {
			requests[t] = append(requests[t], shown(s))
			used[i] = true
		}
	}
	dead := map[int][]previewDeadLetter{}
	for _, d := range res.DeadLetters {
		idx := res.Offsets[d.Topic]
		if d.Offset >= 0 && int(d.Offset) < len(idx) {
			dead[idx[d.Offset]] = append(dead[idx[d.Offset]], previewDeadLetter{Stage: d.Stage, Reason: mask(d.Reason), Status: d.Status})
		}
	}
	claimed := map[transform.Target]bool{}
	for i, p := range rows {
		r := previewRow{Table: p.row.Table, Key: json.RawMessage(p.row.Key), ReadFor: p.readFor, Targets: []previewTarget{}, DeadLetters: dead[i]}
		add := func(t transform.Target, via string) {
			for _, have := range r.Targets {
				if have.Kind == kindOf(t) && have.ID == t.ID {
					return
				}
			}
			claimed[t] = true
			r.Targets = append(r.Targets, previewTarget{Kind: kindOf(t), ID: t.ID, Via: via, Requests: orEmpty(requests[t])})
		}
		for _, part := range p.proj {
			switch {
			case !part.Target.Row:
				add(part.Target, "")
			case part.Identity != "":
				// The users row's own target, which others reference: its
				// user is among its parts.
			case names[part.Target] == "":
				what := "its tags reach no one"
				if part.Device != "" {
					what = fmt.Sprintf("device %q is linked to no one", part.Device)
				}
				r.Notes = append(r.Notes, fmt.Sprintf("it references %s, which is not there or names no user: %s", referencedName(part.Target), what))
			case part.Device != "":
				add(transform.Device(part.Device), fmt.Sprintf("owner %q, through %s", names[part.Target], referencedName(part.Target)))
			default:
				add(transform.User(names[part.Target]), "through "+referencedName(part.Target))
			}
		}
		switch {
		case p.projErr != nil && len(p.proj) == 0:
			if len(r.DeadLetters) == 0 {
				r.Nothing = "the mapping refuses the row: " + mask(p.projErr.Error())
			} else {
				r.Nothing = "the mapping refuses the row (the sink dead-letters it)"
			}
		case len(p.proj) == 0:
			r.Nothing = nothingReason(&cfg.Mapping, p.row)
		}
		out.rows = append(out.rows, r)
	}
	for i, s := range res.Sent {
		if !used[i] {
			out.other = append(out.other, shown(s))
		} else if t, _ := requestTarget(s); !claimed[t] {
			out.other = append(out.other, shown(s))
		}
	}
	return out
}

func orEmpty(rs []previewRequest) []previewRequest {
	if rs == nil {
		return []previewRequest{}
	}
	return rs
}

func kindOf(t transform.Target) string {
	if t.Device {
		return "device"
	}
	return "user"
}

// jsonOrString is s as JSON: itself when it is JSON, else a JSON string;
// nil when empty.
func jsonOrString(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// referencedName names a referenced row's target: `crm.Contacts whose
// "Contact ID" is 7`.
func referencedName(t transform.Target) string {
	parts := strings.SplitN(t.ID, "\x01", 3)
	if len(parts) != 3 {
		return t.String()
	}
	return fmt.Sprintf("the %s row whose %q is %s", parts[0], parts[1], parts[2])
}

// requestTarget is the user or device a request writes, read from its
// path (and, for a create, its body), in either API generation.
func requestTarget(s sent) (transform.Target, bool) {
	path, _, _ := strings.Cut(s.Path, "?")
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i := range seg {
		if u, err := url.PathUnescape(seg[i]); err == nil {
			seg[i] = u
		}
	}
	app := len(seg) >= 3 && seg[0] == "apps"
	switch {
	case app && len(seg) >= 6 && seg[2] == "users" && seg[3] == "by" && seg[4] == "external_id":
		return transform.User(seg[5]), true // user model: a user by external id
	case app && len(seg) >= 4 && seg[2] == "subscriptions":
		return transform.Device(seg[3]), true // user model: a subscription
	case app && len(seg) == 4 && seg[2] == "users":
		return transform.User(seg[3]), true // player model: tags by external user id
	case app && len(seg) == 3 && seg[2] == "users":
		var body struct {
			Identity      map[string]string `json:"identity"`
			Subscriptions []struct {
				ID string `json:"id"`
			} `json:"subscriptions"`
		}
		if json.Unmarshal(s.Body, &body) != nil {
			return transform.Target{}, false
		}
		if ext := body.Identity["external_id"]; ext != "" {
			return transform.User(ext), true // create user
		}
		if len(body.Subscriptions) == 1 && body.Subscriptions[0].ID != "" {
			return transform.Device(body.Subscriptions[0].ID), true // a subscription moved to an anonymous user
		}
	case len(seg) == 2 && seg[0] == "players":
		return transform.Device(seg[1]), true // player model: a device
	case len(seg) == 1 && seg[0] == "players":
		var body struct {
			ExternalUserID string `json:"external_user_id"`
		}
		if json.Unmarshal(s.Body, &body) == nil && body.ExternalUserID != "" {
			return transform.User(body.ExternalUserID), true // player model: an email or SMS record
		}
	}
	return transform.Target{}, false
}

// nothingReason says why a row the mapping reads feeds no user and no
// device.
func nothingReason(m *transform.Mapping, r connector.Row) string {
	row := r.Event.After
	var why []string
	isNull := func(col string) (string, bool) {
		v, ok := row.Get(col)
		if !ok || isNullJSON(v) {
			return "NULL", true
		}
		if s, err := strconv.Unquote(string(v)); err == nil && strings.TrimSpace(s) == "" {
			return "empty", true
		}
		return "", false
	}
	filtered := func(key, filter string) string {
		return fmt.Sprintf("%s (%s) is false for it: for OneSignal the row is as if deleted", key, filter)
	}
	if u := m.Users; u != nil && u.Table == r.Table {
		if what, ok := isNull(u.ExternalID); ok {
			why = append(why, fmt.Sprintf("its external id, column %q (mapping.users.external_id), is %s: the row names no user", u.ExternalID, what))
		} else if u.Filter != "" {
			why = append(why, filtered("mapping.users.filter", u.Filter))
		}
	}
	for i, s := range m.Sources {
		if s.Table != r.Table {
			continue
		}
		col, key := s.User.ExternalID, fmt.Sprintf("mapping.sources[%d].user.external_id", i)
		if s.User.References != nil {
			col, key = s.User.References.Column, fmt.Sprintf("mapping.sources[%d].user.references.column", i)
		}
		if what, ok := isNull(col); ok {
			why = append(why, fmt.Sprintf("column %q (%s) is %s: the row names no user", col, key, what))
		} else if s.Filter != "" {
			why = append(why, filtered(fmt.Sprintf("mapping.sources[%d].filter", i), s.Filter))
		}
	}
	if d := m.Devices; d != nil && d.Table == r.Table {
		col, key := d.ExternalID, "mapping.devices.external_id"
		if d.Owner != nil && d.Owner.References != nil {
			col, key = d.Owner.References.Column, "mapping.devices.owner.references.column"
		}
		if what, ok := isNull(col); ok {
			why = append(why, fmt.Sprintf("its owner, column %q (%s), is %s: the device is linked to no one (logged out)", col, key, what))
		} else if d.Filter != "" {
			why = append(why, filtered("mapping.devices.filter", d.Filter))
		}
	}
	if len(why) == 0 {
		return "the mapping gives nothing for it"
	}
	return strings.Join(why, "; ")
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, row := range r.rows {
		if err := enc.Encode(row); err != nil {
			return err
		}
	}
	if len(r.other) > 0 {
		return enc.Encode(struct {
			Other []previewRequest `json:"other_requests"`
		}{r.other})
	}
	return nil
}

func (r *report) writeText(w io.Writer, cfg *config.Config) {
	counts := map[string]int{}
	read := 0
	for _, row := range r.rows {
		if row.ReadFor == "" {
			counts[row.Table]++
			read++
		}
	}
	var of []string
	for _, t := range r.tables {
		of = append(of, fmt.Sprintf("%d of %s", counts[t], t))
	}
	auth := "Key"
	if cfg.OneSignal.Model == config.ModelPlayer && cfg.OneSignal.LegacyAPIKey {
		auth = "Basic"
	}
	fmt.Fprintf(w, "Previewed %d rows (%s) in the %s model.\n", read, strings.Join(of, ", "), r.model)
	fmt.Fprint(w, "Under each row: the requests the sink made for the users and devices it feeds, in the order\n"+
		"made, run in this process against an emulator of your app that held nothing but the rows'\n"+
		"devices; a request is shown under the user or device it writes.\n")
	fmt.Fprintf(w, "Nothing was sent to OneSignal: paths are below %s, with \"Authorization: %s [redacted]\".\n", cfg.OneSignal.BaseURL, auth)
	if cfg.OneSignal.AppID == "" {
		fmt.Fprintf(w, "onesignal.app_id is not set: the paths show app %s.\n", previewAppID)
	}
	header := false
	for _, row := range r.rows {
		if row.ReadFor != "" && !header {
			fmt.Fprint(w, "\nRead only because rows above reference them, so that the references resolve:\n")
			header = true
		}
		fmt.Fprintf(w, "\n%s %s", row.Table, row.Key)
		if row.ReadFor != "" {
			fmt.Fprintf(w, "  (read because %s)", row.ReadFor)
		}
		fmt.Fprintln(w)
		if row.Nothing != "" {
			fmt.Fprintf(w, "  gives nothing: %s\n", row.Nothing)
		}
		for _, n := range row.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		for _, d := range row.DeadLetters {
			status := ""
			if d.Status != 0 {
				status = fmt.Sprintf(", HTTP %d", d.Status)
			}
			fmt.Fprintf(w, "  dead-lettered (%s%s): %s\n", d.Stage, status, d.Reason)
		}
		for _, t := range row.Targets {
			fmt.Fprintf(w, "  %s %s", t.Kind, strconv.Quote(t.ID))
			if t.Via != "" {
				fmt.Fprintf(w, " (%s)", t.Via)
			}
			fmt.Fprintln(w)
			if len(t.Requests) == 0 {
				fmt.Fprintf(w, "    no request%s\n", r.why(t))
			}
			for _, q := range t.Requests {
				writeRequest(w, q, "    ")
			}
		}
	}
	if len(r.other) > 0 {
		fmt.Fprint(w, "\nRequests for no row above:\n")
		for _, q := range r.other {
			writeRequest(w, q, "  ")
		}
	}
}

// why a target got no request, where the model says.
func (r *report) why(t previewTarget) string {
	if r.model == config.ModelPlayer && t.Kind == "user" {
		return ": in the player model a user's tags go out with its devices and records, and it has none among these rows"
	}
	return ""
}

func writeRequest(w io.Writer, q previewRequest, indent string) {
	status := "no answer"
	if q.Status != 0 {
		status = strconv.Itoa(q.Status)
	}
	fmt.Fprintf(w, "%s%s %s → %s\n", indent, q.Method, q.Path, status)
	if len(q.Body) > 0 {
		fmt.Fprintf(w, "%s  %s\n", indent, q.Body)
	}
	if len(q.Answer) > 0 {
		fmt.Fprintf(w, "%s  answer: %s\n", indent, q.Answer)
	}
}
