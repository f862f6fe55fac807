package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/tlstest"
)

// A broker that wants TLS and SCRAM: the cluster built from the
// configuration's security settings creates topics, writes, reads and
// keeps state there; a wrong password is refused.
func TestAClusterWithTLSAndSCRAMIsReachedWithTheConfiguredSecurity(t *testing.T) {
	certs := tlstest.New(t)
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.Server),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "cdc", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	sec := broker.Security{TLS: true, CAFile: certs.CAFile, SASLMechanism: broker.SASLScramSHA256, Username: "cdc", Password: "s3cret"}
	c, err := broker.NewCluster(fake.ListenAddrs(), sec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.EnsureTopics(ctx, 2, "secure"); err != nil {
		t.Fatal(err)
	}
	w := c.NewWriter(10)
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: "secure", Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	store, err := c.OpenStateStore(ctx, "secure.state")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Save(ctx, "slot", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Load(ctx, "slot"); err != nil || string(got) != "state" {
		t.Fatalf("state %q, %v", got, err)
	}
	r := c.NewReader(kafka.ReaderConfig{Topic: "secure", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	r2 := c.NewReader(kafka.ReaderConfig{Topic: "secure", Partition: 1, MaxWait: 100 * time.Millisecond})
	defer r2.Close()
	got := make(chan kafka.Message, 2)
	for _, rd := range []*kafka.Reader{r, r2} {
		go func() {
			if m, err := rd.ReadMessage(ctx); err == nil {
				got <- m
			}
		}()
	}
	select {
	case m := <-got:
		if string(m.Value) != "v" {
			t.Errorf("read %q", m.Value)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nothing read back over TLS")
	}

	sec.Password = "wrong"
	bad, err := broker.NewCluster(fake.ListenAddrs(), sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.EnsureTopics(ctx, 1, "other"); err == nil {
		t.Error("a wrong SCRAM password was accepted")
	}
}

func TestSecuritySettingsThatCannotWorkAreReportedTogether(t *testing.T) {
	_, err := broker.NewCluster([]string{"k:9092"}, broker.Security{CAFile: "/ca.pem", SASLMechanism: "GSSAPI"})
	for _, want := range []string{"tls.enabled is false", `kafka.sasl.mechanism "GSSAPI"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	_, err = broker.NewCluster([]string{"k:9092"}, broker.Security{TLS: true, CAFile: "/nonexistent.pem", CertFile: "/c.pem"})
	for _, want := range []string{"kafka.tls.ca_file", "cert_file and key_file go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}
