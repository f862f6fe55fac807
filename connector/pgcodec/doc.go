// Package pgcodec is the connector's codec: it turns what PostgreSQL sends
// into change events, encoded as the Debezium-style JSON of package event.
// From the replication stream it decodes pgoutput messages (protocol 1,
// text format): it keeps the relation cache that Relation messages fill,
// renders each column's text as JSON by its type, and makes each row
// change one event with its Kafka key and headers. From a snapshot's
// SELECT it encodes rows read in text form as snapshot events, byte for
// byte as the stream's events would carry them.
//
// Its guarantee: every event it returns is valid JSON that event.Decode
// reads back, within the event size limit (256 KiB), and a malformed
// message is an error, never a panic or a huge allocation (FuzzDecode).
// It does no I/O: no connection, no clock but the one it is given, no
// goroutine; the replication loop owns a Decoder, which is not safe for
// concurrent use.
package pgcodec
