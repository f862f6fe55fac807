package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/suggest"
)

// ErrBadRow is wrapped by errors that come from a row's content, not from
// the code: the event can never be applied as it is.
var ErrBadRow = errors.New("row cannot be mapped")

// unixSeconds renders a date or timestamp (as the connector writes them:
// ISO 8601, in UTC when it has no zone) as Unix seconds. NULL stays ""
// (the tag is deleted); a number is taken to be Unix seconds already.
func unixSeconds(v json.RawMessage) (string, error) {
	s, err := tagValue(v)
	if err != nil || s == "" {
		return s, err
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return s, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return strconv.FormatInt(t.Unix(), 10), nil
		}
	}
	return "", fmt.Errorf("%q is not a date or timestamp, so it has no Unix seconds", s)
}

// flatten puts one tag per scalar inside an object or array: an object's
// keys and an array's indexes join the tag name with "_". NULL or an empty
// value gives no tag; tags of keys that disappear are not deleted, since
// the value no longer names them.
func flatten(name string, v json.RawMessage, tags map[string]string) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] == 'n' {
		return nil
	}
	switch v[0] {
	case '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		for k, sub := range m {
			if err := flatten(name+"_"+k, sub, tags); err != nil {
				return err
			}
		}
	case '[':
		var a []json.RawMessage
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		for i, sub := range a {
			if err := flatten(name+"_"+strconv.Itoa(i), sub, tags); err != nil {
				return err
			}
		}
	default:
		s, err := tagValue(v)
		if err != nil {
			return err
		}
		tags[name] = s
	}
	return nil
}

// checkImage refuses a new row image (an insert's, an update's or a
// snapshot read's) that lacks a column the users mapping reads. pgoutput
// and Debezium send every column in it, an unchanged TOAST value as a
// placeholder, so a column missing there is one the table does not have:
// a misspelt name in the mapping, or a column dropped since. Leaving the
// tag or the id out would drop the change without a word.
func (u *UsersMapping) checkImage(after event.Row) error {
	if err := needColumn(u.Table, after, u.ExternalID, "mapping.users.external_id"); err != nil {
		return err
	}
	for _, col := range sortedKeys(u.Tags) {
		if err := needColumn(u.Table, after, col, "mapping.users.tags"); err != nil {
			return err
		}
	}
	if err := needColumn(u.Table, after, u.Email, "mapping.users.email"); err != nil {
		return err
	}
	for _, name := range sortedKeys(u.Properties) {
		if col := u.Properties[name]; !strings.HasPrefix(col, "=") {
			if err := needColumn(u.Table, after, col, "mapping.users.properties."+name); err != nil {
				return err
			}
		}
	}
	for _, label := range sortedKeys(u.Aliases) {
		if err := needColumn(u.Table, after, u.Aliases[label], "mapping.users.aliases."+label); err != nil {
			return err
		}
	}
	return needColumn(u.Table, after, u.Phone, "mapping.users.phone")
}

// checkImage is UsersMapping.checkImage for the devices mapping.
func (d *DevicesMapping) checkImage(after event.Row) error {
	if err := needColumn(d.Table, after, d.DeviceID, "mapping.devices.device_id"); err != nil {
		return err
	}
	return needColumn(d.Table, after, d.ExternalID, "mapping.devices.external_id")
}

// needColumn returns the error for a row image of table that lacks col,
// which the setting key names; nil when col is "" (not mapped) or there.
func needColumn(table string, after event.Row, col, key string) error {
	if col == "" {
		return nil
	}
	if _, ok := after.Get(col); ok {
		return nil
	}
	names := make([]string, len(after))
	for i, f := range after {
		names[i] = f.Name
	}
	hint := ""
	if near, ok := suggest.Closest(col, names); ok {
		hint = fmt.Sprintf(" Did you mean %q?", near)
	}
	return fmt.Errorf("%w: the %s row has no column %q, which %s names.%s Its columns: %s. Correct %s (names are matched exactly, case included), or add the column to the table; then replay the dead letters",
		ErrBadRow, table, col, key, hint, strings.Join(names, ", "), key)
}

// textColumn reads an identifier column (an external id, a device id, an
// email address or phone number) as text. known is false when the column
// is absent from the image or its value was not sent (TOAST).
//
// An identifier must name one user or device exactly, so text holding
// U+FFFD is refused: the connector puts it in place of bytes that are not
// UTF-8 (which only a SQL_ASCII database holds), and two different ids
// would become one.
func textColumn(r event.Row, col string) (s string, known bool, err error) {
	v, ok := r.Get(col)
	if !ok || event.IsUnavailable(v) {
		return "", false, nil
	}
	s, err = tagValue(v)
	if err != nil {
		return "", false, fmt.Errorf("%w: column %q: %v", ErrBadRow, col, err)
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		return "", false, fmt.Errorf("%w: column %q holds %q, whose U+FFFD stands for bytes that are not UTF-8 (a SQL_ASCII database keeps any bytes): "+
			"an id or address must be exact, so fix the bytes in the row, or move the data to a UTF8 database", ErrBadRow, col, s)
	}
	return s, true, nil
}

// errOversized is a value the connector left out of the event.
var errOversized = fmt.Errorf("holds %s: its value was over the connector's limit for an event (256 KiB), and the event does not carry it; "+
	"OneSignal recommends about 1 KB of tags per user: shorten the value, or leave the column out of the mapping", event.Oversized)

// tagValue renders a JSON column value as a OneSignal tag string: strings as
// they are, numbers as written, booleans as "true"/"false", NULL as "" (which
// deletes the tag). Objects and arrays have no tag form.
func tagValue(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", nil
	}
	switch v[0] {
	case 'n':
		return "", nil
	case 't':
		return "true", nil
	case 'f':
		return "false", nil
	case '"':
		if event.IsOversized(v) {
			return "", errOversized
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		return s, nil
	case '{', '[':
		return "", errors.New("holds a JSON object or array; a tag value must be a string, number or boolean")
	default:
		return string(v), nil // a number, kept exactly as Postgres wrote it
	}
}
