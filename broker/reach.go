package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// UnreachableError says which brokers the daemon could not talk to, why,
// and what to check, in words for the person running it: kafka-go's own
// errors name its internals ("kafka.(*Client).CreateTopics: [8] Broker Not
// Available: not a client facing error…") or nothing at all ("unexpected
// EOF" for a refused password).
type UnreachableError struct {
	Brokers []string // the addresses it concerns
	Cause   string   // what went wrong, such as "connection refused"
	Fix     string   // what to check
	Err     error    // what the client or the probe reported
}

func (e *UnreachableError) Error() string {
	return "kafka at " + strings.Join(e.Brokers, ", ") + ": " + e.Cause + ": " + e.Fix
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// probeTimeout bounds each step of a probe: the TCP connection, the TLS
// handshake and SASL, the first request.
const probeTimeout = 5 * time.Second

// Diagnose connects to each seed broker the way the clients do, step by
// step (TCP, TLS, SASL, a first request), and then to each broker the
// cluster advertises. It returns nil when a seed answers and the brokers
// it advertises take connections; else an *UnreachableError per cause,
// each naming its brokers, the step that failed and the fix, joined.
func (c Cluster) Diagnose(ctx context.Context) error {
	type result struct {
		advertised []string
		err        *UnreachableError
	}
	results := make([]result, len(c.Brokers))
	var wg sync.WaitGroup
	for i, addr := range c.Brokers {
		wg.Go(func() {
			adv, err := c.probe(ctx, addr)
			results[i] = result{adv, err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var failed []*UnreachableError
	for i, r := range results {
		if r.err == nil {
			return c.checkAdvertised(ctx, c.Brokers[i], r.advertised)
		}
		failed = append(failed, r.err)
	}
	return joinByCause(failed)
}

// joinByCause merges the failures that share a cause and a fix into one
// that names all their brokers.
func joinByCause(failed []*UnreachableError) error {
	var merged []*UnreachableError
	for _, f := range failed {
		i := slices.IndexFunc(merged, func(m *UnreachableError) bool { return m.Cause == f.Cause && m.Fix == f.Fix })
		if i < 0 {
			merged = append(merged, &UnreachableError{Brokers: slices.Clone(f.Brokers), Cause: f.Cause, Fix: f.Fix, Err: f.Err})
			continue
		}
		merged[i].Brokers = append(merged[i].Brokers, f.Brokers...)
	}
	if len(merged) == 1 {
		return merged[0]
	}
	errs := make([]error, len(merged))
	for i, m := range merged {
		errs[i] = m
	}
	return errors.Join(errs...)
}

// probe talks to one broker, returning the addresses of the brokers it
// advertises, or why it could not.
func (c Cluster) probe(ctx context.Context, addr string) ([]string, *UnreachableError) {
	fail := func(err error) *UnreachableError {
		cause, fix := c.cause(err)
		return &UnreachableError{Brokers: []string{addr}, Cause: cause, Fix: fix, Err: err}
	}
	raw, err := (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fail(err)
	}
	raw.Close()

	d := c.Dialer()
	d.Timeout = probeTimeout
	conn, err := d.DialContext(ctx, "tcp", addr)
	var brokers []kafka.Broker
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(probeTimeout))
		if _, err = conn.ApiVersions(); err == nil {
			brokers, err = conn.Brokers()
		}
		conn.Close()
	}
	if err == nil {
		adv := make([]string, len(brokers))
		for i, b := range brokers {
			adv[i] = net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
		}
		return adv, nil
	}
	if ctx.Err() != nil {
		return nil, fail(ctx.Err())
	}
	// A connection closed or left unanswered after it was made is often a
	// TLS mismatch: find out which way.
	if closedOrSilent(err) {
		switch {
		case c.TLS == nil && speaksTLS(ctx, addr):
			return nil, &UnreachableError{Brokers: []string{addr}, Err: err,
				Cause: "the broker speaks TLS on this port", Fix: "set kafka.tls.enabled: true (and kafka.tls.ca_file when a private CA signs its certificate)"}
		case c.TLS != nil && speaksPlaintext(ctx, addr):
			return nil, &UnreachableError{Brokers: []string{addr}, Err: err,
				Cause: "the broker does not speak TLS on this port", Fix: "set kafka.tls.enabled: false, or list the broker's TLS port in kafka.brokers"}
		case c.TLS == nil && c.SASL == nil && !timedOut(err):
			// Not TLS, and it hung up on a plain request: a SASL listener.
			return nil, &UnreachableError{Brokers: []string{addr}, Err: err,
				Cause: "the broker closed the connection without answering", Fix: "it may require SASL: set kafka.sasl.mechanism, username and password"}
		}
	}
	return nil, fail(err)
}

// checkAdvertised dials the brokers that seed advertises: clients send
// their requests there, so a seed that answers is not enough when the
// brokers advertise addresses this host cannot reach (a classic of
// containers: advertised.listeners naming a host inside their network).
func (c Cluster) checkAdvertised(ctx context.Context, seed string, advertised []string) error {
	var failed []*UnreachableError
	for _, addr := range advertised {
		conn, err := (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", addr)
		if err != nil {
			cause, _ := c.cause(err)
			failed = append(failed, &UnreachableError{Brokers: []string{addr}, Err: err,
				Cause: cause + " (the cluster advertises this address, through " + seed + ")",
				Fix:   "set the brokers' advertised.listeners to addresses this host can reach"})
			continue
		}
		conn.Close()
	}
	if len(failed) == 0 {
		return nil
	}
	return joinByCause(failed)
}

// Explain turns the error of a Kafka request into an *UnreachableError
// when what went wrong is reaching the brokers: a refused, reset, closed
// or silent connection, TLS, SASL, or kafka-go's "Broker Not Available",
// which hides the cause. It probes the brokers (Diagnose) to find the
// cause; when they answer the probe, the error's own cause is told, if it
// has one. Other errors come back unchanged. The result unwraps to err
// (and only to err).
func (c Cluster) Explain(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || !connectionError(err) {
		return err
	}
	if errors.As(err, new(*explained)) || errors.As(err, new(*UnreachableError)) {
		return err // explained once already
	}
	if found := c.Diagnose(ctx); found != nil && ctx.Err() == nil {
		return &explained{found: found, err: err}
	}
	cause, fix := c.cause(err)
	if cause == "" {
		return err
	}
	brokers := c.Brokers
	var op *net.OpError
	if errors.As(err, &op) && op.Addr != nil {
		brokers = []string{op.Addr.String()}
	}
	return &UnreachableError{Brokers: brokers, Cause: cause, Fix: fix, Err: err}
}

// explained is what Diagnose found about err: it reads as the finding and
// unwraps to err alone, so that the request's error, not the probe's,
// still decides what callers do (retry, stop).
type explained struct {
	found error
	err   error
}

func (e *explained) Error() string { return e.found.Error() }
func (e *explained) Unwrap() error { return e.err }

// connectionError reports whether err says the brokers could not be
// reached or refused the connection, as opposed to an answer a broker gave.
func connectionError(err error) bool {
	if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
		for _, e := range we {
			if e != nil {
				return connectionError(e)
			}
		}
		return false
	}
	if ke, ok := errors.AsType[kafka.Error](err); ok {
		switch ke {
		case kafka.BrokerNotAvailable, kafka.NetworkException, kafka.SASLAuthenticationFailed,
			kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState:
			return true
		}
		return false
	}
	var ne net.Error
	var tlsErr tls.RecordHeaderError
	return errors.As(err, &ne) || errors.As(err, &tlsErr) || closedOrSilent(err) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		certificateProblem(err) != ""
}

// closedOrSilent reports whether err says the broker closed the
// connection or did not answer in time.
func closedOrSilent(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || timedOut(err)
}

// timedOut reports whether err says an answer did not come in time.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// cause is the one classifier of connection failures: what err says went
// wrong, and what to check, given how c connects. "" when it cannot tell.
func (c Cluster) cause(err error) (cause, fix string) {
	sasl := "kafka.sasl"
	if c.SASL != nil {
		sasl = "kafka.sasl (" + c.SASL.Name() + ")"
	}
	if we, ok := errors.AsType[kafka.WriteErrors](err); ok {
		for _, e := range we {
			if e != nil {
				return c.cause(e)
			}
		}
	}
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return "no such host " + strconv.Quote(dns.Name), "check the host names in kafka.brokers"
	case errors.As(err, &dns):
		return "cannot look up " + strconv.Quote(dns.Name), "check the host names in kafka.brokers and this host's DNS"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", "check kafka.brokers and that the broker is up"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host", "check kafka.brokers and the network between this host and the brokers"
	case certificateProblem(err) != "":
		return "TLS: " + certificateProblem(err), certificateFix(err)
	case errors.As(err, new(tls.RecordHeaderError)):
		return "the broker did not answer in TLS", "set kafka.tls.enabled: false, or list the broker's TLS port in kafka.brokers"
	case tlsAlert(err) != "":
		return "TLS: the broker refused the handshake (" + tlsAlert(err) + ")", "check kafka.tls.cert_file and kafka.tls.key_file: the broker may want a client certificate it trusts"
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return "SASL authentication failed", "check kafka.sasl.username and the password, and that the user exists on the broker"
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return "the broker does not accept this SASL mechanism", "set kafka.sasl.mechanism to one its listener enables, or remove kafka.sasl if it needs none"
	case errors.Is(err, kafka.IllegalSASLState):
		return "the broker does not expect SASL here", "check kafka.sasl and the port in kafka.brokers"
	case errors.Is(err, kafka.BrokerNotAvailable):
		return "no broker answered", "check kafka.brokers and that the brokers are up"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		if c.SASL == nil {
			return "the broker closed the connection", "it may want TLS (kafka.tls.enabled) or SASL (kafka.sasl): check how its listener is set up"
		}
		return "the broker closed the connection", "check " + sasl + " and kafka.tls against how its listener is set up"
	case timedOut(err):
		if c.TLS != nil {
			return "no answer within " + probeTimeout.String(), "check kafka.brokers, that the broker is up and that this port speaks TLS (kafka.tls.enabled)"
		}
		return "no answer within " + probeTimeout.String(), "check kafka.brokers, that the broker is up, and firewalls between this host and it"
	}
	return "", ""
}

// certificateProblem says what is wrong with the broker's certificate,
// or "".
func certificateProblem(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "the broker's certificate is signed by an authority this host does not trust"
	case errors.As(err, &host):
		return "the broker's certificate is not for " + strconv.Quote(host.Host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the broker's certificate has expired or is not valid yet"
	case errors.As(err, &invalid):
		return "the broker's certificate is not valid (" + invalid.Error() + ")"
	}
	return ""
}

func certificateFix(err error) string {
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &host):
		return "list the brokers in kafka.brokers by a name their certificate holds"
	case errors.As(err, &invalid):
		return "renew the broker's certificate, or check this host's clock"
	}
	return "set kafka.tls.ca_file to the CA that signs the brokers' certificates"
}

// sniffTimeout bounds a TLS handshake that only asks whether a port speaks
// TLS: a TLS server answers a ClientHello at once, a Kafka listener
// waits for the rest of what it takes for a request.
const sniffTimeout = 2 * time.Second

// speaksTLS reports whether a TLS handshake with addr gets a server's
// answer, whatever its certificate.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, sniffTimeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // only asks whether the port speaks TLS
	err = conn.HandshakeContext(ctx)
	return err == nil || tlsAlert(err) != ""
}

// tlsAlert is the alert a TLS peer sent to end the handshake ("bad
// certificate", "certificate required", …), or "".
func tlsAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return strings.TrimPrefix(op.Err.Error(), "tls: ")
	}
	return ""
}

// speaksPlaintext reports whether addr answers a Kafka request sent
// without TLS.
func speaksPlaintext(ctx context.Context, addr string) bool {
	d := &kafka.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	_, err = conn.ApiVersions()
	return err == nil
}

// ExplainWrites returns w with its errors passed through c.Explain, for
// the connector and the dead-letter writer: their retry warnings then say
// which broker and why.
func (c Cluster) ExplainWrites(w MessageWriter) MessageWriter { return explainingWriter{c, w} }

// MessageWriter is what ExplainWrites wraps: *kafka.Writer is one.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

type explainingWriter struct {
	c Cluster
	w MessageWriter
}

func (e explainingWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	return e.c.Explain(ctx, e.w.WriteMessages(ctx, msgs...))
}

// ExplainReads returns r with its errors passed through c.Explain, for
// the sink's fetches and commits.
func (c Cluster) ExplainReads(r MessageReader) MessageReader { return explainingReader{c, r} }

// MessageReader is what ExplainReads wraps: *kafka.Reader is one.
type MessageReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

type explainingReader struct {
	c Cluster
	r MessageReader
}

func (e explainingReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	m, err := e.r.FetchMessage(ctx)
	return m, e.c.Explain(ctx, err)
}

func (e explainingReader) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	return e.c.Explain(ctx, e.r.CommitMessages(ctx, msgs...))
}
