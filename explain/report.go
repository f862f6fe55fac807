package explain

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// Report is everything explain found of one target; --json prints it as
// it is, the text output says the same.
type Report struct {
	Target string `json:"target"` // its key: "user:<id>", "device:<id>"
	Kind   string `json:"kind"`   // "user" or "device"
	ID     string `json:"id"`

	TargetsTopic string `json:"targets_topic"`
	Partition    int    `json:"partition"`
	Scanned      Range  `json:"scanned"` // the partition's offsets read
	Records      int    `json:"records"` // of the target among them
	LastRecord   int64  `json:"last_record,omitempty"`

	Sources    []SourceRow `json:"source_rows"` // in position order
	Others     []Other     `json:"other_records,omitempty"`
	Unreadable []Other     `json:"unreadable_records,omitempty"`
	Desired    *Desired    `json:"desired,omitempty"` // nil when no record names the target

	Group       string       `json:"group"`
	Progress    []Progress   `json:"sink_progress"`
	Live        []Live       `json:"live"`
	DeadLetters []DeadLetter `json:"dead_letters"`

	// State is one of "unknown", "in_sync", "waiting", "in_progress",
	// "retrying", "dead_lettered"; Verdict says it in a sentence.
	State   string `json:"state"`
	Verdict string `json:"verdict"`
}

// Range is offsets [From, To).
type Range struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// Where is a message's place in Kafka.
type Where struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

func (w Where) String() string {
	return w.Topic + "/" + strconv.Itoa(w.Partition) + "@" + strconv.FormatInt(w.Offset, 10)
}

// Pos is a source position: the commit LSN of the change's transaction,
// then its own LSN (and, for a part forwarded through a referenced row,
// the part's own change: desired.Position).
type Pos struct {
	Commit     int64 `json:"commit_lsn"`
	LSN        int64 `json:"lsn"`
	ThenCommit int64 `json:"then_commit_lsn,omitempty"`
	ThenLSN    int64 `json:"then_lsn,omitempty"`
}

func posOf(p desired.Position) Pos { return Pos{p.Commit, p.LSN, p.ThenCommit, p.ThenLSN} }

func (p Pos) pos() desired.Position {
	return desired.Position{Commit: p.Commit, LSN: p.LSN, ThenCommit: p.ThenCommit, ThenLSN: p.ThenLSN}
}

// String is PostgreSQL's notation: commit/LSN, each as X/Y.
func (p Pos) String() string {
	if p == (Pos{}) {
		return "-"
	}
	s := lsn(p.Commit) + " " + lsn(p.LSN)
	if p.ThenCommit != 0 || p.ThenLSN != 0 {
		s += " (own " + lsn(p.ThenCommit) + " " + lsn(p.ThenLSN) + ")"
	}
	return s
}

func lsn(v int64) string { return fmt.Sprintf("%X/%X", uint64(v)>>32, uint64(v)&0xFFFFFFFF) }

// SourceRow is a contribution: what one source row said of the target,
// as of one change.
type SourceRow struct {
	Topic   string `json:"topic"` // the row's event topic
	Key     string `json:"key"`   // its Kafka key (the primary key's JSON)
	Pos     Pos    `json:"pos"`
	Source  *Where `json:"source,omitempty"` // the event it came from
	Record  Where  `json:"record"`           // the contribution in the targets topic
	Current bool   `json:"current"`          // the newest of its row: the one the desired state holds
	Gone    bool   `json:"gone,omitempty"`   // the row no longer feeds the target
	Created bool   `json:"created,omitempty"`

	Tags     map[string]string `json:"tags,omitempty"`
	Unknown  []string          `json:"unknown,omitempty"` // tags left out (unchanged TOAST)
	Records  []string          `json:"records,omitempty"` // email and SMS records
	Owner    string            `json:"owner,omitempty"`   // a device's owner
	Identity string            `json:"identity,omitempty"`
	Device   string            `json:"device,omitempty"`

	row string
	src desired.Source
}

// Other is a record of another kind (member, tags, linked, grant, kept,
// held), said briefly.
type Other struct {
	Record Where  `json:"record"`
	Kind   string `json:"kind"`
	About  string `json:"about"`
}

// Desired is the desired state folded from the records.
type Desired struct {
	Tags    map[string]string `json:"tags,omitempty"` // "" deletes a tag
	Props   map[string]string `json:"properties,omitempty"`
	Aliases map[string]string `json:"aliases,omitempty"`
	Records []string          `json:"records,omitempty"` // what the rows name
	Granted []string          `json:"granted,omitempty"` // what the records' targets gave it to write
	Devices []string          `json:"devices,omitempty"` // player model: the devices naming the user
	Owner   string            `json:"owner,omitempty"`   // a device's
	Version Pos               `json:"version"`
	Live    bool              `json:"live"`   // some row feeds the target now
	Delete  bool              `json:"delete"` // the user is to be deleted
}

// Progress is the sink group's committed offset of a partition against
// the target's newest message there.
type Progress struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Targets   bool   `json:"targets_topic,omitempty"` // the target stage's input, else an event topic
	Newest    int64  `json:"newest"`                  // the target's newest message in it
	Committed int64  `json:"committed"`               // the next offset the group reads; -1: none committed
	Consumed  bool   `json:"consumed"`
	// Behind is how many messages lie between the committed offset and
	// the target's newest, that included; Unconsumed how many of the
	// target's source messages are among them (event topics).
	Behind     int64 `json:"behind"`
	Unconsumed int   `json:"unconsumed,omitempty"`
}

// Live is one sink's answer.
type Live struct {
	Sink  string           `json:"sink"`
	View  *sink.TargetView `json:"view,omitempty"`
	Error string           `json:"error,omitempty"`
}

// DeadLetter is a dead letter of the target.
type DeadLetter struct {
	At     Where     `json:"at"`
	Origin *Where    `json:"origin,omitempty"` // where the refused message was
	Source *Where    `json:"source,omitempty"` // the event a refused contribution came from
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Status int       `json:"http_status,omitempty"`
	Error  string    `json:"error"`
	// Superseded says a newer message of the same row reached the sink
	// since: the dead letter no longer decides the target's state.
	Superseded bool `json:"superseded,omitempty"`
}

// verdict sums the report up.
func verdict(r *Report) (sentence, state string) {
	var dead []DeadLetter
	for _, d := range r.DeadLetters {
		if !d.Superseded {
			dead = append(dead, d)
		}
	}
	holder := r.holder()
	switch {
	case len(dead) > 0:
		last := dead[len(dead)-1]
		return fmt.Sprintf("dead-lettered: %d message(s); the last (%s, %s stage) at %s: %s",
			len(dead), last.At, last.Stage, last.Time.UTC().Format(time.RFC3339), last.Error), "dead_lettered"
	case holder != nil && holder.View.Attempts > 0:
		why := ""
		if l := holder.View.Last; l != nil && l.Error != "" {
			why = ": " + l.Error
		}
		return fmt.Sprintf("retrying: %d failed attempt(s) in a row at %s%s", holder.View.Attempts, memberOf(holder), why), "retrying"
	}
	unconsumed, targets := 0, int64(0)
	for _, p := range r.Progress {
		if p.Targets {
			targets = p.Behind
		} else {
			unconsumed += p.Unconsumed
		}
	}
	switch {
	case r.Records == 0 && (holder == nil || !holder.View.Active):
		return fmt.Sprintf("nothing is known of %s %q: no record of it in %s partition %d (offsets %d to %d), no dead letter",
			r.Kind, r.ID, r.TargetsTopic, r.Partition, r.Scanned.From, r.Scanned.To), "unknown"
	case unconsumed > 0:
		return fmt.Sprintf("waiting: %d source message(s) not consumed by the row stage", unconsumed), "waiting"
	case targets > 0:
		return fmt.Sprintf("waiting: %d message(s) of the targets partition, up to the target's newest, not done by the target stage", targets), "waiting"
	case holder != nil && holder.View.Active:
		return fmt.Sprintf("in progress: %d message(s) pending at %s", len(holder.View.Pending), memberOf(holder)), "in_progress"
	}
	return "in sync as far as the sink knows", "in_sync"
}

// holder is the live answer of the member that holds the target's
// partition, nil when none does.
func (r *Report) holder() *Live {
	for i := range r.Live {
		if v := r.Live[i].View; v != nil && v.Running && v.Holds {
			return &r.Live[i]
		}
	}
	return nil
}

func memberOf(l *Live) string {
	if l.View.Member != "" {
		return "member " + l.View.Member + " (" + l.Sink + ")"
	}
	return l.Sink
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "target: %s %s\n", r.Kind, strconv.Quote(r.ID))
	fmt.Fprintf(w, "  %s partition %d, offsets %d to %d read: %d record(s) of this target\n",
		r.TargetsTopic, r.Partition, r.Scanned.From, r.Scanned.To, r.Records)

	fmt.Fprintf(w, "\nsource rows (%d, in position order):\n", len(r.Sources))
	if len(r.Sources) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  POSITION (COMMIT LSN)\tROW\tEVENT\tRECORD\tSAYS")
		for _, s := range r.Sources {
			src := "-"
			if s.Source != nil {
				src = s.Source.String()
			}
			says := s.says()
			if !s.Current {
				says += " (superseded)"
			}
			fmt.Fprintf(tw, "  %s\t%s %s\t%s\t%s\t%s\n", s.Pos, s.Topic, s.Key, src, s.Record, says)
		}
		tw.Flush()
	}
	if len(r.Others) > 0 || len(r.Unreadable) > 0 {
		fmt.Fprintln(w, "\nother records:")
		for _, o := range append(slices.Clone(r.Others), r.Unreadable...) {
			fmt.Fprintf(w, "  %s  %s\n", o.Record, o.About)
		}
	}

	fmt.Fprintln(w, "\ndesired state:")
	if d := r.Desired; d == nil {
		fmt.Fprintln(w, "  none: no record names this target")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if r.Kind == "device" {
			fmt.Fprintf(tw, "  owner\t%s\n", orNone(strconv.Quote(d.Owner), d.Owner == ""))
		} else {
			fmt.Fprintf(tw, "  tags\t%s\n", orNone(pairs(d.Tags), len(d.Tags) == 0))
			if len(d.Props) > 0 {
				fmt.Fprintf(tw, "  properties\t%s\n", pairs(d.Props))
			}
			if len(d.Aliases) > 0 {
				fmt.Fprintf(tw, "  aliases\t%s\n", pairs(d.Aliases))
			}
			if len(d.Records)+len(d.Granted) > 0 {
				fmt.Fprintf(tw, "  records\t%s (granted: %s)\n", orNone(strings.Join(d.Records, ", "), len(d.Records) == 0),
					orNone(strings.Join(d.Granted, ", "), len(d.Granted) == 0))
			}
			if len(d.Devices) > 0 {
				fmt.Fprintf(tw, "  devices\t%s\n", strings.Join(d.Devices, ", "))
			}
		}
		fmt.Fprintf(tw, "  version\t%s\n", d.Version)
		state := "live: a row feeds it"
		switch {
		case d.Delete:
			state = "to be deleted: its users row is gone"
		case !d.Live:
			state = "no row feeds it now (its mapped tags are cleared)"
		}
		fmt.Fprintf(tw, "  state\t%s\n", state)
		tw.Flush()
	}

	fmt.Fprintf(w, "\nsink progress (group %s):\n", strconv.Quote(r.Group))
	if len(r.Progress) == 0 {
		fmt.Fprintln(w, "  nothing to follow")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, p := range r.Progress {
			what := "source"
			if p.Targets {
				what = "target's newest record"
			}
			committed := strconv.FormatInt(p.Committed, 10)
			if p.Committed < 0 {
				committed = "none"
			}
			state := "consumed"
			if !p.Consumed {
				state = fmt.Sprintf("not yet: %d message(s) behind", p.Behind)
				if p.Unconsumed > 0 {
					state += fmt.Sprintf(", %d of them the target's", p.Unconsumed)
				}
			}
			fmt.Fprintf(tw, "  %s/%d\tcommitted %s\t%s @%d\t%s\n", p.Topic, p.Partition, committed, what, p.Newest, state)
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nlive:")
	if len(r.Live) == 0 {
		fmt.Fprintln(w, "  no sink asked (give --sink URL)")
	}
	answered := false
	for _, l := range r.Live {
		if l.View == nil {
			fmt.Fprintf(w, "  %s: %s\n", l.Sink, l.Error)
			continue
		}
		answered = true
		fmt.Fprintf(w, "  %s: %s\n", l.Sink, viewSummary(l.View))
	}
	if len(r.Live) > 0 && r.holder() == nil {
		if answered {
			fmt.Fprintln(w, "  none of the sinks asked holds the target's partition")
		} else {
			fmt.Fprintln(w, "  no sink answered")
		}
	}

	fmt.Fprintln(w, "\ndead letters:")
	if len(r.DeadLetters) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, d := range r.DeadLetters {
		from := ""
		if d.Origin != nil {
			from = " of " + d.Origin.String()
		}
		if d.Source != nil {
			from += " (event " + d.Source.String() + ")"
		}
		status := ""
		if d.Status != 0 {
			status = fmt.Sprintf(", HTTP %d", d.Status)
		}
		sup := ""
		if d.Superseded {
			sup = " [superseded by a newer change]"
		}
		fmt.Fprintf(w, "  %s%s at %s, %s stage%s: %s%s\n", d.At, from, d.Time.UTC().Format(time.RFC3339), d.Stage, status, d.Error, sup)
	}
	fmt.Fprintf(w, "\nverdict: %s\n", r.Verdict)
}

// says is what a contribution says, briefly.
func (s SourceRow) says() string {
	var parts []string
	if s.Gone {
		parts = append(parts, "gone")
	}
	if s.Created {
		parts = append(parts, "created")
	}
	if len(s.Tags) > 0 {
		parts = append(parts, "tags "+pairs(s.Tags))
	}
	if len(s.Unknown) > 0 {
		parts = append(parts, "unknown "+strings.Join(s.Unknown, ","))
	}
	if len(s.Records) > 0 {
		parts = append(parts, "records "+strings.Join(s.Records, ","))
	}
	if s.Owner != "" {
		parts = append(parts, "owner "+strconv.Quote(s.Owner))
	}
	if s.Identity != "" {
		parts = append(parts, "identity "+strconv.Quote(s.Identity))
	}
	if s.Device != "" {
		parts = append(parts, "device "+strconv.Quote(s.Device))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// viewSummary says what a sink's view of the target says, in a line.
func viewSummary(v *sink.TargetView) string {
	var parts []string
	switch {
	case !v.Running:
		parts = append(parts, "not in the group now (between generations, or stopping)")
	case v.Holds:
		parts = append(parts, fmt.Sprintf("holds the target (member %s, generation %d, partition %d)", v.Member, v.Generation, v.Partition))
	default:
		parts = append(parts, fmt.Sprintf("does not hold partition %d (member %s)", v.Partition, v.Member))
	}
	if v.Running && v.Holds {
		switch {
		case v.Busy:
			parts = append(parts, fmt.Sprintf("busy: a request in flight, %d message(s) pending", len(v.Pending)))
		case v.Waiting:
			parts = append(parts, fmt.Sprintf("waiting for its owner's tags, %d message(s) pending", len(v.Pending)))
		case v.Active:
			parts = append(parts, fmt.Sprintf("%d message(s) pending", len(v.Pending)))
		default:
			parts = append(parts, "idle: nothing pending")
		}
		if v.Attempts > 0 {
			parts = append(parts, fmt.Sprintf("%d failed attempt(s) in a row", v.Attempts))
		}
		if v.Backoff && v.Due != nil {
			parts = append(parts, "backing off until "+v.Due.UTC().Format(time.RFC3339Nano))
		} else if v.Next != nil && v.Next.After(time.Now()) {
			parts = append(parts, "window opens "+v.Next.UTC().Format(time.RFC3339Nano))
		}
	}
	if len(v.Applied) > 0 {
		parts = append(parts, "believes applied: "+strings.Join(v.Applied, ", "))
	} else if v.Holds && !v.Remembered {
		parts = append(parts, "remembers nothing applied")
	}
	if len(v.Records) > 0 {
		parts = append(parts, "records written: "+strings.Join(v.Records, ", "))
	}
	if l := v.Last; l != nil {
		out := "accepted"
		if l.Error != "" {
			out = l.Error
			if l.Status != 0 {
				out = fmt.Sprintf("HTTP %d: %s", l.Status, l.Error)
			}
		}
		parts = append(parts, fmt.Sprintf("last call %s at %s: %s", l.Method, l.Time.UTC().Format(time.RFC3339), out))
	}
	return strings.Join(parts, "; ")
}

func pairs(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		v := m[k]
		if v == "" {
			b.WriteString(k + " (deleted)")
			continue
		}
		b.WriteString(k + "=" + strconv.Quote(v))
	}
	return b.String()
}

func orNone(s string, none bool) string {
	if none {
		return "none"
	}
	return s
}
