package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/tlstest"
)

func fakeCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// misadvertised listens on a free port but tells clients, in metadata, to
// come to another, closed one: a broker whose advertised.listeners this
// host cannot reach.
type misadvertised struct {
	net.Listener
	advertised net.Addr
}

func (l misadvertised) Addr() net.Addr { return l.advertised }

// goInternals are what a user must never have to read.
var goInternals = []string{"kafka.(*", "[8]", "not a client facing error", "*tls.", "x509:", "dial tcp", "EOF", "context deadline"}

func TestDiagnoseNamesTheBrokerTheCauseAndTheFix(t *testing.T) {
	t.Parallel()
	certs := tlstest.New(t)
	plain := fakeCluster(t)
	withTLS := fakeCluster(t, kfake.TLS(certs.Server))
	withSCRAM := fakeCluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "cdc", "s3cret"))
	refused := closedPort(t)
	var real net.Listener
	fakeCluster(t, kfake.ListenFn(func(network, address string) (net.Listener, error) {
		l, err := net.Listen(network, "127.0.0.1:0")
		real = l
		ad, _ := net.ResolveTCPAddr("tcp", refused)
		return misadvertised{l, ad}, err
	}))

	for _, tc := range []struct {
		name    string
		brokers []string
		sec     broker.Security
		want    []string // in the message, in order
	}{
		{"a closed port", []string{refused}, broker.Security{},
			[]string{"kafka at " + refused + ": connection refused: check kafka.brokers and that the broker is up"}},
		{"two closed ports", []string{refused, closedPort(t)}, broker.Security{},
			[]string{"kafka at " + refused + ", 127.0.0.1:", ": connection refused: check kafka.brokers"}},
		{"a host that does not exist", []string{"kafka-1.nonexistent.invalid:9092"}, broker.Security{},
			[]string{"kafka at kafka-1.nonexistent.invalid:9092: ", `"kafka-1.nonexistent.invalid"`, "check the host names in kafka.brokers"}},
		{"plaintext to a TLS port", withTLS, broker.Security{},
			[]string{"kafka at " + withTLS[0] + ": the broker speaks TLS on this port: set kafka.tls.enabled: true"}},
		{"TLS to a plaintext port", plain, broker.Security{TLS: true, CAFile: certs.CAFile},
			[]string{"kafka at " + plain[0] + ": the broker does not speak TLS on this port: set kafka.tls.enabled: false"}},
		{"TLS without the broker's CA", withTLS, broker.Security{TLS: true},
			[]string{"kafka at " + withTLS[0] + ": TLS: the broker's certificate is signed by an authority this host does not trust: set kafka.tls.ca_file"}},
		{"a wrong SCRAM password", withSCRAM, broker.Security{SASLMechanism: broker.SASLScramSHA256, Username: "cdc", Password: "wrong"},
			[]string{"kafka at " + withSCRAM[0] + ": SASL authentication failed: check kafka.sasl.username and the password"}},
		{"no SASL where the broker wants it", withSCRAM, broker.Security{},
			[]string{"kafka at " + withSCRAM[0] + ": the broker closed the connection without answering: it may require SASL: set kafka.sasl"}},
		{"a broker advertising an address this host cannot reach", []string{real.Addr().String()}, broker.Security{},
			[]string{"kafka at " + refused + ": connection refused (the cluster advertises this address, through " + real.Addr().String() + "): set the brokers' advertised.listeners"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := broker.NewCluster(tc.brokers, tc.sec)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Diagnose(t.Context())
			if err == nil {
				t.Fatal("Diagnose found nothing wrong")
			}
			msg := err.Error()
			t.Log(msg)
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q\nlacks %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
			for _, g := range goInternals {
				if strings.Contains(msg, g) {
					t.Errorf("%q shows %q", msg, g)
				}
			}
		})
	}

	for name, sec := range map[string]broker.Security{
		"plaintext": {},
		"TLS":       {TLS: true, CAFile: certs.CAFile},
		"SCRAM":     {SASLMechanism: broker.SASLScramSHA256, Username: "cdc", Password: "s3cret"},
	} {
		brokers := map[string][]string{"plaintext": plain, "TLS": withTLS, "SCRAM": withSCRAM}[name]
		c, err := broker.NewCluster(brokers, sec)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Diagnose(t.Context()); err != nil {
			t.Errorf("a reachable %s broker: %v", name, err)
		}
	}
}

// The error kafka-go gives for a request to a closed port names neither
// the broker nor the cause; Explain gives both, and callers that branch
// on the client's error still can.
func TestExplainTurnsAClientsErrorIntoTheCauseAndKeepsIt(t *testing.T) {
	t.Parallel()
	refused := closedPort(t)
	c := broker.Plain([]string{refused})
	ctx := context.Background()
	err := c.EnsureTopics(ctx, 1, "t")
	if err == nil || !strings.Contains(err.Error(), "Broker Not Available") {
		t.Fatalf("EnsureTopics on a closed port: %v; the test expects kafka-go's Broker Not Available", err)
	}
	got := c.Explain(ctx, err)
	want := "kafka at " + refused + ": connection refused: check kafka.brokers and that the broker is up"
	if got.Error() != want {
		t.Errorf("Explain gave %q, want %q", got, want)
	}
	if !errors.Is(got, kafka.BrokerNotAvailable) {
		t.Error("the explained error no longer unwraps to the client's")
	}
	if again := c.Explain(ctx, fmt.Errorf("create topics: %w", got)); !strings.HasSuffix(again.Error(), want) {
		t.Errorf("explained twice: %q", again)
	}

	w := c.NewWriter(1)
	defer w.Close()
	err = c.ExplainWrites(w).WriteMessages(ctx, kafka.Message{Topic: "t", Value: []byte("v")})
	if err == nil || err.Error() != want {
		t.Errorf("a write's error explained: %v, want %q", err, want)
	}
	r := c.ExplainReads(failingReader{err: io.ErrUnexpectedEOF})
	if _, err := r.FetchMessage(ctx); err == nil || err.Error() != want || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a fetch's error explained: %v, want %q", err, want)
	}
	if err := r.CommitMessages(ctx); err == nil || err.Error() != want {
		t.Errorf("a commit's error explained: %v, want %q", err, want)
	}

	refusedTopic := kafka.TopicAuthorizationFailed
	if got := c.Explain(ctx, refusedTopic); got != error(refusedTopic) {
		t.Errorf("an answer from a broker was changed: %v", got)
	}
}

// failingReader fails every fetch and commit with err, as a reader whose
// broker went away does.
type failingReader struct{ err error }

func (f failingReader) FetchMessage(context.Context) (kafka.Message, error) {
	return kafka.Message{}, f.err
}
func (f failingReader) CommitMessages(context.Context, ...kafka.Message) error { return f.err }
