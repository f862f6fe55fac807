package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

const value = "pw-Never-Leaves"

type config struct {
	Key secret.Value `json:"key" yaml:"key"`
}

func TestAValueNeverPrintsWhereverItGoes(t *testing.T) {
	v := secret.Value(value)
	cfg := config{Key: v}
	asJSON, _ := json.Marshal(cfg)
	mapJSON, _ := json.Marshal(map[string]secret.Value{"k": v})
	asYAML, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asText, _ := v.MarshalText()
	var slogged bytes.Buffer
	slog.New(slog.NewJSONHandler(&slogged, nil)).Info("x", "key", v, "cfg", cfg)
	var zapped bytes.Buffer
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&zapped), zap.DebugLevel))
	zl.Info("x", zap.Any("any", v), zap.Stringer("stringer", v), zap.Reflect("reflect", cfg), zap.Any("struct", cfg))
	_ = zl.Sync()

	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", v), "%s": fmt.Sprintf("%s", v), "%q": fmt.Sprintf("%q", v), "%#v": fmt.Sprintf("%#v", v),
		"%x": fmt.Sprintf("%x", v), "%X": fmt.Sprintf("%X", v), "%d": fmt.Sprintf("%d", v), "%10s": fmt.Sprintf("%10s", v),
		"%+v of a struct": fmt.Sprintf("%+v", cfg), "%#v of a struct": fmt.Sprintf("%#v", cfg), "%v of a pointer": fmt.Sprintf("%v", &cfg),
		"Println": fmt.Sprintln(v), "an error": fmt.Errorf("connect with %v: refused", v).Error(),
		"JSON": string(asJSON), "JSON of a map": string(mapJSON), "YAML": string(asYAML),
		"MarshalText": string(asText), "slog": slogged.String(), "zap": zapped.String(),
	}
	for how, out := range outputs {
		if strings.Contains(out, value) || !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s prints %q, want %s and no value", how, out, secret.Redacted)
		}
	}
	if v.Reveal() != value {
		t.Errorf("Reveal() = %q, want the value", v.Reveal())
	}
}

func TestAValueIsReadFromYAMLAsItIsWritten(t *testing.T) {
	var cfg config
	if err := yaml.Unmarshal([]byte("key: "+value+"\n"), &cfg); err != nil || cfg.Key.Reveal() != value {
		t.Errorf("read %q (%v), want %q", cfg.Key.Reveal(), err, value)
	}
}
