package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// Cluster is how to reach a Kafka cluster: its seed brokers and, when the
// cluster asks for them, TLS and SASL. The zero TLS and SASL mean plaintext
// without authentication.
type Cluster struct {
	Brokers []string
	TLS     *tls.Config
	SASL    sasl.Mechanism
}

// Plain is a cluster reached in plaintext without authentication, such as
// the embedded broker.
func Plain(brokers []string) Cluster { return Cluster{Brokers: brokers} }

// Security is how the configuration describes TLS and SASL.
type Security struct {
	TLS                bool   // connect with TLS
	CAFile             string // PEM CA bundle that signs the brokers' certificates; default the system's
	CertFile, KeyFile  string // PEM client certificate and key, for mutual TLS
	InsecureSkipVerify bool   // do not check the brokers' certificates (never in production)
	// SASLMechanism is "" (none), "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	Username      string
	Password      secret.Value
}

// The SASL mechanisms the daemon speaks.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// NewCluster checks sec and returns the cluster; every problem is reported
// at once.
func NewCluster(brokers []string, sec Security) (Cluster, error) {
	c := Cluster{Brokers: brokers}
	var errs []error
	if sec.TLS {
		cfg, err := clientTLS(sec)
		if err != nil {
			errs = append(errs, err)
		}
		c.TLS = cfg
	} else if sec.CAFile != "" || sec.CertFile != "" || sec.KeyFile != "" || sec.InsecureSkipVerify {
		errs = append(errs, errors.New("kafka.tls: files or insecure_skip_verify are set but tls.enabled is false: set kafka.tls.enabled: true"))
	}
	var err error
	switch sec.SASLMechanism {
	case "":
	case SASLPlain:
		c.SASL = plain.Mechanism{Username: sec.Username, Password: sec.Password.Reveal()}
	case SASLScramSHA256:
		c.SASL, err = scram.Mechanism(scram.SHA256, sec.Username, sec.Password.Reveal())
	case SASLScramSHA512:
		c.SASL, err = scram.Mechanism(scram.SHA512, sec.Username, sec.Password.Reveal())
	default:
		err = fmt.Errorf("kafka.sasl.mechanism %q is not %s, %s or %s", sec.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

func clientTLS(sec Security) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: sec.InsecureSkipVerify} //nolint:gosec // only when the user asks for it
	var errs []error
	if sec.CAFile != "" {
		pool, err := LoadCA(sec.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.ca_file: %w", err))
		}
		cfg.RootCAs = pool
	}
	if (sec.CertFile == "") != (sec.KeyFile == "") {
		errs = append(errs, errors.New("kafka.tls: cert_file and key_file go together: set both for mutual TLS, or neither"))
	} else if sec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls: client certificate: %w", err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, errors.Join(errs...)
}

// LoadCA returns the system's certificate pool (or an empty one where the
// system has none) with the PEM certificates of file added.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// Dialer is for readers and direct connections.
func (c Cluster) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.TLS, SASLMechanism: c.SASL}
}

// Transport is for writers and clients. Whoever takes one closes it
// (CloseIdleConnections): until then it refreshes its metadata every 6 s.
func (c Cluster) Transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: 10 * time.Second, TLS: c.TLS, SASL: c.SASL}
}

// Client returns an admin client whose requests time out after timeout,
// and done, which closes its connections: call it when finished.
func (c Cluster) Client(timeout time.Duration) (client *kafka.Client, done func()) {
	transport := c.Transport()
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: timeout, Transport: transport}, transport.CloseIdleConnections
}

// NewReader returns a reader of cfg on the cluster: Brokers and Dialer are
// set from c.
func (c Cluster) NewReader(cfg kafka.ReaderConfig) *kafka.Reader {
	cfg.Brokers, cfg.Dialer = c.Brokers, c.Dialer()
	return kafka.NewReader(cfg)
}
