package sinkmem

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// The workload's names: a CRM-shaped contacts table with a surrogate
// primary key and the external id in a column of its own, and a devices
// table keyed by (owner, device) that holds no row.
const (
	prefix       = "bench"
	schema       = "crm"
	usersTable   = "Contacts"
	devicesTable = "devices"
	usersTopic   = prefix + "." + schema + "." + usersTable
	devicesTopic = prefix + "." + schema + "." + devicesTable
	group        = "bench-sinkmem"
	appID        = "5eed5eed-0000-4000-8000-00000000beef"
	apiKey       = "bench-sinkmem-key"
	// partitions is the daemon's default kafka.partitions, which its own
	// topics get too.
	partitions = 6
	// chunkRows is the connector's default snapshot chunk: the rows of one
	// chunk share its low watermark as their LSN.
	chunkRows = 10000
)

// mappingYAML maps the contacts' four CRM fields to tags, and the devices
// table, so that in the player model a user without a device is kept in
// the desired state and not written (docs/mapping.md, "tags before the
// first device").
const mappingYAML = `mapping:
  users:
    table: crm.Contacts
    external_id: External Id
    tags:
      Plan: plan
      Lifecycle Stage: stage
      Country: country
      Score: score
  devices:
    table: crm.devices
    device_id: device_id
    external_id: ext_id
`

var (
	plans     = []string{"free", "starter", "pro", "enterprise"}
	stages    = []string{"lead", "trial", "customer", "churned", "partner"}
	countries = []string{"DE", "FR", "US", "BR", "IN", "JP", "NG", "PL", "SE", "MX", "ZA", "KR"}
)

// externalID is contact n's external id, in the shapes CRMs use.
func externalID(n int) string {
	switch n % 4 {
	case 0:
		return "team/ops-" + strconv.Itoa(n)
	case 1:
		return fmt.Sprintf("Müller %d", n)
	case 2:
		return fmt.Sprintf("crm:%08d", n)
	}
	return fmt.Sprintf("user-%d@example.com", n)
}

// contactEvent is contact n's snapshot event as the connector writes it:
// keyed by its primary key, {"Contact ID": n}, its columns in table order,
// positioned at its chunk's low watermark.
func contactEvent(n int, lsn int64, now int64) kafka.Message {
	str := func(s string) json.RawMessage { return event.AppendString(nil, s) }
	id := json.RawMessage(strconv.Itoa(n))
	row := event.Row{
		{Name: "Contact ID", Value: id},
		{Name: "External Id", Value: str(externalID(n))},
		{Name: "First Name", Value: str(fmt.Sprintf("First%d", n%977))},
		{Name: "Last Name", Value: str(fmt.Sprintf("Last%d", n%1009))},
		{Name: "E-mail", Value: str(fmt.Sprintf("contact%d@example.com", n))},
		{Name: "Plan", Value: str(plans[n%len(plans)])},
		{Name: "Lifecycle Stage", Value: str(stages[n%len(stages)])},
		{Name: "Country", Value: str(countries[n%len(countries)])},
		{Name: "Score", Value: json.RawMessage(strconv.Itoa(n % 100))},
		{Name: "Created At", Value: str(time.UnixMilli(now - int64(n)*1000).UTC().Format("2006-01-02T15:04:05.000000Z"))},
	}
	ev := event.Envelope{
		Op:    event.OpSnapshot,
		After: row,
		Source: event.Source{
			Version: "bench", Connector: "postgresql", Name: prefix, TsMs: now,
			Snapshot: "true", DB: "crm", Schema: schema, Table: usersTable, LSN: lsn,
		},
		TsMs: now,
	}
	key, _ := event.Row{{Name: "Contact ID", Value: id}}.MarshalJSON()
	return kafka.Message{Key: key, Value: ev.Encode(nil)}
}

// produce writes the snapshot events of contacts 1…users into the users
// topic, partitioned as the connector partitions them, and returns their
// bytes (keys and values).
func produce(ctx context.Context, brokers []string, users int) (int64, error) {
	w := broker.NewWriter(brokers, 1000)
	w.Topic = usersTopic
	defer w.Close()
	now := time.Now().UnixMilli()
	var bytes int64
	batch := make([]kafka.Message, 0, chunkRows)
	for first := 1; first <= users; first += chunkRows {
		lsn := int64(0x1_0000_0000) + int64(first/chunkRows)*0x1000 // the chunk's low watermark
		batch = batch[:0]
		for n := first; n < first+chunkRows && n <= users; n++ {
			m := contactEvent(n, lsn, now)
			bytes += int64(len(m.Key) + len(m.Value))
			batch = append(batch, m)
		}
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return 0, fmt.Errorf("write the snapshot events of contacts %d…%d: %w", first, first+len(batch)-1, err)
		}
	}
	return bytes, nil
}
