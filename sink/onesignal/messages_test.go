package onesignal

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMessagesKeepsTheTextOfEveryEnvelope(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 150) // 300 bytes, two per rune
	tests := []struct {
		name string
		body string
		want []string
	}{
		{name: "a list of strings", body: `{"errors":["a","b"]}`, want: []string{"a", "b"}},
		{name: "a list of objects", body: `{"errors":[{"code":"c1","title":"T1"},{"title":"T2"}]}`, want: []string{"c1: T1", "T2"}},
		{name: "an object with a numeric code", body: `{"errors":[{"code":409,"title":"T"}]}`, want: []string{"409: T"}},
		{name: "an object with meta", body: `{"errors":[{"title":"T","meta":{ "x" : 1 }}]}`, want: []string{`T meta={"x":1}`}},
		{name: "an empty object", body: `{"errors":[{}]}`, want: []string{"{}"}},
		{name: "a mixed list", body: `{"errors":["a",{"title":"T"},3]}`, want: []string{"a", "T", "3"}},
		{name: "one string", body: `{"errors":"just this"}`, want: []string{"just this"}},
		{name: "errors of an odd type", body: `{"errors":{"field":"bad"}}`, want: []string{`{"field":"bad"}`}},
		{name: "success false and nothing else", body: `{"success":false}`, want: []string{`{"success":false}`}},
		{name: "an empty object body", body: `{}`, want: []string{"{}"}},
		{name: "errors null", body: `{"errors":null,"success":false}`, want: []string{`{"errors":null,"success":false}`}},
		{name: "an empty body", body: "", want: nil},
		{name: "whitespace", body: " \n", want: nil},
		{name: "plain text", body: "Bad Gateway\n", want: []string{"Bad Gateway"}},
		{name: "long text, cut at 200 bytes on a rune boundary", body: long, want: []string{strings.Repeat("é", 100) + "…"}},
		{name: "invalid UTF-8", body: "\xff\xfeoops", want: []string{"\uFFFDoops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := parseMessages([]byte(tt.body))
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("parseMessages(%q) = %q, want %q", tt.body, got, tt.want)
			}
			for _, m := range got {
				if !utf8.ValidString(m) {
					t.Errorf("message %q is not valid UTF-8", m)
				}
			}
		})
	}
}

func TestParseRetryAfterReadsWholeSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   string
	}{
		{"", "0s"}, {"0", "0s"}, {"1", "1s"}, {" 120 ", "2m0s"}, {"-1", "0s"}, {"1.5", "0s"},
		{"Fri, 31 Dec 1999 23:59:59 GMT", "0s"}, {"99999999999999999999", "0s"}, {"7200", "5m0s"}, {"86400", "5m0s"}, {"86401", "0s"},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.header).String(); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.header, got, tt.want)
		}
	}
}

func FuzzParseMessages(f *testing.F) {
	for _, seed := range []string{`{"errors":["a"]}`, `{"errors":[{"code":"c","title":"t","meta":{}}]}`, `{"errors":"m"}`, `{"success":false}`, "", "\xff"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range parseMessages(body) {
			if !utf8.ValidString(m) {
				t.Errorf("message %q is not valid UTF-8", m)
			}
		}
	})
}
