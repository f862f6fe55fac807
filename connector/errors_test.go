package connector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

func pgError(code string) error {
	return fmt.Errorf("start replication: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: "sqlstate " + code})
}

func TestTheConnectorReconnectsAfterWhatMayPassAndStopsOnWhatCannot(t *testing.T) {
	_, parseErr := pgconn.ParseConfig("postgres://host:notaport/db")
	if parseErr == nil {
		t.Fatal("the DSN parsed")
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		sentence string
		err      error
		want     errclass.Class
	}{
		{"a connection the server terminated is retried", pgError("57P01"), errclass.Retryable},
		{"a server starting up is retried", pgError("57P03"), errclass.Retryable},
		{"a connection failure the server reports is retried", pgError("08006"), errclass.Retryable},
		{"too many connections is retried", pgError("53300"), errclass.Retryable},
		{"a serialization failure is retried", pgError("40001"), errclass.Retryable},
		{"a deadlock is retried", pgError("40P01"), errclass.Retryable},
		{"a slot another process holds is retried (as a standby)", pgError("55006"), errclass.Retryable},
		{"a refused TCP connection is retried", fmt.Errorf("connect: %w", refused), errclass.Retryable},
		{"a connection cut mid-message is retried", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), errclass.Retryable},
		{"an error no classifier knows is retried", errors.New("conn closed"), errclass.Retryable},
		{"a wrong password stops the connector", pgError("28P01"), errclass.Fatal},
		{"a role pg_hba.conf refuses stops the connector", pgError("28000"), errclass.Fatal},
		{"a database that does not exist stops the connector", pgError("3D000"), errclass.Fatal},
		{"a privilege the role lacks stops the connector", pgError("42501"), errclass.Fatal},
		{"a publication that does not exist stops the connector", pgError("42704"), errclass.Fatal},
		{"a DSN pgx cannot parse stops the connector", parseErr, errclass.Fatal},
		{"an error the connector marked fatal stops it", fatal(errors.New("slot is gone")), errclass.Fatal},
		{"a Kafka leader not available is retried", fmt.Errorf("write state: %w", kafka.LeaderNotAvailable), errclass.Retryable},
		{"a Kafka broker not available is retried", fmt.Errorf("create topic: %w", kafka.BrokerNotAvailable), errclass.Retryable},
		{"a Kafka topic the user may not write stops the connector", fmt.Errorf("write state: %w", kafka.TopicAuthorizationFailed), errclass.Fatal},
		{"a Kafka cluster the user may not create topics on stops the connector", fmt.Errorf("create topic: %w", kafka.ClusterAuthorizationFailed), errclass.Fatal},
		{"a state record too large for Kafka stops the connector", fmt.Errorf("write state: %w", kafka.MessageSizeTooLarge), errclass.Permanent},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %s, want %s", tc.sentence, tc.err, got, tc.want)
		}
	}
}

func TestAnErrorTheConnectorStopsOnNamesItsFix(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		err      error
		want     string
	}{
		{"a wrong password names postgres.dsn", fmt.Errorf("connect to postgres: %w", pgError("28P01")), "connect to postgres: start replication: FATAL: sqlstate 28P01 (SQLSTATE 28P01): check the user and password in postgres.dsn"},
		{"a missing privilege names the least-privilege role", pgError("42501"), "docs/operations.md"},
		{"a missing publication names postgres.publication", pgError("42704"), "check postgres.publication"},
		{"a Kafka refusal names the grant", fmt.Errorf("create topic: %w", kafka.ClusterAuthorizationFailed), "grant the Kafka user Create on the cluster"},
		{"an error the connector worded is left as it is", fatal(fmt.Errorf("create publication: %w (create it yourself)", pgError("42501"))), "create publication: start replication: FATAL: sqlstate 42501 (SQLSTATE 42501) (create it yourself)"},
	} {
		got := withFix(tc.err).Error()
		if !strings.Contains(got, tc.want) || strings.Count(got, "check the user") > 1 {
			t.Errorf("%s: %q, want it to say %q", tc.sentence, got, tc.want)
		}
		if tc.sentence == "an error the connector worded is left as it is" && got != tc.want {
			t.Errorf("%s: %q, want exactly %q", tc.sentence, got, tc.want)
		}
	}
}
