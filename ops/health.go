package ops

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errtext"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// keepErrors is how many recent errors each component keeps for the
// status page.
const keepErrors = 5

// maxErrorLen caps one error's text on the status page.
const maxErrorLen = 600

// ErrorEvent is an error a component met, for the status page.
type ErrorEvent struct {
	Time      time.Time `json:"time"`
	Component string    `json:"component"`
	Message   string    `json:"message"`
}

// ComponentStatus is a component's health as /readyz and the status page
// show it.
type ComponentStatus struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	State string `json:"state"` // a word or two: "streaming", "reconnecting", "consuming"
	// Problems say why the component is down; empty when it is up.
	Problems []string `json:"problems,omitempty"`
	// Degraded say what holds the component back while it keeps working
	// (OneSignal unreachable for a long while): it stays up and ready,
	// since nothing a restart or a readiness failure does would help.
	Degraded   []string     `json:"degraded,omitempty"`
	Since      time.Time    `json:"since"` // of the last change between up and down
	LastErrors []ErrorEvent `json:"last_errors"`
}

// component is one part of this process that /readyz speaks for. Its
// owner sets a base state (running or not) and raises or clears named
// problems (Kafka unreachable, credentials refused); it is up when the
// base state is and no problem is raised. Degradations are named the same
// way but leave it up. Safe for concurrent use.
type component struct {
	name  string
	clean func(string) string
	// change is called on every change between up and down, and on every
	// stop: stopped is true then, failed when it stopped on an error.
	change func(name string, up bool, why string, stopped, failed bool)
	// degradedChange is called when a degradation is raised (with its
	// reason) or cleared (reason ""), not when only its reason changes.
	degradedChange func(name, reason string)

	mu       sync.Mutex
	baseUp   bool
	state    string
	reason   string            // why the base state is down
	problems map[string]string // by key
	degraded map[string]string // by key
	up       bool
	since    time.Time
	errors   []ErrorEvent // oldest first
}

func newComponent(name, state, reason string, clean func(string) string, change func(string, bool, string, bool, bool)) *component {
	return &component{name: name, clean: clean, change: change, state: state, reason: reason, problems: map[string]string{}, degraded: map[string]string{}, since: time.Now()}
}

// set replaces the base state.
func (c *component) set(up bool, state, reason string) {
	c.mu.Lock()
	c.baseUp, c.state, c.reason = up, state, c.clean(reason)
	c.settle(false, false)
}

// stop sets the base state to stopped: cleanly when err is nil, else on
// err, which joins the last errors. A stop is reported whether or not
// the component was up: one that fails before it ever came up (a wrong
// password) must still say so.
func (c *component) stop(err error) {
	reason := "stopped"
	if err != nil {
		c.recordError(err.Error())
		reason = "stopped: " + err.Error()
	}
	c.mu.Lock()
	c.baseUp, c.state, c.reason = false, "stopped", c.clean(reason)
	c.settle(true, err != nil)
}

// raise sets (reason != "") or clears (reason == "") the problem key.
func (c *component) raise(key, reason string) {
	c.mu.Lock()
	if reason == "" {
		delete(c.problems, key)
	} else {
		c.problems[key] = c.clean(reason)
	}
	c.settle(false, false)
}

// degrade sets (reason != "") or clears (reason == "") the degradation
// key, which leaves the component up.
func (c *component) degrade(key, reason string) {
	c.mu.Lock()
	_, was := c.degraded[key]
	if reason == "" {
		delete(c.degraded, key)
	} else {
		c.degraded[key] = c.clean(reason)
	}
	_, is := c.degraded[key]
	c.mu.Unlock()
	if was != is && c.degradedChange != nil {
		c.degradedChange(c.name, reason)
	}
}

// settle works out up from the base state and the problems, unlocks, and
// reports a change, or a stop. The caller holds mu.
func (c *component) settle(stopped, failed bool) {
	up := c.baseUp && len(c.problems) == 0
	changed := up != c.up
	if changed {
		c.up, c.since = up, time.Now()
	}
	why := strings.Join(c.whyLocked(), "; ")
	c.mu.Unlock()
	if (changed || stopped) && c.change != nil {
		c.change(c.name, up, why, stopped, failed)
	}
}

// whyLocked lists why the component is down. The caller holds mu.
func (c *component) whyLocked() []string {
	var why []string
	if !c.baseUp {
		why = append(why, c.reason)
	}
	return append(why, byKey(c.problems)...)
}

// byKey returns m's values in the order of their keys.
func byKey(m map[string]string) []string {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// recordError keeps msg among the component's last errors. Repeats of the
// newest one only move its time, so a retry loop does not push out what
// came before it.
func (c *component) recordError(msg string) {
	msg = c.clean(msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if n := len(c.errors); n > 0 && c.errors[n-1].Message == msg {
		c.errors[n-1].Time = now
		return
	}
	c.errors = append(c.errors, ErrorEvent{Time: now, Component: c.name, Message: msg})
	if len(c.errors) > keepErrors {
		c.errors = slices.Delete(c.errors, 0, len(c.errors)-keepErrors)
	}
}

func (c *component) isUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

func (c *component) status() ComponentStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ComponentStatus{Name: c.name, Up: c.up, State: c.state, Since: c.since, LastErrors: slices.Clone(c.errors)}
	if !c.up {
		st.Problems = c.whyLocked()
	}
	if len(c.degraded) > 0 {
		st.Degraded = byKey(c.degraded)
	}
	slices.Reverse(st.LastErrors) // newest first
	return st
}

// redactor keeps secrets out of what the ops server shows: the values it
// knows (API key, the DSN's password) and anything shaped like a password
// in a URL or a libpq keyword string.
type redactor struct {
	secrets []string
}

var (
	urlPassword     = regexp.MustCompile(`(://[^:/@\s]*):[^@\s]*@`)
	keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.|'')*'|\S+)`)
)

func newRedactor(secrets []secret.Value) redactor {
	var r redactor
	for _, v := range secrets {
		if s := v.Reveal(); len(s) >= 3 { // shorter ones would redact ordinary words
			r.secrets = append(r.secrets, s)
		}
	}
	// Longer first, so a secret containing another is replaced whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	return r
}

// clean also leaves out the Go method names some libraries start their
// errors with (errtext.Clean).
func (r redactor) clean(s string) string {
	s = errtext.Clean(s)
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, redacted)
	}
	s = urlPassword.ReplaceAllString(s, "$1:"+redacted+"@")
	s = keywordPassword.ReplaceAllString(s, "${1}"+redacted)
	if len(s) > maxErrorLen {
		n := maxErrorLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

const redacted = secret.Redacted
