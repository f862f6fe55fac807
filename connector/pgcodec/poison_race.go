//go:build race

package pgcodec

// poison: SnapshotCodec.Release overwrites the memory it releases.
const poison = true
