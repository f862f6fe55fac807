package e2e

import (
	"context"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/tlstest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// TestASyncOverTLSEverywhere runs `onesignal-cdc run` against a PostgreSQL
// that serves TLS (sslmode=verify-full with the test's CA), a Kafka broker
// that wants TLS and SCRAM-SHA-512, and a OneSignal API served over TLS
// with a certificate only onesignal.ca_file vouches for; the rows reach
// OneSignal, and Postgres reports the replication connection encrypted.
func TestASyncOverTLSEverywhere(t *testing.T) {
	t.Parallel()
	certs := tlstest.New(t)

	// PostgreSQL reads its key as its own user, with no access for others.
	pgCerts := serverCertsFor(t, certs)
	cluster := pgtest.StartCluster(t, "ssl=on", "ssl_cert_file="+pgCerts+"/server.crt", "ssl_key_file="+pgCerts+"/server.key")
	db := cluster.NewDB(t)
	db.Exec(t, schema)
	dsn := strings.Replace(db.DSN, "sslmode=disable", "sslmode=verify-full&sslrootcert="+certs.CAFile, 1)

	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.Server),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "cdc", "kafka-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)

	emuCfg := emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000007e5", APIKey: "tls-key"}
	emu := emulator.New(emuCfg)
	api := httptest.NewUnstartedServer(emu.Handler())
	api.TLS = certs.Server
	api.StartTLS()
	t.Cleanup(api.Close)

	c := config.Default()
	c.Postgres.DSN, c.Postgres.Slot = secret.Value(dsn), db.Name
	c.Postgres.StatusInterval = 200 * time.Millisecond
	c.Kafka.Brokers, c.Kafka.TopicPrefix = kafka.ListenAddrs(), "cdc"
	c.Kafka.TLS = config.KafkaTLS{Enabled: true, CAFile: certs.CAFile}
	c.Kafka.SASL = config.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "cdc"}
	c.OneSignal.BaseURL, c.OneSignal.AppID, c.OneSignal.APIKey = api.URL, emuCfg.AppID, secret.Value(emuCfg.APIKey)
	c.OneSignal.CAFile = certs.CAFile
	c.Mapping.Users = usersMapping()
	cfg := daemontest.WriteConfig(t, c)
	pw := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pw, []byte("kafka-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	daemontest.StartWith(t, daemontest.Options{Env: []string{"ONESIGNAL_CDC_KAFKA_SASL_PASSWORD_FILE=" + pw}}, "run", "--config", cfg)
	daemontest.WaitForSlot(t, db, db.Name)

	db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 50) i`)
	want := expectedState(t, db)
	deadline := time.Now().Add(60 * time.Second)
	for !reflect.DeepEqual(observedState(emu.State(), want), want) {
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows over TLS:\n%s", diff(want, observedState(emu.State(), want)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var encrypted bool
	err = db.Conn(t).QueryRow(context.Background(), `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid) WHERE r.application_name <> 'pg_recvlogical' LIMIT 1`).Scan(&encrypted)
	if err != nil || !encrypted {
		t.Errorf("the replication connection is not encrypted (ssl=%v, err=%v)", encrypted, err)
	}
}

// serverCertsFor copies the server certificate and key where PostgreSQL,
// running as the postgres user when the test runs as root, can read them
// and accepts the key's permissions.
func serverCertsFor(t *testing.T, c *tlstest.Certs) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "onesignal-cdc-pgtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range []string{c.CertFile, c.KeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}
