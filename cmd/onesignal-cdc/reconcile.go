package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// exitDrift is reconcile's exit status when it found drift (documented in
// its help and in docs/operations.md, as validate's 1 for a finding).
const exitDrift = 1

// viewThreshold is the most targets reconcile reads by views (1 a second)
// when --read is auto; more are read by an export.
const viewThreshold = 100

// reconcileCmd compares what OneSignal should hold, from the rows through
// the mapping, with what it holds, and with --repair asks the sink to send
// the drifted targets their desired state again.
func reconcileCmd(ctx context.Context, cmd *command, args []string, stdout, stderr io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	repair := fs.Bool("repair", false, "write a repair record for each drifted user and device to the sink's targets topic: the running sink sends it its desired state again")
	table := fs.String("table", "", "read only rows of `SCHEMA.TABLE`, one of the mapped tables (and the other tables' rows of the users they feed)")
	where := fs.String("where", "", "an `SQL` condition over --table's columns; it runs as the configured PostgreSQL user, in a read-only transaction")
	limit := fs.Int("limit", 0, "read at most `N` rows of each table (of --table), in primary-key order; 0: every row")
	read := fs.String("read", "auto", "how to read OneSignal: `views` (1 request a second per user or device), export, or auto (views up to 100 targets)")
	examples := fs.Int("examples", 5, "show at most `N` examples of each kind of drift")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, config.All)
	if err != nil {
		return usageError{err}
	}
	tables := cfg.Mapping.Tables()
	switch {
	case *limit < 0:
		return fs.usageError(fmt.Sprintf("--limit %d: want 0 (every row) or more", *limit))
	case *examples < 0:
		return fs.usageError(fmt.Sprintf("--examples %d: want 0 or more", *examples))
	case *read != "auto" && *read != "views" && *read != "export":
		return fs.usageError(fmt.Sprintf("--read %q: want views, export or auto", *read))
	case *table != "" && !slices.Contains(tables, *table):
		return fs.usageError(fmt.Sprintf("--table %q is not a mapped table (%s)", *table, strings.Join(tables, ", ")))
	case *where != "" && *table == "":
		return fs.usageError("--where reads the columns of one table: name it with --table")
	}

	want, lsn, refused, err := wantedStates(ctx, cfg, previewOptions{table: *table, where: *where, limit: *limit})
	if err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "reconcile: "+format+"\n", a...) }
	progress("read %d users and %d devices from the rows as of WAL position %s", len(want.Users), len(want.Devices), lsn)

	mode := *read
	if mode == "auto" {
		mode = "export"
		if len(want.Users)+len(want.Devices) <= viewThreshold {
			mode = "views"
		}
	}
	api, err := onesignal.New(onesignal.Config{BaseURL: cfg.OneSignal.BaseURL, AppID: cfg.OneSignal.AppID,
		APIKey: onesignal.Secret(cfg.OneSignal.APIKey.Reveal()), Limiter: sink.NewLimiter(nil, cfg.OneSignal.RateLimit)})
	if err != nil {
		return usageError{err}
	}
	players := api.Players(cfg.OneSignal.IdentityVerification, cfg.OneSignal.LegacyAPIKey)
	player := cfg.OneSignal.Model == config.ModelPlayer
	var have reconcile.Have
	if mode == "views" {
		have, err = viewHeld(ctx, api, players, player, want, progress)
	} else {
		have, err = exportHeld(ctx, api, players, player, len(want.Devices) > 0, progress)
	}
	if err != nil {
		return err
	}
	rep := reconcile.Compare(want, have, cfg.Mapping.NamesTag)
	out := driftReport{LSN: lsn.String(), Read: mode, Model: cfg.OneSignal.Model, Users: rep.Users, Devices: rep.Devices,
		Counts: rep.Counts, Ignored: rep.Ignored, Refused: refused, Total: len(rep.Drift)}
	out.Examples = examplesOf(rep.Drift, *examples)
	if *repair && len(rep.Drift) > 0 {
		targets := repairTargets(rep.Drift, player)
		if err := writeRepairs(ctx, cfg, targets); err != nil {
			return err
		}
		out.Repaired = len(targets)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		out.writeText(stdout, *repair)
	}
	if len(rep.Drift) > 0 {
		return reported(exitDrift)
	}
	return nil
}

// wantedStates reads the rows and folds them as the sink does (the same
// projection, desired.Fold): what OneSignal should hold of every user and
// device they feed. A narrowed read (--table, --where, --limit) is
// completed with the other mapped tables' rows of the users it names, so
// each user it compares has all of its rows; refused are the rows the
// mapping refuses.
func wantedStates(ctx context.Context, cfg *config.Config, opts previewOptions) (reconcile.Want, fmt.Stringer, []string, error) {
	m := &cfg.Mapping
	reader, err := connector.OpenReader(ctx, connector.ReaderConfig{DSN: cfg.Postgres.DSN.Reveal(), TopicPrefix: cfg.Kafka.TopicPrefix, Version: buildVersion()})
	if err != nil {
		return reconcile.Want{}, nil, nil, err
	}
	defer reader.Close(ctx)
	tables := m.Tables()
	narrowed := opts.table != "" || opts.where != "" || opts.limit > 0
	if opts.table != "" {
		tables = []string{opts.table}
	}
	var rows []*previewed
	seen := map[string]bool{}
	add := func(r connector.Row) error {
		if id := r.Table + "\x00" + string(r.Key); !seen[id] {
			seen[id] = true
			rows = append(rows, &previewed{row: r})
		}
		return nil
	}
	for _, t := range tables {
		sel := connector.Select{Limit: opts.limit}
		if t == opts.table {
			sel.Where = opts.where
		}
		if err := reader.Rows(ctx, t, sel, add); err != nil {
			return reconcile.Want{}, nil, nil, whereProblem(err, opts.where, t)
		}
	}
	if narrowed {
		if err := completeUsers(ctx, reader, m, rows, add); err != nil {
			return reconcile.Want{}, nil, nil, err
		}
	}
	referenced, err := readReferenced(ctx, reader, m, rows)
	if err != nil {
		return reconcile.Want{}, nil, nil, err
	}
	rows = append(rows, referenced...)
	var s side
	for _, p := range rows {
		s.add(m, cfg.Kafka.TopicPrefix+"."+p.row.Table+"\x00"+string(p.row.Key), p.row)
	}
	final := desired.Fold(s.rows)
	return reconcile.Want{Users: final.Users, Devices: final.Devices}, reader.LSN(), s.refused, nil
}

// completeUsers reads, of every mapped table, the rows that name one of
// the users the rows read name (by external id, or by a foreign key to
// their users rows), so that a user's desired state is made of all its
// rows, as the sink's is.
func completeUsers(ctx context.Context, reader *connector.Reader, m *transform.Mapping, rows []*previewed, add func(connector.Row) error) error {
	var ids []json.RawMessage
	have := map[string]bool{}
	for _, p := range rows {
		parts, err := m.Project(p.row.Event, nil)
		if _, partial := errors.AsType[transform.Problems](err); err != nil && !partial {
			continue
		}
		for _, part := range parts.Fed() {
			id := ""
			switch {
			case part.Target.Device:
				id = part.Owner
			case part.Target.Row:
				id = part.Identity
			case !part.Target.Record && !part.Target.Held:
				id = part.Target.ID
			}
			if id != "" && !have[id] {
				have[id] = true
				b, _ := json.Marshal(id)
				ids = append(ids, b)
			}
		}
	}
	byExternalID := func(table, column string) error {
		if table == "" || column == "" {
			return nil
		}
		if err := reader.RowsWith(ctx, table, column, ids, add); err != nil {
			return fmt.Errorf("read the %s rows of the users compared: %w", table, err)
		}
		return nil
	}
	if u := m.Users; u != nil {
		if err := byExternalID(u.Table, u.ExternalID); err != nil {
			return err
		}
	}
	for _, s := range m.Sources {
		if err := byExternalID(s.Table, s.User.ExternalID); err != nil {
			return err
		}
	}
	if d := m.Devices; d != nil {
		if err := byExternalID(d.Table, d.ExternalID); err != nil {
			return err
		}
	}
	// Rows that name their user by foreign key: those that reference the
	// users rows read.
	var refs []*transform.Reference
	for _, s := range m.Sources {
		if s.User.References != nil {
			refs = append(refs, s.User.References)
		}
	}
	if d := m.Devices; d != nil && d.Owner != nil && d.Owner.References != nil {
		refs = append(refs, d.Owner.References)
	}
	for _, r := range refs {
		var keys []json.RawMessage
		for _, p := range rows {
			if p.row.Table != r.Table {
				continue
			}
			if v, ok := p.row.Event.After.Get(r.Key); ok && !isNullJSON(v) {
				keys = append(keys, v)
			}
		}
		if err := byRef(ctx, reader, m, r, keys, add); err != nil {
			return err
		}
	}
	return nil
}

// byRef reads the rows of the tables whose reference r names one of keys.
func byRef(ctx context.Context, reader *connector.Reader, m *transform.Mapping, r *transform.Reference, keys []json.RawMessage, add func(connector.Row) error) error {
	for _, s := range m.Sources {
		if s.User.References == r {
			if err := reader.RowsWith(ctx, s.Table, r.Column, keys, add); err != nil {
				return fmt.Errorf("read the %s rows of the users compared: %w", s.Table, err)
			}
		}
	}
	if d := m.Devices; d != nil && d.Owner != nil && d.Owner.References == r {
		if err := reader.RowsWith(ctx, d.Table, r.Column, keys, add); err != nil {
			return fmt.Errorf("read the %s rows of the users compared: %w", d.Table, err)
		}
	}
	return nil
}

// viewHeld reads what OneSignal holds of want's targets one view at a
// time, under the client's view limiter (1 a second per app): each user
// (user model: its tags and its subscriptions), then each device not
// seen among them.
func viewHeld(ctx context.Context, api *onesignal.Client, players *onesignal.PlayerClient, player bool, want reconcile.Want,
	progress func(string, ...any)) (reconcile.Have, error) {
	have := reconcile.Have{Users: map[string]reconcile.User{}, Devices: map[string]reconcile.Device{}, PlayerModel: player}
	total := len(want.Devices)
	if !player {
		total += len(want.Users)
	}
	progress("reading %d users and devices by views, about one a second", total)
	done := 0
	tick := func() {
		done++
		if done%10 == 0 || done == total {
			progress("viewed %d of %d", done, total)
		}
	}
	if !player {
		for _, ext := range slices.Sorted(maps.Keys(want.Users)) {
			u, found, err := api.ViewUser(ctx, ext)
			if err != nil {
				return have, fmt.Errorf("view user %q: %w", ext, err)
			}
			tick()
			if !found {
				continue
			}
			have.Users[ext] = reconcile.User{Tags: u.Tags}
			for _, s := range u.Subscriptions {
				have.Devices[s.ID] = reconcile.Device{ExternalID: ext}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want.Devices)) {
		if _, seen := have.Devices[id]; seen && want.Devices[id].Owner == have.Devices[id].ExternalID {
			tick() // on its owner already: no view needed
			continue
		}
		d, found, err := players.ViewDevice(ctx, id)
		if err != nil {
			return have, fmt.Errorf("view device %q: %w", id, err)
		}
		tick()
		if !found {
			delete(have.Devices, id)
			continue
		}
		held := reconcile.Device{ExternalID: d.ExternalUserID}
		if player {
			held.Tags = d.Tags
		}
		have.Devices[id] = held
	}
	return have, nil
}

// exportHeld reads what OneSignal holds by its exports: the users export
// (user model) and the players export (player model; in the user model
// only for the devices' owners).
func exportHeld(ctx context.Context, api *onesignal.Client, players *onesignal.PlayerClient, player, devices bool,
	progress func(string, ...any)) (reconcile.Have, error) {
	have := reconcile.Have{Users: map[string]reconcile.User{}, Devices: map[string]reconcile.Device{}, PlayerModel: player}
	run := func(what string, start func(context.Context) (*onesignal.Export, error), fn func(onesignal.ExportRecord)) error {
		progress("asking OneSignal for the %s export (its file takes about a second per 2,000 records)", what)
		// One export per account at a time: while another runs (continuous
		// mode's, say), OneSignal refuses with a 429 and its Retry-After.
		var x *onesignal.Export
		err := retry.ExportStart.Do(ctx, func() error {
			var err error
			x, err = start(ctx)
			return err
		}, func(err error, wait time.Duration) {
			progress("the %s export is not available yet (%v); asking again in %s", what, err, wait.Round(time.Second))
		})
		if err != nil {
			return fmt.Errorf("start the %s export: %w", what, err)
		}
		n, started := 0, time.Now()
		last := started
		err = x.Records(ctx, func(r onesignal.ExportRecord) error {
			n++
			if time.Since(last) > 10*time.Second {
				progress("%s export: %d records read", what, n)
				last = time.Now()
			}
			fn(r)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the %s export: %w", what, err)
		}
		progress("%s export: %d records in %s", what, n, time.Since(started).Round(time.Second))
		return nil
	}
	if !player {
		err := run("users", api.StartExport, func(r onesignal.ExportRecord) {
			if r.ExternalID != "" {
				have.Users[r.ExternalID] = reconcile.User{Tags: r.Tags}
			}
		})
		if err != nil || !devices {
			return have, err
		}
	}
	err := run("players", players.StartExport, func(r onesignal.ExportRecord) {
		d := reconcile.Device{ExternalID: r.ExternalID}
		if player {
			d.Tags = r.Tags
		}
		have.Devices[r.ID] = d
	})
	return have, err
}

// repairTargets are the users and devices to send again: a user for its
// drift, a device for its owner; in the player model a device's tag drift
// is its owner's tags, sent by external id to every device of the owner.
func repairTargets(drift []reconcile.Drift, player bool) []transform.Target {
	var out []transform.Target
	add := func(t transform.Target) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, d := range drift {
		switch {
		case d.Kind == reconcile.MissingDevice || d.Kind == reconcile.WrongOwner:
			add(transform.Device(d.DeviceID))
		case d.DeviceID != "" && player && d.ExternalID == "":
			add(transform.Device(d.DeviceID)) // an unlinked device carrying tags: unlink it again
		default:
			add(transform.User(d.ExternalID))
		}
	}
	return out
}

// writeRepairs writes a repair record to each target in the sink's
// targets topic, partitioned as the sink partitions it.
func writeRepairs(ctx context.Context, cfg *config.Config, targets []transform.Target) error {
	cluster, done, err := commandKafka(cfg, "the sink's targets topic lives in the memory of the running process, out of this command's reach; set kafka.embedded_data_dir, or use a Kafka cluster")
	if err != nil {
		return err
	}
	defer done()
	w, rows := sink.Cluster{Cluster: cluster}.Writers()
	defer w.Close()
	defer rows.Close()
	topic := sink.TopicsFor(cfg.Kafka.TopicPrefix).Targets
	msgs := make([]kafka.Message, 0, len(targets))
	for _, t := range targets {
		rec := &desired.Record{Target: t, Kind: desired.KindRepair}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: rec.Key(), Value: rec.Value()})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d repair records to %s: %w", len(msgs), topic, cluster.Explain(ctx, err))
	}
	return nil
}

// driftReport is what reconcile prints.
type driftReport struct {
	LSN      string                 `json:"lsn"`
	Read     string                 `json:"read"` // "views" or "export"
	Model    string                 `json:"model"`
	Users    int                    `json:"users"`
	Devices  int                    `json:"devices"`
	Total    int                    `json:"drift"`
	Counts   map[reconcile.Kind]int `json:"counts"`
	Examples []driftExample         `json:"examples"`
	// Ignored counts, by tag, the users and devices carrying a tag the
	// mapping does not name.
	Ignored  map[string]int `json:"ignored_tags"`
	Refused  []string       `json:"refused_rows,omitempty"`
	Repaired int            `json:"repair_records,omitempty"`
}

type driftExample struct {
	Kind       reconcile.Kind `json:"kind"`
	ExternalID string         `json:"external_id,omitempty"`
	DeviceID   string         `json:"device_id,omitempty"`
	Tag        string         `json:"tag,omitempty"`
	Want       string         `json:"want,omitempty"`
	Have       string         `json:"have,omitempty"`
}

// examplesOf keeps the first n drifts of each kind.
func examplesOf(drift []reconcile.Drift, n int) []driftExample {
	out := []driftExample{}
	per := map[reconcile.Kind]int{}
	for _, d := range drift {
		if per[d.Kind] >= n {
			continue
		}
		per[d.Kind]++
		out = append(out, driftExample{Kind: d.Kind, ExternalID: d.ExternalID, DeviceID: d.DeviceID, Tag: d.Tag, Want: d.Want, Have: d.Have})
	}
	return out
}

func (r driftReport) writeText(w io.Writer, repair bool) {
	fmt.Fprintf(w, "Compared %d users and %d devices (%s model): the rows as of WAL position %s, OneSignal by %s.\n",
		r.Users, r.Devices, r.Model, r.LSN, r.Read)
	if r.Total == 0 {
		fmt.Fprintln(w, "No drift: OneSignal holds what the rows say.")
	} else {
		fmt.Fprintf(w, "Drift: %d\n", r.Total)
		for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
			fmt.Fprintf(w, "  %-15s %d\n", k, r.Counts[k])
		}
		fmt.Fprintln(w, "Examples:")
		for _, e := range r.Examples {
			fmt.Fprintf(w, "  %-15s", e.Kind)
			if e.ExternalID != "" {
				fmt.Fprintf(w, " user %q", e.ExternalID)
			}
			if e.DeviceID != "" {
				fmt.Fprintf(w, " device %q", e.DeviceID)
			}
			if e.Tag != "" {
				fmt.Fprintf(w, " tag %q", e.Tag)
			}
			if e.Want != "" || e.Have != "" {
				fmt.Fprintf(w, ": want %q, OneSignal has %q", e.Want, e.Have)
			}
			fmt.Fprintln(w)
		}
	}
	if len(r.Ignored) > 0 {
		var tags []string
		for _, t := range slices.Sorted(maps.Keys(r.Ignored)) {
			tags = append(tags, fmt.Sprintf("%s (%d)", t, r.Ignored[t]))
		}
		fmt.Fprintf(w, "Ignored, not in the mapping (the SDKs' or the dashboard's): %s\n", strings.Join(tags, ", "))
	}
	for _, row := range r.Refused {
		fmt.Fprintf(w, "Refused by the mapping (the sink dead-letters it): %s\n", row)
	}
	switch {
	case r.Repaired > 0:
		fmt.Fprintf(w, "Repair: asked the sink to send %d users and devices their desired state again (records in its targets topic).\n", r.Repaired)
		if r.Counts[reconcile.MissingUser] > 0 {
			fmt.Fprint(w, "A missing user whose rows never reached the sink (a lost slot, rows written while the connector was off) is\n"+
				"not repaired this way: the sink has no desired state to send (it logs a warning and counts it).\n"+
				"Run onesignal-cdc snapshot --table SCHEMA.TABLE for its tables, then reconcile again.\n")
		}
	case r.Total > 0 && !repair:
		fmt.Fprintln(w, "Run again with --repair to have the sink send the drifted users and devices their desired state again.")
	}
}
