//go:build !race

package kv_test

// raceEnabled: the race detector's shadow memory counts in RSS.
const raceEnabled = false
