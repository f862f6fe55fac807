//go:build !unix

package broker

// lockDir does nothing where there is no flock: keep one process per
// data directory by hand.
func lockDir(string) (func(), error) { return func() {}, nil }
