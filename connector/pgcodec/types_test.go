package pgcodec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// An enum's OID, as one database might give it: unknown to the connector.
const oidSomeEnum, oidSomeEnumArray = 16390, 16389

// textCases pairs Postgres' text output of a value with the JSON the
// connector sends for it. docs/events.md describes the same encodings.
var textCases = []struct {
	oid  uint32
	text string
	want string
}{
	// integers: numbers, as they are
	{oidInt2, "-7", `-7`},
	{oidInt4, "2147483647", `2147483647`},
	{oidInt4, "0", `0`},
	{oidInt8, "9223372036854775807", `9223372036854775807`},
	{oidInt8, "-9223372036854775808", `-9223372036854775808`},
	{oidOID, "4294967295", `4294967295`},
	{oidInt4, "007", `"007"`}, // not what Postgres prints, and not a JSON number
	{oidInt4, "12a", `"12a"`},
	{oidInt4, "-", `"-"`},
	{oidInt4, "", `""`},

	// floating point: numbers, the three non-numbers as strings
	{oidFloat8, "1.5e+300", `1.5e+300`},
	{oidFloat8, "-0", `-0`},
	{oidFloat8, "1e-07", `1e-07`},
	{oidFloat4, "3.4028235e+38", `3.4028235e+38`},
	{oidFloat8, "0.1", `0.1`},
	{oidFloat8, "NaN", `"NaN"`},
	{oidFloat4, "Infinity", `"Infinity"`},
	{oidFloat8, "-Infinity", `"-Infinity"`},
	{oidFloat8, ".5", `".5"`},
	{oidFloat8, "1.", `"1."`},
	{oidFloat8, "1e", `"1e"`},

	// numeric: a string with every digit
	{1700, "123456789012345678901234567890.5", `"123456789012345678901234567890.5"`},
	{1700, "-0.00100", `"-0.00100"`},
	{1700, "NaN", `"NaN"`},
	{1700, "Infinity", `"Infinity"`},

	// boolean
	{oidBool, "t", `true`},
	{oidBool, "f", `false`},
	{oidBool, "true", `"true"`}, // not Postgres' output: kept as it came

	// strings
	{oidText, `a"b\c <&> é 🎉`, `"a\"b\\c \u003c\u0026\u003e é 🎉"`},
	{oidText, "tab\t nul\x00 bad\xff", `"tab\t nul\u0000 bad\ufffd"`},
	{1043, "varchar", `"varchar"`},
	{1042, "ab   ", `"ab   "`},
	{19, "pg_class", `"pg_class"`},
	{2950, "0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11", `"0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11"`},
	{oidSomeEnum, "it's complicated", `"it's complicated"`},
	{1186, "1 year 2 mons 3 days 04:05:06", `"1 year 2 mons 3 days 04:05:06"`},

	// json and jsonb: the value itself
	{oidJSON, `{"a":[1,2]}`, `{"a":[1,2]}`},
	{oidJSONB, `{"a": 1, "b": [true, null]}`, `{"a": 1, "b": [true, null]}`},
	{oidJSON, " \n[1, 2]\t\n", `[1, 2]`},
	{oidJSONB, `"x"`, `"x"`},
	{oidJSONB, `5`, `5`},
	{oidJSONB, `null`, `null`},
	{oidJSON, `{"a":`, `"{\"a\":"`},
	{oidJSON, "", `""`},

	// bytea: base64 of the bytes, from hex or escape output
	{oidBytea, `\x`, `""`},
	{oidBytea, `\x000102ff`, `"AAEC/w=="`},
	{oidBytea, `\xDEADBEEF`, `"3q2+7w=="`},
	{oidBytea, `\x0`, `"\\x0"`},
	{oidBytea, `\xzz`, `"\\xzz"`},
	{oidBytea, `a\000\\b`, `"YQBcYg=="`},
	{oidBytea, ``, `""`},
	{oidBytea, `a\9`, `"a\\9"`},
	{oidBytea, `a\`, `"a\\"`},

	// date and time: ISO 8601 as Postgres prints it; infinities and BC as strings
	{1082, "2024-05-01", `"2024-05-01"`},
	{1082, "infinity", `"infinity"`},
	{1082, "-infinity", `"-infinity"`},
	{1082, "0044-03-15 BC", `"0044-03-15 BC"`},
	{1083, "12:34:56.789", `"12:34:56.789"`},
	{1266, "12:34:56+02", `"12:34:56+02"`},

	// timestamp: ISO 8601 without a zone
	{oidTimestamp, "2024-05-01 12:00:00", `"2024-05-01T12:00:00"`},
	{oidTimestamp, "2024-05-01 12:00:00.123456", `"2024-05-01T12:00:00.123456"`},
	{oidTimestamp, "10000-01-01 00:00:00", `"10000-01-01T00:00:00"`},
	{oidTimestamp, "infinity", `"infinity"`},
	{oidTimestamp, "-infinity", `"-infinity"`},
	{oidTimestamp, "0044-03-15 12:00:00 BC", `"0044-03-15 12:00:00 BC"`},
	{oidTimestamp, "2024-13-01 00:00:00", `"2024-13-01 00:00:00"`},
	{oidTimestamp, "2024-05-01 12:00:00.", `"2024-05-01 12:00:00."`},
	{oidTimestamp, "2024-05-01 12:00:00.1234567", `"2024-05-01 12:00:00.1234567"`},
	{oidTimestamp, "05/01/2024 12:00:00", `"05/01/2024 12:00:00"`}, // DateStyle SQL

	// timestamptz: ISO 8601 in UTC, whatever zone Postgres printed it in
	{oidTimestamptz, "2024-05-01 12:00:00+00", `"2024-05-01T12:00:00Z"`},
	{oidTimestamptz, "2024-05-01 12:00:00+02", `"2024-05-01T10:00:00Z"`},
	{oidTimestamptz, "2024-05-01 21:30:00.25+05:30", `"2024-05-01T16:00:00.25Z"`},
	{oidTimestamptz, "2024-12-31 22:00:00.000001-03", `"2025-01-01T01:00:00.000001Z"`},
	{oidTimestamptz, "2024-03-01 00:30:00+01", `"2024-02-29T23:30:00Z"`},
	{oidTimestamptz, "1800-01-01 05:53:28+05:53:28", `"1800-01-01T00:00:00Z"`},
	{oidTimestamptz, "0999-01-01 00:00:00-01", `"0999-01-01T01:00:00Z"`},
	{oidTimestamptz, "0001-01-01 00:30:00+01", `"0001-01-01 00:30:00+01"`}, // 1 BC in UTC
	{oidTimestamptz, "0044-03-15 12:00:00+00 BC", `"0044-03-15 12:00:00+00 BC"`},
	{oidTimestamptz, "infinity", `"infinity"`},
	{oidTimestamptz, "-infinity", `"-infinity"`},
	{oidTimestamptz, "2024-05-01 12:00:00", `"2024-05-01 12:00:00"`},
	{oidTimestamptz, "2024-05-01 12:00:00+2", `"2024-05-01 12:00:00+2"`},
	{oidTimestamptz, "2024-05-01 12:00:00+02:60", `"2024-05-01 12:00:00+02:60"`},
	{oidTimestamptz, "2024-05-01 00:00:00.5+00:00:01", `"2024-04-30T23:59:59.5Z"`},
	{oidTimestamptz, "2024-05-01 23:59:59-00:00:01", `"2024-05-02T00:00:00Z"`},
	{oidTimestamptz, "9999-12-31 23:00:00-02", `"10000-01-01T01:00:00Z"`},

	// arrays of built-in types: JSON arrays of their elements' JSON
	{1007, "{1,2,3}", `[1,2,3]`},
	{1007, "{}", `[]`},
	{1007, "{1,NULL}", `[1,null]`},
	{1007, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
	{1005, "{{{-1}},{{2}}}", `[[[-1]],[[2]]]`},
	{1016, "{9223372036854775807}", `[9223372036854775807]`},
	{1000, "{t,f,NULL}", `[true,false,null]`},
	{1022, "{1.5,NaN,-Infinity}", `[1.5,"NaN","-Infinity"]`},
	{1231, "{1.50,NaN}", `["1.50","NaN"]`},
	{1009, `{a,"b c","d,e","f\"g","h\\i",NULL,"NULL","",ü}`, `["a","b c","d,e","f\"g","h\\i",null,"NULL","","ü"]`},
	{1009, `{{a,b},{"{c}",NULL}}`, `[["a","b"],["{c}",null]]`},
	{1015, `{"x y"}`, `["x y"]`},
	{2951, "{0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11}", `["0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11"]`},
	{3807, `{"{\"a\": 1}","[1, 2]",5,"\"x\"",NULL}`, `[{"a": 1},[1, 2],5,"x",null]`},
	{199, `{"{\"a\":"}`, `["{\"a\":"]`},
	{1182, "{2024-05-01,infinity}", `["2024-05-01","infinity"]`},
	{1115, `{"2024-05-01 12:00:00"}`, `["2024-05-01T12:00:00"]`},
	{1185, `{"2024-05-01 12:00:00+02",infinity,NULL}`, `["2024-05-01T10:00:00Z","infinity",null]`},
	{1001, `{"\\x0001",NULL,"\\x"}`, `["AAE=",null,""]`},

	// arrays that do not fit, or are not what Postgres prints: the text
	{1007, "[0:1]={1,2}", `"[0:1]={1,2}"`},
	{1007, "{{{{{{{1}}}}}}}", `"{{{{{{{1}}}}}}}"`},
	{1007, "{1,2", `"{1,2"`},
	{1007, "{1,,2}", `"{1,,2}"`},
	{1007, "{1}x", `"{1}x"`},
	{1009, `{"a}`, `"{\"a}"`},
	{1009, `{a"b}`, `"{a\"b}"`},
	{1009, `{"a\`, `"{\"a\\"`},
	{1009, ``, `""`},
	{oidSomeEnumArray, "{happy,sad}", `"{happy,sad}"`},
}

func TestTextToJSONRendersEachTypeAsDocumented(t *testing.T) {
	for _, c := range textCases {
		got := textToJSON(c.oid, []byte(c.text))
		if string(got) != c.want {
			t.Errorf("oid %d %q → %s, want %s", c.oid, c.text, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("oid %d %q → %s: not valid JSON", c.oid, c.text, got)
		}
	}
}

func TestTextToJSONEncodesLongByteaInOnePiece(t *testing.T) {
	raw := make([]byte, 1000) // several of the decoder's chunks, and a partial one
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	hex := `\x` + strings.ToUpper(bytesToHex(raw))
	want := `"` + base64.StdEncoding.EncodeToString(raw) + `"`
	if got := string(textToJSON(oidBytea, []byte(hex))); got != want {
		t.Errorf("hex bytea of %d bytes\n got %s\nwant %s", len(raw), got, want)
	}
	var esc strings.Builder
	for _, c := range raw {
		switch {
		case c == '\\':
			esc.WriteString(`\\`)
		case c < 0x20 || c > 0x7e:
			esc.WriteByte('\\')
			esc.WriteByte('0' + c>>6)
			esc.WriteByte('0' + c>>3&7)
			esc.WriteByte('0' + c&7)
		default:
			esc.WriteByte(c)
		}
	}
	if got := string(textToJSON(oidBytea, []byte(esc.String()))); got != want {
		t.Errorf("escaped bytea of %d bytes\n got %s\nwant %s", len(raw), got, want)
	}
}

func bytesToHex(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(hexDigit(c >> 4))
		s.WriteByte(hexDigit(c & 0xf))
	}
	return s.String()
}

func hexDigit(v byte) byte { return "0123456789abcdef"[v] }

func TestTextToJSONSharesNoMemoryAnAppendCouldOverwrite(t *testing.T) {
	for _, c := range []struct {
		oid  uint32
		text string
	}{{oidInt8, "42"}, {oidFloat8, "1.5"}, {oidBool, "t"}, {oidBool, "f"}, {oidJSONB, ` {"a": 1} `}} {
		full := []byte(c.text + "tail")
		text := full[:len(c.text)]
		v := textToJSON(c.oid, text)
		if cap(v) != len(v) {
			t.Errorf("oid %d %q: result has room past its end (len %d, cap %d)", c.oid, c.text, len(v), cap(v))
		}
		_ = append(v, "XXXX"...)
		if again := textToJSON(c.oid, text); !bytes.Equal(again, v) || string(full[len(c.text):]) != "tail" {
			t.Errorf("oid %d %q: appending to a result changed shared memory", c.oid, c.text)
		}
	}
}

// fuzzOIDs are the types FuzzTextToJSON picks from: one of each kind of
// conversion, and one unknown.
var fuzzOIDs = []uint32{
	oidBool, oidBytea, oidInt8, oidInt4, oidText, oidOID, oidJSON, oidJSONB, oidFloat4, oidFloat8,
	1082, 1083, oidTimestamp, oidTimestamptz, 1700,
	1000, 1001, 1007, 1009, 1022, 1115, 1185, 3807, oidSomeEnum,
}

func FuzzTextToJSON(f *testing.F) {
	for _, c := range jsonValidityCases {
		f.Add(uint8(slices.Index(fuzzOIDs, oidJSON)), []byte(c))
	}
	for _, c := range textCases {
		for i, oid := range fuzzOIDs {
			if oid == c.oid {
				f.Add(uint8(i), []byte(c.text))
			}
		}
	}
	f.Fuzz(func(t *testing.T, pick uint8, text []byte) {
		oid := fuzzOIDs[int(pick)%len(fuzzOIDs)]
		if validJSON(text) != json.Valid(text) {
			t.Fatalf("validJSON(%q) = %v, json.Valid says otherwise", text, validJSON(text))
		}
		orig := bytes.Clone(text)
		got := textToJSON(oid, text)
		if !json.Valid(got) {
			t.Fatalf("oid %d %q → %q: not valid JSON", oid, text, got)
		}
		if !bytes.Equal(text, orig) {
			t.Fatalf("oid %d: the input changed from %q to %q", oid, orig, text)
		}
		prefix := []byte(`{"v":`)
		appended := appendJSON(prefix, oid, text)
		if !bytes.Equal(appended[:len(prefix)], []byte(`{"v":`)) || !bytes.Equal(appended[len(prefix):], got) {
			t.Fatalf("oid %d %q: appendJSON gave %q, textToJSON %q", oid, text, appended, got)
		}
		if oid == oidText && utf8.Valid(text) {
			var s string
			if err := json.Unmarshal(got, &s); err != nil || s != string(text) {
				t.Fatalf("text %q came back as %q (%v)", text, s, err)
			}
		}
	})
}

// benchValues is a row of a typical users table: what the hot path sees.
var benchValues = []struct {
	name string
	oid  uint32
	text string
}{
	{"int8", 20, "1234567890"},
	{"text", 25, "someone@example.com"},
	{"bool", 16, "t"},
	{"numeric", 1700, "1234.50"},
	{"float8", 701, "0.25"},
	{"uuid", 2950, "0b4f2fd0-9b8e-4a9e-8c56-0b6a2d3f0a11"},
	{"timestamptz", 1184, "2024-05-01 12:00:00.123456+02"},
	{"jsonb", 3802, `{"lang": "de", "tags": ["a", "b"]}`},
	{"text[]", 1009, `{vip,"new user",NULL}`},
	{"bytea", 17, `\x0102030405060708090a0b0c0d0e0f10`},
}

func BenchmarkTextToJSON(b *testing.B) {
	for _, v := range benchValues {
		text := []byte(v.text)
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				textToJSON(v.oid, text)
			}
		})
	}
	b.Run("row", func(b *testing.B) {
		texts := make([][]byte, len(benchValues))
		for i, v := range benchValues {
			texts[i] = []byte(v.text)
		}
		b.ReportAllocs()
		for b.Loop() {
			for i, v := range benchValues {
				textToJSON(v.oid, texts[i])
			}
		}
	})
}
