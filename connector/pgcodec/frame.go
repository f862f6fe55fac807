package pgcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errShortTuple = errors.New("tuple ends early")

// checkTuples walks the tuples of an Insert, Update or Delete message
// (protocol 1) and reports a column claiming more bytes than the message
// holds: pglogrepl allocates a column's claimed length before it checks
// it, so a malformed frame could make it allocate gigabytes. Other
// messages pass.
func checkTuples(data []byte) error {
	switch data[0] {
	case 'I', 'U', 'D':
	default:
		return nil
	}
	pos := 5 // type and relation id
	for pos < len(data) {
		switch data[pos] {
		case 'N', 'K', 'O':
		default:
			return fmt.Errorf("unknown tuple marker %q", data[pos])
		}
		pos++
		if pos+2 > len(data) {
			return errShortTuple
		}
		n := int(binary.BigEndian.Uint16(data[pos:]))
		pos += 2
		for range n {
			if pos >= len(data) {
				return errShortTuple
			}
			kind := data[pos]
			pos++
			if kind != 't' && kind != 'b' {
				continue
			}
			if pos+4 > len(data) {
				return errShortTuple
			}
			size := uint64(binary.BigEndian.Uint32(data[pos:]))
			pos += 4
			if size > uint64(len(data)-pos) {
				return fmt.Errorf("column of %d bytes in %d left", size, len(data)-pos)
			}
			pos += int(size)
		}
	}
	return nil
}
