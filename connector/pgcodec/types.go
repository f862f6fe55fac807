package pgcodec

// Column values reach the connector in Postgres' text output form (it asks
// pgoutput for text). This file renders them as JSON. It runs for every
// column of every row, so it appends into one byte slice, with no
// reflection and no maps, and passes numbers and JSON through without a
// copy. docs/events.md ("Column values") says what each type becomes.
//
// Whatever does not parse as its type's output promises is sent as a JSON
// string of the text, so an unexpected server setting (a DateStyle other
// than ISO, say) costs fidelity, never a malformed event.

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// OIDs of the built-in types whose JSON form is not simply a string of their
// text, and of text, which stands for all those that are. Built-in OIDs are
// fixed in Postgres' catalog and the same on every server; enums and other
// user-defined types get theirs per database, so the connector cannot know
// them, and sends their values as strings.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidJSONB       = 3802
)

// arrayElem returns the element type of the built-in array types the
// connector turns into JSON arrays. Element types that become strings
// anyway are all reported as text.
func arrayElem(oid uint32) (elem uint32, ok bool) {
	switch oid {
	case 1000: // _bool
		return oidBool, true
	case 1001: // _bytea
		return oidBytea, true
	case 1005, 1007, 1016, 1028: // _int2, _int4, _int8, _oid
		return oidInt8, true
	case 1021, 1022: // _float4, _float8
		return oidFloat8, true
	case 199, 3807: // _json, _jsonb
		return oidJSON, true
	case 1115: // _timestamp
		return oidTimestamp, true
	case 1185: // _timestamptz
		return oidTimestamptz, true
	case 1009, 1015, 1014, 1003, 1002, // _text, _varchar, _bpchar, _name, _char
		2951, 1231, 1182, 1183, 1270, 1187, // _uuid, _numeric, _date, _time, _timetz, _interval
		1041, 651, 1040, 791, 143: // _inet, _cidr, _macaddr, _money, _xml
		return oidText, true
	}
	return 0, false
}

// Shared, with their capacity capped so that an append to one copies it.
var (
	jsonTrue  = json.RawMessage("true")[:4:4]
	jsonFalse = json.RawMessage("false")[:5:5]
)

// textToJSON renders one column value, given in Postgres' text output form,
// as JSON. Numbers and json/jsonb values are returned as text itself, not a
// copy: text must not change afterwards (pglogrepl gives every column its
// own slice).
//
// A value whose JSON is over maxEventBytes could never fit in an event, and
// becomes event.Oversized instead (docs/events.md).
func textToJSON(oid uint32, text []byte) json.RawMessage {
	if v, ok := verbatim(oid, text); ok {
		if len(v) > maxEventBytes {
			return event.OversizedValue()
		}
		return v
	}
	size := len(text) + 2
	if oid == oidBytea {
		size = base64.StdEncoding.EncodedLen(len(text)/2) + 2
	}
	v := appendJSON(make([]byte, 0, size), oid, text)
	if event.IsOversized(v) {
		return event.OversizedValue() // and not the large buffer it was rendered in
	}
	return v
}

// appendJSON appends the JSON form of a value in Postgres' text output form,
// or event.Oversized when that is over maxEventBytes.
func appendJSON(b []byte, oid uint32, text []byte) []byte {
	start := len(b)
	if out := appendValue(b, oid, text); len(out)-start <= maxEventBytes {
		return out
	}
	return append(b[:start], event.OversizedValue()...)
}

// appendValue is appendJSON without the limit, for a column value and the
// elements of an array (which the limit applies to as a whole).
func appendValue(b []byte, oid uint32, text []byte) []byte {
	if v, ok := verbatim(oid, text); ok {
		return append(b, v...)
	}
	var out []byte
	ok := false
	switch oid {
	case oidBytea:
		out, ok = appendBytea(b, text)
	case oidTimestamp:
		out, ok = appendTimestamp(b, text)
	case oidTimestamptz:
		out, ok = appendTimestamptz(b, text)
	default:
		// date and time need nothing: under DateStyle ISO Postgres prints
		// them as ISO 8601 already.
		if elem, isArray := arrayElem(oid); isArray {
			out, ok = appendArray(b, elem, text)
		}
	}
	if ok {
		return out
	}
	// Whatever the helpers appended before they gave up lies past len(b),
	// and is overwritten here.
	return event.AppendString(b, text)
}

// verbatim returns the JSON of the types whose text is already JSON (or maps
// to a constant), when text is well formed.
func verbatim(oid uint32, text []byte) (json.RawMessage, bool) {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		if isJSONInt(text) {
			return text[:len(text):len(text)], true
		}
	case oidFloat4, oidFloat8:
		// NaN and ±Infinity are not JSON numbers: they fall through to strings.
		if isJSONNumber(text) {
			return text[:len(text):len(text)], true
		}
	case oidBool:
		if len(text) == 1 && text[0] == 't' {
			return jsonTrue, true
		}
		if len(text) == 1 && text[0] == 'f' {
			return jsonFalse, true
		}
	case oidJSON, oidJSONB:
		// json keeps the whitespace it was written with, around the value too.
		v := trimJSONSpace(text)
		if validJSON(v) {
			return v[:len(v):len(v)], true
		}
	}
	return nil, false
}

// isJSONInt reports whether s is an integer as JSON writes one: an optional
// minus and digits without leading zeros.
func isJSONInt(s []byte) bool {
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i++
	}
	if i == len(s) || (s[i] == '0' && i+1 != len(s)) {
		return false
	}
	return skipDigits(s, i) == len(s)
}

// isJSONNumber reports whether s is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s []byte) bool {
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

func skipDigits(s []byte, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

func trimJSONSpace(s []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// appendBytea appends the bytes of a bytea value as a base64 JSON string.
// Postgres prints bytea as hex, "\x00ff" (bytea_output=hex, the default),
// or in escape form (bytea_output=escape): printable bytes as they are,
// "\\" for a backslash and "\ooo" in octal for the rest. The bytes are
// decoded a chunk at a time, so nothing but b is allocated.
func appendBytea(b, text []byte) ([]byte, bool) {
	const chunkSize = 3 * 64 // a multiple of 3: base64 chunks join without padding
	var chunk [chunkSize]byte
	n := 0
	if len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
		hex := text[2:]
		if len(hex)%2 != 0 {
			return b, false
		}
		b = slices.Grow(b, base64.StdEncoding.EncodedLen(len(hex)/2)+2)
		b = append(b, '"')
		for i := 0; i < len(hex); i += 2 {
			hi, lo := unhex(hex[i]), unhex(hex[i+1])
			if hi > 0xf || lo > 0xf {
				return b, false
			}
			chunk[n] = hi<<4 | lo
			if n++; n == chunkSize {
				b, n = base64.StdEncoding.AppendEncode(b, chunk[:]), 0
			}
		}
	} else {
		// The escape form holds at most len(text) bytes.
		b = slices.Grow(b, base64.StdEncoding.EncodedLen(len(text))+2)
		b = append(b, '"')
		for i := 0; i < len(text); i++ {
			c := text[i]
			if c == '\\' {
				switch {
				case i+1 < len(text) && text[i+1] == '\\':
					i++
				case i+3 < len(text) && '0' <= text[i+1] && text[i+1] <= '3' && isOctal(text[i+2]) && isOctal(text[i+3]):
					c = (text[i+1]-'0')<<6 | (text[i+2]-'0')<<3 | (text[i+3] - '0')
					i += 3
				default:
					return b, false
				}
			}
			chunk[n] = c
			if n++; n == chunkSize {
				b, n = base64.StdEncoding.AppendEncode(b, chunk[:]), 0
			}
		}
	}
	b = base64.StdEncoding.AppendEncode(b, chunk[:n])
	return append(b, '"'), true
}

// unhex returns the value of a hex digit, or 0xff.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0xff
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// dateTime is a timestamp as Postgres prints it under DateStyle ISO,
// "2024-05-01 12:00:00.123456": the year with four digits or more, the
// fraction with up to six and only when not zero.
type dateTime struct {
	year, month, day, hour, min, sec int

	space int    // index of the space between date and time
	end   int    // index past the seconds and fraction
	frac  []byte // ".123456", or nothing
}

// parseDateTime reads the date and time at the start of s. Postgres prints
// only real dates; this checks the shape, not the calendar.
func parseDateTime(s []byte) (t dateTime, ok bool) {
	i := skipDigits(s, 0)
	if i < 4 || i > 7 { // Postgres' timestamps end in the year 294276
		return t, false
	}
	for _, c := range s[:i] {
		t.year = t.year*10 + int(c-'0')
	}
	// -MM-DD HH:MM:SS
	if len(s) < i+15 || s[i] != '-' || s[i+3] != '-' || s[i+6] != ' ' || s[i+9] != ':' || s[i+12] != ':' {
		return t, false
	}
	t.month, t.day = twoDigits(s[i+1:]), twoDigits(s[i+4:])
	t.hour, t.min, t.sec = twoDigits(s[i+7:]), twoDigits(s[i+10:]), twoDigits(s[i+13:])
	if t.month < 1 || t.month > 12 || t.day < 1 || t.day > 31 || t.hour < 0 || t.hour > 23 ||
		t.min < 0 || t.min > 59 || t.sec < 0 || t.sec > 59 {
		return t, false
	}
	t.space, t.end = i+6, i+15
	if t.end < len(s) && s[t.end] == '.' {
		j := skipDigits(s, t.end+1)
		if j == t.end+1 || j > t.end+7 {
			return t, false
		}
		t.frac, t.end = s[t.end:j], j
	}
	return t, true
}

// twoDigits returns the value of the two decimal digits at the start of s, or -1.
func twoDigits(s []byte) int {
	if len(s) < 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return -1
	}
	return int(s[0]-'0')*10 + int(s[1]-'0')
}

// appendTimestamp appends a timestamp without time zone in ISO 8601,
// "2024-05-01T12:00:00.123456". Infinities and BC timestamps stay as
// Postgres wrote them (see appendJSON).
func appendTimestamp(b, text []byte) ([]byte, bool) {
	t, ok := parseDateTime(text)
	if !ok || t.end != len(text) {
		return b, false
	}
	b = append(b, '"')
	b = append(b, text[:t.space]...)
	b = append(b, 'T')
	b = append(b, text[t.space+1:]...)
	return append(b, '"'), true
}

// appendTimestamptz appends a timestamp with time zone in ISO 8601 in UTC,
// "2024-05-01T10:00:00.123456Z". Postgres prints it in the TimeZone of the
// walsender's session, with that zone's offset at the time: "+02", "+05:30",
// or "+00:53:28" for local mean time before time zones.
func appendTimestamptz(b, text []byte) ([]byte, bool) {
	t, ok := parseDateTime(text)
	if !ok {
		return b, false
	}
	offset, ok := parseOffset(text[t.end:])
	if !ok {
		return b, false
	}
	b = append(b, '"')
	if secs := t.hour*3600 + t.min*60 + t.sec - int(offset/time.Second); 0 <= secs && secs < 24*3600 {
		// The same day in UTC, the common case: only the clock moves.
		b = append(b, text[:t.space]...)
		b = append(b, 'T')
		b = appendClock(b, secs/3600, secs/60%60, secs%60)
	} else {
		local := time.Date(t.year, time.Month(t.month), t.day, t.hour, t.min, t.sec, 0, time.UTC)
		u := local.Add(-offset)
		year, month, day := u.Date()
		if year < 1 {
			return b, false // BC in UTC: Postgres' text says it best
		}
		for digits := 1000; digits > 1 && year < digits; digits /= 10 {
			b = append(b, '0')
		}
		b = appendInt(b, year)
		b = append(b, '-')
		b = appendTwo(b, int(month))
		b = append(b, '-')
		b = appendTwo(b, day)
		b = append(b, 'T')
		b = appendClock(b, u.Hour(), u.Minute(), u.Second())
	}
	b = append(b, t.frac...)
	return append(b, 'Z', '"'), true
}

// parseOffset reads a UTC offset as Postgres prints it: a sign and hours,
// then minutes and seconds when they are not zero ("+02", "-03:30",
// "+00:53:28"). It must be all of s.
func parseOffset(s []byte) (time.Duration, bool) {
	if len(s) != 3 && len(s) != 6 && len(s) != 9 || (s[0] != '+' && s[0] != '-') {
		return 0, false
	}
	secs := 0
	for i, unit := 1, 3600; i < len(s); i, unit = i+3, unit/60 {
		if i > 1 && s[i-1] != ':' {
			return 0, false
		}
		v := twoDigits(s[i:])
		if v < 0 || (i > 1 && v > 59) {
			return 0, false
		}
		secs += v * unit
	}
	if s[0] == '-' {
		secs = -secs
	}
	return time.Duration(secs) * time.Second, true
}

func appendInt(b []byte, v int) []byte {
	var digits [20]byte
	i := len(digits)
	for {
		i--
		digits[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			break
		}
	}
	return append(b, digits[i:]...)
}

func appendTwo(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func appendClock(b []byte, hour, min, sec int) []byte {
	b = appendTwo(b, hour)
	b = append(b, ':')
	b = appendTwo(b, min)
	b = append(b, ':')
	return appendTwo(b, sec)
}

// maxArrayDims is Postgres' limit on an array's dimensions (MAXDIM).
const maxArrayDims = 6

// appendArray appends an array in Postgres' output form as a JSON array,
// each element converted as its type, NULL as null, each dimension of a
// multi-dimensional array as a level of nesting. Postgres prints an array
// whose lower bound is not 1 with its bounds first ("[0:1]={a,b}"); that
// does not fit a JSON array, and is left to the string fallback.
func appendArray(b []byte, elem uint32, text []byte) ([]byte, bool) {
	p := arrayParser{text: text, elem: elem}
	b, ok := p.array(b, 1)
	return b, ok && p.pos == len(text)
}

// arrayParser reads Postgres' array output: "{1,2}", "{{1,2},{3,4}}",
// "{NULL,"a \"b\"",c}". An element is quoted when it is empty, is NULL as a
// string, or holds a brace, quote, backslash, comma or white space; inside
// the quotes a backslash escapes the next character.
type arrayParser struct {
	text    []byte
	pos     int
	elem    uint32
	scratch []byte // the current quoted element, unescaped
}

func (p *arrayParser) array(b []byte, dim int) ([]byte, bool) {
	if dim > maxArrayDims || p.pos >= len(p.text) || p.text[p.pos] != '{' {
		return b, false
	}
	p.pos++
	b = append(b, '[')
	if p.pos < len(p.text) && p.text[p.pos] == '}' {
		p.pos++
		return append(b, ']'), true
	}
	for {
		if p.pos >= len(p.text) {
			return b, false
		}
		ok := false
		switch p.text[p.pos] {
		case '{':
			b, ok = p.array(b, dim+1)
		case '"':
			b, ok = p.quoted(b)
		default:
			b, ok = p.bare(b)
		}
		if !ok || p.pos >= len(p.text) {
			return b, false
		}
		switch p.text[p.pos] {
		case ',':
			b = append(b, ',')
		case '}':
			p.pos++
			return append(b, ']'), true
		default:
			return b, false
		}
		p.pos++
	}
}

func (p *arrayParser) quoted(b []byte) ([]byte, bool) {
	start := p.pos + 1
	escaped := false
	i := start
	for ; i < len(p.text) && p.text[i] != '"'; i++ {
		if p.text[i] == '\\' {
			escaped = true
			i++
		}
	}
	if i >= len(p.text) {
		return b, false
	}
	v := p.text[start:i]
	p.pos = i + 1
	if escaped {
		p.scratch = p.scratch[:0]
		for j := 0; j < len(v); j++ {
			if v[j] == '\\' {
				j++ // cannot pass the end: the loop above kept the escaped character in v
			}
			p.scratch = append(p.scratch, v[j])
		}
		v = p.scratch
	}
	return appendValue(b, p.elem, v), true
}

func (p *arrayParser) bare(b []byte) ([]byte, bool) {
	start := p.pos
	for p.pos < len(p.text) {
		switch p.text[p.pos] {
		case ',', '}':
			v := p.text[start:p.pos]
			if len(v) == 0 {
				return b, false
			}
			if string(v) == "NULL" {
				return append(b, "null"...), true
			}
			return appendValue(b, p.elem, v), true
		case '{', '"', '\\':
			return b, false
		}
		p.pos++
	}
	return b, false
}
