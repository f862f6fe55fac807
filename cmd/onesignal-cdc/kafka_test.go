package main

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/tlstest"
)

// A daemon that cannot reach Kafka waits for it, and its warnings say which
// broker and why, with the fix; kafka-go's own words ("[8] Broker Not
// Available: not a client facing error…") never reach the log.
func TestTheDaemonWaitingForKafkaSaysWhichBrokerAndWhy(t *testing.T) {
	certs := tlstest.New(t)
	fake := func(opts ...kfake.Opt) string {
		c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c.ListenAddrs()[0]
	}
	closed := freeAddr(t)
	withTLS := fake(kfake.TLS(certs.Server))
	withSCRAM := fake(kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "cdc", "s3cret"))
	for _, tc := range []struct {
		name, broker string
		sasl         config.KafkaSASL
		want         string
	}{
		{"a closed port", closed, config.KafkaSASL{},
			"kafka at " + closed + ": connection refused: check kafka.brokers and that the broker is up"},
		{"plaintext to a TLS listener", withTLS, config.KafkaSASL{},
			"kafka at " + withTLS + ": the broker speaks TLS on this port: set kafka.tls.enabled: true"},
		{"a wrong SASL password", withSCRAM, config.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "cdc", Password: "wrong"},
			"kafka at " + withSCRAM + ": SASL authentication failed: check kafka.sasl.username and the password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := opsDaemonConfig("postgres://nobody@127.0.0.1:9/none", "unused", []string{tc.broker}, "http://127.0.0.1:9")
			c.Kafka.SASL = tc.sasl
			d := startDaemon(t, config.Sink, daemontest.WriteConfig(t, c))
			waitUntilFor(t, 30*time.Second, "a warning that names the broker and the cause", func() bool {
				for line := range strings.Lines(d.log.String()) {
					if strings.Contains(line, "kafka not reachable; retrying") && strings.Contains(line, tc.want) {
						return true
					}
				}
				return false
			})
			for _, internal := range []string{"Broker Not Available", "kafka.(*", "unexpected EOF"} {
				if strings.Contains(d.log.String(), internal) {
					t.Errorf("the log shows %q:\n%s", internal, d.log.String())
				}
			}
		})
	}
}
