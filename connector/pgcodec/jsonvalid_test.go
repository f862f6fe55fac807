package pgcodec

import (
	"encoding/json"
	"strings"
	"testing"
)

var jsonValidityCases = []string{
	``, ` `, `null`, `nul`, `nullx`, `true`, `false`, `tru`, ` {"a": [1, 2.5, -0, 1e9, 1E+2, 3e-1]} `,
	`{}`, `[]`, `{ }`, `[ ]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a":1 "b":2}`, `[1 2]`,
	`{1:2}`, `"abc"`, `"ab`, `"a\"b"`, `"\u00e9\uD83D\uDE00"`, `"\u12"`, `"\u12g4"`, `"\x"`, `"\/\b\f\n\r\t\\"`,
	"\"a\tb\"", "\"a\x1fb\"", "\"\xff\xfe\"", "\"é\"", `01`, `-`, `-01`, `1.`, `.5`, `1.5e`, `1e+`, `+1`, `0.0e0`,
	`-0.5E-10`, `[[[]]]`, `[[[]]`, `{"a":{"b":{"c":null}}}`, `{"a" : 1 , "b" : [ true , false ] }`, "\n\r\t1\n",
	`"unterminated\`, `[1]]`, `{"a":1}}`, `1 2`, `{"":""}`, `[null,true,false,"x",{},[]]`, `NaN`, `Infinity`,
}

func TestValidJSONAgreesWithEncodingJSON(t *testing.T) {
	cases := append([]string{}, jsonValidityCases...)
	// encoding/json's nesting limit, at it and past it.
	cases = append(cases, strings.Repeat("[", maxJSONDepth)+strings.Repeat("]", maxJSONDepth))
	cases = append(cases, strings.Repeat("[", maxJSONDepth+1)+strings.Repeat("]", maxJSONDepth+1))
	cases = append(cases, strings.Repeat(`{"a":`, maxJSONDepth)+"1"+strings.Repeat("}", maxJSONDepth))
	cases = append(cases, strings.Repeat(`{"a":`, maxJSONDepth+1)+"1"+strings.Repeat("}", maxJSONDepth+1))
	for _, c := range cases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func BenchmarkValidJSON(b *testing.B) {
	v := []byte(`{"plan": "pro", "seats": 12, "flags": ["beta", "eu"], "trial": false, "owner": {"name": "Zoë", "id": 1234567}}`)
	b.Run("validJSON", func(b *testing.B) {
		for b.Loop() {
			validJSON(v)
		}
	})
	b.Run("encoding/json.Valid", func(b *testing.B) {
		for b.Loop() {
			json.Valid(v)
		}
	})
}
