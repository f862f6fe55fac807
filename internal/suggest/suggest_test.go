package suggest

import "testing"

func TestClosestNamesWhatASlipWasMeantToBe(t *testing.T) {
	t.Parallel()
	columns := []string{"id", "external_id", "plan", "score", "email"}
	tests := []struct {
		name       string
		candidates []string
		want       string // "" for no suggestion
	}{
		{"externalid", columns, "external_id"},
		{"scor", columns, "score"},
		{"Plan", columns, "plan"},
		{"emial", columns, "email"},
		{"embeded", []string{"embedded"}, "embedded"},
		{"embedd", []string{"embedded"}, "embedded"},
		{"kafka", []string{"embedded"}, ""},
		{"device_id", columns, ""},
		{"x", columns, ""},
		{"plan", columns, ""}, // itself is no suggestion
		{"plan", nil, ""},
	}
	for _, tt := range tests {
		got, ok := Closest(tt.name, tt.candidates)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Closest(%q) = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}
