package onesignal_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

func TestNewChecksTheConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  onesignal.Config
		want []string // substrings of the error; none: valid
	}{
		{name: "accepts app ID and key, with the default base URL", cfg: onesignal.Config{AppID: appID, APIKey: apiKey}},
		{name: "accepts a base URL with a path prefix", cfg: onesignal.Config{BaseURL: "http://localhost:8080/onesignal/", AppID: appID, APIKey: apiKey}},
		{
			name: "says where to find a missing app ID",
			cfg:  onesignal.Config{APIKey: apiKey},
			want: []string{"onesignal.app_id is empty: set it to your app's ID from Settings › Keys & IDs"},
		},
		{
			name: "says where to find a missing key",
			cfg:  onesignal.Config{AppID: appID},
			want: []string{"onesignal.api_key is empty", "App API key"},
		},
		{
			name: "reports every problem at once",
			cfg:  onesignal.Config{BaseURL: "ftp://x"},
			want: []string{"onesignal.app_id is empty", "onesignal.api_key is empty", "onesignal.base_url"},
		},
		{
			name: "refuses a key that ends in a newline, without printing it",
			cfg:  onesignal.Config{AppID: appID, APIKey: apiKey + "\n"},
			want: []string{"onesignal.api_key has leading or trailing whitespace"},
		},
		{
			name: "refuses an app ID with spaces around it",
			cfg:  onesignal.Config{AppID: " " + appID, APIKey: apiKey},
			want: []string{"onesignal.app_id has leading or trailing spaces"},
		},
		{
			name: "refuses a relative base URL",
			cfg:  onesignal.Config{BaseURL: "api.onesignal.com", AppID: appID, APIKey: apiKey},
			want: []string{`onesignal.base_url "api.onesignal.com" is not an absolute http(s) URL`},
		},
		{
			name: "refuses a base URL that does not parse",
			cfg:  onesignal.Config{BaseURL: "http://[::1", AppID: appID, APIKey: apiKey},
			want: []string{"onesignal.base_url", "does not parse"},
		},
		{
			name: "refuses credentials in the base URL",
			cfg:  onesignal.Config{BaseURL: "https://user:pw@api.onesignal.com", AppID: appID, APIKey: apiKey},
			want: []string{"must not carry credentials"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := onesignal.New(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			requireNoSecret(t, err)
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error repeats the password from the base URL: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestSecretIsRedactedWhereverItIsPrinted(t *testing.T) {
	t.Parallel()
	cfg := onesignal.Config{AppID: appID, APIKey: apiKey}
	asJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asText, err := cfg.APIKey.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":            fmt.Sprintf("%v", cfg.APIKey),
		"%s":            fmt.Sprintf("%s", cfg.APIKey),
		"%q":            fmt.Sprintf("%q", cfg.APIKey),
		"%#v":           fmt.Sprintf("%#v", cfg.APIKey),
		"%+v config":    fmt.Sprintf("%+v", cfg),
		"%#v config":    fmt.Sprintf("%#v", cfg),
		"%v pointer":    fmt.Sprintf("%v", &cfg),
		"json config":   string(asJSON),
		"MarshalText":   string(asText),
		"Println":       fmt.Sprintln(cfg.APIKey),
		"String":        cfg.APIKey.String(),
		"GoString":      cfg.APIKey.GoString(),
		"json of a map": mustJSON(t, map[string]onesignal.Secret{"k": cfg.APIKey}),
	}
	for how, out := range outputs {
		if strings.Contains(out, apiKey) || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s prints %q, want [redacted] and no key", how, out)
		}
	}
	if cfg.APIKey.Reveal() != apiKey {
		t.Errorf("Reveal() = %q, want the key", cfg.APIKey.Reveal())
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
