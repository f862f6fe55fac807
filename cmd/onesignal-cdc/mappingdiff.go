package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// mappingDiff compares what two mappings make of the rows.
func mappingDiff(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	limit := fs.Int("limit", 10, "show at most `N` examples of the users, and of the devices, that would change")
	files, err := fs.parseWith(args, []string{"OLD.yaml", "NEW.yaml"})
	if err != nil {
		return err
	}
	if *limit < 0 {
		return fs.usageError(fmt.Sprintf("--limit %d: want 0 or more examples", *limit))
	}
	// The database's configuration: --config's when given, else OLD's when
	// it is a configuration file, else the default --config.
	var base *config.Config
	loadBase := func() error {
		if base == nil {
			if base, err = config.LoadFor(*path, config.Database); err != nil {
				return usageError{err}
			}
		}
		return nil
	}
	if flagGiven(fs.FlagSet, "config") {
		if err := loadBase(); err != nil {
			return err
		}
	}
	var mappings [2]*config.Config
	for i, f := range files {
		only, err := mappingOnly(f)
		if err != nil {
			return usageError{fmt.Errorf("config: %w", err)}
		}
		if !only {
			if mappings[i], err = config.LoadFor(f, config.Database); err != nil {
				return usageError{err}
			}
			if i == 0 && base == nil {
				base = mappings[i]
			}
			continue
		}
		if err := loadBase(); err != nil {
			return err
		}
		if mappings[i], err = loadMappingFile(f, base); err != nil {
			return usageError{err}
		}
	}
	oldM, newM := &mappings[0].Mapping, &mappings[1].Mapping

	reader, err := connector.OpenReader(ctx, connector.ReaderConfig{DSN: base.Postgres.DSN.Reveal(), TopicPrefix: base.Kafka.TopicPrefix, Version: buildVersion()})
	if err != nil {
		return err
	}
	defer reader.Close(ctx)
	var tables []string
	for _, t := range append(oldM.Tables(), newM.Tables()...) {
		if !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	var sides [2]side
	counts := map[string]int{}
	for _, t := range tables {
		err := reader.Rows(ctx, t, connector.Select{}, func(r connector.Row) error {
			counts[t]++
			id := base.Kafka.TopicPrefix + "." + r.Table + "\x00" + string(r.Key)
			for i, m := range []*transform.Mapping{oldM, newM} {
				if slices.Contains(m.Tables(), t) {
					sides[i].add(m, id, r)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	reader.Close(ctx)
	d := diffStates(desired.Fold(sides[0].rows), desired.Fold(sides[1].rows))
	writeDiff(stdout, diffReport{
		old: files[0], new: files[1], tables: tables, counts: counts, limit: *limit,
		changed: changedTables(oldM, newM), diff: d, refused: [2][]string{sides[0].refused, sides[1].refused},
	})
	return nil
}

// mappingOnly reports whether the YAML file at path holds only a mapping:
// section (a mapping file) rather than a whole configuration.
func mappingOnly(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false, nil // the configuration loader says what is wrong
	}
	top := doc.Content[0]
	return top.Kind == yaml.MappingNode && len(top.Content) == 2 && top.Content[0].Value == "mapping", nil
}

// loadMappingFile loads a mapping file as the configuration loader loads
// a whole file, so its problems are reported the same way, with the
// file's own line numbers: its text, followed by the lines the loader
// needs (a DSN it does not use and base's onesignal.model, which decides
// what the mapping may hold).
func loadMappingFile(path string, base *config.Config) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, "postgres:\n  dsn: \"host=unused\"\nonesignal:\n  model: "+strconv.Quote(base.OneSignal.Model)+"\n"...)
	cfg, err := config.ParseFor(strings.NewReader(string(data)), config.Database)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// side is what one mapping makes of the rows read.
type side struct {
	rows    []desired.Projected
	refused []string // rows the mapping refuses, each with why
}

func (s *side) add(m *transform.Mapping, id string, r connector.Row) {
	parts, err := m.Project(r.Event, nil)
	if _, partial := errors.AsType[transform.Problems](err); err != nil && !partial {
		s.refused = append(s.refused, rowName(r)+": "+err.Error())
		return
	}
	if parts = parts.Fed(); len(parts) > 0 {
		s.rows = append(s.rows, desired.Projected{Row: id, Parts: parts})
	}
}

// A change of one field of a target: a tag, a property, an alias, a
// record or an owner; "" is none.
type change struct {
	Kind, Name    string // "tag" plan, "property" language, "owner", …
	Before, After string
}

// targetDiff is how a user's or a device's desired state changes.
type targetDiff struct {
	ID      string
	Changes []change
}

// stateDiff is everything that changes from one fold to the other.
type stateDiff struct {
	Users, Devices []targetDiff // sorted by id
	// UsersBefore, UsersAfter, DevicesBefore, DevicesAfter count the
	// targets each side feeds.
	UsersBefore, UsersAfter, DevicesBefore, DevicesAfter int
}

// diffStates compares two folds: per user its tags, properties, aliases
// and records; per device its owner.
func diffStates(before, after desired.Final) stateDiff {
	d := stateDiff{UsersBefore: live(before.Users), UsersAfter: live(after.Users), DevicesBefore: owned(before.Devices), DevicesAfter: owned(after.Devices)}
	for _, id := range unionKeys(before.Users, after.Users) {
		b, a := before.Users[id], after.Users[id]
		var cs []change
		cs = append(cs, fields("tag", b.Tags, a.Tags)...)
		cs = append(cs, fields("property", b.Props, a.Props)...)
		cs = append(cs, fields("alias", b.Aliases, a.Aliases)...)
		cs = append(cs, fields("record", records(b.Records), records(a.Records))...)
		if len(cs) > 0 {
			d.Users = append(d.Users, targetDiff{ID: id, Changes: cs})
		}
	}
	for _, id := range unionKeys(before.Devices, after.Devices) {
		if b, a := before.Devices[id].Owner, after.Devices[id].Owner; b != a {
			d.Devices = append(d.Devices, targetDiff{ID: id, Changes: []change{{Kind: "owner", Before: b, After: a}}})
		}
	}
	return d
}

func live(us map[string]desired.User) int {
	n := 0
	for _, u := range us {
		if u.Live {
			n++
		}
	}
	return n
}

func owned(ds map[string]desired.Device) int {
	n := 0
	for _, d := range ds {
		if d.Owner != "" {
			n++
		}
	}
	return n
}

// records are a user's records as fields: "email ada@example.com" → "".
func records(rs []transform.Record) map[string]string {
	m := make(map[string]string, len(rs))
	for _, r := range rs {
		m[r.Channel+" "+r.Identifier] = "present"
	}
	return m
}

// fields compares two maps of a kind, "" standing for none.
func fields(kind string, before, after map[string]string) []change {
	var cs []change
	for _, k := range unionKeys(before, after) {
		if b, a := before[k], after[k]; b != a {
			cs = append(cs, change{Kind: kind, Name: k, Before: b, After: a})
		}
	}
	return cs
}

func unionKeys[V any](a, b map[string]V) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// tableChange is a table whose mapping differs between the two.
type tableChange struct{ Table, How string }

// changedTables are the tables whose mapping differs: those the connector
// snapshots again when it starts with the new mapping (added ones it
// snapshots for the first time). It compares what the connector keeps to
// decide, each table's transform.Mapping.Fingerprint.
func changedTables(old, new *transform.Mapping) []tableChange {
	var out []tableChange
	o, n := old.Tables(), new.Tables()
	for _, t := range o {
		switch {
		case !slices.Contains(n, t):
			out = append(out, tableChange{t, "no longer mapped"})
		case old.Fingerprint(t) != new.Fingerprint(t):
			out = append(out, tableChange{t, "changed: snapshotted again"})
		}
	}
	for _, t := range n {
		if !slices.Contains(o, t) {
			out = append(out, tableChange{t, "newly mapped: snapshotted"})
		}
	}
	return out
}

type diffReport struct {
	old, new string
	tables   []string
	counts   map[string]int
	limit    int
	changed  []tableChange
	diff     stateDiff
	refused  [2][]string
}

func writeDiff(w io.Writer, r diffReport) {
	var read []string
	for _, t := range r.tables {
		read = append(read, fmt.Sprintf("%s %d", t, r.counts[t]))
	}
	fmt.Fprintf(w, "%s → %s, over every row read (%s).\n", r.old, r.new, strings.Join(read, ", "))

	fmt.Fprint(w, "\nTables:\n")
	if len(r.changed) == 0 {
		fmt.Fprint(w, "  no table's mapping changed: the connector snapshots none again\n")
	}
	for _, c := range r.changed {
		fmt.Fprintf(w, "  %s: %s\n", c.Table, c.How)
	}

	d := r.diff
	kinds := map[string][3]int{} // kind → added, changed, removed
	for _, u := range d.Users {
		seen := map[string][3]bool{}
		for _, c := range u.Changes {
			s := seen[c.Kind]
			switch {
			case c.Before == "":
				s[0] = true
			case c.After == "":
				s[2] = true
			default:
				s[1] = true
			}
			seen[c.Kind] = s
		}
		for kind, s := range seen {
			k := kinds[kind]
			for i := range s {
				if s[i] {
					k[i]++
				}
			}
			kinds[kind] = k
		}
	}
	fmt.Fprintf(w, "\nUsers: %d would change (%d fed before, %d after).\n", len(d.Users), d.UsersBefore, d.UsersAfter)
	for _, kind := range []string{"tag", "property", "alias", "record"} {
		k, ok := kinds[kind]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %ss: added for %d, changed for %d, removed for %d\n", kind, k[0], k[1], k[2])
	}
	writeExamples(w, d.Users, r.limit, "user")

	fmt.Fprintf(w, "\nDevices: %d would change owner (%d linked before, %d after).\n", len(d.Devices), d.DevicesBefore, d.DevicesAfter)
	writeExamples(w, d.Devices, r.limit, "device")

	for i, refused := range r.refused {
		if len(refused) == 0 {
			continue
		}
		name := []string{r.old, r.new}[i]
		fmt.Fprintf(w, "\n%s refuses %d rows (the sink would dead-letter them):\n", name, len(refused))
		for _, why := range refused[:min(len(refused), max(r.limit, 1))] {
			fmt.Fprintf(w, "  %s\n", why)
		}
	}
}

func writeExamples(w io.Writer, ts []targetDiff, limit int, kind string) {
	for _, t := range ts[:min(len(ts), limit)] {
		fmt.Fprintf(w, "  %s %s:", kind, strconv.Quote(t.ID))
		for i, c := range t.Changes {
			if i > 0 {
				fmt.Fprint(w, ";")
			}
			name := ""
			if c.Name != "" {
				name = " " + c.Name
			}
			if c.Kind == "record" {
				fmt.Fprintf(w, " %s%s %s", c.Kind, name, map[bool]string{true: "added", false: "removed"}[c.Before == ""])
				continue
			}
			fmt.Fprintf(w, " %s%s %s → %s", c.Kind, name, shownValue(c.Before), shownValue(c.After))
		}
		fmt.Fprintln(w)
	}
	if len(ts) > limit {
		fmt.Fprintf(w, "  … and %d more\n", len(ts)-limit)
	}
}

func shownValue(v string) string {
	if v == "" {
		return "(none)"
	}
	return strconv.Quote(v)
}
