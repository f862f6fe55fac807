// Package secret holds the type of every credential the pipeline handles
// (the database's DSN, the Kafka SASL password, the OneSignal API key): a
// string that never prints. fmt in every verb, JSON, YAML, text
// marshalling, slog and zap (through String or JSON) all show
// "[redacted]"; only Reveal gives the value, for the one place that sends
// it.
package secret

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

// Value is a credential.
type Value string

// Redacted is what a Value prints as.
const Redacted = "[redacted]"

// Reveal returns the credential itself.
func (v Value) Reveal() string { return string(v) }

func (v Value) String() string   { return Redacted }
func (v Value) GoString() string { return `"` + Redacted + `"` }

// Format redacts in every verb, %x and %d included, which would otherwise
// print the string's bytes.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		io.WriteString(f, v.GoString()) //nolint:errcheck // fmt reports nothing either
		return
	}
	io.WriteString(f, Redacted) //nolint:errcheck
}

// MarshalText keeps the value out of anything that encodes through
// encoding.TextMarshaler.
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalJSON redacts too, for JSON encoders that look for json.Marshaler
// but not for encoding.TextMarshaler.
func (v Value) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// MarshalYAML redacts in YAML (go.yaml.in/yaml/v3's Marshaler).
func (v Value) MarshalYAML() (any, error) { return Redacted, nil }

// LogValue redacts in log/slog.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// UnmarshalText reads a credential from configuration.
func (v *Value) UnmarshalText(b []byte) error { *v = Value(b); return nil }
