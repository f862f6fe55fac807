package sink_test

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// waitBoundParallel is how many of this package's tests run at once unless
// -parallel says otherwise. Each test has a broker, an emulator and sinks
// of its own, and spends its time waiting on rate limits, backoffs and
// group rebalances rather than on the CPU: at go test's default (one per
// core) the package took 220 s here on 2 cores, at 6 about 55 s; 4 keeps
// the load it puts beside test/e2e (which go test runs at the same time)
// lower.
const waitBoundParallel = 4

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(waitBoundParallel))
	}
	os.Exit(m.Run())
}
